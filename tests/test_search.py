"""Search methods on the scripted backend: selection arithmetic, beam bookkeeping, exact costs, batching.

Token counts are characters (+1 for the stopping token) on the generator side and characters of
prompt + joined steps on the scorer side, so every number below is counted by hand in a comment.
"""

from __future__ import annotations

import json

import pytest

from ttstrain.generation.scripted import ScriptedGenerator
from ttstrain.io import read_parquet
from ttstrain.search import (SEARCH_METHODS, SUBSAMPLED, Candidate, ScriptedScorer, SearchConfig, best_of_n,
                             nested_orders, run_search, select, subset_result)
from ttstrain.search.base import check_verifier
from ttstrain.steps import STEP_SEPARATOR, join_steps, prefix_text, split_steps

P = "Q:" + STEP_SEPARATOR  # a 3-character prompt that ends where a solution starts
BOX = {a: f"\\boxed{{{a}}}" for a in "12578"}  # 9 characters each


class Policy(ScriptedGenerator):
    """The scripted generator with a known parameter count."""

    def __init__(self, script, params=100):
        super().__init__(script)
        self._params = params

    @property
    def num_parameters(self):
        return self._params


def tree_script(tree: dict, prompts=(P,)):
    """Continuations by (prompt, prefix steps): tree[(prompt?, steps)] is a function of (index, params)."""

    def script(prompt, j, params):
        base = max((p for p in prompts if prompt.startswith(p)), key=len)
        steps = tuple(split_steps(prompt[len(base):]))
        fn = tree.get((base, steps), tree.get(steps))
        return fn(j, params)

    return script


def check_totals(gen, scorer, results):
    """The per-problem cost records add up to what the backends really counted."""
    assert sum(r.cost.generated_tokens for r in results) == gen.stats.generated_tokens
    assert sum(r.cost.prefill_tokens for r in results) == gen.stats.prefill_tokens
    assert sum(r.cost.completions for r in results) == gen.stats.completions
    if scorer is not None:
        assert sum(r.cost.verifier_tokens for r in results) == scorer.scored_tokens


# ---------------------------------------------------------------------------------------------
# selection
# ---------------------------------------------------------------------------------------------


def _cand(answer, score):
    return Candidate(text=f"The answer is {answer}.", steps=[], answer=answer, finish_reason="eos", score=score)


def test_weighted_naive_majority_arithmetic():
    cands = [_cand("A", 0.3), _cand("A", 0.3), _cand("B", 0.5)]
    assert cands[select(cands, "weighted")].answer == "A"  # A: 0.6 > B: 0.5
    assert cands[select(cands, "naive")].answer == "B"  # 0.5 is the single best
    assert cands[select(cands, "majority")].answer == "A"
    # answers pool by equivalence: "\dfrac{1}{2}", "\frac{1}{2}" and "0.5" are one answer (tests/test_answer_pooling.py)
    pooled = [_cand("\\dfrac{1}{2}", 0.2), _cand("0.5", 0.3), _cand("7", 0.45)]
    assert select(pooled, "weighted") == 1  # 1/2: 0.5 > 7: 0.45; its best-scored candidate
    # no answer never wins a vote, but naive takes the best score whatever it says
    none = [_cand(None, 0.9), _cand("3", 0.1)]
    assert select(none, "weighted") == 1 and select(none, "majority") == 1 and select(none, "naive") == 0
    assert select([_cand(None, 0.9)], "weighted") is None


def test_best_of_n_selection_and_exact_cost():
    samples = ["s1" + STEP_SEPARATOR + BOX["7"], "s2" + STEP_SEPARATOR + BOX["7"], "s3" + STEP_SEPARATOR + BOX["8"]]
    first = {"s1": 0.3, "s2": 0.3, "s3": 0.5}
    # every step of a solution is valued by its first step: "last" gives .3, .3, .5
    scorer = ScriptedScorer(lambda prompt, prefix: first[prefix[0]], num_parameters=10)
    out = {}
    for method in ("best_of_n_weighted", "best_of_n_naive", "majority"):
        gen = Policy({P: samples})
        before = scorer.scored_tokens
        (res,) = run_search(method, gen, scorer, [P], budget=3)
        out[method] = res
        check_totals(gen, None, [res])
        assert len(gen.calls) == 1 and gen.calls[0].params.stop == "solution" and gen.calls[0].params.n == 3
        assert res.cost.verifier_tokens == scorer.scored_tokens - before
    assert out["best_of_n_weighted"].answer == "7" and out["best_of_n_naive"].answer == "8"
    assert out["majority"].answer == "7"
    assert [c.score for c in out["best_of_n_weighted"].candidates] == [0.3, 0.3, 0.5]
    # 3 samples of 12 characters + eos = 39 tokens; prompt (3) prefilled once;
    # the PRM reads prompt + solution = 3 + 12 = 15 tokens per sample
    cost = out["best_of_n_weighted"].cost.to_dict()
    assert cost == {"generations": 3, "completions": 3, "rounds": 1, "generated_tokens": 39, "prefill_tokens": 3,
                    "verifier_tokens": 45, "policy_parameters": 100, "verifier_parameters": 10,
                    "policy_flops": 2 * 100 * (3 + 39), "verifier_flops": 2 * 10 * 45,
                    "total_flops": 2 * 100 * 42 + 2 * 10 * 45}
    assert out["best_of_n_naive"].cost.to_dict() == cost
    maj = out["majority"].cost
    assert (maj.verifier_tokens, maj.verifier_flops, maj.total_flops) == (0, 0.0, 8400.0)
    assert out["majority"].candidates[0].score is None


