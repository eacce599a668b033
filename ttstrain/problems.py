"""Load math problems, from any source, as plain rows with one schema.

Every row is a dict with
    id        unique within the source
    question  the problem text
    answer    the gold final answer, a string (what a grader compares a sample's \\boxed{} with)
    level     int, where the source has difficulty levels (MATH: 1 to 5)
    subject   str, where the source has one
    solution  the reference solution, where the source has one

    from ttstrain.problems import load_problems
    load_problems("math500")                            # MATH-500, the test set (500)
    load_problems("math_train")                         # the other 4,500 MATH test problems (training pool)
    load_problems("gsm8k", "test", limit=100)           # GSM8K, first 100 test problems
    load_problems("arith", "train", per_level=50, seed=1)   # the built-in arithmetic world
    load_problems("mine.jsonl", field_map={"question": "problem", "answer": "final"})
    load_problems("org/name:config", "test", field_map={"question": "problem"})   # Hugging Face Hub

    python -m ttstrain.problems gsm8k test --show 2     # count, then the first rows as JSON

Built-in sources read files under `ttstrain.paths.data_dir()` (override with `data_dir=` or
$TTSTRAIN_DATA_DIR) and are listed in SOURCES; to add one, write a loader taking a SourceRequest and
register it there. Any other source is a local file (.jsonl, .jsonl.gz, .json array, .json.gz,
.parquet) or a Hub dataset id, read through `field_map` (our field name -> the source's field name);
when a row has no answer but its solution has a \\boxed{}, the boxed text is the answer.

Nothing is fixed up silently: a row without a question or answer, malformed JSON and duplicate ids
raise ProblemDataError naming the file, the 1-based line (JSONL) or row, and the field.

`math_train` is the MATH test set minus MATH-500, the 4,500 problems PRM800K moved into its training
split. Its answers are the last \\boxed{} of each solution, except for the few solutions listed in
_MATH_FULL_ANSWER_FIXES, where the last box is not the whole answer.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from ttstrain.answers.grading import extract_boxed
from ttstrain.paths import DATA_DIR_ENV, data_dir as resolve_data_dir
from ttstrain.world import task

FIELDS = ("id", "question", "answer", "level", "subject", "solution")
FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")
MATH500_FILE = "math/test.jsonl.gz"
MATH_FULL_FILE = "math/full_test_5000.jsonl.gz"
ARITH_PER_LEVEL = 100

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+(?::[\w.-]+)?")
_LEVEL = re.compile(r"(?:level\s*)?(\d+)", re.IGNORECASE)

# Found by reading every math_train solution with more than one distinct \boxed{}: the last box is
# one of several answers the question asks for, an alternative printed after the primary answer, or
# the problem's own notation. Solutions whose boxes are the same answer written twice are not here,
# nor those that say either boxed answer is correct (math-full-2716, math-full-2912).
_MATH_FULL_ANSWER_FIXES = {
    "math-full-333": "-3",  # "Note: \boxed{3} is also accepted as an answer."
    "math-full-414": "-2, 1",  # "the answers are \boxed{-2} and \boxed{1}"
    "math-full-2152": "5 - 10i, 11, -3 + 6i",
    "math-full-2549": "-\\tfrac32, -\\tfrac34",
    "math-full-2656": "-10879, 10879",
    "math-full-2703": "3, \\frac{2}{5}",
    "math-full-2936": "(3,-5)",  # "(0,0) is also an acceptable answer" if f is defined at 0
    "math-full-4060": "6",  # \boxed{N} is notation in this problem; the answer is left unboxed
    "math-full-4559": "-1, 2",
    "math-full-4562": "30^\\circ, 45^\\circ, 105^\\circ",
    "math-full-4860": "\\frac{\\pi}{4}, \\frac{5\\pi}{4}",
}


class ProblemDataError(ValueError):
    """A record that cannot become a problem row; the message names the file, the row and the field."""


@dataclass(frozen=True)
class SourceRequest:
    """What load_problems passes on to a source's loader."""

    split: str | None = None
    data_dir: str | Path | None = None
    field_map: dict | None = None
    seed: int = 0
    per_level: int | None = None


Loader = Callable[[SourceRequest], list[dict]]


