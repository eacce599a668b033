"""Compute-optimal analysis: quintile bins, cross-validated choice, efficiency ratio, FLOPs exchange, report files."""

from __future__ import annotations

import json
import random

import pytest

from ttstrain.analysis import compute_optimal as co
from ttstrain.search.selection import select_over_chains
from ttstrain.io import write_json, write_parquet

PNG = b"\x89PNG\r\n\x1a\n"


def test_bins_are_equal_size_quintiles_easiest_first():
    rng = random.Random(0)
    values = {f"q{i:02d}": rng.choice([0.0, 0.25, 0.5, 0.5, 0.75, 1.0]) for i in range(23)}  # many ties
    bins = co.quantile_bins(values)
    sizes = [sum(b == k for b in bins.values()) for k in range(1, 6)]
    assert sorted(set(sizes)) == [4, 5] and sum(sizes) == 23
    for k in range(1, 5):  # bin 1 is the easiest: every value in bin k >= every value in bin k + 1
        assert min(values[p] for p in bins if bins[p] == k) >= max(values[p] for p in bins if bins[p] == k + 1)
    shuffled = dict(sorted(values.items(), key=lambda kv: rng.random()))
    assert co.quantile_bins(shuffled) == bins  # deterministic whatever the input order
    assert sorted(co.quantile_bins({"a": 0.1, "b": 0.9, "c": 0.5}).items()) == [("a", 4), ("b", 1), ("c", 2)]
    assert [sum(b == k for b in co.quantile_bins({str(i): 0.5 for i in range(7)}).values()) for k in range(1, 6)] \
        in ([2, 1, 2, 1, 1],)  # all tied: still floor/ceil sizes

    samples = [{"problem_id": p, "correct": j < 4 * v} for p, v in values.items() for j in range(4)]
    assert co.oracle_bins(samples) == bins  # pass@1 from graded rows
    scored = [{"problem_id": p, "score": v} for p, v in values.items()] + [{"problem_id": "q00", "score": None}]
    assert co.predicted_bins(scored) == bins


def _two_fold_world(n=40, seed=0):
    """Strategy A is best on fold 0 and bad on fold 1, B the opposite; C exists only at budget 4."""
    ids = [f"p{i:03d}" for i in range(n)]
    bins = co.quantile_bins({p: i / n for i, p in enumerate(ids)})
    folds = co.assign_folds(bins, seed=seed)
    a = {p: (0.9 if folds[p] == 0 else 0.2) for p in ids}
    b = {p: (0.3 if folds[p] == 0 else 0.6) for p in ids}
    table = {"A": {1: a, 2: a}, "B": {1: b, 2: b}, "C": {4: {p: 1.0 for p in ids}}}
    return ids, bins, folds, table


def test_folds_are_stratified_and_deterministic():
    ids, bins, folds, _ = _two_fold_world(n=43)
    assert folds == co.assign_folds(bins, seed=0) and folds != co.assign_folds(bins, seed=1)
    for k in range(1, 6):
        f = [folds[p] for p in ids if bins[p] == k]
        assert abs(f.count(0) - f.count(1)) <= 1
    assert abs(sum(folds.values()) - len(ids) / 2) <= 1


def test_cross_validation_never_scores_on_the_fold_it_chose_on():
    ids, bins, folds, table = _two_fold_world()
    sel = co.select_compute_optimal(table, bins, folds, budgets=[1, 2, 4], strategies=["A", "B", "C"])
    n0 = sum(folds[p] == 0 for p in ids)
    n1 = len(ids) - n0
    cross = (0.3 * n0 + 0.2 * n1) / len(ids)  # fold 0 scored by B (chosen on fold 1), fold 1 by A (chosen on fold 0)
    in_fold = (0.9 * n0 + 0.6 * n1) / len(ids)
    assert sel.accuracy[1] == pytest.approx(cross) and sel.accuracy[2] == pytest.approx(cross)
    assert sel.accuracy[1] != pytest.approx(in_fold)
    for k in range(1, 6):
        assert sel.choices[k][1] == ["B", "A"]  # [strategy scoring fold 0, strategy scoring fold 1]
        members = [p for p in ids if bins[p] == k]
        m0 = sum(folds[p] == 0 for p in members)
        assert sel.by_bin[k][1] == pytest.approx((0.3 * m0 + 0.2 * (len(members) - m0)) / len(members))
    # budget 4: C (run at 4 generations) is a candidate and best on both folds; at 1 and 2 it is not
    assert sel.accuracy[4] == 1.0 and sel.choices[1][4] == ["C", "C"]
    assert sel.budget_used[1][4] == [4, 4] and sel.budget_used[1][2] == [2, 2]
    # without C, budget 4 falls back to the runs at 2 generations
    sel2 = co.select_compute_optimal({"A": table["A"], "B": table["B"]}, bins, folds, budgets=[4])
    assert sel2.accuracy[4] == pytest.approx(cross) and sel2.budget_used[1][4] == [2, 2]