def test_flops_are_none_when_parameters_are_unknown():
    gen = ScriptedGenerator({P: [BOX["1"]]})
    (res,) = run_search("best_of_n_weighted", gen, ScriptedScorer({}, default=0.5), [P], budget=2)
    assert res.cost.policy_flops is None and res.cost.verifier_flops is None and res.cost.total_flops is None
    assert res.cost.generated_tokens == 20 and res.cost.verifier_tokens == 2 * (3 + 9)


# ---------------------------------------------------------------------------------------------
# beam search
# ---------------------------------------------------------------------------------------------

MORE = STEP_SEPARATOR + "more"  # anything after a separator: the step did not end the solution


def _step(text):
    return lambda j, params: text


BEAM_TREE = {
    (): lambda j, params: f"a{j}" + MORE,  # round 1: a0 a1 a2 a3 (3 tokens each)
    ("a1",): lambda j, params: [BOX["1"], "c1" + MORE][j],  # a finished solution (10 tokens) and a step (3)
    ("a3",): lambda j, params: [BOX["2"], "c3" + MORE][j],
    ("a1", "c1"): _step(BOX["1"]),
    ("a3", "c3"): _step(BOX["2"]),
}
BEAM_SCORES = {"a0": 0.1, "a1": 0.9, "a2": 0.5, "a3": 0.8, "c1": 0.6, "c3": 0.7, BOX["1"]: 0.4, BOX["2"]: 0.45}


def test_beam_search_keeps_n_over_m_and_never_expands_finished_beams():
    gen, scorer = Policy(tree_script(BEAM_TREE)), ScriptedScorer(BEAM_SCORES, default=0.0, num_parameters=10)
    (res,) = run_search("beam_search", gen, scorer, [P], budget=4, beam_width=2)
    # round 1: the prompt, n=N; rounds 2-3: the N/M = 2 best unfinished prefixes, n=M
    assert [c.prompts for c in gen.calls] == [[P], [P + "a1" + STEP_SEPARATOR, P + "a3" + STEP_SEPARATOR],
                                              [P + prefix_text(["a3", "c3"], 2), P + prefix_text(["a1", "c1"], 2)]]
    assert [c.params.n for c in gen.calls] == [4, 2, 2]
    assert all(c.params.stop == "step" for c in gen.calls)
    finished_prefixes = {P + prefix_text(["a1", BOX["1"]], 2), P + prefix_text(["a3", BOX["2"]], 2)}
    assert not finished_prefixes & {p for c in gen.calls for p in c.prompts}
    # 6 solutions finished (2 in round 2, 4 in round 3); the N = 4 best-scored are kept, in finishing order
    assert [c.steps for c in res.candidates] == [["a1", BOX["1"]], ["a3", BOX["2"]], ["a3", "c3", BOX["2"]],
                                                 ["a3", "c3", BOX["2"]]]
    assert all(c.finished for c in res.candidates)
    assert res.answer == "2"  # weighted: "2" 3 x .45 = 1.35 > "1" .4
    assert res.candidates[0].step_scores == [0.9, 0.4]
    check_totals(gen, scorer, [res])


def test_beam_search_exact_step_generations_and_tokens():
    gen, scorer = Policy(tree_script(BEAM_TREE)), ScriptedScorer(BEAM_SCORES, default=0.0, num_parameters=10)
    (res,) = run_search("beam_search", gen, scorer, [P], budget=4, beam_width=2)
    c = res.cost
    # N = 4 step generations per round, 3 rounds
    assert (c.generations, c.completions, c.rounds) == (4, 12, 3)
    # round 1: 4 x "aJ" (3) = 12; round 2: 2 x box (10) + 2 x "cJ" (3) = 26; round 3: 4 x box (10) = 40
    assert c.generated_tokens == 12 + 26 + 40
    # prefill: P (3); "Q:|a1|", "Q:|a3|" (6 each); two prefixes of 9
    assert c.prefill_tokens == 3 + 12 + 18
    # verifier: round 1: 4 x (3 + 2); round 2: 2 x (3 + 12) + 2 x (3 + 5); round 3: 4 x (3 + 15)
    assert c.verifier_tokens == 20 + 46 + 72
    assert (c.policy_flops, c.verifier_flops) == (2 * 100 * (33 + 78), 2 * 10 * 138)
    assert [len(call.prompts) for call in scorer.calls] == [4, 4, 4]


def test_beam_search_pads_with_unfinished_beams_at_max_rounds():
    gen = Policy(lambda prompt, j, params: f"s{j}" + MORE)  # never ends
    scorer = ScriptedScorer(lambda prompt, prefix: 0.5)
    (res,) = run_search("beam_search", gen, scorer, [P], budget=4, beam_width=2, max_rounds=3)
    assert res.cost.rounds == 3 and len(gen.calls) == 3 and res.cost.completions == 12
    assert len(res.candidates) == 4 and not any(c.finished for c in res.candidates)
    assert all(len(c.steps) == 3 for c in res.candidates)


def test_equal_prefixes_draw_different_continuations():
    # every first step is "s": the two kept beams have the same text and get streams 0 and 1
    def script(prompt, j, params):
        steps = split_steps(prompt[len(P):])
        return "s" + MORE if not steps else f"t{j}" + MORE if len(steps) == 1 else BOX["1"]

    gen, scorer = Policy(script), ScriptedScorer(lambda p, s: 0.5)
    (res,) = run_search("beam_search", gen, scorer, [P], budget=4, beam_width=2)
    assert gen.calls[1].prompts == [P + "s" + STEP_SEPARATOR] * 2 and gen.calls[1].streams == [0, 1]
    assert scorer.calls[1].steps == [["s", "t0"], ["s", "t1"], ["s", "t2"], ["s", "t3"]]
    assert len(res.candidates) == 4


