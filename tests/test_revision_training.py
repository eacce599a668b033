"""Revision SFT: the loss mask covers only the target; a tiny smoke train lowers the loss; chains."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from ttstrain.generation.scripted import ScriptedGenerator
from ttstrain.io import read_parquet
from ttstrain.prompts import PromptFormat
from ttstrain.revisions.chains import flip_rates, revision_step_accuracy, run_revision_chains
from ttstrain.revisions.pairs import format_revision_prompt
from ttstrain.trainers.revision_config import RevisionConfig
from ttstrain.trainers.revision_trainer import build_revision_trainer

ROWS = [{"question": f"Start with {i}.\n1. Add 2.\nWhat is the result?",
         "previous_attempts": [f"{i} + 2 = {i + 3}\nThe answer is \\boxed{{{i + 3}}}."] * (i % 3),
         "target": f"{i} + 2 = {i + 2}\nThe answer is \\boxed{{{i + 2}}}."} for i in range(12)]


def _trainer(tmp_path, tiny_llama, char_tokenizer, **kw):
    cfg = RevisionConfig(output_dir=str(tmp_path / "rev"), learning_rate=3e-3, per_device_train_batch_size=4,
                         gradient_accumulation_steps=1, num_train_epochs=kw.pop("epochs", 1), logging_steps=1,
                         save_strategy="no", use_cpu=True, report_to="none", max_length=512, seed=0, **kw)
    return build_revision_trainer(cfg, model=copy.deepcopy(tiny_llama), tokenizer=char_tokenizer, train_rows=ROWS)


def test_loss_mask_covers_only_the_target(tmp_path, tiny_llama, char_tokenizer):
    trainer = _trainer(tmp_path, tiny_llama, char_tokenizer)
    row = trainer.train_dataset[1]
    prompt = format_revision_prompt(ROWS[1]["question"], ROWS[1]["previous_attempts"])
    prompt_len = len(char_tokenizer(prompt)["input_ids"])
    target_len = len(ROWS[1]["target"]) + 1  # one token per character, plus the end-of-sequence token
    # TRL folds the completion mask into the labels: -100 on the prompt, the token ids on the target
    assert row["labels"] == [-100] * prompt_len + row["input_ids"][prompt_len:]
    assert len(row["input_ids"]) == prompt_len + target_len
    assert row["input_ids"][-1] == char_tokenizer.eos_token_id
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    kept = batch["labels"] != -100
    assert int(kept[0].sum()) == len(ROWS[0]["target"]) + 1


def test_smoke_train_lowers_loss(tmp_path, tiny_llama, char_tokenizer):
    trainer = _trainer(tmp_path, tiny_llama, char_tokenizer, epochs=4)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0] * 0.9, losses
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))


def test_chains_condition_on_history_and_flip_rates():
    problems = [{"id": "a", "question": "Start with 1.\n1. Add 1.\nWhat is the result?", "answer": "2"}]

    def script(prompt, j, params):
        attempts = prompt.count("Previous attempt:")
        # chain 0: wrong, right, right, wrong; chain 1 always right
        right = j == 1 or attempts in (1, 2)
        return f"The answer is \\boxed{{{2 if right else 3}}}."

    gen = ScriptedGenerator(script)
    rows = run_revision_chains(gen, problems, num_chains=2, chain_length=4, progress=False)
    assert [r["correct"] for r in rows if r["chain"] == 0] == [False, True, True, False]
    assert revision_step_accuracy(rows) == {0: 0.5, 1: 1.0, 2: 1.0, 3: 0.5}
    rates = flip_rates(rows)
    assert rates["transitions_from_correct"] == 5 and rates["correct_to_incorrect"] == 1 / 5
    assert rates["incorrect_to_correct"] == 1.0
    # every step is one call over all chains, each chain its own random stream
    assert len(gen.calls) == 4 and all(c.streams == [0, 1] for c in gen.calls)
    assert gen.calls[3].prompts[0].count("Previous attempt:") == 3
    long = run_revision_chains(ScriptedGenerator(script), problems, num_chains=1, chain_length=6, progress=False)
    assert len(long) == 6


class ContextScorer:
    """Scores an attempt 0.9 if it ends in the right answer AND its prompt shows a previous attempt,
    else 0.2: a stand-in for a verifier that needs the context."""

    reads_questions, prompt_format = False, PromptFormat()

    def __init__(self):
        self.prompts = []

    def prompt_for(self, question):
        return self.prompt_format.build(question)

    def score_solutions(self, prompts, steps, how="last"):
        self.prompts += prompts
        return [0.9 if ("Previous attempt:" in p and "boxed{2}" in s[-1]) else 0.2 for p, s in zip(prompts, steps)]


def test_revision_orm_rows_and_eval_stage(tmp_path, monkeypatch):
    import json

    from ttstrain.revisions.verifier import revision_orm_rows, score_attempts
    from ttstrain.stages.eval_revision import EvalRevisionConfig, run_eval_revision

    problems = [{"id": "a", "question": "Start with 1.\n1. Add 1.\nWhat is the result?", "answer": "2"}]

    def script(prompt, j, params):
        attempts = prompt.count("Previous attempt:")
        right = attempts >= 1 and j == 0  # chain 0 right from its second attempt on, chain 1 never
        return f"1 + 1 = {2 if right else 3}\nThe answer is \\boxed{{{2 if right else 3}}}."

    rows = run_revision_chains(ScriptedGenerator(script), problems, num_chains=2, chain_length=3, progress=False)
    orm = revision_orm_rows(rows)
    # rows are step-major: (step 0, chain 0), (step 0, chain 1), (step 1, chain 0), ...
    assert len(orm) == 6 and orm[2]["prompt"].count("Previous attempt:") == 1 and orm[2]["labels"] == [1.0, 1.0]
    assert orm[0]["labels"] == [0.0, 0.0] and len({(r["problem_id"], r["sample_index"]) for r in orm}) == 6
    scorer = ContextScorer()
    with_ctx = score_attempts(scorer, rows, context=True)
    without = score_attempts(scorer, rows, context=False)
    assert with_ctx == [0.2, 0.2, 0.9, 0.2, 0.9, 0.2] and set(without) == {0.2}
    assert not any("Previous attempt" in p for p in scorer.prompts[-6:])

    cfg = EvalRevisionConfig(output_dir=str(tmp_path / "ev"), problems="arith", per_level=1, num_chains=2,
                             chain_length=3, seed=0)
    cfg_problems = [{"id": "a", "question": problems[0]["question"], "answer": "2"}]
    import ttstrain.stages.eval_revision as ev

    monkeypatch.setattr(ev, "stage_problems", lambda c: cfg_problems)  # the scripted model knows this question only
    result = run_eval_revision(cfg, generator=ScriptedGenerator(script), scorers={"orm": ContextScorer()},
                               progress=False)
    assert result["pass@1_by_revision_step"] == {0: 0.0, 1: 0.5, 2: 0.5}
    assert result["verifiers"]["orm"]["auroc_all_attempts"] == 1.0
    # 1 attempt x 2 chains: each chain's first attempt is wrong; 2 x 1 (chain 0 alone, then chain 1 alone)
    assert result["majority"]["1x2"] == 0.0
    assert result["verifiers"]["orm"]["hierarchical"]["2x2"] == 1.0
    for name in ("chains.parquet", "orm_data.parquet", "eval_revision.json", "config.json"):
        assert (tmp_path / "ev" / name).exists()
    assert json.loads((tmp_path / "ev" / "eval_revision.json").read_text())["num_chains"] == 2



def test_eval_stage_reports_answer_bounds_from_base_samples(tmp_path, monkeypatch):
    import json

    import ttstrain.stages.eval_revision as ev
    from ttstrain.io import write_parquet
    from ttstrain.stages.eval_revision import EvalRevisionConfig, run_eval_revision

    question = "Start with 1.\n1. Add 1.\nWhat is the result?"
    monkeypatch.setattr(ev, "stage_problems", lambda c: [{"id": "a", "question": question, "answer": "2"}])
    script = lambda prompt, j, params: "1 + 1 = 2\nThe answer is \\boxed{2}."  # noqa: E731
    # question a: 1 right of 4, wrong answers "3" x2 and "4" -> exclusion 1/4 * (1 + 1/3); z is not evaluated
    base = [{"problem_id": "a", "answer": a, "correct": a == "2"} for a in ("2", "3", "3", "4")]
    base += [{"problem_id": "z", "answer": "9", "correct": True}]
    write_parquet(tmp_path / "base" / "samples.parquet", base)
    cfg = EvalRevisionConfig(output_dir=str(tmp_path / "ev"), num_chains=1, chain_length=2,
                             base_samples=str(tmp_path / "base"))
    result = run_eval_revision(cfg, generator=ScriptedGenerator(script), progress=False)
    assert result["answer_bounds"] == {"first_attempt": 0.25, "exclude_previous": round(1 / 3, 4),
                                       "keep_or_exclude_oracle": round(0.25 + 1 / 3, 4), "questions": 1,
                                       "samples_per_question": 4.0}
    # the scripted model always answers 2: nothing wrong to change
    assert result["changed_attempts"] == {"changed_wrong_attempts": 0, "right_after_change": None,
                                          "fresh_sample_excluding_previous": None}
    assert json.loads((tmp_path / "ev" / "eval_revision.json").read_text())["answer_bounds"]["questions"] == 1

    write_parquet(tmp_path / "bad.parquet", [{"problem_id": "a", "correct": True}])
    calls = []
    never = ScriptedGenerator(lambda *a: calls.append(a) or "")
    cfg.base_samples, cfg.output_dir = str(tmp_path / "bad.parquet"), str(tmp_path / "ev2")
    with pytest.raises(ValueError, match=r"bad\.parquet: no column 'answer'"):
        run_eval_revision(cfg, generator=never, progress=False)
    assert calls == [] and not (tmp_path / "ev2").exists()


def test_cpu_training_defaults_to_full_precision_without_checkpointing(tmp_path):
    # TRL's SFTConfig turns bf16 on everywhere; bf16 autocast on a CPU made revision SFT ~10x slower
    cfg = RevisionConfig(output_dir=str(tmp_path / "rev"), use_cpu=True, report_to="none")
    assert cfg.bf16 is False and cfg.gradient_checkpointing is False
    assert RevisionConfig(output_dir=str(tmp_path / "rev"), use_cpu=True, bf16=False, report_to="none").bf16 is False


def test_sft_rows_fit_the_target_inside_max_length(char_tokenizer):
    from ttstrain.trainers.revision_trainer import revision_sft_rows

    row = {"question": ROWS[0]["question"], "previous_attempts": ["x" * 300, "y" * 300], "target": ROWS[0]["target"]}
    (fitted,) = revision_sft_rows([row], char_tokenizer, max_length=500)
    assert "y" * 300 in fitted["prompt"] and "x" * 300 not in fitted["prompt"] and fitted["completion"] == row["target"]
    total = len(char_tokenizer(fitted["prompt"] + fitted["completion"], add_special_tokens=False)["input_ids"]) + 2
    assert total <= 500
    (unfitted,) = revision_sft_rows([row], char_tokenizer)
    assert "x" * 300 in unfitted["prompt"]


def test_chains_drop_old_attempts_past_the_generators_context(char_tokenizer):
    import copy

    problems = [{"id": "a", "question": "Start with 1.\n1. Add 1.\nWhat is the result?", "answer": "2"}]
    gen = ScriptedGenerator(lambda prompt, j, params: "w" * 150 + "\nThe answer is \\boxed{3}.")
    tok = copy.deepcopy(char_tokenizer)
    tok.model_max_length = 700  # prompts up to 500 tokens: the question and two attempts fit, three do not
    rows = run_revision_chains(gen, problems, num_chains=1, chain_length=5, max_new_tokens=200, tokenizer=tok,
                               progress=False)
    lengths = [len(tok(r["prompt"], add_special_tokens=False)["input_ids"]) for r in rows]
    assert max(lengths) <= 500 and [r["prompt"].count("Previous attempt:") for r in rows] == [0, 1, 2, 2, 2]


def test_revision_sft_resumes_from_its_last_checkpoint(tmp_path, base_dir, monkeypatch):
    import trl
    from transformers import TrainerCallback

    from ttstrain.io import write_parquet
    from ttstrain.trainers.revision_trainer import train_revision

    write_parquet(tmp_path / "rev" / "data" / "train-00000-of-00001.parquet", ROWS)

    def cfg(out, **kw):
        return RevisionConfig(output_dir=str(tmp_path / out), model_name_or_path=str(base_dir),
                              dataset_path=str(tmp_path / "rev"), learning_rate=3e-3, per_device_train_batch_size=2,
                              gradient_accumulation_steps=1, max_steps=4, save_steps=2, logging_steps=1,
                              use_cpu=True, report_to="none", max_length=512, seed=0, **kw)

    class StopAfter(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise KeyboardInterrupt("interrupted after step 2")

    whole = train_revision(cfg("whole"))
    interrupted = build_revision_trainer(cfg("resumed"))
    interrupted.add_callback(StopAfter())
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    assert [p.name for p in (tmp_path / "resumed").glob("checkpoint-*")] == ["checkpoint-2"]

    seen = []
    original = trl.SFTTrainer.train

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("resume_from_checkpoint"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(trl.SFTTrainer, "train", spy)
    resumed = train_revision(cfg("resumed", resume_from_checkpoint="last"))
    assert seen == [True], "train() was given the checkpoint to resume from"
    from safetensors.torch import load_file

    a, b = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6, rtol=0) for k in a)


def test_revision_sft_sets_every_dropout_field_gpt2_style_included():
    from transformers import GPT2Config

    from ttstrain.trainers.run_setup import set_dropout

    config = GPT2Config(n_layer=1, n_embd=8, n_head=2, attn_pdrop=0.1, resid_pdrop=0.1, embd_pdrop=0.1)
    assert set(set_dropout(config, 0.0)) >= {"attn_pdrop", "resid_pdrop", "embd_pdrop"}
    assert config.attn_pdrop == config.resid_pdrop == config.embd_pdrop == 0.0


def test_revision_sft_logs_wandb_offline_unless_told(tmp_path, monkeypatch):
    import ttstrain.trainers.revision_trainer as rt

    monkeypatch.setenv("WANDB_MODE", "unset-by-the-test")  # so that teardown restores the environment
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setattr(rt, "build_revision_trainer", lambda cfg: (_ for _ in ()).throw(RuntimeError("stop here")))
    with pytest.raises(RuntimeError, match="stop here"):
        rt.train_revision(RevisionConfig(output_dir=str(tmp_path / "o"), report_to="none", use_cpu=True))
    assert "WANDB_MODE" not in os.environ
    with pytest.raises(RuntimeError, match="stop here"):
        rt.train_revision(RevisionConfig(output_dir=str(tmp_path / "o"), report_to="wandb", use_cpu=True))
    assert os.environ["WANDB_MODE"] == "offline"


def test_eval_revision_ends_attempts_where_the_revision_model_was_trained_to(tmp_path, monkeypatch):
    """A revision model trained on paragraph attempts (its ttstrain_config.json records the step format): its
    chains are not cut at the first blank line, and the ORM rows split them into paragraphs."""
    import json

    import ttstrain.stages.eval_revision as ev
    from ttstrain.revisions.pairs import revision_prompt_record
    from ttstrain.stages.eval_revision import EvalRevisionConfig, run_eval_revision
    from ttstrain.steps import PARAGRAPH

    model = tmp_path / "revision_model"
    model.mkdir()
    (model / "ttstrain_config.json").write_text(json.dumps({"prompt_format": revision_prompt_record(None, PARAGRAPH)}))
    problems = [{"id": "a", "question": "Start with 1.\n1. Add 1.\nWhat is the result?", "answer": "2"}]
    monkeypatch.setattr(ev, "stage_problems", lambda c: problems)
    script = lambda prompt, j, params: "First, 1 + 1 = 2.\n\nSo the answer is \\boxed{2}.\n\nDone."  # noqa: E731
    cfg = EvalRevisionConfig(output_dir=str(tmp_path / "ev"), model_name_or_path=str(model), problems="arith",
                             per_level=1, num_chains=1, chain_length=2, seed=0)
    result = run_eval_revision(cfg, generator=ScriptedGenerator(script), progress=False)
    assert result["pass@1_by_revision_step"] == {0: 1.0, 1: 1.0}
    orm = read_parquet(tmp_path / "ev" / "orm_data.parquet")
    assert [list(r["completions"]) for r in orm] == [["First, 1 + 1 = 2.", "So the answer is \\boxed{2}.", "Done."]] * 2
    recorded = json.loads((tmp_path / "ev" / "config.json").read_text())["prompt_format"]
    assert recorded["step_format"] == PARAGRAPH.record()
