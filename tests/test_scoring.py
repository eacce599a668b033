"""PRM scoring: the positions read equal the positions trained, one forward per solution, aggregations."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ttstrain.prompts import format_prompt
from ttstrain.prm.scoring import AGGREGATIONS, DEFAULT_AGGREGATION, PRMScorer, aggregate
from ttstrain.steps import split_steps, step_end_positions
from ttstrain.prm.data import tokenize_row
from ttstrain.prm.checkpoint import PRM_CONFIG_KEY
from ttstrain.prm.trainer import PRMDataCollator, load_prm_model
from ttstrain.world.task import problems_split


def _solutions(n_per_level=2, seed=7):
    rows = problems_split("test", n_per_level, seed=seed)
    return [format_prompt(r["question"]) for r in rows], [split_steps(r["solution"]) for r in rows]


def test_aggregations_are_the_project_table():
    import ttstrain.aggregation

    assert AGGREGATIONS is ttstrain.aggregation.AGGREGATIONS and aggregate is ttstrain.aggregation.aggregate
    assert DEFAULT_AGGREGATION == "last" and set(AGGREGATIONS) == {"last", "min", "prod", "mean"}
    s = [0.9, 0.5, 0.8]
    assert (aggregate(s), aggregate(s, "min")) == (0.8, 0.5)
    assert math.isclose(aggregate(s, "prod"), 0.36) and math.isclose(aggregate(s, "mean"), 2.2 / 3)


def test_scoring_reads_the_positions_training_labels(char_tokenizer, merging_tokenizer, tiny_llama):
    """Train and score both place step ends with step_end_positions: same ids, same positions, two tokenizers."""
    prompts, steps = _solutions()
    for tok in (char_tokenizer, merging_tokenizer):
        scorer = PRMScorer(_dummy_prm(tok), tok)
        for prompt, st in zip(prompts, steps):
            train = tokenize_row({"prompt": prompt, "completions": st, "labels": [0.5] * len(st)}, tok)
            score = scorer.tokenize(prompt, st)
            assert score.input_ids == train["input_ids"]
            assert score.step_end_positions == train["label_positions"]
            assert score.step_end_positions == step_end_positions(tok, prompt, st).step_end_positions
            batch = PRMDataCollator(tok.pad_token_id)([train])
            assert torch.nonzero(batch["labels"][0] != -100).flatten().tolist() == score.step_end_positions


def _dummy_prm(tok):
    from transformers import LlamaConfig, LlamaForTokenClassification

    from ttstrain.prm.checkpoint import prm_metadata

    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id)
    setattr(cfg, PRM_CONFIG_KEY, prm_metadata("soft"))
    return LlamaForTokenClassification(cfg)


def test_one_forward_per_batch_reads_every_step(prm_dir):
    prompts, steps = _solutions()
    prm = PRMScorer.from_pretrained(prm_dir, batch_size=4)
    scores = prm.score(prompts, steps)
    assert [len(s) for s in scores] == [len(s) for s in steps]
    assert prm.stats["forward_passes"] == math.ceil(len(prompts) / 4) and prm.stats["solutions"] == len(prompts)
    assert prm.last_scored_tokens == [len(prm.tokenize(p, s).input_ids) for p, s in zip(prompts, steps)]
    assert prm.stats["tokens"] == sum(prm.last_scored_tokens)
    # step i's score is what the model gives the prefix ending at step i (causal: later steps cannot leak)
    i = max(range(len(steps)), key=lambda k: len(steps[k]))
    for k in range(1, len(steps[i])):
        prefix = prm.score([prompts[i]], [steps[i][:k]])[0]
        assert prefix == pytest.approx(scores[i][:k], abs=1e-5)
    # packing, padding, batch size and order do not change a score
    padded = PRMScorer.from_pretrained(prm_dir, packing=False).score(prompts, steps, batch_size=3)
    one_by_one = [prm.score([p], [s], batch_size=1)[0] for p, s in zip(prompts, steps)]
    reverse = prm.score(prompts[::-1], steps[::-1])[::-1]
    for a, b, c, d in zip(scores, padded, one_by_one, reverse):
        assert a == pytest.approx(b, abs=1e-5) and a == pytest.approx(c, abs=1e-5) and a == pytest.approx(d, abs=1e-5)
    spread = max(x for s in scores for x in s) - min(x for s in scores for x in s)
    assert spread > 0.05, "scores should differ across steps for this comparison to mean anything"
    assert prm.score_solutions(prompts[:2], steps[:2], how="min") == [min(s) for s in scores[:2]]



def test_a_shared_value_cache_spares_the_second_scorer_its_forwards(prm_dir):
    prompts, steps = _solutions()
    plain = PRMScorer.from_pretrained(prm_dir, batch_size=4).score(prompts, steps)
    first = PRMScorer.from_pretrained(prm_dir, batch_size=4, value_cache={})
    for a, b in zip(first.score(prompts[:3], steps[:3]), plain[:3]):
        assert a == pytest.approx(b, abs=1e-5)
    assert len(first.value_cache) == 3
    second = PRMScorer(first.model, first.tokenizer, batch_size=4, value_cache=first.value_cache)
    mixed = second.score(prompts, steps)  # three cached, the rest run
    assert second.stats["forward_passes"] == math.ceil((len(prompts) - 3) / 4)
    for a, b in zip(mixed, plain):
        assert a == pytest.approx(b, abs=1e-5)
    again = second.score(prompts, steps)
    assert second.stats["forward_passes"] == math.ceil((len(prompts) - 3) / 4) and again == mixed
    # the cache keys on the tokens and the step ends: a prefix of a cached solution is run, not misread
    assert second.score([prompts[0]], [steps[0][:1]])[0] == pytest.approx(plain[0][:1], abs=1e-5)

def test_checkpoint_metadata_is_checked(prm_dir, tmp_path):
    prm = PRMScorer.from_pretrained(prm_dir)
    assert prm.metadata["head"] == "token_value" and prm.metadata["step_separator"] == "\n"
    bad = tmp_path / "bad"
    prm.model.save_pretrained(bad)
    prm.tokenizer.save_pretrained(bad)
    config = json.loads((bad / "config.json").read_text())
    config[PRM_CONFIG_KEY]["step_separator"] = "\n\n"
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="separated by"):
        PRMScorer.from_pretrained(bad)
