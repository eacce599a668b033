"""Reference-likelihood features: exact log-probs and prefix features, the combiner fit, the train-prm
option end to end, and that the world policy's log-probs tell a right step from an arithmetic slip."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from ttstrain.io import write_parquet
from ttstrain.prompts import format_prompt
from ttstrain.prm.checkpoint import PRM_CONFIG_KEY
from ttstrain.prm.reference_features import META_KEY, combined_logits, prefix_features, token_logprobs
from ttstrain.steps import split_steps
from ttstrain.prm.reference_fit import fit_combiner, record_spec
from ttstrain.world.task import problems_split

from test_prm_trainer import PROMPT, STEPS, synthetic_rows, train_prm_cli


def test_token_logprobs_match_one_plain_forward_per_sequence(tiny_llama, char_tokenizer):
    seqs = [char_tokenizer(t)["input_ids"] for t in ("Start with 2.\n2 + 3 = 5", "7 * 8 = 56", "a")]
    packed = token_logprobs(tiny_llama, seqs, char_tokenizer.pad_token_id, batch_size=3)
    for s, got in zip(seqs, packed):
        ids = torch.tensor([s])
        with torch.no_grad():
            lp = torch.log_softmax(tiny_llama(ids).logits[0].float(), -1)
        want = torch.zeros(len(s))
        want[1:] = lp[:-1].gather(-1, ids[0, 1:, None])[:, 0]
        assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5)


def test_prefix_features_read_only_solution_tokens_up_to_each_step_end():
    lp = torch.tensor([0.0, -9.0, -1.0, -3.0, -0.5, -2.0])  # tokens 0-1 are the prompt
    feats = prefix_features(lp, prompt_length=2, step_ends=[3, 5])
    assert feats[0] == (-3.0, -2.0)
    assert feats[1] == (-3.0, pytest.approx(-6.5 / 4))


def test_fit_combiner_recovers_known_weights_and_lowers_the_bce():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6000, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5]) + torch.tensor([0.0, -3.0, -1.0])
    true_w, true_b = torch.tensor([0.5, 1.0, -2.0]), 0.7
    y = torch.sigmoid(x @ true_w + true_b)  # soft targets, as Monte Carlo labels are
    weights, bias, before, after = fit_combiner(x, y, l2=0.0)
    assert weights == pytest.approx(true_w.tolist(), abs=0.02) and bias == pytest.approx(true_b, abs=0.05)
    assert after < before - 0.05
    assert combined_logits({"weights": weights, "bias": bias}, [1.0], [(-2.0, -1.0)])[0] == pytest.approx(
        weights[0] - 2 * weights[1] - weights[2] + bias)


def test_train_prm_with_reference_features_scores_with_both_models(tmp_path, base_dir):
    from ttstrain.prm.scoring import PRMScorer
    from ttstrain.stages.train_prm import run_train_prm

    data = tmp_path / "data"
    write_parquet(data / "train-00000-of-00001.parquet", synthetic_rows(per_level=4))
    out = tmp_path / "prm"
    cfg = train_prm_cli(base_dir, data, out, max_steps=6, eval_steps=3, save_steps=3, reference_features="true",
                        report_to="none")
    run_train_prm(cfg)
    spec = json.loads((out / "config.json").read_text())[PRM_CONFIG_KEY][META_KEY]
    # 20 questions x 2 rows, 4 questions held out: the combiner saw the 32 training rows only
    assert spec["fitted_on"] == "train" and spec["fitted_rows"] == 32 and spec["reference_model"] == str(base_dir)
    assert len(spec["weights"]) == 3 and all(math.isfinite(w) for w in spec["weights"])
    assert spec["bce_combined"] <= spec["bce_value_head_only"] + 1e-6
    assert "reference features" in (out / "README.md").read_text()
    # the fit is also checked on the 4 held-out questions' 8 rows, and a fit this small is flagged
    assert spec["validation"]["rows"] == 8 and spec["validation"]["steps"] > 0
    assert all(math.isfinite(spec["validation"][k]) for k in ("bce_value_head_only", "bce_combined"))
    assert "fewer than 300" in spec["warning"]

    prm = PRMScorer.from_pretrained(out)
    alone = PRMScorer.from_pretrained(out, use_reference_features=False)
    assert prm.reference_model is not None and alone.reference_model is None
    got = prm.score([PROMPT], [STEPS])[0]
    enc = alone.tokenize(PROMPT, STEPS)
    value = alone.value_logits([enc.input_ids], [enc.step_end_positions])[0]
    lp = token_logprobs(prm.reference_model, [enc.input_ids], prm.pad_token_id)[0]
    want = torch.sigmoid(torch.tensor(combined_logits(spec, value, prefix_features(lp, enc.prompt_length,
                                                                                   enc.step_end_positions))))
    assert got == pytest.approx(want.tolist(), abs=1e-6)
    assert alone.score([PROMPT], [STEPS])[0] == pytest.approx(torch.sigmoid(torch.tensor(value)).tolist(), abs=1e-6)
    with pytest.raises(ValueError, match="use_reference_features=False"):
        PRMScorer(alone.model, alone.tokenizer)

    # verifier FLOPs count both models, which read the same tokens
    from ttstrain.search.base import verifier_parameters

    prm_params = sum(p.numel() for p in alone.model.parameters())
    ref_params = sum(p.numel() for p in prm.reference_model.parameters())
    assert alone.num_parameters == prm_params and verifier_parameters(alone) == prm_params
    assert prm.num_parameters == prm_params + ref_params and verifier_parameters(prm) == prm_params + ref_params

    # search's --verifier: prm scores as trained (both models), value_head with the value head alone
    from ttstrain.stages.run_search import SearchStageConfig, load_scorer

    as_trained = load_scorer(SearchStageConfig(prm_path=str(out), prm_device="cpu"))
    value_head = load_scorer(SearchStageConfig(prm_path=str(out), prm_device="cpu", verifier="value_head"))
    assert as_trained.reference_model is not None and value_head.reference_model is None
    assert as_trained.score([PROMPT], [STEPS])[0] == pytest.approx(got, abs=1e-6)
    assert value_head.score([PROMPT], [STEPS])[0] == pytest.approx(alone.score([PROMPT], [STEPS])[0], abs=1e-6)
    assert value_head.score([PROMPT], [STEPS])[0] != pytest.approx(got, abs=1e-4)


def test_reference_features_refuse_random_init():
    from ttstrain.prm.config import PRMConfig

    with pytest.raises(ValueError, match="random_init"):
        PRMConfig(output_dir="x", reference_features=True, random_init=True, use_cpu=True)


def test_world_policy_log_probs_rank_a_right_step_above_its_arithmetic_slip(tmp_path):
    """The signal the combiner exists for: the shipped policy finds `a + b = wrong` unlikely."""
    from ttstrain.prm.scoring import PRMScorer
    from ttstrain.prm.trainer import load_prm_model

    torch.manual_seed(0)
    model, tok = load_prm_model("default", head_dropout=0.0, model_dropout=0.0)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    record_spec(tmp_path, {"reference_model": "default", "weights": [0.0, 0.0, 1.0], "bias": 0.0})
    prm = PRMScorer.from_pretrained(tmp_path)
    prompts, right, wrong = [], [], []
    for p in problems_split("test", 8, seed=3):
        steps = split_steps(p["solution"])
        k = random.Random(p["id"]).randrange(len(steps) - 1)
        lhs, result = steps[k].rsplit("= ", 1)
        bad = list(steps)
        bad[k] = f"{lhs}= {int(result) + random.Random(p['id']).choice([-10, -1, 1, 10])}"
        prompts.append(format_prompt(p["question"]))
        right.append(steps[:k + 1])
        wrong.append(bad[:k + 1])
    good = prm.score_solutions(prompts, right)
    bad = prm.score_solutions(prompts, wrong)
    wins = sum(g > b for g, b in zip(good, bad))
    assert len(good) == 40 and wins >= 34, (wins, len(good))


def test_combined_scores_keep_their_order_far_below_float32s_range(tmp_path, base_dir):
    """Out-of-domain text can push combined logits to -100 and below; the scores must not all become 0."""
    from ttstrain.prm.scoring import PRMScorer
    from ttstrain.prm.trainer import load_prm_model

    model, tok = load_prm_model(str(base_dir), head_dropout=0.0, model_dropout=0.0)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    record_spec(tmp_path, {"reference_model": str(base_dir), "weights": [0.0, 0.0, 60.0], "bias": -20.0})
    scores = PRMScorer.from_pretrained(tmp_path).score([PROMPT], [STEPS])[0]
    assert all(0.0 < s < 1e-40 for s in scores), scores
