"""Converters between ttstrain's PRM dataset schema and the formats PRM users already have.

Our schema (TRL's stepwise supervision, plus provenance): `prompt`, `completions` (list of step
strings), `labels` (floats in [0, 1]), `problem_id`, `sample_index`, `final_correct`,
`rollouts_per_step`, `hard_labels`, `question`, `gold`, `level`.

Into it:
- `from_trl_stepwise(row)`: TRL stepwise rows (`prompt`, `completions`, `labels` as bools).
- `from_math_shepherd(row)`: Math-Shepherd (peiyi9979/Math-Shepherd). `input` is the question then
  the steps, each closed by the tag `ки`; `label` is the same text with each tag replaced by `+` or
  `-` (the sign is read at the tag's place, as TRL's examples/datasets/math_shepherd.py does). The
  layouts its rows use: steps written `Step k:` or `step k:` (the question ends where `step 1:`
  begins); steps with no prefix (the question ends at the last `?` before the first tag, TRL's
  fallback); stray tags inside the question (the steps begin in the first tag-delimited segment
  that holds a `step 1:`; the question's tags and their signs are dropped). A row with no `step 1:`
  and no `?` before its first tag, an empty step, or a sign other than `+`/`-` is unreadable.
- `from_prm800k(record)`: one line of the PRM800K release (openai/prm800k,
  `data/phase{1,2}_{train,test}.jsonl`; phase 1 has `generation` null, alternatives at many steps
  and human-written steps; phase 2 has `pre_generated_steps` and alternatives only at its first
  error). The followed path is each step's `chosen_completion`, or its `human_completion` when none
  was chosen (phase 1 lets a labeler write a step when every completion was rated -1; it counts as
  a +1 step). A step with neither ends the path; if it holds a completion rated -1 (phase 2's first
  error: the pre-generated step, its alternatives rated after it), that step is kept as the last.
  The path ends at its first -1 step, inclusive. Ratings: 1 -> 1.0, -1 -> 0.0, 0 (the README: "not
  incorrect, but it does not make any progress") -> 1.0, or 0.0 with `prm800k_neutral="negative"`,
  which is TRL's examples/datasets/prm800k.py convention (`rating == 1`). `finish_reason`:
  `solution` converts (`final_correct` when no step on the path is rated -1); `found_error`
  converts and must end at a -1 step; `give_up` and `bad_problem` rows are left out and counted by
  reason. Unreadable: any other `finish_reason`, a rating other than -1/0/1/null, an unrated chosen
  step, a `chosen_completion` out of range, a `solution` row with a rated step that has neither a
  chosen nor a human completion, a path with no step. Quality-control and screening rows convert
  like any other (they repeat one solution across labelers); `flagged` is not used; only the
  followed path becomes a row (TRL's script also makes a row of every rated alternative).
- `from_prm800k_stepwise_critic(row)`: one row of the denormalised "stepwise critic" parquet
  (rows whose step is unrated, the human-written ones, are left out and counted).
Out of it:
- `to_trl_stepwise_hard(row, threshold)`: hard boolean labels, which TRL's own PRMTrainer
  (trl.experimental.prm, trl 1.13.0) trains on unchanged. TRL casts labels with int(), so soft
  labels must be thresholded first; our trainer keeps them soft.

Converted prompts are the step-format prompt ttstrain would have given the policy
(`format_prompt(question)`), so the same PRM input layout is used everywhere.

Whole files (`convert_file`, jsonl read line by line; json and parquet too): a row that cannot be
read is skipped and reported with its line (jsonl) or row number, field and reason
(`--on_bad_row skip`, the default), or stops the run with an `InputError` naming the file, line
and field (`--on_bad_row fail`). Rows a format leaves out on purpose are counted by reason. The
command writes the rows atomically and the report beside them (`OUT.summary.json`, also printed);
a run that stops writes nothing, so an earlier output is never half-replaced.

    python -m ttstrain.converters math_shepherd IN.jsonl OUT.parquet    # steps without "Step k:" and <<...>>
    python -m ttstrain.converters math_shepherd IN.jsonl OUT.parquet --keep_math_shepherd_format
    python -m ttstrain.converters prm800k phase2_train.jsonl OUT.parquet --on_bad_row fail
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

from ttstrain import __version__
from ttstrain.io import read_parquet, write_json, write_parquet
from ttstrain.parsing import StageParser
from ttstrain.prompts import format_prompt
from ttstrain.steps import flatten_step
from ttstrain.validation import InputError, check_stepwise_input, probability_list, string_list, text

MATH_SHEPHERD_TAG = "ки"


@dataclass
class ConvertOptions:
    """How `convert_file` and `convert_rows` read rows; every field is a command-line option."""

    on_bad_row: Literal["skip", "fail"] = field(default="skip", metadata={
        "help": "A row that cannot be read: 'skip' it and report its line, field and reason in the summary, "
                "or 'fail': stop there with an error naming the file, line and field (nothing is written)."})
    keep_math_shepherd_format: bool = field(default=False, metadata={
        "help": "math_shepherd: keep the 'Step k:' prefixes and <<...>> calculator annotations in the steps."})
    prm800k_neutral: Literal["positive", "negative"] = field(default="positive", metadata={
        "help": "prm800k: the label of a step rated 0 ('not incorrect, no progress'): 'positive' (1.0), or "
                "'negative' (0.0), as TRL's prm800k script has it."})

    def __post_init__(self):
        for name, allowed in (("on_bad_row", ("skip", "fail")), ("prm800k_neutral", ("positive", "negative"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} is {getattr(self, name)!r}; choose from {', '.join(allowed)}")


class RowSkipped(Exception):
    """A row its format leaves out on purpose, not an error (a PRM800K solution its labeler gave up on).

    The conversion counts it under `reason`; it never stops a run."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class ConversionReport:
    """What a conversion read, converted, left out (by reason) and could not read (where, field, why)."""

    source: str
    format: str
    row_name: str = "row"  # "line" for jsonl files: the number to open the file at
    rows_read: int = 0
    rows_converted: int = 0
    left_out: dict[str, list[int]] = field(default_factory=dict)  # reason -> the rows it covers
    unreadable: list[dict] = field(default_factory=list)  # {"line"/"row": n, "field": name or None, "reason": ...}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def where(self, bad: dict) -> str:
        return f"{self.row_name} {bad[self.row_name]}" + (f", field {bad['field']!r}" if bad["field"] else "")

    def describe(self, limit: int = 10) -> str:
        """The printed summary: counts, each reason a row was left out, the first `limit` unreadable rows."""
        left = sum(len(v) for v in self.left_out.values())
        lines = [f"{self.source} ({self.format}): {self.rows_read} rows read, {self.rows_converted} converted, "
                 f"{left} left out, {len(self.unreadable)} unreadable and skipped"]
        for reason, rows in self.left_out.items():
            shown = ", ".join(map(str, rows[:limit])) + (", ..." if len(rows) > limit else "")
            lines.append(f"  left out ({reason}): {len(rows)} ({self.row_name} {shown})")
        lines += [f"  unreadable: {self.where(bad)}: {bad['reason']}" for bad in self.unreadable[:limit]]
        if len(self.unreadable) > limit:
            lines.append(f"  ... {len(self.unreadable) - limit} more unreadable rows (all in the summary file)")
        return "\n".join(lines)


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


