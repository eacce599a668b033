"""One prompt builder: plain, few-shot and chat prompts, recorded by each stage and checked by its consumers."""

from __future__ import annotations

import copy
import json

import pytest

from ttstrain.generation.scripted import ScriptedGenerator
from ttstrain.io import write_json, write_parquet
from ttstrain.prompts import PromptFormat, check_same_format, format_prompt, resolve_prompt_format
from ttstrain.steps import STEP_SEPARATOR

from test_prm_trainer import synthetic_rows, train_prm_cli

CHAT = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")
EXAMPLE = ("Start with 2.\n1. Add 3.\nWhat is the result?", "2 + 3 = 5\nThe answer is \\boxed{5}.")


@pytest.fixture
def chat_tokenizer(char_tokenizer):
    tok = copy.deepcopy(char_tokenizer)
    tok.chat_template = CHAT
    return tok


def test_the_three_formats(chat_tokenizer, char_tokenizer):
    q = "Start with 4.\n1. Add 1.\nWhat is the result?"
    assert PromptFormat().build(q) == format_prompt(q) == f"Problem:\n{q}\nSolution:\n"
    few = PromptFormat("few_shot", [EXAMPLE])
    assert few.build(q) == format_prompt(q, [EXAMPLE]) and few.build(q).startswith("Problem:\nStart with 2.")
    chat = PromptFormat("chat", [EXAMPLE], "Solve it.", chat_tokenizer)
    assert chat.build(q) == (f"<system>Solve it.\n<user>{EXAMPLE[0]}\n<assistant>{EXAMPLE[1]}\n<user>{q}\n<assistant>")
    assert resolve_prompt_format("auto", [], None).kind == "plain"
    assert resolve_prompt_format("auto", [EXAMPLE], None).kind == "few_shot"
    with pytest.raises(ValueError, match="needs a tokenizer with a chat template"):
        PromptFormat("chat", tokenizer=char_tokenizer)
    with pytest.raises(ValueError, match="must be one of"):
        PromptFormat("fewshot")


def test_records_round_trip_and_a_mismatch_names_both(chat_tokenizer):
    chat = PromptFormat("chat", [], "Solve it.", chat_tokenizer)
    again = PromptFormat.from_record(json.loads(json.dumps(chat.record())), chat_tokenizer)
    assert again.record() == chat.record() and again.build("q") == chat.build("q")
    check_same_format(None, PromptFormat().record(), "a", "b")  # no record means plain
    with pytest.raises(ValueError, match=r"samples x was made with chat \(0 examples, system prompt 'Solve it.'\), "
                                         r"the PRM y uses plain"):
        check_same_format(chat.record(), None, "samples x", "the PRM y")


def _wrong(prompt, j, params):
    return "1 + 1 = 3" + STEP_SEPARATOR + "The answer is \\boxed{3}."


def test_stages_record_their_format_and_the_prm_applies_it(tmp_path, base_dir):
    from ttstrain.prm.scoring import PRMScorer
    from ttstrain.stages.eval_prm import EvalPRMConfig, run_eval_prm
    from ttstrain.stages.run_search import SearchStageConfig, run_search_stage
    from ttstrain.stages.sample import SampleConfig, run_sample
    from ttstrain.stages.train_prm import run_train_prm

    gen = ScriptedGenerator(_wrong)
    run_sample(SampleConfig(output_dir=str(tmp_path / "s"), per_level=1, num_samples=2, few_shot=1, seed=1),
               generator=gen, progress=False)
    record = json.loads((tmp_path / "s" / "config.json").read_text())["prompt_format"]
    assert record["kind"] == "few_shot" and len(record["examples"]) == 1
    assert all(p.startswith("Problem:\n" + record["examples"][0][0].strip()) for p in gen.calls[0].prompts)
    # a PRM trained on rows whose writer recorded the few-shot format records it too, and applies it
    data = tmp_path / "labels"
    write_parquet(data / "data" / "train-00000-of-00001.parquet", synthetic_rows(per_level=4))
    write_json(data / "config.json", {"prompt_format": record})
    run_train_prm(train_prm_cli(base_dir, data, tmp_path / "prm", max_steps=2, eval_strategy="no",
                                save_strategy="no", load_best_model_at_end="false", report_to="none"))
    prm = PRMScorer.from_pretrained(tmp_path / "prm")
    assert prm.prompt_format.record() == record
    assert prm.prompt_for("Q") == format_prompt("Q", [tuple(e) for e in record["examples"]])
    # eval-prm on the few-shot samples agrees; on samples recorded as plain it refuses, naming both
    run_eval_prm(EvalPRMConfig(prm_path=str(tmp_path / "prm"), samples=str(tmp_path / "s"), budgets=[1, 2],
                               output_dir=str(tmp_path / "e")))
    plain = tmp_path / "plain"
    run_sample(SampleConfig(output_dir=str(plain), per_level=1, num_samples=2, seed=1), generator=gen, progress=False)
    with pytest.raises(ValueError, match=r"the samples .*plain was made with plain.*the PRM .* uses few_shot"):
        run_eval_prm(EvalPRMConfig(prm_path=str(tmp_path / "prm"), samples=str(plain), output_dir=str(tmp_path / "e2")))
    # so does a search whose policy prompts differ from the PRM's
    with pytest.raises(ValueError, match="prompt formats differ: the PRM .* this search's policy prompts uses plain"):
        run_search_stage(SearchStageConfig(output_dir=str(tmp_path / "x"), prm_path=str(tmp_path / "prm"),
                                           per_level=1, max_budget=2, methods=["best_of_n_weighted"]),
                         generator=gen, scorer=prm, progress=False)


