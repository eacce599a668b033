"""PRM label placement: TRL 1.13's `PRMTrainer` layout, token for token, in training and in scoring.

TRL tokenizes the prompt and each step alone, appends the separator's tokens after every step,
puts the step's label on the last of them and prepends `tokenizer.bos_token_id`; ttstrain by
default tokenizes prompt + solution in one piece and reads the step's last token. These tests run
TRL's own `tokenize_row` and `PRMTrainer` (the installed, pinned version) next to ttstrain's with
SmolLM2-135M-Instruct's real tokenizer (conftest's `smollm2_tokenizer`), whose BOS (`<|im_start|>`)
its tokenizer never adds.
"""

from __future__ import annotations

import json
import logging
import warnings

import pytest
import torch

with warnings.catch_warnings():  # the pinned TRL (1.13) keeps its PRMTrainer under trl.experimental, and says so
    warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
    from trl.experimental import prm as trl_prm

from ttstrain.prm.data import tokenize_row
from ttstrain.prm.checkpoint import PRM_CONFIG_KEY, PRMLayout, prm_inputs
from ttstrain.prm.scoring import PRMScorer
from ttstrain.steps import LINE, StepFormat

TRL = PRMLayout(LINE, "separator", "trl")


def stepwise_rows(tok) -> list[dict]:
    """Rows in TRL's stepwise schema: a plain and a chat prompt, steps with spaces, digits, a newline inside one."""
    chat = tok.apply_chat_template([{"role": "user", "content": "Tom has 3 apples and buys 4 more. How many?"}],
                                   tokenize=False, add_generation_prompt=True)
    return [
        {"prompt": "Which number is larger, 9.8 or 9.11?",
         "completions": ["11 is greater than 8.", "Hence, 9.11 > 9.8."], "labels": [1.0, 0.0]},
        {"prompt": chat, "completions": ["Tom starts with 3 apples.", " He buys 4 more: 3 + 4 = 7. ",
                                         "The answer is 7."], "labels": [1.0, 1.0, 1.0]},
        {"prompt": "What is 12 * 3?\n", "completions": ["12 * 3 = 36\nso 36", "The answer is \\boxed{36}."],
         "labels": [1.0, 0.0]},
    ]


def trl_tokens(row: dict, tok, separator: str = "\n", max_length=None, last_step_only=False) -> tuple[list, list]:
    """(input_ids, label positions) of TRL's own PRMTrainer.tokenize_row."""
    out = trl_prm.PRMTrainer.tokenize_row(row, tok, separator, max_length, None, last_step_only, False)
    return out["input_ids"], [i for i, y in enumerate(out["labels"]) if y != -100]


def test_separator_placement_is_trls_tokenize_row(smollm2_tokenizer):
    tok = smollm2_tokenizer
    assert tok.bos_token == "<|im_start|>" and tok("a")["input_ids"] == tok("a", add_special_tokens=False)["input_ids"]
    for separator in ("\n", "\n\n"):
        layout = PRMLayout(StepFormat(separator, "eos"), "separator", "trl")
        rows = stepwise_rows(tok)
        for row in rows + [{**rows[0], "labels": [True, False]}]:  # labels as TRL datasets write them, too
            ids, positions = trl_tokens(row, tok, separator)
            ours = tokenize_row(row, tok, layout=layout)
            assert ours["input_ids"] == ids and ours["label_positions"] == positions
            assert ours["label_values"] == [float(y) for y in row["labels"]]
            assert prm_inputs(tok, row["prompt"], row["completions"], layout).prompt_length == \
                len(tok(row["prompt"], add_special_tokens=False)["input_ids"]) + 1
            # truncation keeps what TRL keeps; TRL's train_on_last_step_only is label_mode orm
            cut = positions[-1]
            ids_cut, pos_cut = trl_tokens(row, tok, separator, max_length=cut)
            truncated = tokenize_row(row, tok, layout=layout, max_length=cut)
            assert truncated["input_ids"] == ids_cut and truncated["label_positions"] == pos_cut
            assert tokenize_row(row, tok, label_mode="orm", layout=layout)["label_positions"] == \
                trl_tokens(row, tok, separator, last_step_only=True)[1]
    # ttstrain's own placement is another one: no BOS, every value on the step's last token, one token earlier
    row = stepwise_rows(tok)[0]
    default = tokenize_row(row, tok)
    ids, positions = trl_tokens(row, tok)
    assert default["input_ids"][0] != tok.bos_token_id and ids[0] == tok.bos_token_id
    assert [p + 1 for p in default["label_positions"]] != positions