def from_math_shepherd(row: dict, sample_index: int = 0,
                       normalize: bool = not ConvertOptions.keep_math_shepherd_format) -> dict:
    """Math-Shepherd: the question, then steps each closed by `ки`; `label` has `+`/`-` where the tags are.

    normalize (default): steps written as ttstrain's policies write them, without the `Step k:` /
    `step k:` prefix and the GSM8K calculator annotations `<<3+5=8>>` (labels are read off the raw text).
    """
    source, labelled = text(row["input"], None, None, "input"), text(row["label"], None, None, "label")
    pieces = source.split(MATH_SHEPHERD_TAG)
    if len(pieces) == 1:
        raise InputError(None, f"has no {MATH_SHEPHERD_TAG} step tag; expected steps each closed by one",
                         field="input")
    if pieces[-1].strip():
        raise InputError(None, f"text after the last {MATH_SHEPHERD_TAG} tag has no label: {pieces[-1].strip()[:40]!r}",
                         field="input")
    segments = pieces[:-1]
    # the label text is the input with each two-letter tag replaced by one sign: read it where the tag was
    signs, at = [], 0
    for k, segment in enumerate(segments, 1):
        at += len(segment)
        sign = labelled[at:at + 1]
        if sign not in ("+", "-"):
            raise InputError(None, f"has {sign or 'nothing'!r} where tag {k} of the input is; expected + or -",
                             field="label")
        signs.append(sign)
        at += 1
    # where the steps begin: the first segment that holds a `step 1:` (tags before it are stray tags in
    # the question), else, with no prefixes at all, the last '?' before the first tag
    start = next(((k, m) for k, s in enumerate(segments) for m in list(_FIRST_STEP.finditer(s))[-1:]), None)
    if start is not None:
        k, match = start
        question_parts = segments[:k] + [segments[k][:match.start()]]
        steps = [segments[k][match.start():]] + segments[k + 1:]
        signs = signs[k:]
    else:
        end = segments[0].rfind("?")
        if end < 0:
            raise InputError(None, f"has no 'Step 1:' and no '?' before its first {MATH_SHEPHERD_TAG} tag; "
                                   "cannot tell the question from the first step", field="input")
        question_parts = [segments[0][:end + 1]]
        steps = [segments[0][end + 1:]] + segments[1:]
    question = " ".join(p.strip() for p in question_parts if p.strip())
    if not question:
        raise InputError(None, "has no question before its first step", field="input")
    steps = [s.strip() for s in steps]
    if "" in steps:
        raise InputError(None, f"step {steps.index('') + 1} is empty (two {MATH_SHEPHERD_TAG} tags with nothing "
                               "between them)", field="input")
    if normalize:
        steps = [normalize_math_shepherd_step(s) for s in steps]
    return _row(question, steps, [1.0 if s == "+" else 0.0 for s in signs], "math-shepherd",
                sample_index=sample_index)


