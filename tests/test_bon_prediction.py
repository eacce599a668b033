"""Best-of-N prediction (ttstrain.analysis.bon_prediction, `ttstrain predict-bon`) on hand-made sample sets."""

from __future__ import annotations

import json
import random

import pytest

from ttstrain.analysis.bon_prediction import observed_curve, predict_question, predicted_accuracy, prediction_report
from ttstrain.io import write_parquet


def test_observed_curve_is_the_exact_subset_expectation():
    rewards, correct = [0.1, 0.9, 0.5, 0.3], [False, True, False, True]
    curve = observed_curve(rewards, correct, [1, 2, 4, 8])
    assert 8 not in curve
    assert curve[1]["reward"] == pytest.approx(sum(rewards) / 4) and curve[1]["accuracy"] == pytest.approx(0.5)
    # N = 2: the 6 pairs; the max is 0.9 in 3 of them, 0.5 in 2, 0.3 in 1
    assert curve[2]["reward"] == pytest.approx((3 * 0.9 + 2 * 0.5 + 0.3) / 6)
    assert curve[2]["accuracy"] == pytest.approx((3 * 1 + 2 * 0 + 1 * 1) / 6)
    assert curve[4] == {"reward": 0.9, "accuracy": 1.0}


def test_predicted_accuracy_follows_the_two_normal_model():
    rng = random.Random(1)
    correct = [i % 10 < 3 for i in range(200)]
    rewards = [rng.gauss(0.7 if c else 0.5, 0.1) for c in correct]
    assert predicted_accuracy(rewards, correct, 1) == pytest.approx(0.3, abs=1e-3)
    values = [predicted_accuracy(rewards, correct, n) for n in (1, 4, 16, 64)]
    assert values == sorted(values) and values[-1] > 0.99
    assert predicted_accuracy([0.2, 0.4], [False, False], 16) == 0.0
    assert predicted_accuracy([0.2, 0.4], [True, True], 16) == 1.0


def test_prediction_from_a_quarter_of_the_samples_tracks_the_rest():
    rng = random.Random(0)
    questions = {}
    for q in range(40):
        share = rng.choice([0.2, 0.5, 0.8])
        correct = [rng.random() < share for _ in range(64)]
        questions[f"q{q}"] = ([rng.gauss(0.7 if c else 0.45, 0.1) for c in correct], correct)
    report = prediction_report(questions, 16, [1, 2, 4, 8, 16, 32, 64])
    assert report["largest_checked_n"] == 64 and set(report["curves"]) == {1, 2, 4, 8, 16, 32, 64}
    c16 = report["curves"][16]
    assert abs(c16["predicted_accuracy"] - c16["observed_accuracy"]) < 0.1
    assert report["accuracy_mae_at_largest_n"] == report["curves"][64]["accuracy_mae"] < 0.25
    pred = predict_question(*questions["q0"], [1, 64])
    assert pred[64]["reward"] > pred[1]["reward"]


def test_stage_writes_json_and_plot_and_refuses_unscored_samples(tmp_path):
    from ttstrain.stages.predict_bon import make_parser, run_predict_bon
    from ttstrain.validation import InputError

    rows = [{"problem_id": f"q{q}", "sample_index": j, "correct": (j + q) % 3 == 0,
             "score": 0.8 if (j + q) % 3 == 0 else 0.3 + 0.01 * j} for q in range(3) for j in range(32)]
    write_parquet(tmp_path / "s.parquet", rows)
    (cfg,) = make_parser().parse_args_and_config(["--samples", str(tmp_path / "s.parquet"), "--fit_samples", "4",
                                                  "--output_dir", str(tmp_path / "out")])
    report = run_predict_bon(cfg)
    data = json.loads((tmp_path / "out" / "predict_bon.json").read_text())
    assert data["largest_checked_n"] == 32 and data["budgets_predicted"] == [1, 2, 4, 8, 16, 32, 64]
    assert report["curves"][32]["observed_accuracy"] == 1.0
    assert (tmp_path / "out" / "predict_bon.png").read_bytes()[:4] == b"\x89PNG"
    rows[5]["score"] = None
    write_parquet(tmp_path / "bad.parquet", rows)
    (cfg,) = make_parser().parse_args_and_config(["--samples", str(tmp_path / "bad.parquet"), "--output_dir",
                                                  str(tmp_path / "out2")])
    with pytest.raises(InputError, match=r"bad.parquet, row 6, field 'score': is empty"):
        run_predict_bon(cfg)
    assert not (tmp_path / "out2").exists()


def test_predicted_accuracy_at_one_is_the_share_of_right_samples_even_for_a_narrow_class():
    # two right samples with almost equal scores: their normal is a spike the integral must not miss
    rewards = [0.9, 0.9 + 1e-9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.6]
    correct = [True, True, False, False, False, False, False, False]
    assert predicted_accuracy(rewards, correct, 1) == pytest.approx(0.25, abs=1e-3)
    # a wide wrong class overtakes a narrow right one as N grows: the model says so rather than saturate
    assert predicted_accuracy(rewards, correct, 8) > 0.75 > predicted_accuracy(rewards, correct, 32)