def load_problems(
    source: str | Path,
    split: str | None = None,
    *,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    field_map: dict | None = None,
    seed: int = 0,
    per_level: int | None = None,
    levels: list[int] | None = None,
) -> list[dict]:
    """Rows (id, question, answer, and level, subject, solution where known) of one source.

    `source` is a name in SOURCES, a local file path or a Hub id ("org/name" or "org/name:config").
    `limit` keeps the first `limit` rows in the source's order. `field_map` (our name -> the source's
    name) applies to files and Hub datasets; `per_level` and `seed` to "arith". `levels` keeps the
    rows of those difficulty levels (before `limit`); a source without levels has none to keep.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    name = str(source)
    if name in SOURCES and field_map is not None:
        raise ValueError(f"field_map applies to files and Hub datasets, not to the built-in source {name!r}")
    if per_level is not None and name != "arith":
        raise ValueError(f"per_level applies to the 'arith' source only, not to {name!r}")
    request = SourceRequest(split=split, data_dir=data_dir, field_map=field_map, seed=seed, per_level=per_level)
    rows = _loader_for(source)(request)
    if levels is not None:
        wanted = {int(x) for x in levels}
        rows = [r for r in rows if r.get("level") is not None and int(r["level"]) in wanted]
        if not rows:
            raise ValueError(f"{name} has no problems at levels {sorted(wanted)}")
    return rows if limit is None else rows[:limit]


def _loader_for(source: str | Path) -> Loader:
    name = str(source)
    if not isinstance(source, Path) and name in SOURCES:
        return SOURCES[name]
    if isinstance(source, Path) or name.endswith(FILE_SUFFIXES) or Path(name).exists():
        return partial(_load_file, Path(name))
    if _HUB_ID.fullmatch(name):
        return partial(_load_hub, name)
    raise ValueError(
        f"unknown problem source {name!r}: expected one of {sorted(SOURCES)}, "
        f"a file ending in {', '.join(FILE_SUFFIXES)}, or a Hub id 'org/name[:config]'"
    )


# --- built-in sources -------------------------------------------------------------------------


def _load_math500(request: SourceRequest) -> list[dict]:
    _check_split("math500", request.split, ("test",), default="test")
    path = _builtin_file(request.data_dir, MATH500_FILE)
    fields = _resolve_field_map({"id": "unique_id", "question": "problem"})
    return _rows_from_records(_read_records(path), str(path), fields, id_prefix="math500")


def _load_math_train(request: SourceRequest) -> list[dict]:
    _check_split("math_train", request.split, ("train",), default="train")
    full_path = _builtin_file(request.data_dir, MATH_FULL_FILE)
    math500 = {rec.get("problem") for _, rec in _read_records(_builtin_file(request.data_dir, MATH500_FILE))}
    full = _read_records(full_path)
    records = [(loc, rec) for loc, rec in full if not (isinstance(rec, dict) and rec.get("problem") in math500)]
    # A wrong file here would quietly leak test problems into training, so insist every one is found.
    if len(full) - len(records) != len(math500):
        raise ProblemDataError(
            f"{full_path}: only {len(full) - len(records)} of the {len(math500)} MATH-500 problems occur in it "
            "(exact text match); expected the full 5,000-problem MATH test set"
        )
    fields = _resolve_field_map({"id": "idx", "question": "problem", "subject": "type"})
    rows = _rows_from_records(records, str(full_path), fields, id_prefix="math-full")
    for row in rows:
        row["id"] = f"math-full-{row['id']}"
        row["answer"] = _MATH_FULL_ANSWER_FIXES.get(row["id"], row["answer"])
    return rows


def _load_gsm8k(request: SourceRequest) -> list[dict]:
    split = _check_split("gsm8k", request.split, ("train", "test"))
    path = _builtin_file(request.data_dir, f"gsm8k/{split}.jsonl.gz")
    rows = []
    for index, (loc, rec) in enumerate(_read_records(path)):
        where = f"{path} {loc}"
        _check_is_record(rec, where)
        # GSM8K's 'answer' field is the worked solution; the final answer follows '####' on its last line.
        solution = _require_text(rec, "solution", "answer", where)
        if "####" not in solution:
            raise ProblemDataError(f"{where}: field 'answer' has no '#### <final answer>' line")
        answer = solution.rsplit("####", 1)[1].strip().replace(",", "")
        if not answer:
            raise ProblemDataError(f"{where}: field 'answer' has nothing after '####'")
        question = _require_text(rec, "question", "question", where)
        rows.append({"id": f"gsm8k-{split}-{index}", "question": question, "answer": answer, "solution": solution})
    return rows


def _load_arith(request: SourceRequest) -> list[dict]:
    split = _check_split("arith", request.split, ("train", "test"))
    per_level = ARITH_PER_LEVEL if request.per_level is None else request.per_level
    return task.problems_split(split, per_level, request.seed)


SOURCES: dict[str, Loader] = {
    "math500": _load_math500,
    "math_train": _load_math_train,
    "gsm8k": _load_gsm8k,
    "arith": _load_arith,
}


def _check_split(source: str, split: str | None, allowed: tuple[str, ...], default: str | None = None) -> str:
    split = split or default
    if split not in allowed:
        raise ValueError(f"{source}: split must be one of {', '.join(allowed)}; got {split!r}")
    return split


def _builtin_file(data_dir: str | Path | None, relative: str) -> Path:
    root = resolve_data_dir(data_dir)
    path = root / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found (data dir {root}); pass data_dir=... or set {DATA_DIR_ENV} to a directory "
            f"that holds {relative}"
        )
    return path


# --- local files and the Hub --------------------------------------------------------------------


def _load_file(path: Path, request: SourceRequest) -> list[dict]:
    if request.split is not None:
        raise ValueError(f"split={request.split!r} does not apply to a local file ({path})")
    if not path.is_file():
        raise FileNotFoundError(f"problem file {path} not found")
    stem = path.name.removesuffix(".gz").rsplit(".", 1)[0]
    fields = _resolve_field_map(request.field_map)
    return _rows_from_records(_read_records(path), str(path), fields, id_prefix=stem)


def _load_hub(source: str, request: SourceRequest) -> list[dict]:
    import datasets  # heavy; only this source needs it

    name, _, config = source.partition(":")
    fields = _resolve_field_map(request.field_map)  # fail on a bad map before any download
    try:
        loaded = datasets.load_dataset(name, config or None, split=request.split)
    except Exception as e:  # offline, unknown id, gated, bad split: all end here, so say what to do instead
        raise RuntimeError(
            f"could not load Hugging Face dataset {source!r} (split {request.split!r}): {type(e).__name__}: {e}. "
            "Without network access, save the data as .jsonl or .parquet and pass that file's path instead."
        ) from e
    split = request.split
    if isinstance(loaded, dict):  # a DatasetDict: no split was named
        if len(loaded) != 1:
            raise ValueError(f"{source} has splits {sorted(loaded)}; pass split=...")
        [(split, loaded)] = loaded.items()
    records = [(f"row {i}", dict(rec)) for i, rec in enumerate(loaded, 1)]
    return _rows_from_records(records, f"{source} [{split}]", fields, id_prefix=f"{name.split('/')[-1]}-{split}")


def _read_records(path: Path) -> list[tuple[str, object]]:
    """(locator, record) pairs of a local file; the locator is 'line N' for JSONL and 'row N' otherwise."""
    name = path.name
    if name.endswith((".jsonl", ".jsonl.gz")):
        return _read_jsonl(path)
    if name.endswith((".json", ".json.gz")):
        return _read_json_array(path)
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return [(f"row {i}", rec) for i, rec in enumerate(pq.read_table(path).to_pylist(), 1)]
    raise ValueError(f"{path}: unsupported file type; expected a name ending in {', '.join(FILE_SUFFIXES)}")


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else open(path, encoding="utf-8")


def _read_jsonl(path: Path) -> list[tuple[str, object]]:
    records = []
    with _open_text(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue  # a blank line holds no record (editors often leave one at the end)
            try:
                records.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise ProblemDataError(f"{path} line {number}: invalid JSON ({e.msg} at column {e.colno})") from None
    return records


def _read_json_array(path: Path) -> list[tuple[str, object]]:
    with _open_text(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ProblemDataError(f"{path} line {e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, list):
        raise ProblemDataError(f"{path}: expected a JSON array of objects, got a {type(data).__name__}")
    return [(f"row {i}", rec) for i, rec in enumerate(data, 1)]


# --- records to rows ------------------------------------------------------------------------------


def _resolve_field_map(field_map: dict | None) -> dict[str, str]:
    """Our field name -> the source's, for every field; unmapped fields keep our name."""
    field_map = field_map or {}
    unknown = sorted(set(field_map) - set(FIELDS))
    if unknown:
        raise ValueError(f"field_map keys must be among {', '.join(FIELDS)}; got {', '.join(unknown)}")
    return {ours: field_map.get(ours, ours) for ours in FIELDS}