_FIRST_STEP = re.compile(r"\bstep\s*1\s*:", re.IGNORECASE)
_STEP_PREFIX = re.compile(r"^step\s*\d+\s*:\s*", re.IGNORECASE)
_CALCULATOR = re.compile(r"<<[^<>\n]*>>")


def normalize_math_shepherd_step(step: str) -> str:
    """'Step 2: She earns 40*8=<<40*8=320>>320.' -> 'She earns 40*8=320.'"""
    return _CALCULATOR.sub("", _STEP_PREFIX.sub("", step)).strip()


PRM800K_CONVERTED = ("solution", "found_error")
PRM800K_LEFT_OUT = ("give_up", "bad_problem")
PRM800K_RATINGS = (-1, 0, 1)


def prm800k_label(rating: int, neutral: str = ConvertOptions.prm800k_neutral) -> float:
    """A PRM800K rating as a step label: 1 -> 1.0, -1 -> 0.0, 0 -> 1.0 (`neutral="positive"`) or 0.0."""
    return 1.0 if rating == 1 or (rating == 0 and neutral == "positive") else 0.0


def _prm800k_completion(value, where: str) -> tuple[str, int | None]:
    """(text, rating) of one completion; a human completion may also be a bare string."""
    if isinstance(value, str):
        value = {"text": value}
    if not isinstance(value, dict):
        raise InputError(None, f"is {type(value).__name__}; expected an object with text and rating", field=where)
    step_text, rating = value.get("text"), value.get("rating")
    if not isinstance(step_text, str) or not step_text.strip():
        raise InputError(None, f"is {step_text!r}; expected the step's text", field=f"{where}.text")
    if rating is not None and (isinstance(rating, bool) or rating not in PRM800K_RATINGS):
        raise InputError(None, f"is {rating!r}; expected -1, 0, 1 or null", field=f"{where}.rating")
    return step_text, None if rating is None else int(rating)