def test_cross_validation_ties_and_single_question_bins():
    bins = {"x": 1, "y": 2}  # one question per bin: the choosing fold is empty -> first declared strategy
    folds = co.assign_folds(bins)
    table = {"base": {1: {"x": 0.0, "y": 0.0}}, "other": {1: {"x": 1.0, "y": 1.0}}}
    assert co.select_compute_optimal(table, bins, folds, [1], ["base", "other"]).accuracy[1] == 0.0
    tie = {"base": {1: {p: 0.5 for p in "abcd"}}, "other": {1: {p: 0.5 for p in "abcd"}}}
    bins4 = {p: 1 for p in "abcd"}
    sel = co.select_compute_optimal(tie, bins4, co.assign_folds(bins4), [1], ["base", "other"])
    assert sel.choices[1][1] == ["base", "base"]


def test_efficiency_ratio_on_a_hand_made_curve():
    baseline = {1: 0.2, 2: 0.3, 4: 0.4, 8: 0.5, 16: 0.55}
    optimal = {1: 0.3, 2: 0.4, 4: 0.5, 8: 0.55, 16: 0.6}
    eff = co.efficiency_ratios(optimal, baseline)
    assert [eff[B]["ratio"] for B in (1, 2, 4, 8, 16)] == [1.0, 2.0, 2.0, 2.0, 2.0]
    # B = 1: optimal(1) = 0.3 is already above 0.2, so b could be below 1: the ratio is a lower bound
    assert [eff[B]["lower_bound"] for B in (1, 2, 4)] == [True, False, False]
    # 0.45 lies halfway between optimal(2) = 0.4 and optimal(4) = 0.5: b = 2 ** 1.5 in log2 interpolation
    eff = co.efficiency_ratios(optimal, {8: 0.45, 16: 0.7})
    assert eff[8]["matched_budget"] == pytest.approx(2 ** 1.5) and eff[8]["ratio"] == pytest.approx(8 / 2 ** 1.5)
    assert eff[16] == {"baseline_accuracy": 0.7, "matched_budget": None, "ratio": None, "lower_bound": False}
    assert co.efficiency_ratios(optimal, {8: 0.45}, interpolate=False)[8]["ratio"] == 2.0
    assert co.matched_budget({1: 0.5, 2: 0.2, 4: 0.6}, 0.55) == pytest.approx(2 ** (1 + 0.35 / 0.4))


def test_flops_exchange_hand_computed():
    n_s, n_l, d_pre = 1e9, 14e9, 1e12
    # large: 6*14e9*1e12 + 2*14e9*0.16e12 = 8.848e22; small: 6e21 + 2*1e9*0.16e12*K = 6e21 + 3.2e20 K
    assert co.flops_matched_generations(n_s, n_l, d_pre, 0.16 * d_pre) == pytest.approx((8.848e22 - 6e21) / 3.2e20)
    assert co.flops_matched_generations(n_s, n_l, d_pre, 0.16 * d_pre) == pytest.approx(257.75)
    for r, k in [(0.16, 257.75), (0.79, 14 + 39 / 0.79), (22.0, 14 + 39 / 22)]:
        assert co.flops_matched_generations_at_ratio(14, r) == pytest.approx(k)
        assert co.flops_matched_generations(n_s, n_l, d_pre, r * d_pre) == pytest.approx(k)
    assert co.flops_matched_generations(n_s, n_s, d_pre, d_pre) == pytest.approx(1.0)  # same model: greedy

    budgets = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    optimal = {b: 0.1 * i / 2 for i, b in enumerate(budgets)}
    by_bin = {1: {b: 0.9 for b in budgets}, 5: {b: 0.05 for b in budgets}}
    rows = co.flops_matched_comparison(optimal, by_bin, n_small=n_s, n_large=n_l, large_accuracy=0.2,
                                       large_by_bin={1: 0.8, 5: 0.1}, d_pretrain=d_pre)
    assert [r["budget_used"] for r in rows] == [256, 32, 8]
    assert [r["beats"] for r in rows] == [True, True, False]  # 0.4, 0.25, 0.15 against 0.2
    assert rows[0]["by_bin"][1]["beats"] and not rows[0]["by_bin"][5]["beats"]
    assert rows[0]["by_bin"][5]["margin"] == pytest.approx(-0.05)
    assert rows[0]["flops"]["small_total_at_k"] == pytest.approx(rows[0]["flops"]["large_total"])
    assert co.flops_matched_comparison({1: 0.5, 2: 0.6}, {}, n_small=1, n_large=14, large_accuracy=None)[0]["capped"]