def test_length_cap_finishes_a_beam():
    gen = Policy(lambda prompt, j, params: "abcd" + MORE)  # 5 tokens per step
    (res,) = run_search("beam_search", gen, ScriptedScorer(lambda p, s: 0.5), [P], budget=2, beam_width=2,
                        max_new_tokens=10)
    assert res.cost.rounds == 2 and all(c.finish_reason == "length" and len(c.steps) == 2 for c in res.candidates)


# ---------------------------------------------------------------------------------------------
# lookahead
# ---------------------------------------------------------------------------------------------

LOOK_TREE = {
    (): lambda j, params: f"x{j}" + MORE,
    # temperature 0 rollouts: x0 leads somewhere bad, x1 somewhere good; sampled steps finish
    ("x0",): lambda j, params: "bad" + MORE if params.temperature == 0 else BOX["5"],
    ("x1",): lambda j, params: "good" + MORE if params.temperature == 0 else BOX["5"],
}
LOOK_SCORES = {"x0": 0.9, "x1": 0.2, "bad": 0.1, "good": 0.8, BOX["5"]: 0.7}


def test_lookahead_values_steps_by_temperature_zero_rollouts():
    gen, scorer = Policy(tree_script(LOOK_TREE)), ScriptedScorer(LOOK_SCORES, num_parameters=10)
    (res,) = run_search("lookahead", gen, scorer, [P], budget=2, beam_width=2, lookahead_steps=1)
    # calls: round 1 steps, round 1 rollouts (temperature 0, n=1), round 2 steps (both finish: no rollout)
    assert [(c.params.temperature, c.params.n) for c in gen.calls] == [(1.0, 2), (0.0, 1), (1.0, 2)]
    assert gen.calls[1].prompts == [P + "x0" + STEP_SEPARATOR, P + "x1" + STEP_SEPARATOR]
    # x1 is kept (its rollout ends at .8) although the PRM prefers x0 on its own (.9 > .2)
    assert gen.calls[2].prompts == [P + "x1" + STEP_SEPARATOR]
    # the rollout is read by the PRM but not kept in the solution
    assert scorer.calls[0].steps == [["x0", "bad"], ["x1", "good"]]
    assert [c.steps for c in res.candidates] == [["x1", BOX["5"]]] * 2 and res.answer == "5"
    c = res.cost
    assert (c.generations, c.completions, c.rounds) == (2 * (1 + 1), 2 + 2 + 2, 2)
    # steps: 2 x 3; rollouts: "bad" 4 + "good" 5; round 2: 2 x 10
    assert c.generated_tokens == 6 + 9 + 20
    # prefill: P; the two rollout prefixes (6 each); the kept prefix (6)
    assert c.prefill_tokens == 3 + 12 + 6
    # verifier: (3 + len("x0|bad")) + (3 + len("x1|good")); round 2: 2 x (3 + 12)
    assert c.verifier_tokens == 9 + 10 + 30
    assert (c.policy_flops, c.verifier_flops) == (2 * 100 * (21 + 35), 2 * 10 * 49)
    check_totals(gen, scorer, [res])


@pytest.mark.parametrize("n,m,k", [(4, 2, 2), (8, 4, 3), (4, 4, 1)])
def test_lookahead_generations_are_n_times_k_plus_one(n, m, k):
    def script(prompt, j, params):
        depth = len(split_steps(prompt[len(P):]))
        return f"r{depth}" + MORE if params.temperature == 0 else f"s{depth}.{j}" + MORE

    gen, scorer = Policy(script), ScriptedScorer(lambda p, s: 0.5)
    (res,) = run_search("lookahead", gen, scorer, [P], budget=n, beam_width=m, lookahead_steps=k, max_rounds=2)
    assert res.cost.generations == n * (k + 1)
    # per round: N candidate steps + N rollouts of k steps (none ends early here)
    assert res.cost.completions == 2 * n * (k + 1)
    assert all(c.params.temperature == 0 and c.params.n == 1 for c in gen.calls if c.params.temperature == 0)
    assert sum(c.params.temperature == 0 for c in gen.calls) == 2 * k
    check_totals(gen, scorer, [res])


# ---------------------------------------------------------------------------------------------
# batching across problems
# ---------------------------------------------------------------------------------------------

P2 = "R:" + STEP_SEPARATOR


@pytest.mark.parametrize("method,k", [("beam_search", 0), ("lookahead", 1)])
def test_one_generate_and_one_score_call_per_round_across_problems(method, k):
    # problem 1 finishes after 2 steps, problem 2 after 3
    def script(prompt, j, params):
        base = P if prompt.startswith(P) else P2
        depth = len(split_steps(prompt[len(base):]))
        last = 2 if base == P else 3
        return BOX["1"] if depth + 1 >= last else f"d{depth}.{j}" + MORE

    gen, scorer = Policy(script), ScriptedScorer(lambda p, s: 0.5)
    results = run_search(method, gen, scorer, [P, P2], budget=4, beam_width=2, lookahead_steps=k)
    assert [r.cost.rounds for r in results] == [2, 3]
    step_calls = [c for c in gen.calls if c.params.temperature > 0]
    assert len(step_calls) == 3 and len(scorer.calls) == 3
    assert [sorted({p[:len(P)] for p in c.prompts}) for c in step_calls] == [[P, P2], [P, P2], [P2]]
    assert [sorted({p[:len(P)] for p in c.prompts}) for c in scorer.calls] == [[P, P2], [P, P2], [P2]]
    assert len(gen.calls) == 3 + k * 2  # rollouts only where a candidate is unfinished: rounds 1 and 2
    check_totals(gen, scorer, results)
    # each problem's record equals the record of searching it alone
    for prompt, res in zip([P, P2], results):
        (alone,) = run_search(method, Policy(script), ScriptedScorer(lambda p, s: 0.5), [prompt], budget=4,
                              beam_width=2, lookahead_steps=k)
        assert alone.cost.to_dict() == res.cost.to_dict()
        assert [c.steps for c in alone.candidates] == [c.steps for c in res.candidates]


