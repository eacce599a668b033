"""Verifiers for revision outputs: the revision-aware ORM's data, and scoring attempts with or
without their previous attempts in context (Snell et al. App. J).

The revision-aware ORM is the PRM trainer in `orm` mode on rows whose prompt is the revision
prompt an attempt was generated from (question + previous attempts), so it judges an answer
knowing what came before; the base PRM scores the same attempt after the plain question.

    rows = run_revision_chains(revision_model, train_problems, num_chains=4, chain_length=4)
    write_parquet("orm_data.parquet", revision_orm_rows(rows))
    # ttstrain train-prm --dataset_path orm_data.parquet --label_mode orm --output_dir runs/revision_orm
    scores = score_attempts(orm, rows, context=True)        # one value per attempt
"""

from __future__ import annotations

from typing import Sequence

from ttstrain.aggregation import DEFAULT_AGGREGATION
from ttstrain.steps import LINE, StepFormat

ATTEMPTS_PER_CHAIN = 1000  # sample_index = chain * ATTEMPTS_PER_CHAIN + step, unique per problem


def revision_orm_rows(chain_rows: Sequence[dict], step_format: StepFormat = LINE) -> list[dict]:
    """Rows in the PRM trainer's schema, one per attempt with steps: the revision prompt as context,
    the attempt's steps, and final correctness (every step carries it; `orm` mode reads the last)."""
    out = []
    for r in chain_rows:
        steps = step_format.split(r["completion"])
        if not steps:
            continue
        correct = bool(r["correct"])
        out.append({"prompt": r["prompt"], "completions": steps, "labels": [float(correct)] * len(steps),
                    "problem_id": r["problem_id"], "sample_index": int(r["chain"]) * ATTEMPTS_PER_CHAIN + int(r["step"]),
                    "final_correct": correct, "question": r.get("question"), "gold": r.get("gold"),
                    "level": r.get("level"), "revision_step": int(r["step"])})
    return out


def score_attempts(scorer, chain_rows: Sequence[dict], context: bool, how: str = DEFAULT_AGGREGATION,
                   attempt_steps: StepFormat | None = None) -> list[float | None]:
    """One aggregated score per attempt (None for an attempt with no step).

    context=True scores after the attempt's own revision prompt (what a revision-aware ORM was
    trained on); context=False after the plain question prompt (a PRM trained on first attempts).
    Attempts are cut into steps in the PRM's own step format, or, for a public PRM (which reads step
    lists in its own layout), in the attempts' step format `attempt_steps`.
    """
    fmt = (attempt_steps or LINE) if scorer.reads_questions else scorer.prompt_format.steps  # the PRM's own step format
    steps = [fmt.split(r["completion"]) for r in chain_rows]
    prompts = [r["prompt"] if context else scorer.prompt_for(r["question"]) for r in chain_rows]  # the PRM's own format
    keep = [i for i, s in enumerate(steps) if s]
    scored = scorer.score_solutions([prompts[i] for i in keep], [steps[i] for i in keep], how=how)
    out: list[float | None] = [None] * len(chain_rows)
    for i, v in zip(keep, scored):
        out[i] = v
    return out
