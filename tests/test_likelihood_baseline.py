"""The policy-likelihood baseline: exact scores against a hand-computed forward pass, the shipped
policy's preference for right arithmetic, and its place in eval-prm's output."""

from __future__ import annotations

import json
import re

import pytest
import torch

from ttstrain.prm.likelihood_baseline import LikelihoodScorer
from ttstrain.models import default_policy_dir
from ttstrain.prompts import format_prompt
from ttstrain.steps import join_steps


def _by_hand(model, tok, prompt: str, steps: list[str]) -> list[float]:
    """exp(mean log p) of the solution's tokens up to each step's last character, from one plain forward pass."""
    ids = tok(prompt + join_steps(steps))["input_ids"]
    prompt_len = len(tok(prompt)["input_ids"])  # the char tokenizer: one token per character, after <s>
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    token_lp = [float(logp[t - 1, ids[t]]) for t in range(len(ids))]
    out, end = [], prompt_len - 1
    for i, step in enumerate(steps):
        end += len(step) + (1 if i else 0)  # the separator before every step but the first
        seg = token_lp[prompt_len:end + 1]
        out.append(float(torch.tensor(seg).mean().exp()))
    return out


def test_scores_are_the_geometric_mean_token_probability_so_far(tiny_llama, char_tokenizer):
    scorer = LikelihoodScorer(tiny_llama, char_tokenizer, batch_size=2)
    prompts = [format_prompt("Start with 4.\n1. Add 3.\nWhat is the result?"), format_prompt("Start with 9.")]
    steps = [["4 + 3 = 7", "The answer is \\boxed{7}."], ["9 - 1 = 8", "8 * 2 = 16", "The answer is \\boxed{16}."]]
    got = scorer.score(prompts + [prompts[0]], steps + [[]])
    for p, s, g in zip(prompts, steps, got):
        assert g == pytest.approx(_by_hand(tiny_llama, char_tokenizer, p, s), rel=1e-5)
    assert got[2] == [] and scorer.stats["solutions"] == 2
    # packed two to a row or one at a time: the same numbers
    alone = LikelihoodScorer(tiny_llama, char_tokenizer, batch_size=1).score(prompts, steps)
    assert alone == [pytest.approx(g, rel=1e-5) for g in got[:2]]
    assert scorer.score_solutions(prompts, steps, how="last") == pytest.approx([g[-1] for g in got[:2]])


def test_a_shared_prompt_runs_once_and_scores_the_same(tiny_llama, char_tokenizer):
    prompt = format_prompt("Start with 4.\n1. Add 3.\n2. Multiply by 2.\nWhat is the result?")
    steps = [["4 + 3 = 7", "7 * 2 = 14", "The answer is \\boxed{14}."],
             ["4 + 3 = 7", "7 * 2 = 15", "The answer is \\boxed{15}."],
             ["4 + 3 = 8", "The answer is \\boxed{8}."]]
    whole = LikelihoodScorer(tiny_llama, char_tokenizer, batch_size=2, prefix_cache_bytes=0)
    cached = LikelihoodScorer(tiny_llama, char_tokenizer, batch_size=2)
    got = cached.score([prompt] * 3, steps)
    assert got == [pytest.approx(w, rel=1e-5) for w in whole.score([prompt] * 3, steps)]
    assert got[0] == pytest.approx(_by_hand(tiny_llama, char_tokenizer, prompt, steps[0]), rel=1e-5)
    # the shared prompt runs once, alone; each solution then runs from it (its last token recomputed)
    prompt_tokens = len(char_tokenizer(prompt)["input_ids"])
    assert cached.prefix_cache.stats["tokens_reused"] == 3 * (prompt_tokens - 1)
    # ran: the prompt once and each solution's tokens from the seam; without the cache every sequence whole
    assert cached.prefix_cache.stats["tokens_computed"] == sum(whole.last_scored_tokens) - 2 * prompt_tokens + 3
    assert cached.stats["tokens"] == whole.stats["tokens"]  # tokens read (the search's cost record) are unchanged
    cached.clear_prefix_caches()
    assert cached.prefix_cache.stats["tokens_reused"] == 0