def test_best_of_n_batches_problems_and_charges_each():
    gen, scorer = Policy({P: [BOX["1"]], P2: ["x" + STEP_SEPARATOR + BOX["2"]]}), ScriptedScorer({}, default=0.5)
    results = run_search("best_of_n_weighted", gen, scorer, [P, P2], budget=2)
    assert len(gen.calls) == 1 and len(scorer.calls) == 1 and len(scorer.calls[0].prompts) == 4
    assert [r.cost.generated_tokens for r in results] == [20, 24]
    assert [r.cost.verifier_tokens for r in results] == [2 * 12, 2 * 14]
    check_totals(gen, scorer, results)


# ---------------------------------------------------------------------------------------------
# verifier token accounting, registry, nested subsets
# ---------------------------------------------------------------------------------------------


class RunningTotalScorer:
    """A verifier that only keeps a running total, under PRMScorer's `stats["tokens"]` name."""

    def __init__(self):
        self.stats = {"tokens": 0}

    def score(self, prompts, steps):
        self.stats["tokens"] += sum(len(p) + len(join_steps(s)) for p, s in zip(prompts, steps))
        return [[0.5] * len(s) for s in steps]


def test_running_total_verifier_is_split_exactly():
    scorer = RunningTotalScorer()
    results = run_search("best_of_n_weighted", Policy({P: [BOX["1"]], P2: ["x" + STEP_SEPARATOR + BOX["2"]]}),
                         scorer, [P, P2], budget=2)
    assert [r.cost.verifier_tokens for r in results] == [24, 28]
    assert sum(r.cost.verifier_tokens for r in results) == scorer.stats["tokens"]


def test_verifier_without_token_count_is_refused():
    class Silent:
        def score(self, prompts, steps):
            return [[0.5] * len(s) for s in steps]

    with pytest.raises(TypeError, match="token count"):
        check_verifier(Silent())
    with pytest.raises(ValueError, match="needs a verifier"):
        run_search("beam_search", Policy({P: [BOX["1"]]}), None, [P], budget=2)
    run_search("majority", Policy({P: [BOX["1"]]}), None, [P], budget=2)  # majority needs none


def test_registry_has_one_signature():
    from ttstrain.prompts import format_prompt

    assert set(SEARCH_METHODS) == {"best_of_n_weighted", "best_of_n_naive", "majority", "beam_search", "lookahead", "dvts", "slg", "slg_weighted",
                                   "revisions"}
    gen = Policy(lambda prompt, j, params: BOX["1"])
    for name, fn in SEARCH_METHODS.items():
        (res,) = fn(gen, ScriptedScorer({}, default=0.5), [format_prompt("Q?")],
                    SearchConfig(n=2, beam_width=2, lookahead_steps=1, revision_length=2))
        assert res.method == name and res.answer == "1" and len(res.candidates) == (1 if name == "dvts" else 2)
    with pytest.raises(ValueError, match="unknown aggregation"):
        SearchConfig(aggregation="median")
    assert SearchConfig(n=16, beam_width="sqrt").width() == 4 and SearchConfig(n=8, beam_width="sqrt").width() == 2
    assert SearchConfig(n=2, beam_width=4).width() == 2
    with pytest.raises(ValueError, match="divide"):
        SearchConfig(n=6, beam_width=4).width()


def test_aggregation_comes_from_the_one_table():
    gen = Policy({P: ["a" + STEP_SEPARATOR + BOX["1"], "b" + STEP_SEPARATOR + BOX["2"]]})
    scorer = ScriptedScorer({"a": 0.2, "b": 0.6, BOX["1"]: 0.9, BOX["2"]: 0.7})
    (last,) = run_search("best_of_n_naive", gen, scorer, [P], budget=2)
    (low,) = run_search("best_of_n_naive", gen, scorer, [P], budget=2, aggregation="min")
    assert last.answer == "1" and low.answer == "2"  # last: .9 > .7; min: .2 < .6


def test_nested_subsets_equal_smaller_runs():
    samples = [f"s{j}" + STEP_SEPARATOR + BOX["1" if j % 3 else "2"] for j in range(8)]
    scorer = ScriptedScorer(lambda p, s: 0.1 * len(s[0]) if len(s) == 1 else 0.3)
    (full,) = best_of_n(Policy({P: samples}), scorer, [P], SearchConfig(n=8))
    orders = nested_orders(8, 4, "0:p")
    assert orders[0] == list(range(8)) and all(sorted(o) == list(range(8)) for o in orders)
    for b in (1, 2, 4):
        (alone,) = best_of_n(Policy({P: samples}), scorer, [P], SearchConfig(n=b))
        for how in SUBSAMPLED.values():
            sub = subset_result(full, orders[0][:b], how)
            assert sub.cost.to_dict() == (alone.cost.to_dict() if how != "majority" else
                                          {**alone.cost.to_dict(), "verifier_tokens": 0, "verifier_parameters": None,
                                           "verifier_flops": 0.0, "total_flops": alone.cost.policy_flops})
            ref = subset_result(alone, range(b), how)
            assert sub.answer == ref.answer
    assert subset_result(full, orders[1][:4], "weighted").candidates == [full.candidates[i] for i in orders[1][:4]]


# ---------------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------------