def test_revision_prompts_are_recorded_and_chains_check_them(tmp_path, chat_tokenizer, char_tokenizer):
    from ttstrain.revisions.pairs import revision_prompt_record
    from ttstrain.stages.eval_revision import EvalRevisionConfig, run_eval_revision

    assert revision_prompt_record(char_tokenizer) == {"kind": "plain", "revision": True,
                                                      "step_format": {"separator": "\n", "solution_end": "blank_line"}}
    assert revision_prompt_record(chat_tokenizer)["kind"] == "chat"
    model = tmp_path / "revision_model"  # a revision model trained on chat revision prompts
    write_json(model / "ttstrain_config.json", {"prompt_format": revision_prompt_record(chat_tokenizer)})
    cfg = EvalRevisionConfig(output_dir=str(tmp_path / "ev"), model_name_or_path=str(model), per_level=1,
                             num_chains=1, chain_length=1)
    with pytest.raises(ValueError, match=r"the revision model .* was made with chat .* these chains' revision prompts "
                                         r"uses plain"):
        run_eval_revision(cfg, generator=ScriptedGenerator(_wrong), progress=False)


def test_eval_prm_scoring_moves_a_bar_per_batch():
    from ttstrain.prm.evaluation import sample_scores
    from ttstrain.search.scripted_scorer import ScriptedScorer

    class Batched(ScriptedScorer):
        def score_solutions(self, prompts, steps, how="last"):
            for _ in prompts:
                self.progress_hook(1)
            return [0.5] * len(prompts)

    scorer = Batched(lambda p, s: 0.5)
    scorer.progress_hook = None
    rows = [{"prompt": "P", "steps": ["a"]}] * 3
    assert sample_scores(scorer, rows, progress=False) == [0.5] * 3 and scorer.progress_hook is None


def test_a_prm_trained_without_the_worked_examples_reads_each_prompts_question(tmp_path, base_dir):
    """drop_worked_examples: the PRM trains on each question in the chat format without the policy's examples
    (fewer tokens a row), records it, and takes policy prompts back to their questions when it scores."""
    import shutil

    from ttstrain.models import load_tokenizer
    from ttstrain.prm.scoring import PRMScorer
    from ttstrain.stages.train_prm import run_train_prm

    base = tmp_path / "chat_base"
    shutil.copytree(base_dir, base)
    tok = load_tokenizer(base)
    tok.chat_template = CHAT
    tok.save_pretrained(base)
    policy = PromptFormat("chat", [EXAMPLE], None, tok)
    rows = synthetic_rows(per_level=4)
    for r in rows:
        r["prompt"] = policy.build(r["question"])
    data = tmp_path / "labels"
    write_parquet(data / "data" / "train-00000-of-00001.parquet", rows)
    write_json(data / "config.json", {"prompt_format": policy.record()})
    flags = dict(max_steps=1, eval_strategy="no", save_strategy="no", load_best_model_at_end="false", report_to="none")
    kept = run_train_prm(train_prm_cli(base, data, tmp_path / "kept", **flags))
    dropped = run_train_prm(train_prm_cli(base, data, tmp_path / "prm", drop_worked_examples="true", **flags))
    example_chars = len(EXAMPLE[0]) + len(EXAMPLE[1])  # one token a character
    train_rows = dropped.data_summary["train"]["rows_kept"]
    assert kept.data_summary["train"]["tokens"] - dropped.data_summary["train"]["tokens"] >= train_rows * example_chars
    prm = PRMScorer.from_pretrained(tmp_path / "prm")
    assert prm.reads_questions and prm.prompt_format.record()["examples"] == []
    assert prm.metadata["prompt_format"]["examples_dropped"] is True  # what the checkpoint records
    assert not PRMScorer.from_pretrained(tmp_path / "kept").reads_questions
    q, steps = rows[0]["question"], list(rows[0]["completions"])
    bare = prm.score([q], [steps])
    # told of the policy's format, it reads the question back out of each policy prompt: the same scores
    prm.read_prompts_as(policy)
    assert prm.score([policy.build(q)], [steps])[0] == pytest.approx(bare[0], abs=1e-6)
    assert prm.prompt_for(q) == policy.build(q)
    # and they are what the PRM gives its own format, read directly
    direct = PRMScorer(prm.model, prm.tokenizer)
    direct.reads_questions = False
    assert direct.score([PromptFormat("chat", [], None, tok).build(q)], [steps])[0] == pytest.approx(bare[0], abs=1e-6)
    with pytest.raises(ValueError, match="was not built by the policy prompt format"):
        prm.score(["Problem: " + q], [steps])