def test_revision_strategies_from_chains():
    rows = [{"problem_id": "p", "chain": c, "step": s, "answer": a, "correct": a == "2"}
            for c, answers in enumerate([["1", "2"], ["2", "2"]]) for s, a in enumerate(answers)]
    got = {(r["sequential"], r["parallel"]): r["accuracy"] for r in co.revision_accuracy_rows(rows)}
    # L=1,P=1: chain 0 says 1, chain 1 says 2; L=1,P=2: a 1-1 tie goes to the first seen ("1");
    # L=2,P=1: chain 0 ties (wrong), chain 1 right; L=2,P=2: three votes for 2
    assert got == {(1, 1): 0.5, (1, 2): 0.0, (2, 1): 0.5, (2, 2): 1.0}
    sweep = co.ratio_sweep(co.revision_accuracy_rows(rows), {"p": 1})
    assert sweep[1][2] == {0.5: 0.0, 2.0: 0.5}


def test_hierarchical_weighted_and_majority_selection_over_chains():
    """Three chains where the three rules disagree: flat weighting lets chain 2's one confident B
    and the losing Bs of chains 0-1 win; hierarchical counts each chain's winner only."""
    chains = [[{"answer": "A", "score": 0.5}, {"answer": "B", "score": 0.45}],
              [{"answer": "A", "score": 0.5}, {"answer": "B", "score": 0.45}],
              [{"answer": "B", "score": 0.9}, {"answer": "C", "score": 0.1}]]
    assert select_over_chains(chains, "majority") == "B"
    assert select_over_chains(chains, "weighted") == "B"  # A 1.0 vs B 1.8
    assert select_over_chains(chains, "hierarchical") == "A"  # winners A (0.5), A (0.5), B (0.9)
    with pytest.raises(ValueError, match="score"):
        select_over_chains([[{"answer": "A"}]], "hierarchical")
    # an empty attempt (no step, so no score, and no answer) cannot win and needs no score
    with_empty = [chains[0] + [{"answer": None, "score": None}], chains[1], chains[2]]
    assert select_over_chains(with_empty, "hierarchical") == "A" and select_over_chains(with_empty, "weighted") == "B"
    empty_rows = [{"problem_id": "p", "chain": 0, "step": s, "answer": a, "score": sc, "correct": a == "A"}
                  for s, (a, sc) in enumerate([("A", 0.5), (None, None)])]
    assert {r["selection"] for r in co.revision_accuracy_rows(empty_rows)} == {"weighted"}
    rows = [{"problem_id": "p", "chain": c, "step": s, "answer": a["answer"], "score": a["score"],
             "correct": a["answer"] == "A"} for c, ch in enumerate(chains) for s, a in enumerate(ch)]
    rows += [{**r, "chain": 3, "answer": "C", "score": 0.0, "correct": False} for r in rows if r["chain"] == 0]
    hier = {(r["sequential"], r["parallel"]): r["accuracy"] for r in co.revision_accuracy_rows(rows, selection="hierarchical")}
    flat = {(r["sequential"], r["parallel"]): r["accuracy"] for r in co.revision_accuracy_rows(rows, selection="weighted")}
    maj = co.revision_accuracy_rows(rows, selection="majority")
    # L=2, P=2: groups {0,1} (A wins both ways) and {2,3}: hierarchical B 0.9 vs C 0 -> wrong either way
    assert hier[(2, 2)] == flat[(2, 2)] == 0.5
    assert all(r["selection"] == "majority" for r in maj)
    with pytest.raises(ValueError, match="selection"):
        co.revision_accuracy_rows(rows, selection="best")