def _rows_from_records(
    records: list[tuple[str, object]], where: str, fields: dict[str, str], id_prefix: str
) -> list[dict]:
    """Rows of a mapped source; a record without its own id gets `<id_prefix>-<0-based index>`."""
    rows = [
        _row_from_record(rec, fields, f"{where} {loc}", default_id=f"{id_prefix}-{index}")
        for index, (loc, rec) in enumerate(records)
    ]
    first_seen: dict[str, str] = {}
    for row, (loc, _) in zip(rows, records):
        if row["id"] in first_seen:
            raise ProblemDataError(f"{where} {loc}: duplicate id {row['id']!r} (first at {first_seen[row['id']]})")
        first_seen[row["id"]] = loc
    return rows


def _row_from_record(rec: object, fields: dict[str, str], where: str, default_id: str) -> dict:
    _check_is_record(rec, where)
    row = {
        "id": _id_of(rec, fields, where, default_id),
        "question": _require_text(rec, "question", fields["question"], where),
        "answer": _answer_of(rec, fields, where),
    }
    level = _level_of(rec, fields["level"], where)
    if level is not None:
        row["level"] = level
    for ours in ("subject", "solution"):
        value = _text(rec, ours, fields[ours], where)
        if value is not None:
            row[ours] = value
    return row