def one_problem_stage(tmp_path):
    """A problems file with one question, and a policy whose first step decides the answer (5 or 8)."""
    from ttstrain.prompts import format_prompt

    q = {"id": "p0", "question": "Start with 2.\n1. Add 3.\nWhat is the result?", "answer": "5", "level": 1}
    prompt = format_prompt(q["question"])
    path = tmp_path / "problems.jsonl"
    path.write_text(json.dumps(q) + "\n")

    def script(p, j, params):
        steps = split_steps(p[len(prompt):])
        if steps:  # step search continues a prefix: the answer its first step leads to
            return BOX["5"] if steps[0].endswith("5") else BOX["8"]
        return ("2 + 3 = 5" + STEP_SEPARATOR + BOX["5"]) if j % 2 == 0 else ("2 + 3 = 6" + STEP_SEPARATOR + BOX["8"])

    return path, script


def test_stage_writes_results_from_one_best_of_n_run(tmp_path):
    from ttstrain.stages.run_search import SearchStageConfig, make_parser, run_search_stage

    path, script = one_problem_stage(tmp_path)
    gen = Policy(script)
    scorer = ScriptedScorer(lambda p, s: 0.9 if "= 5" in s[0] else 0.2, num_parameters=10)
    (cfg,) = make_parser().parse_args_and_config(
        ["--output_dir", str(tmp_path / "out"), "--problems", str(path), "--max_budget", "4", "--resamples", "3",
         "--beam_width", "2", "--lookahead_steps", "1"])
    cfg.split = None  # a local file has no split
    summary = run_search_stage(cfg, generator=gen, scorer=scorer, progress=False)
    rows = read_parquet(tmp_path / "out" / "results.parquet")
    methods = {"majority", "best_of_n_weighted", "best_of_n_naive", "beam_search", "lookahead"}
    assert {(r["method"], r["budget"]) for r in rows} == {(m, b) for m in methods for b in (1, 2, 4)}
    # best-of-N: one generate call at N = 4 for all three; step search: rounds per budget
    solution_calls = [c for c in gen.calls if c.params.stop == "solution"]
    assert len(solution_calls) == 1 and solution_calls[0].params.n == 4
    bon = {(r["method"], r["budget"]): r for r in rows if r["method"] in SUBSAMPLED}
    assert bon[("majority", 1)]["resamples"] == 3 and bon[("majority", 4)]["resamples"] == 1
    assert bon[("best_of_n_weighted", 4)]["accuracy"] == 1.0 and bon[("majority", 4)]["verifier_tokens"] == 0
    assert bon[("best_of_n_weighted", 4)]["generations"] == 4
    assert summary["methods"]["beam_search"]["4"]["accuracy"] == 1.0
    assert summary["methods"]["lookahead"]["2"]["generations"] == 4
    cands = read_parquet(tmp_path / "out" / "candidates.parquet")
    assert {(c["run"], c["budget"]) for c in cands} == {("best_of_n", 4), *[(m, b) for m in ("beam_search", "lookahead")
                                                                           for b in (1, 2, 4)]}
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["budgets"] == [1, 2, 4] and config["generator"]["backend"] == "scripted"
    # resuming recomputes nothing
    calls = len(gen.calls)
    assert run_search_stage(cfg, generator=gen, scorer=scorer, progress=False) == summary
    assert len(gen.calls) == calls


def test_stage_help_and_yaml(tmp_path):
    from ttstrain.stages.run_search import make_parser

    assert "--lookahead_steps" in make_parser().format_help()
    recipe = tmp_path / "search.yaml"
    recipe.write_text("methods: [majority, beam_search]\nmax_budget: 8\nbeam_width: sqrt\n")
    (cfg,) = make_parser().parse_args_and_config(["--config", str(recipe), "--max_budget", "16"])
    assert cfg.methods == ["majority", "beam_search"] and cfg.budgets() == [1, 2, 4, 8, 16]
    assert cfg.search_config(16).width() == 4


# ---------------------------------------------------------------------------------------------
# revisions: chains of a revision model, hierarchical or majority selection
# ---------------------------------------------------------------------------------------------


def _revision_policy():
    """Chain c's attempt s (s = the number of attempts in its prompt): chain 0 says 5, 5; chain 1 says 7, 8."""
    answers = {0: ["5", "5", "5", "5"], 1: ["7", "8", "8", "8"]}

    def script(prompt, stream, params):
        return "step" + STEP_SEPARATOR + BOX[answers[stream % 2][prompt.count("Previous attempt:")]]

    return Policy(script)


@pytest.mark.parametrize("how, answer", [("majority", "5"), ("hierarchical", "7"), ("weighted", "7")])
def test_revision_search_selection_and_exact_cost(how, answer):
    from ttstrain.prompts import format_prompt
    from ttstrain.revisions.pairs import format_revision_prompt

    question = "Start with 1.\n1. Add 4.\nWhat is the result?"
    gen = _revision_policy()
    values = {BOX["5"]: 0.1, BOX["7"]: 0.9, BOX["8"]: 0.2}
    scorer = ScriptedScorer(lambda prompt, prefix: values.get(prefix[-1], 0.5), num_parameters=10)
    (res,) = run_search("revisions", gen, scorer, [{"question": question}], budget=4, revision_length=2,
                        revision_selection=how)
    # majority over 5, 5, 7, 8 -> 5; hierarchical: chain 0 votes 5 (0.2), chain 1 votes 7 (0.9) -> 7
    assert res.answer == answer and res.method == "revisions" and res.selection == how
    assert [c.answer for c in res.candidates] == ["5", "5", "7", "8"]  # chain-major
    # two rounds of one generate call each, P = 2 chains per call; the second round's prompts hold the first attempt
    assert len(gen.calls) == 2 and gen.calls[0].streams == [0, 1]
    assert gen.calls[1].prompts == [format_revision_prompt(question, ["step\n" + BOX["5"]]),
                                    format_revision_prompt(question, ["step\n" + BOX["7"]])]
    check_totals(gen, scorer if how != "majority" else None, [res])
    cost = res.cost
    assert (cost.generations, cost.completions, cost.rounds) == (4, 4, 2)
    assert cost.generated_tokens == 4 * (len("step\n" + BOX["5"]) + 1)  # 14 characters + end of sequence each
    assert cost.prefill_tokens == sum(len(p) for call in gen.calls for p in call.prompts)
    if how == "majority":
        assert cost.verifier_tokens == 0 and res.candidates[0].score is None
    else:  # every attempt scored after the plain question prompt: prompt + "step\n\\boxed{x}"
        assert cost.verifier_tokens == 4 * (len(format_prompt(question)) + 14)