def _tiny_token_classifier(tok, num_labels: int):
    from transformers import LlamaConfig, LlamaForTokenClassification

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256, num_labels=num_labels,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return LlamaForTokenClassification(cfg)


def _train_args(cls, out, **kw):
    return cls(output_dir=str(out), max_steps=3, per_device_train_batch_size=3, gradient_accumulation_steps=1,
               learning_rate=1e-2, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
               disable_tqdm=True, dataloader_pin_memory=False, seed=0, **kw)


@pytest.fixture(scope="module")
def trl_checkpoint(tmp_path_factory, smollm2_tokenizer):
    """A tiny PRM trained for three steps by TRL's own PRMTrainer and saved as TRL saves it."""
    from datasets import Dataset

    tok = smollm2_tokenizer
    model = _tiny_token_classifier(tok, num_labels=2)
    before = model.score.weight.detach().clone()
    out = tmp_path_factory.mktemp("trl_prm")
    args = _train_args(trl_prm.PRMConfig, out, bf16=False, gradient_checkpointing=False)
    trainer = trl_prm.PRMTrainer(model=model, args=args, train_dataset=Dataset.from_list(stepwise_rows(tok)),
                                 processing_class=tok)
    trainer.train()
    assert not torch.equal(before, trainer.model.score.weight.detach()), "TRL's trainer changed the head"
    trainer.save_model(str(out))
    assert PRM_CONFIG_KEY not in json.loads((out / "config.json").read_text())
    return out, trainer.train_dataset


def test_a_trl_trained_prm_is_scored_at_trls_positions(trl_checkpoint, smollm2_tokenizer, caplog):
    from transformers import AutoModelForTokenClassification

    out, _ = trl_checkpoint
    tok = smollm2_tokenizer
    rows = stepwise_rows(tok)
    with caplog.at_level(logging.WARNING, logger="ttstrain.prm.scoring"):
        prm = PRMScorer.from_pretrained(out)
    assert "TRL's PRMTrainer" in caplog.text and repr("\n") in caplog.text, caplog.text
    assert prm.layout == TRL and prm.metadata["activation"] == "softmax"
    scores = prm.score([r["prompt"] for r in rows], [r["completions"] for r in rows])
    model = AutoModelForTokenClassification.from_pretrained(out).eval()
    for row, got in zip(rows, scores):
        ids, positions = trl_tokens(row, tok)
        assert prm.tokenize(row["prompt"], row["completions"]).input_ids == ids
        with torch.no_grad():
            probs = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0], dim=-1)[positions, 1]
        assert got == pytest.approx(probs.tolist(), abs=1e-5)
    # what ttstrain's default reading (each step's last token, no BOS) would have given: other numbers
    st = prm_inputs(tok, rows[0]["prompt"], rows[0]["completions"])
    with torch.no_grad():
        early = torch.softmax(model(input_ids=torch.tensor([st.input_ids])).logits[0], dim=-1)[st.step_end_positions, 1]
    assert early.tolist() != pytest.approx(scores[0], abs=1e-4)
    # another separator is the user's to give, and changes where the values are read
    para = PRMScorer.from_pretrained(out, step_separator="\\n\\n")
    assert para.layout.steps.separator == "\n\n"
    assert para.tokenize(rows[0]["prompt"], rows[0]["completions"]).input_ids == trl_tokens(rows[0], tok, "\n\n")[0]


