"""Converters between ttstrain's PRM dataset schema and the formats PRM users already have.

Our schema (TRL's stepwise supervision, plus provenance): `prompt`, `completions` (list of step
strings), `labels` (floats in [0, 1]), `problem_id`, `sample_index`, `final_correct`,
`rollouts_per_step`, `hard_labels`, `question`, `gold`, `level`.

Into it:
- `from_trl_stepwise(row)`: TRL stepwise rows (`prompt`, `completions`, `labels` as bools).
- `from_math_shepherd(row)`: Math-Shepherd's `input` with `ки` step tags and `label` with `+`/`-`.
- `from_prm800k(record)`: a raw PRM800K labelled solution; ratings 1 and 0 count as positive,
  -1 as negative (the usual convention); the chosen (or human) completion of each step is
  followed, and the solution ends at its first negative step.
- `from_prm800k_stepwise_critic(row)`: one row of the denormalised "stepwise critic" parquet.
Out of it:
- `to_trl_stepwise_hard(row, threshold)`: hard boolean labels, which TRL's own PRMTrainer
  (trl.experimental.prm, trl 1.13.0) trains on unchanged. TRL casts labels with int(), so soft
  labels must be thresholded first; our trainer keeps them soft.

Converted prompts are the step-format prompt ttstrain would have given the policy
(`format_prompt(question)`), so the same PRM input layout is used everywhere.

    python -m ttstrain.converters math_shepherd IN.jsonl OUT.parquet    # steps without "Step k:" and <<...>>
    python -m ttstrain.converters math_shepherd IN.jsonl OUT.parquet --keep_math_shepherd_format
"""

from __future__ import annotations

import hashlib
import re
import sys

from ttstrain.prompts import format_prompt
from ttstrain.steps import flatten_step
from ttstrain.validation import InputError, check_stepwise_input, probability_list, string_list, text

MATH_SHEPHERD_TAG = "ки"


def _problem_id(prefix: str, question: str) -> str:
    return f"{prefix}-" + hashlib.sha1(question.encode()).hexdigest()[:12]


def _row(question: str, steps: list[str], labels: list[float], source: str, *, sample_index: int = 0,
         final_correct: bool | None = None, gold: str | None = None, level=None, prompt: str | None = None) -> dict:
    steps = string_list(steps, None, None, "completions")
    labels = probability_list(labels, None, None, "labels")
    if len(steps) != len(labels):
        raise InputError(None, f"{len(steps)} steps but {len(labels)} labels", field="labels")
    return {
        "prompt": prompt if prompt is not None else format_prompt(question),
        # steps may not contain the separator: a multi-line step becomes one line
        "completions": [flatten_step(s) for s in steps],
        "labels": labels,
        "problem_id": _problem_id(source, question),
        "sample_index": sample_index,
        "final_correct": bool(labels[-1] >= 0.5) if final_correct is None else bool(final_correct),
        "rollouts_per_step": [0] * len(steps),
        "hard_labels": [1.0 if x >= 0.5 else 0.0 for x in labels],
        "question": question,
        "gold": gold,
        "level": level,
    }


def from_trl_stepwise(row: dict, sample_index: int = 0) -> dict:
    """A TRL stepwise-supervision row; its prompt is taken as the question (labels: bools or numbers in [0, 1])."""
    prompt, steps, labels = check_stepwise_input(row, None, None)
    return _row(prompt, steps, labels, "trl", sample_index=sample_index)


def from_math_shepherd(row: dict, sample_index: int = 0, normalize: bool = True) -> dict:
    """Math-Shepherd: question, then `Step k: ...` steps each closed by `ки`; `label` has `+`/`-` there.

    normalize (default): steps written as ttstrain's policies write them, without the `Step k:` prefix
    and the GSM8K calculator annotations `<<3+5=8>>` (labels are read off the raw text first).
    """
    text_, labelled = text(row["input"], None, None, "input"), text(row["label"], None, None, "label")
    first = text_.find("Step 1:")
    if first < 0:
        raise ValueError("Math-Shepherd row has no 'Step 1:'")
    question = text_[:first].strip()
    steps = [s.strip() for s in text_[first:].split(MATH_SHEPHERD_TAG)]
    steps = [s for s in steps if s]
    # the label text is the input with each tag replaced by + or -: read the sign after each step
    marks, cursor = [], labelled.find("Step 1:")
    for step in steps:
        cursor = labelled.find(step, cursor)
        if cursor < 0:
            raise ValueError(f"Math-Shepherd label text does not contain step {step[:40]!r}")
        cursor += len(step)
        sign = labelled[cursor:cursor + 3].strip()[:1]
        if sign not in "+-" or not sign:
            raise ValueError(f"Math-Shepherd label after step {len(marks) + 1} is {sign!r}, not + or -")
        marks.append(1.0 if sign == "+" else 0.0)
    if normalize:
        steps = [normalize_math_shepherd_step(s) for s in steps]
    return _row(question, steps, marks, "math-shepherd", sample_index=sample_index)


_STEP_PREFIX = re.compile(r"^Step \d+:\s*")
_CALCULATOR = re.compile(r"<<[^<>\n]*>>")


def normalize_math_shepherd_step(step: str) -> str:
    """'Step 2: She earns 40*8=<<40*8=320>>320.' -> 'She earns 40*8=320.'"""
    return _CALCULATOR.sub("", _STEP_PREFIX.sub("", step)).strip()


def _prm800k_positive(rating) -> bool:
    return rating is not None and rating >= 0