def test_revision_search_splits_the_budget_and_keeps_four_attempts():
    from ttstrain.prompts import format_prompt

    gen = Policy(lambda prompt, j, params: BOX["1"])
    (res,) = run_search("revisions", gen, None, [{"question": "Q?"}], budget=12, revision_length=6,
                        revision_selection="majority")
    assert len(res.candidates) == 12 and len(gen.calls) == 6 and all(len(c.prompts) == 2 for c in gen.calls)
    assert [c.prompts[0].count("Previous attempt:") for c in gen.calls] == [0, 1, 2, 3, 4, 4]
    (short,) = run_search("revisions", Policy(lambda prompt, j, params: BOX["1"]), None, [format_prompt("Q?")],
                          budget=2, revision_length=4, revision_selection="majority")
    assert short.cost.generations == 2 and short.cost.rounds == 2  # L clamped to N: one chain of 2
    with pytest.raises(ValueError, match="format_prompt"):
        run_search("revisions", gen, None, ["not a prompt"], budget=2, revision_selection="majority")


# ---------------------------------------------------------------------------------------------
# DVTS
# ---------------------------------------------------------------------------------------------

DVTS_TREE = {
    (): lambda j, params: f"a{j}" + MORE,  # subtree s draws indices 2s, 2s + 1 (stream s, n = M = 2)
    ("a1",): lambda j, params: [BOX["1"], "c1" + MORE][j % 2],
    ("a3",): lambda j, params: [BOX["2"], "c3" + MORE][j % 2],
    ("a1", "c1"): _step(BOX["1"]),
    ("a3", "c3"): _step(BOX["2"]),
}


def test_dvts_subtrees_keep_their_best_proposal_with_exact_costs():
    gen, scorer = Policy(tree_script(DVTS_TREE)), ScriptedScorer(BEAM_SCORES, default=0.0, num_parameters=10)
    (res,) = run_search("dvts", gen, scorer, [P], budget=4, beam_width=2)
    # N/M = 2 subtrees, each on its own stream from round 1 on; each keeps the best of its M = 2 proposals
    assert [c.prompts for c in gen.calls] == [[P, P], [P + "a1" + STEP_SEPARATOR, P + "a3" + STEP_SEPARATOR],
                                              [P + prefix_text(["a1", "c1"], 2), P + prefix_text(["a3", "c3"], 2)]]
    assert [c.streams for c in gen.calls] == [[0, 1]] * 3 and [c.params.n for c in gen.calls] == [2, 2, 2]
    assert [c.steps for c in res.candidates] == [["a1", "c1", BOX["1"]], ["a3", "c3", BOX["2"]]]
    assert all(c.finished for c in res.candidates) and res.answer == "2"  # weighted: .45 > .4
    c = res.cost
    assert (c.generations, c.completions, c.rounds) == (4, 12, 3)
    # round 1: 4 x "aJ" (3); round 2: 2 x box (10) + 2 x "cJ" (3); round 3: 4 x box (10)
    assert c.generated_tokens == 12 + 26 + 40
    # prefill: P twice (one request per subtree), then two prefixes of 6, then two of 9
    assert c.prefill_tokens == 6 + 12 + 18
    assert c.verifier_tokens == 20 + 46 + 72
    check_totals(gen, scorer, [res])


def test_dvts_subtrees_never_share_ancestry_even_from_equal_text():
    def script(prompt, j, params):
        steps = split_steps(prompt[len(P):])
        return "s" + MORE if not steps else (f"t{j}" + MORE if len(steps) == 1 else BOX["1"])

    gen = Policy(script)
    scorer = ScriptedScorer(lambda p, s: {"t0": 0.2, "t1": 0.9, "t2": 0.8, "t3": 0.1, "t4": 0.3, "t5": 0.6}.get(
        s[-1], 0.5))
    (res,) = run_search("dvts", gen, scorer, [P], budget=6, beam_width=2)
    assert len(res.candidates) == 3
    # every subtree's first step reads "s", yet round 2 draws from each subtree's own stream
    assert gen.calls[1].prompts == [P + "s" + STEP_SEPARATOR] * 3 and gen.calls[1].streams == [0, 1, 2]
    assert [c.steps[1] for c in res.candidates] == ["t1", "t2", "t5"]  # best of (t0, t1), (t2, t3), (t4, t5)


def test_dvts_marks_subtrees_stopped_by_the_round_cap():
    gen = Policy(lambda prompt, j, params: f"s{j}" + MORE)  # never ends
    (res,) = run_search("dvts", gen, ScriptedScorer(lambda p, s: 0.5), [P], budget=8, beam_width=4, max_rounds=3)
    assert len(res.candidates) == 2 and res.cost.rounds == 3 and len(gen.calls) == 3
    assert all(not c.finished and c.finish_reason == "max_rounds" and len(c.steps) == 3 for c in res.candidates)