def test_a_ttstrain_prm_in_trl_placement_trains_and_scores_as_trl(tmp_path, trl_checkpoint, smollm2_tokenizer):
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM

    from ttstrain.prm.config import PRMConfig
    from ttstrain.prm.trainer import PRMTrainer, load_prm_model

    _, trl_data = trl_checkpoint
    tok = smollm2_tokenizer
    base = tmp_path / "base"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                                 pad_token_id=tok.pad_token_id)).save_pretrained(base)
    tok.save_pretrained(base)
    model, _ = load_prm_model(str(base))
    args = _train_args(PRMConfig, tmp_path / "prm", label_placement="separator", bos="trl", validation_fraction=0.0)
    trainer = PRMTrainer(model=model, args=args, train_dataset=Dataset.from_list(stepwise_rows(tok)),
                         processing_class=tok)
    # the same rows, the same tokens and label positions as TRL's own trainer built
    assert trainer.train_dataset["input_ids"] == trl_data["input_ids"]
    assert trainer.train_dataset["label_positions"] == [[i for i, y in enumerate(labels) if y != -100]
                                                        for labels in trl_data["labels"]]
    trainer.train()
    out = trainer.save_prm()
    meta = json.loads((tmp_path / "prm" / "config.json").read_text())[PRM_CONFIG_KEY]
    assert (meta["label_placement"], meta["bos"], meta["step_separator"]) == ("separator", "trl", "\n")
    assert meta["prompt_format"]["step_format"] == LINE.record()
    prm = PRMScorer.from_pretrained(out)
    assert prm.layout == TRL
    rows = stepwise_rows(tok)
    scores = prm.score([r["prompt"] for r in rows], [r["completions"] for r in rows])
    for row, got in zip(rows, scores):
        ids, positions = trl_tokens(row, tok)
        with torch.no_grad():
            logits = prm.model(input_ids=torch.tensor([ids])).logits[0, :, 0]
        assert got == pytest.approx(torch.sigmoid(logits[positions]).tolist(), abs=1e-5)


def test_placement_and_bos_are_settings_with_checked_values(tmp_path, char_tokenizer):
    from ttstrain.prm.checkpoint import layout_from_metadata, prm_metadata
    from ttstrain.prm.config import PRMConfig

    with pytest.raises(ValueError, match="label_placement"):
        PRMConfig(output_dir=str(tmp_path), label_placement="after")
    with pytest.raises(ValueError, match="bos"):
        PRMConfig(output_dir=str(tmp_path), bos="always")
    # a checkpoint from before placements were recorded (format 1) reads as LINE, step_end, the tokenizer's tokens
    old = {"format_version": 1, "head": "token_value", "step_separator": "\n", "label_mode": "soft",
           "activation": "sigmoid", "add_special_tokens": True, "base_model": "default"}
    assert layout_from_metadata(old) == PRMLayout()
    assert layout_from_metadata(prm_metadata("soft", label_placement="separator", bos="trl")) == TRL
    # the char tokenizer adds <s> itself: "tokenizer" and "trl" BOS give the same tokens, placements differ
    prompt, steps = "Q:\n", ["1 + 1 = 2", "The answer is \\boxed{2}."]
    a = prm_inputs(char_tokenizer, prompt, steps, PRMLayout(LINE, "separator", "tokenizer"))
    b = prm_inputs(char_tokenizer, prompt, steps, TRL)
    c = prm_inputs(char_tokenizer, prompt, steps)
    assert a == b and a.input_ids == c.input_ids + [char_tokenizer.convert_tokens_to_ids("\n")]
    assert a.step_end_positions == [p + 1 for p in c.step_end_positions] and a.prompt_length == c.prompt_length
