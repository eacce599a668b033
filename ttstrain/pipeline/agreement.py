"""Before a pipeline starts: do its stages agree on the model, the prompt format and the step format?

    from ttstrain.pipeline.agreement import check_agreement
    check_agreement(configs, recipes="recipes/smollm2-135m")   # ValueError naming the stages that differ

Each stage is read from its own YAML, so a recipe folder can say one thing in one stage and another
in the next: sample in the chat format and label-mc in plain text, a PRM trained from another body,
label-mc at another step separator. Every one of those runs, and gives numbers that mean nothing (a
PRM scores steps it never saw cut that way). This refuses them before the first stage, naming each
stage, its file and its value. What is compared:
  - the policy: model, backend, dtype and device of every stage that generates with it (sample,
    greedy, label-mc, search, build-revisions, and the base of revision SFT and of the PRM);
  - the prompt: the resolved prompt kind, worked examples (count and pool), system prompt, and the
    resolved step format (separator and solution end) of every stage that prompts the policy;
  - the test problems: source, split and levels of sample and search (compute-optimal joins them).
"""

from __future__ import annotations

from pathlib import Path

from ttstrain.prompts import resolve_prompt_kind
from ttstrain.steps import resolve_step_format

POLICY_STAGES = ("sample", "greedy", "label_mc", "search", "build_revisions")
BASE_MODEL_STAGES = ("prm", "revision")  # trained from the policy's body
PROMPT_STAGES = ("sample", "greedy", "label_mc", "search", "build_revisions")
TEST_PROBLEM_STAGES = ("sample", "search")
STAGE_FOLDER = {"greedy": "sample"}  # greedy is the sample stage's recipe at temperature 0


def _prompt(cfg) -> dict:
    kind = resolve_prompt_kind(cfg.prompt_format, cfg.few_shot > 0)
    steps = resolve_step_format(cfg.step_separator, cfg.solution_end, kind)
    return {"prompt format": kind, "few_shot": cfg.few_shot,
            "few_shot_source": cfg.few_shot_source if cfg.few_shot else None,
            "system_prompt": cfg.system_prompt, "step separator": steps.separator, "solution_end": steps.solution_end}


def _where(stage: str, recipes: str | Path) -> str:
    return f"{stage} ({Path(recipes) / STAGE_FOLDER.get(stage, stage) / 'config_pipeline.yaml'})"


def _differences(values: dict[str, dict], recipes) -> list[str]:
    """'name: stage (file) = a, stage (file) = b' for each key whose value is not the same in every stage."""
    out = []
    keys = next(iter(values.values())).keys() if values else ()
    for key in keys:
        seen = {stage: v[key] for stage, v in values.items()}
        if len({repr(v) for v in seen.values()}) > 1:
            out.append(f"{key}: " + ", ".join(f"{_where(s, recipes)} = {v!r}" for s, v in seen.items()))
    return out


def check_agreement(configs: dict, recipes: str | Path) -> None:
    present = lambda names: [n for n in names if configs.get(n) is not None]  # noqa: E731
    policy = {n: {"model": configs[n].model_name_or_path, "backend": configs[n].backend, "dtype": configs[n].dtype,
                  "device": configs[n].device} for n in present(POLICY_STAGES)}
    base_model = {n: {"model": configs[n].model_name_or_path} for n in present(("sample",) + BASE_MODEL_STAGES)}
    prompt = {n: _prompt(configs[n]) for n in present(PROMPT_STAGES)}
    problems = {n: {"problems": configs[n].problems, "split": configs[n].split, "levels": configs[n].levels}
                for n in present(TEST_PROBLEM_STAGES)}
    problems_found = []
    for title, values in (("the policy", policy), ("the model trained", base_model), ("the prompt", prompt),
                          ("the test problems", problems)):
        problems_found += [f"{title}: {d}" for d in _differences(values, recipes)]
    if problems_found:
        raise ValueError("the stages of this pipeline disagree (each reads the others' outputs, so they must "
                         "run the same model, prompt and step format; set it alike in every stage's YAML, or "
                         "once for all with --model_name_or_path / --backend):\n  " + "\n  ".join(problems_found))
