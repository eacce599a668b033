"""Sample N solutions per problem with any generation backend, and grade them.

One row per sample: the problem (`problem_id`, `question`, `gold`, `level`), the sample
(`sample_index`, `completion`, `steps` split by the step contract, `answer` extracted from it,
`correct`), and its cost (`prompt_tokens`, `num_tokens`, `finish_reason`). Later stages (Monte
Carlo labels, revision pairs, search baselines) start from these rows.

    from ttstrain.generation.sampling import sample_solutions
    rows = sample_solutions(gen, problems, n=16, temperature=1.0, seed=0)
"""

from __future__ import annotations

from typing import Sequence

from tqdm.auto import tqdm

from ttstrain.generation.base import Generator, SamplingParams
from ttstrain.answers.grading import extract_answer, is_equivalent
from ttstrain.prompts import PromptFormat, format_prompt, step_format_of


def grade_rows(rows: list[dict]) -> list[dict]:
    """Fill `answer` and `correct` from each row's completion and gold answer."""
    for r in rows:
        r["answer"] = extract_answer(r["completion"])
        r["correct"] = bool(r["answer"] is not None and is_equivalent(r["answer"], r["gold"]))
    return rows


def sample_solutions(generator: Generator, problems: Sequence[dict], *, n: int, temperature: float = 1.0,
                     top_p: float = 1.0, max_new_tokens: int = 512, seed: int = 0,
                     few_shot: "list[tuple[str, str]] | PromptFormat | None" = None, prompts_per_call: int = 16,
                     desc: str = "sampling", progress: bool = True) -> list[dict]:
    fmt = step_format_of(few_shot)
    params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                            stop="solution", seed=seed, step_format=fmt)
    prompts_per_call = max(prompts_per_call, -(-getattr(generator, "min_call_rows", 0) // max(n, 1)))
    rows: list[dict] = []
    bar = tqdm(total=len(problems), desc=desc, disable=not progress, unit="problem")
    for start in range(0, len(problems), prompts_per_call):
        chunk = problems[start:start + prompts_per_call]
        prompts = [format_prompt(p["question"], few_shot) for p in chunk]
        results = generator.generate(prompts, params)
        for p, prompt, res in zip(chunk, prompts, results):
            for j, c in enumerate(res.completions):
                rows.append({
                    "problem_id": p["id"], "question": p["question"], "prompt": prompt, "gold": p["answer"],
                    "level": p.get("level"), "sample_index": j, "completion": c.text,
                    "steps": fmt.split(c.text), "prompt_tokens": res.prompt_tokens,
                    "num_tokens": c.num_tokens, "finish_reason": c.finish_reason,
                })
        bar.update(len(chunk))
    bar.close()
    return grade_rows(rows)


def group_by_problem(rows: Sequence[dict]) -> dict[str, list[dict]]:
    """Rows per problem id, each list ordered by sample_index."""
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["problem_id"], []).append(r)
    for v in out.values():
        v.sort(key=lambda r: r["sample_index"])
    return out