def _write_world(tmp_path, n=30):
    """Two search folders, graded/scored candidates, revision chains and a larger model's greedy answers."""
    rng = random.Random(1)
    ids = [f"q{i:02d}" for i in range(n)]
    ease = {p: rng.random() for p in ids}
    methods = {"best_of_n_weighted": 0.0, "majority": -0.05, "beam_search": 0.05}
    rows, lrows, cands = [], [], []
    for p in ids:
        for m, bonus in methods.items():
            for b in (1, 2, 4, 8, 16):
                acc = min(1.0, max(0.0, ease[p] + bonus * (1 - ease[p]) + 0.03 * b ** 0.5))
                rows.append({"problem_id": p, "method": m, "budget": b, "generations": b, "accuracy": acc})
        for b in (1, 2, 4):
            lrows.append({"problem_id": p, "method": "lookahead", "budget": b, "generations": 4 * b,
                          "accuracy": min(1.0, ease[p] + 0.1)})
        for j in range(8):
            cands.append({"problem_id": p, "run": "best_of_n", "correct": rng.random() < ease[p],
                          "score": min(1.0, max(0.0, ease[p] + rng.gauss(0, 0.1))), "text": "x" * 5})
    write_parquet(tmp_path / "s1" / "results.parquet", rows)
    write_parquet(tmp_path / "s1" / "candidates.parquet", cands)
    write_json(tmp_path / "s1" / "config.json", {"beam_width": "4", "lookahead_steps": 3,
                                                  "generator": {"parameters": 1000}})
    write_parquet(tmp_path / "s2" / "results.parquet", lrows)
    write_json(tmp_path / "s2" / "config.json", {"beam_width": "4", "lookahead_steps": 3})
    chains = [{"problem_id": p, "chain": c, "step": s, "answer": str(int(rng.random() < ease[p])),
               "correct": None} for p in ids for c in range(4) for s in range(4)]
    for r in chains:
        r["correct"] = r["answer"] == "1"
    write_parquet(tmp_path / "chains.parquet", chains)
    write_parquet(tmp_path / "large.parquet", [{"problem_id": p, "correct": ease[p] > 0.4} for p in ids])
    return ids


def test_stage_writes_report_plots_and_json(tmp_path):
    from ttstrain.stages.compute_optimal import make_parser, run_compute_optimal

    _write_world(tmp_path)
    out = tmp_path / "co"
    (cfg,) = make_parser().parse_args_and_config([
        "--search_dirs", str(tmp_path / "s1"), str(tmp_path / "s2"), "--revisions", str(tmp_path / "chains.parquet"),
        "--large_model_samples", str(tmp_path / "large.parquet"), "--output_dir", str(out), "--pretrain_tokens", "1e6"])
    report = run_compute_optimal(cfg, progress=False)
    search = report["families"]["search"]
    assert search["strategies"][0] == "best_of_n_weighted"
    assert "beam_search(M=4)" in search["strategies"] and "lookahead(M=4,k=3)" in search["strategies"]
    assert set(search["compute_optimal"]) == {"oracle", "predicted"} and search["problems"] == 30
    assert search["curves"]["lookahead(M=4,k=3)"].keys() == {4, 8, 16}  # plotted at N(k+1) generations
    assert report["families"]["revisions"]["strategies"] == ["revisions(L=1)", "revisions(L=2)", "revisions(L=4)"]
    assert report["flops_matched"]["n_small"] == 1000 and report["flops_matched"]["n_large"] == 14000
    assert [r["budget_used"] for r in report["flops_matched"]["groups"][0]["rows"]] == [16, 16, 8]
    for name in ["accuracy_search.png", "bins_search_oracle.png", "bins_search_predicted.png",
                 "accuracy_revisions.png", "bins_revisions_oracle.png", "revision_ratio_sweep.png"]:
        data = (out / name).read_bytes()
        assert data[:8] == PNG and len(data) > 1000, name
    data = json.loads((out / "compute_optimal.json").read_text())
    assert data["families"]["search"]["efficiency"]["oracle"]["16"]["baseline_accuracy"] is not None
    md = (out / "compute_optimal.md").read_text()
    assert "compute-optimal (oracle bins, 2-fold CV)" in md and "FLOPs-matched" in md
    assert (out / "bins.parquet").exists() and (out / "config.json").exists()


def test_revision_score_column_names_the_verifier(tmp_path):
    from ttstrain.stages.compute_optimal import load_revision_rows

    # one problem, two chains of one attempt: the PRM prefers the right answer, majority cannot break the tie
    rows = [{"problem_id": "q", "chain": c, "step": 0, "answer": a, "correct": a == "1", "score_prm": s}
            for c, (a, s) in enumerate([("1", 0.9), ("2", 0.1)])]
    write_parquet(tmp_path / "chains.parquet", rows)
    weighted = load_revision_rows(str(tmp_path / "chains.parquet"), "weighted", score_column="score_prm")
    assert {(r["sequential"], r["parallel"]): r["accuracy"] for r in weighted}[(1, 2)] == 1.0
    with pytest.raises(ValueError, match="score_orm"):
        load_revision_rows(str(tmp_path / "chains.parquet"), "weighted", score_column="score_orm")