def _id_of(rec: dict, fields: dict[str, str], where: str, default_id: str) -> str:
    if fields["id"] == "id" and "id" not in rec:
        return default_id  # the source has no id column and none was mapped
    return _require_text(rec, "id", fields["id"], where)


def _answer_of(rec: dict, fields: dict[str, str], where: str) -> str:
    answer = _text(rec, "answer", fields["answer"], where)
    if answer is not None:
        return answer.strip()
    solution = _text(rec, "solution", fields["solution"], where)
    boxed = extract_boxed(solution) if solution is not None else None
    if boxed is not None and boxed.strip():
        return boxed.strip()
    state = "missing" if fields["answer"] not in rec else "empty"
    why = f" and no \\boxed{{...}} in field {_label('solution', fields['solution'])}" if solution is not None else ""
    raise ProblemDataError(f"{where}: {state} field {_label('answer', fields['answer'])}{why}")


def _level_of(rec: dict, theirs: str, where: str) -> int | None:
    value = rec.get(theirs)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.strip().lower() in ("", "?", "level ?"):
            return None  # MATH marks a few problems "Level ?": level unknown, the problem is still good
        match = _LEVEL.fullmatch(value.strip())
        if match:
            return int(match.group(1))
    raise ProblemDataError(f"{where}: field {_label('level', theirs)} is {value!r}; expected an int or 'Level N'")


def _check_is_record(rec: object, where: str) -> None:
    if not isinstance(rec, dict):
        raise ProblemDataError(f"{where}: expected an object with named fields, got a {type(rec).__name__}")


def _text(rec: dict, ours: str, theirs: str, where: str) -> str | None:
    """The field as text; None when absent, null or blank. Numbers become their decimal text."""
    value = rec.get(theirs)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ProblemDataError(f"{where}: field {_label(ours, theirs)} is a {type(value).__name__}; expected text")
    text = str(value)
    return text if text.strip() else None


def _require_text(rec: dict, ours: str, theirs: str, where: str) -> str:
    text = _text(rec, ours, theirs, where)
    if text is None:
        state = "missing" if theirs not in rec else "empty"
        raise ProblemDataError(f"{where}: {state} field {_label(ours, theirs)}")
    return text


def _label(ours: str, theirs: str) -> str:
    return f"'{ours}'" if ours == theirs else f"'{ours}' (mapped from '{theirs}')"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print how many problems a source has, then its first rows as JSON.")
    parser.add_argument("source", help=f"one of {', '.join(SOURCES)}, a file path, or a Hub id org/name[:config]")
    parser.add_argument("split", nargs="?")
    parser.add_argument("--show", type=int, default=3, help="rows to print")
    parser.add_argument("--field-map", type=json.loads, help='JSON, e.g. \'{"question": "problem"}\'')
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    rows = load_problems(args.source, args.split, data_dir=args.data_dir, field_map=args.field_map)
    print(f"{len(rows)} problems")
    for row in rows[: args.show]:
        print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