def _object(value, where: str, expected: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(None, f"is {type(value).__name__}; expected an object with {expected}", field=where)
    return value


def from_prm800k(record: dict, sample_index: int = 0, neutral: str = ConvertOptions.prm800k_neutral) -> dict:
    """One line of the PRM800K release: its followed path, up to and including its first -1 step.

    The rules (which completion is followed, how ratings and `finish_reason` are read) are in the
    module docstring. Raises RowSkipped for `give_up` / `bad_problem` rows and InputError, naming
    the field (`label.steps[3].chosen_completion`), for a row it cannot read."""
    question = _object(record["question"], "question", "problem and ground_truth_answer")
    label = _object(record["label"], "label", "steps and finish_reason")
    problem = text(question.get("problem"), None, None, "question.problem")
    finish = label.get("finish_reason")
    if finish in PRM800K_LEFT_OUT:
        raise RowSkipped(f"finish_reason {finish!r}")
    if finish not in PRM800K_CONVERTED:
        raise InputError(None, f"is {finish!r}; expected one of {', '.join(PRM800K_CONVERTED + PRM800K_LEFT_OUT)}",
                         field="label.finish_reason")
    steps = label.get("steps")
    if not isinstance(steps, list):
        raise InputError(None, f"is {type(steps).__name__}; expected a list of steps", field="label.steps")
    pre_generated = question.get("pre_generated_steps") or []
    texts, ratings = [], []
    for k, step in enumerate(steps):
        where = f"label.steps[{k}]"
        step = _object(step, where, "completions, human_completion and chosen_completion")
        completions = step.get("completions") or []
        if not isinstance(completions, list):
            raise InputError(None, f"is {type(completions).__name__}; expected a list", field=f"{where}.completions")
        rated = [_prm800k_completion(c, f"{where}.completions[{i}]") for i, c in enumerate(completions)]
        chosen, human = step.get("chosen_completion"), step.get("human_completion")
        if chosen is not None:
            if isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen < len(rated):
                raise InputError(None, f"is {chosen!r}; the step has {len(rated)} completions",
                                 field=f"{where}.chosen_completion")
            step_text, rating = rated[chosen]
            if rating is None:
                raise InputError(None, "is null: the chosen completion is unrated",
                                 field=f"{where}.completions[{chosen}].rating")
        elif human is not None:
            step_text, rating = _prm800k_completion(human, f"{where}.human_completion")[0], 1  # written as +1 steps
        else:
            # nothing was continued from this step, so the path ends here (an all-null step ends some rows);
            # at an error (phase 2 stops at the first -1, then rates alternatives to it) the erroneous
            # step, the pre-generated one, is its last
            if rated and finish == "solution":
                raise InputError(None, f"is null, with no human completion, in a row whose finish_reason is "
                                       f"'solution'; the solution cannot be followed past step {k}",
                                 field=f"{where}.chosen_completion")
            errors = [t for t, r in rated if r == -1]
            if not errors:
                break
            original = pre_generated[k] if k < len(pre_generated) else None
            step_text, rating = (original if original in errors else errors[0]), -1
        texts.append(step_text)
        ratings.append(rating)
        if rating == -1:
            break
    if not texts:
        raise InputError(None, "has no step with a chosen, human-written or -1-rated completion; nothing to label",
                         field="label.steps")
    if finish == "found_error" and ratings[-1] != -1:
        raise InputError(None, "is 'found_error' but no step on the followed path is rated -1",
                         field="label.finish_reason")
    gold = question.get("ground_truth_answer")
    return _row(problem, texts, [prm800k_label(r, neutral) for r in ratings], "prm800k", sample_index=sample_index,
                final_correct=finish == "solution" and -1 not in ratings,
                gold=gold if isinstance(gold, str) else None)


def from_prm800k_stepwise_critic(row: dict, sample_index: int = 0,
                                 neutral: str = ConvertOptions.prm800k_neutral) -> dict:
    """One 'stepwise critic' row: earlier steps (positive) + the rated next step. RowSkipped if unrated."""
    rating = row["rating"]
    if rating is None:
        raise RowSkipped("rating null (a human-written step)")
    if isinstance(rating, bool) or rating not in PRM800K_RATINGS:
        raise InputError(None, f"is {rating!r}; expected -1, 0, 1 or null", field="rating")
    steps = list(row["responses"]) + [row["next_response"]]
    labels = [1.0] * len(row["responses"]) + [prm800k_label(rating, neutral)]
    return _row(row["instruction"], steps, labels, "prm800k", sample_index=sample_index,
                final_correct=bool(row.get("is_solution")) and rating != -1)


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


def convert_rows(kind: str, rows: Iterable, source: str | None = None,
                 options: ConvertOptions | None = None) -> tuple[list[dict], ConversionReport]:
    """The converted rows and the report of what was left out or unreadable (rows numbered from 1).

    With `options.on_bad_row == "fail"` the first unreadable row raises an InputError naming `source`
    (default: the format), the row and the field instead."""
    return _convert(kind, enumerate(rows, 1), source or f"{kind} input", "row", options or ConvertOptions())


def convert_file(kind: str, path: str | Path, options: ConvertOptions | None = None
                 ) -> tuple[list[dict], ConversionReport]:
    """The converted rows of a file (jsonl, json or parquet, optionally gzipped) and their report.

    An empty file, a json file that does not parse, or one with no convertible row is an error."""
    path = str(path)
    rows, report = _convert(kind, _numbered_records(path), path, "line" if _is_jsonl(path) else "row",
                            options or ConvertOptions())
    if not report.rows_read:
        raise InputError(path, "has no rows to convert")
    if not rows:
        reasons = [f"{report.where(bad)}: {bad['reason']}" for bad in report.unreadable[:3]]
        reasons += [f"{len(where)} left out ({reason})" for reason, where in report.left_out.items()]
        raise InputError(path, f"none of its {report.rows_read} rows could be converted ({kind} format): "
                               + "; ".join(reasons))
    return rows, report


def _convert(kind: str, numbered: Iterable[tuple[int, Any]], source: str, row_name: str,
             options: ConvertOptions) -> tuple[list[dict], ConversionReport]:
    try:
        fn = CONVERTERS[kind]
    except KeyError:
        raise ValueError(f"unknown format {kind!r}; choose from {sorted(CONVERTERS)}") from None
    kwargs = ({"normalize": not options.keep_math_shepherd_format} if kind == "math_shepherd"
              else {"neutral": options.prm800k_neutral} if kind.startswith("prm800k") else {})
    report, out = ConversionReport(source, kind, row_name), []
    for where, record in numbered:
        report.rows_read += 1
        try:
            if isinstance(record, _Unreadable):
                raise InputError(None, record.reason)
            if not isinstance(record, dict):
                raise InputError(None, f"is {type(record).__name__}, not an object with fields")
            out.append(fn(record, **kwargs))
        except RowSkipped as e:
            report.left_out.setdefault(e.reason, []).append(where)
        except (InputError, KeyError, ValueError, TypeError) as e:
            error = _located(e, kind, source, where, row_name)
            if options.on_bad_row == "fail":
                raise error from e
            report.unreadable.append({row_name: where, "field": error.field, "reason": error.detail})
    report.rows_converted = len(out)
    # rows of the same question are samples of one problem: number them
    seen: dict[str, int] = {}
    for r in out:
        r["sample_index"] = seen.get(r["problem_id"], 0)
        seen[r["problem_id"]] = r["sample_index"] + 1
    return out, report


def _located(e: Exception, kind: str, source: str, where: int, row_name: str) -> InputError:
    if isinstance(e, InputError):
        return e.located(source, where, row_name)
    if isinstance(e, KeyError):
        error = InputError(source, f"has no field {e.args[0]!r} ({kind} format)", where, row_name=row_name)
        error.field = e.args[0]
        return error
    return InputError(source, str(e), where, row_name=row_name)


@dataclass
class _Unreadable:
    """A jsonl line that is not JSON: it stands in the stream at its line and is reported there."""

    reason: str


def _is_jsonl(path: str) -> bool:
    return not path.endswith(".parquet") and not path.removesuffix(".gz").endswith(".json")


def _numbered_records(path: str) -> Iterator[tuple[int, Any]]:
    """(line or row number, record) for every record; a jsonl file is read one line at a time."""
    if path.endswith(".parquet"):
        yield from enumerate(read_parquet(path), 1)
        return
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        if not _is_jsonl(path):
            try:
                records = json.load(f)
            except json.JSONDecodeError as e:
                raise InputError(path, f"not valid JSON ({e.msg} at column {e.colno})", e.lineno,
                                 row_name="line") from None
            if not isinstance(records, list):
                raise InputError(path, f"holds a JSON {type(records).__name__}; expected a list of rows")
            yield from enumerate(records, 1)
            return
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    record = json.loads(line.rstrip("\r\n"))  # columns counted on this line alone
                except json.JSONDecodeError as e:
                    record = _Unreadable(f"not valid JSON ({e.msg} at column {e.colno})")
                yield number, record


def summary_path(output: str | Path) -> Path:
    """Where the command writes a conversion's report: OUT.parquet -> OUT.summary.json."""
    output = Path(output)
    return output.with_name(output.stem + ".summary.json")


def make_parser():
    parser = StageParser((ConvertOptions,), prog="python -m ttstrain.converters",
                         description="Convert a PRM dataset into ttstrain's stepwise schema (parquet).")
    parser.add_argument("format", choices=sorted(CONVERTERS), help="the input's format")
    parser.add_argument("input", help="a .jsonl, .json or .parquet file (.jsonl.gz / .json.gz too)")
    parser.add_argument("output", help="the .parquet to write; the report goes beside it as OUT.summary.json")
    return parser


def main(argv: list[str] | None = None) -> dict:
    """Convert, write the rows and the report atomically, print the report; returns the report."""
    options, args = make_parser().parse_args_and_config(argv)
    rows, report = convert_file(args.format, args.input, options)
    summary = {**report.to_dict(), "output": str(args.output), "options": dataclasses.asdict(options),
               "ttstrain_version": __version__}
    write_parquet(args.output, rows)
    write_json(summary_path(args.output), summary)
    print(report.describe())
    print(f"{len(rows)} rows -> {args.output}; report -> {summary_path(args.output)}")
    return summary


if __name__ == "__main__":
    main()