def test_many_prompts_in_one_call_each_run_once(tiny_llama, char_tokenizer):
    from ttstrain.prm.likelihood_baseline import prompt_waves

    prompts = [format_prompt(f"Start with {n}.\n1. Add 3.\nWhat is the result?") for n in range(4, 10)]
    steps = [[f"{n} + 3 = {n + k}", f"The answer is \\boxed{{{n + k}}}."] for n in range(4, 10) for k in (2, 3, 4)]
    calls = [p for p in prompts for _ in range(3)]
    cached = LikelihoodScorer(tiny_llama, char_tokenizer, batch_size=1)
    moved = []
    cached.progress_hook = moved.append  # eval-prm's progress bar: a step a wave of solutions scored
    got = cached.score(calls, steps)
    assert moved == [6, 6, 6]
    whole = LikelihoodScorer(tiny_llama, char_tokenizer, prefix_cache_bytes=0)
    whole.progress_hook = moved.append  # uncached: every sequence in one call, one step of the bar
    assert got == [pytest.approx(w, rel=1e-5) for w in whole.score(calls, steps)]
    assert moved == [6, 6, 6, 18]
    # batch 1: waves of 4 or more sequences, here two prompts' 6; every sequence reuses its prompt
    assert cached.prefix_cache.stats["tokens_reused"] == sum(len(char_tokenizer(p)["input_ids"]) - 1 for p in calls)
    encoded = {i: type("E", (), {"input_ids": [i // 3] * 5 + [i], "prompt_length": 5})() for i in range(18)}
    assert prompt_waves(encoded, list(range(18)), 4) == [list(range(0, 6)), list(range(6, 12)), list(range(12, 18))]


needs_policy = pytest.mark.skipif(not (default_policy_dir() / "model.safetensors").exists(),
                                  reason="the default world's policy is not built")


def _slip(solution: str) -> str:
    """A one-step solution whose result is off in its last digit, the answer line following it: an
    arithmetic slip that only checking the step can catch."""
    step, _ = solution.split("\n")
    lhs, result = step.rsplit("= ", 1)
    wrong = result[:-1] + str((int(result[-1]) + 1) % 10)
    return f"{lhs}= {wrong}\nThe answer is \\boxed{{{wrong}}}."


@needs_policy
def test_the_shipped_policy_finds_right_arithmetic_more_likely():
    from ttstrain.analysis.metrics import auroc
    from ttstrain.steps import split_steps
    from ttstrain.world.task import problems_split

    scorer = LikelihoodScorer.from_pretrained("default")
    problems = [p for p in problems_split("test", 40, seed=3)
                if re.fullmatch(r".* = \d+\nThe answer is \\boxed\{\d+\}\.", p["solution"])]
    prompts = [format_prompt(p["question"]) for p in problems]
    right = scorer.score_solutions(prompts, [split_steps(p["solution"]) for p in problems])
    wrong = scorer.score_solutions(prompts, [split_steps(_slip(p["solution"])) for p in problems])
    assert len(problems) >= 30
    assert auroc(right + wrong, [True] * len(right) + [False] * len(wrong)) >= 0.8
    assert sum(r > w for r, w in zip(right, wrong)) >= 0.8 * len(problems)


def test_eval_prm_reports_the_baseline_on_the_same_samples(tmp_path, tiny_llama, char_tokenizer, base_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ttstrain.io import read_parquet
    from ttstrain.prm.evaluation import sample_scores
    from ttstrain.stages.eval_prm import EvalPRMConfig, run_eval_prm
    from ttstrain.prm.trainer import load_prm_model

    model, tok = load_prm_model(str(base_dir))
    prm = tmp_path / "prm"
    model.save_pretrained(prm)
    tok.save_pretrained(prm)
    rows = []
    for i in range(6):
        q = f"Start with {i}.\n1. Add 2.\nWhat is the result?"
        for j, ans in enumerate([i + 2, i + 3, i + 2, i + 4]):
            rows.append({"problem_id": f"p{i}", "sample_index": j, "level": 1, "prompt": format_prompt(q),
                         "steps": [f"{i} + 2 = {ans}", f"The answer is \\boxed{{{ans}}}."], "answer": str(ans),
                         "correct": ans == i + 2})
    samples = tmp_path / "samples.parquet"
    pq.write_table(pa.Table.from_pylist(rows), samples)
    cfg = EvalPRMConfig(prm_path=str(prm), output_dir=str(tmp_path / "out"), samples=str(samples), budgets=[1, 2, 4],
                        likelihood_baseline=str(base_dir))
    result = run_eval_prm(cfg)
    lik = result["likelihood_baseline"]
    assert lik["model"] == str(base_dir) and set(lik["best_of_n"]["weighted_at"]) == {1, 2, 4}
    assert lik["best_of_n"]["majority_at"] == result["best_of_n"]["majority_at"]  # the same subsets
    want = sample_scores(LikelihoodScorer.from_pretrained(str(base_dir)), rows)
    scored = read_parquet(tmp_path / "out" / "sample_scores.parquet")
    assert [r["score_likelihood"] for r in scored] == pytest.approx(want, rel=1e-5)
    assert json.loads((tmp_path / "out" / "eval_prm.json").read_text())["likelihood_baseline"]["model"] == str(base_dir)
    # without a baseline the column is there and empty; `auto` needs the PRM's recorded base model
    run_eval_prm(EvalPRMConfig(prm_path=str(prm), output_dir=str(tmp_path / "o2"), samples=str(samples), budgets=[1]))
    assert {r["score_likelihood"] for r in read_parquet(tmp_path / "o2" / "sample_scores.parquet")} == {None}
    with pytest.raises(ValueError, match="ttstrain_config.json, which does not exist"):
        run_eval_prm(EvalPRMConfig(prm_path=str(prm), output_dir=str(tmp_path / "o3"), samples=str(samples),
                                   likelihood_baseline="auto"))
    (prm / "prm_train_config.json").write_text(json.dumps({"model_name_or_path": str(base_dir)}))
    auto = run_eval_prm(EvalPRMConfig(prm_path=str(prm), output_dir=str(tmp_path / "o4"), samples=str(samples),
                                      budgets=[1, 2, 4], likelihood_baseline="auto"))
    assert auto["likelihood_baseline"]["best_of_n"] == lik["best_of_n"]