def from_prm800k(record: dict, sample_index: int = 0) -> dict | None:
    """A raw PRM800K record; None when no step has a rated chosen completion."""
    question = record["question"]["problem"]
    steps, labels = [], []
    for step in record["label"]["steps"]:
        chosen = step.get("chosen_completion")
        comps = step.get("completions") or []
        if chosen is not None and chosen < len(comps):
            pick = comps[chosen]
        elif step.get("human_completion") is not None:
            pick = step["human_completion"]
        else:
            # no step was continued from: the rated alternatives end here; keep the first negative one
            negatives = [c for c in comps if c.get("rating") is not None and c["rating"] < 0]
            if negatives:
                steps.append(negatives[0]["text"])
                labels.append(0.0)
            break
        rating = pick.get("rating")
        steps.append(pick["text"])
        labels.append(1.0 if rating is None or _prm800k_positive(rating) else 0.0)  # human steps are unrated: trusted
        if labels[-1] == 0.0:
            break
    if not steps:
        return None
    finished = record["label"].get("finish_reason") == "solution"
    return _row(question, steps, labels, "prm800k", sample_index=sample_index,
                final_correct=finished and all(x == 1.0 for x in labels),
                gold=record["question"].get("ground_truth_answer"))


def from_prm800k_stepwise_critic(row: dict, sample_index: int = 0) -> dict | None:
    """One 'stepwise critic' row: earlier steps (positive) + the rated next step. None if unrated."""
    if row.get("rating") is None:
        return None
    steps = list(row["responses"]) + [row["next_response"]]
    labels = [1.0] * len(row["responses"]) + [1.0 if _prm800k_positive(row["rating"]) else 0.0]
    return _row(row["instruction"], steps, labels, "prm800k", sample_index=sample_index,
                final_correct=bool(row.get("is_solution")) and labels[-1] == 1.0)


def to_trl_stepwise_hard(row: dict, threshold: float = 0.5) -> dict:
    """TRL's PRM format with boolean labels (soft label >= threshold); what trl's PRMTrainer expects."""
    return {"prompt": row["prompt"], "completions": list(row["completions"]),
            "labels": [bool(x >= threshold) for x in row["labels"]]}


CONVERTERS = {
    "trl": from_trl_stepwise,
    "math_shepherd": from_math_shepherd,
    "prm800k": from_prm800k,
    "prm800k_stepwise_critic": from_prm800k_stepwise_critic,
}


def convert_rows(kind: str, rows, source: str | None = None, normalize: bool = True) -> list[dict]:
    """Convert every row, or fail on the first bad one naming `source` (default: the format), its row and field.

    `normalize` applies to math_shepherd (see `from_math_shepherd`)."""
    try:
        fn = CONVERTERS[kind]
    except KeyError:
        raise ValueError(f"unknown format {kind!r}; choose from {sorted(CONVERTERS)}") from None
    source = source or f"{kind} input"
    out = []
    for i, r in enumerate(rows):
        try:
            if not isinstance(r, dict):
                raise InputError(None, f"is {type(r).__name__}, not an object with fields")
            converted = fn(r, sample_index=0, **({"normalize": normalize} if kind == "math_shepherd" else {}))
        except InputError as e:
            raise e.located(source, i + 1) from e
        except KeyError as e:
            raise InputError(source, f"has no field {e.args[0]!r} ({kind} format)", i + 1) from e
        except (ValueError, TypeError) as e:
            raise InputError(source, str(e), i + 1) from e
        if converted is not None:
            out.append(converted)
    # rows of the same question are samples of one problem: number them
    seen: dict[str, int] = {}
    for r in out:
        r["sample_index"] = seen.get(r["problem_id"], 0)
        seen[r["problem_id"]] = r["sample_index"] + 1
    return out


def main(argv: list[str] | None = None) -> None:
    from ttstrain.io import write_parquet

    argv = sys.argv[1:] if argv is None else argv
    keep = "--keep_math_shepherd_format" in argv
    argv = [a for a in argv if a != "--keep_math_shepherd_format"]
    if len(argv) != 3:
        print("usage: python -m ttstrain.converters {trl,math_shepherd,prm800k,prm800k_stepwise_critic} IN OUT.parquet "
              "[--keep_math_shepherd_format]")
        raise SystemExit(2)
    kind, src, dst = argv
    rows = convert_file(kind, src, normalize=not keep)
    write_parquet(dst, rows)
    print(f"{len(rows)} rows -> {dst}")


def convert_file(kind: str, path: str, normalize: bool = True) -> list[dict]:
    """The converted rows of a file; an empty input or one with no convertible row is an error."""
    raw = _read_any(path)
    if not raw:
        raise InputError(path, "has no rows to convert")
    rows = convert_rows(kind, raw, source=path, normalize=normalize)
    if not rows:
        raise InputError(path, f"none of its {len(raw)} rows has a labelled step to convert ({kind} format)")
    return rows


def _read_any(path: str) -> list:
    import gzip
    import json

    if path.endswith(".parquet"):
        from ttstrain.io import read_parquet

        return read_parquet(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    if path.removesuffix(".gz").endswith(".json"):
        try:
            records = json.loads("\n".join(lines))
        except json.JSONDecodeError as e:
            raise InputError(path, f"not valid JSON ({e.msg} at column {e.colno})", e.lineno, row_name="line") from None
        if not isinstance(records, list):
            raise InputError(path, f"holds a JSON {type(records).__name__}; expected a list of rows")
        return records
    records = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(path, f"not valid JSON ({e.msg} at column {e.colno})", number,
                                 row_name="line") from None
    return records


if __name__ == "__main__":
    main()