@pytest.mark.parametrize("width", [4, "sqrt"])
def test_dvts_never_exceeds_its_budget_and_never_looks_ahead(width):
    def script(prompt, j, params):
        return BOX["1"] if len(split_steps(prompt[len(P):])) >= 2 else f"x{j}" + MORE

    for n in range(1, 65):
        gen = Policy(script)
        (res,) = run_search("dvts", gen, ScriptedScorer(lambda p, s: 0.5), [P], budget=n, beam_width=width)
        m = max(1, min(4 if width == 4 else int(n ** 0.5), n))
        assert len(res.candidates) == n // m and res.cost.generations == (n // m) * m <= n
        assert all(len(call.prompts) * call.params.n <= n for call in gen.calls), n
        # SearchConfig's lookahead_steps default (3) is lookahead search's: DVTS runs no rollouts
        assert len(gen.calls) == res.cost.rounds == 3 and res.cost.completions == 3 * (n // m) * m


def test_stage_runs_dvts_and_slg_at_every_budget(tmp_path):
    from ttstrain.stages.compute_optimal import strategy_label
    from ttstrain.stages.run_search import make_parser, run_search_stage

    path, script = one_problem_stage(tmp_path)

    (cfg,) = make_parser().parse_args_and_config(
        ["--output_dir", str(tmp_path / "out"), "--problems", str(path), "--split", "none", "--max_budget", "8",
         "--beam_width", "2", "--methods", "dvts", "slg"])
    summary = run_search_stage(cfg, generator=Policy(script), progress=False,
                               scorer=ScriptedScorer(lambda p, s: 0.9 if "= 5" in s[0] else 0.2, num_parameters=10))
    rows = read_parquet(tmp_path / "out" / "results.parquet")
    assert {(r["method"], r["budget"], r["generations"]) for r in rows} == {
        *[("dvts", b, 2 * (b // 2) or 1) for b in (1, 2, 4, 8)], *[("slg", b, b) for b in (1, 2, 4, 8)]}
    assert summary["methods"]["dvts"]["8"]["accuracy"] == 1.0 and summary["methods"]["slg"]["8"]["accuracy"] == 1.0
    assert strategy_label("dvts", {"beam_width": "2"}) == "dvts(M=2)"


# ---------------------------------------------------------------------------------------------
# SLG (scaling-law guided search)
# ---------------------------------------------------------------------------------------------

SLG_A = [0.70] * 8 + [0.71, 0.72]  # state r0: the higher observed maximum, a narrow tail
SLG_B = [0.10] * 8 + [0.55, 0.70]  # state r1: lower mean and maximum, a wide tail


def _slg_script(prompt, j, params):
    steps = split_steps(prompt[len(P):])
    end = f"c{j} " + BOX["1" if j % 2 else "2"]
    return (f"r{j}" + STEP_SEPARATOR + end) if not steps else end


def _slg_reward(prompt, prefix):
    if len(prefix) == 1:
        return 0.5
    j = int(prefix[-1].split()[0][1:])
    if j < 10:
        return {0: 0.9, 1: 0.8}.get(j, 0.1)
    return SLG_A[j - 10] if j < 20 else SLG_B[j - 20] if j < 30 else 0.5


def test_slg_spends_the_remainder_on_the_best_predicted_state():
    from ttstrain.search.slg import slg_budget_schedule
    from ttstrain.search.tail import expected_best_of_n, fit_tail

    assert slg_budget_schedule(40) == (10, 2)
    gen, scorer = Policy(_slg_script), ScriptedScorer(_slg_reward, num_parameters=10)
    (res,) = run_search("slg", gen, scorer, [P], budget=40)
    # root: 10 samples; states: the two best root solutions cut to their first step, 10 each (streams 1, 2)
    assert [c.prompts for c in gen.calls[:2]] == [[P], [P + "r0" + STEP_SEPARATOR, P + "r1" + STEP_SEPARATOR]]
    assert gen.calls[1].streams == [1, 2] and [c.params.n for c in gen.calls] == [10, 10, 10]
    # state r1 has the lower maximum (0.70 < 0.72) but the higher predicted best-of-20
    predicted = [expected_best_of_n(fit_tail(r, 0.2), 20) for r in (SLG_A, SLG_B)]
    assert max(SLG_A) > max(SLG_B) and predicted[1] > predicted[0]
    assert gen.calls[2].prompts == [P + "r1" + STEP_SEPARATOR] and gen.calls[2].streams == [3]
    assert len(res.candidates) == 40 and res.cost.generations == 40 and res.cost.rounds == 3
    assert res.candidates[res.selected].score == 0.9  # the top-rewarded solution of all phases (root r0)
    check_totals(gen, scorer, [res])


def test_slg_never_exceeds_its_budget_counting_the_root():
    for n in range(1, 65):
        gen, scorer = Policy(_slg_script), ScriptedScorer(lambda p, s: 0.5)
        results = run_search("slg", gen, scorer, [P, P + " "], budget=n)  # two problems batched together
        for res in results:
            assert res.cost.generations == res.cost.completions == len(res.candidates) == n, n
        assert sum(len(c.prompts) * c.params.n for c in gen.calls) == 2 * n
        check_totals(gen, scorer, results)


def test_slg_schedules_at_small_and_reference_budgets():
    from ttstrain.search.slg import slg_budget_schedule

    assert slg_budget_schedule(256) == (35, 4) and slg_budget_schedule(1000) == (65, 8)
    assert slg_budget_schedule(64) == (16, 2) and slg_budget_schedule(8) == (2, 2)
    assert slg_budget_schedule(7) == (7, 0)  # plain best-of-N from the root
    for n in range(1, 400):
        m, k = slg_budget_schedule(n)
        assert m * (k + 1) + (m if k else 0) <= n


def test_slg_weighted_selects_by_summed_score():
    gen, scorer = Policy(_slg_script), ScriptedScorer(_slg_reward)
    (naive,) = run_search("slg", gen, scorer, [P], budget=40)
    (weighted,) = run_search("slg_weighted", Policy(_slg_script), ScriptedScorer(_slg_reward), [P], budget=40)
    assert naive.selection == "naive" and weighted.selection == "weighted"
    assert [c.text for c in naive.candidates] == [c.text for c in weighted.candidates]


def test_paired_comparison_with_standard_errors_overall_and_by_bin():
    from ttstrain.reporting.method_comparison import compare_methods, verdict

    rows = [{"problem_id": p, "method": m, "budget": 4, "accuracy": acc}
            for p, m, acc in [("a", "x", 1.0), ("b", "x", 1.0), ("c", "x", 0.0), ("d", "x", 1.0),
                              ("a", "bon", 0.0), ("b", "bon", 1.0), ("c", "bon", 0.0), ("d", "bon", 0.0)]]
    cmp = compare_methods(rows, ["x", "absent"], "bon", bins={"a": 1, "b": 1, "c": 2, "d": 2})
    assert set(cmp["methods"]) == {"x"}
    overall = cmp["methods"]["x"]["overall"][4]
    # differences 1, 0, 0, 1: mean 0.5, sd sqrt(1/3), SE sqrt(1/3) / 2
    assert overall == {"diff": 0.5, "se": round((1 / 3) ** 0.5 / 2, 4), "problems": 4}
    assert cmp["methods"]["x"]["by_bin"][1][4] == {"diff": 0.5, "se": 0.5, "problems": 2}
    assert verdict(overall) == "level (within 2 SE)" and verdict({"diff": 0.3, "se": 0.1}) == "ahead"
    with pytest.raises(ValueError, match="no baseline"):
        compare_methods(rows, ["x"], "beam")


def test_slg_states_can_be_first_tokens_prefixes():
    """slg_prefix_tokens = 2 cuts the two best root solutions to their first 2 tokens (characters here:
    the scripted policy has no tokenizer), which end inside the first step; completions continue them."""
    gen, scorer = Policy(_slg_script), ScriptedScorer(lambda p, s: 0.9 if s[0].startswith("r0") else 0.5)
    (res,) = run_search("slg", gen, scorer, [P], budget=40, slg_prefix_tokens=2)
    assert gen.calls[1].prompts == [P + "r0", P + "r1"] and gen.calls[1].streams == [1, 2]
    # a continuation of the state "r0" is the state's text plus what the policy wrote after it
    from_state = [c for c in res.candidates[10:20]]
    assert all(c.text.startswith("r0") and c.steps[0].startswith("r0") for c in from_state)
    assert res.cost.generations == len(res.candidates) == 40
    check_totals(gen, scorer, [res])


def test_stage_searches_with_the_policy_likelihood_as_verifier(tmp_path):
    """--verifier likelihood: the shipped policy finds "2 + 3 = 5" likelier than "2 + 3 = 6", so
    every right candidate outscores every wrong one and weighted best-of-4 and beam search pick 5
    (majority sees a tie of two 5s and two 8s); the candidates' scores are LikelihoodScorer's, and
    the config names the scorer."""
    from ttstrain.prm.likelihood_baseline import LikelihoodScorer
    from ttstrain.prompts import format_prompt
    from ttstrain.stages.run_search import make_parser, run_search_stage

    path, script = one_problem_stage(tmp_path)
    (cfg,) = make_parser().parse_args_and_config(
        ["--output_dir", str(tmp_path / "out"), "--problems", str(path), "--split", "none", "--max_budget", "4",
         "--resamples", "1", "--beam_width", "2", "--methods", "majority", "best_of_n_weighted", "beam_search",
         "--verifier", "likelihood", "--likelihood_model", "default", "--prm_device", "cpu"])
    summary = run_search_stage(cfg, generator=Policy(script), progress=False)
    assert summary["methods"]["best_of_n_weighted"]["4"]["accuracy"] == 1.0
    assert summary["methods"]["beam_search"]["4"]["accuracy"] == 1.0
    assert summary["methods"]["best_of_n_weighted"]["4"]["verifier_tokens"] > 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["scorer"]["type"] == "LikelihoodScorer" and config["scorer"]["path"] == "default"
    cands = [c for c in read_parquet(tmp_path / "out" / "candidates.parquet") if c["run"] == "best_of_n"]
    lik = LikelihoodScorer.from_pretrained("default")
    prompt = format_prompt("Start with 2.\n1. Add 3.\nWhat is the result?")
    direct = lik.score([prompt] * len(cands), [list(c["steps"]) for c in cands])
    for c, expected in zip(cands, direct):
        assert list(c["step_scores"]) == pytest.approx(expected, abs=1e-6)
    right = [c["score"] for c in cands if c["correct"]]
    wrong = [c["score"] for c in cands if not c["correct"]]
    assert right and wrong and min(right) > max(wrong)


def test_stage_without_a_prm_names_the_likelihood_verifier(tmp_path):
    from ttstrain.stages.run_search import load_scorer, make_parser

    (cfg,) = make_parser().parse_args_and_config(["--methods", "best_of_n_weighted"])
    with pytest.raises(ValueError, match="set prm_path.*--verifier likelihood"):
        load_scorer(cfg)
    with pytest.raises(SystemExit):
        make_parser().parse_args_and_config(["--verifier", "oracle"])
    from ttstrain.stages.run_search import SearchStageConfig, run_search_stage

    with pytest.raises(ValueError, match="verifier 'oracle' is not one of"):  # a config built in code, not parsed
        run_search_stage(SearchStageConfig(output_dir=str(tmp_path / "x"), verifier="oracle"), progress=False)
    assert not (tmp_path / "x").exists()  # refused before anything is written
