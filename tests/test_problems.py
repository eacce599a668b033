"""Problem loading: the built-in sources against the test data slices, local files, the Hub path (mocked), errors.

The built-in sources read tests/fixtures/data (conftest.py points $TTSTRAIN_DATA_DIR there): a few rows of each
full file, whose row numbers in the full file `slice_rows` gives.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from ttstrain import paths, problems
from ttstrain.problems import ProblemDataError, load_problems


@pytest.fixture(scope="module")
def math500():
    return load_problems("math500")


@pytest.fixture(scope="module")
def math_train():
    return load_problems("math_train")


def by_id(rows):
    return {row["id"]: row for row in rows}


def write_jsonl(path: Path, records) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        for rec in records:
            f.write((rec if isinstance(rec, str) else json.dumps(rec)) + "\n")
    return path


# --- built-in sources ---------------------------------------------------------------------------


def test_math500(math500, slice_rows):
    assert len(math500) == len(by_id(math500)) == len(slice_rows["math/test.jsonl.gz"])
    row = by_id(math500)["test/precalculus/807.json"]
    assert row["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert (row["level"], row["subject"]) == (2, "Precalculus")
    assert by_id(math500)["test/algebra/2584.json"]["answer"] == "\\frac{14}{3}"
    assert by_id(math500)["test/algebra/1349.json"]["answer"] == "\\text{Evelyn}"


def test_math_train_is_the_rest_of_the_math_test_set(math500, math_train, slice_rows):
    rest = len(slice_rows["math/full_test_5000.jsonl.gz"]) - len(slice_rows["math/test.jsonl.gz"])  # 4500 in full
    assert len(math_train) == len(by_id(math_train)) == rest
    assert not {r["question"] for r in math_train} & {r["question"] for r in math500}
    row = by_id(math_train)["math-full-0"]
    assert row["question"].startswith("How many vertical asymptotes does the graph of")
    assert (row["answer"], row["level"], row["subject"]) == ("2", 3, "Algebra")
    assert by_id(math_train)["math-full-91"]["answer"] == "161"  # last of two boxes is the answer asked for


def test_math_train_answer_fixes(math_train):
    rows = by_id(math_train)
    assert rows["math-full-414"]["answer"] == "-2, 1"
    assert rows["math-full-4060"]["answer"] == "6"
    assert rows["math-full-333"]["answer"] == "-3"
    for row_id in problems._MATH_FULL_ANSWER_FIXES:
        assert "\\boxed" in rows[row_id]["solution"]


@pytest.mark.parametrize("source", ["math500", "math_train"])
def test_math_rows_complete(source, math500, math_train):
    rows = math500 if source == "math500" else math_train
    for row in rows:
        assert row["question"].strip() and row["answer"].strip() and row["solution"].strip()
        assert row["level"] in {1, 2, 3, 4, 5}
        assert row["subject"]


def test_gsm8k(slice_rows):
    train, test = load_problems("gsm8k", "train"), load_problems("gsm8k", "test")
    train_rows, test_rows = slice_rows["gsm8k/train.jsonl.gz"], slice_rows["gsm8k/test.jsonl.gz"]
    assert (len(train), len(test)) == (len(train_rows), len(test_rows))  # (7473, 1319) in full
    assert len(by_id(train)) == len(train) and len(by_id(test)) == len(test)
    assert train[0]["id"] == "gsm8k-train-0" and train[0]["answer"] == "72"
    assert train[0]["solution"].endswith("#### 72")  # the worked solution is kept as it is
    assert test[0]["answer"] == "18"
    assert train[train_rows.index(345)]["answer"] == "1080"  # "#### 1,080"
    assert test[test_rows.index(201)]["answer"] == "114200"  # "#### 114,200"
    assert train[train_rows.index(5715)]["answer"] == "-7"
    for row in train + test:
        assert row["question"].strip()
        assert re.fullmatch(r"-?\d+(\.\d+)?", row["answer"]), row


def test_arith_splits_are_disjoint_and_seeded():
    train = load_problems("arith", "train", per_level=40, seed=3)
    test = load_problems("arith", "test", per_level=40, seed=3)
    assert len(train) == len(test) == 200
    assert {r["level"] for r in train} == {1, 2, 3, 4, 5}
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert load_problems("arith", "train", per_level=40, seed=3) == train
    assert len(load_problems("arith", "test")) == 5 * problems.ARITH_PER_LEVEL


def test_limit_keeps_the_first_rows(math500):
    assert load_problems("math500", limit=7) == math500[:7]
    assert load_problems("gsm8k", "test", limit=0) == []


def test_bad_arguments():
    with pytest.raises(ValueError, match="split must be one of train, test; got None"):
        load_problems("gsm8k")
    with pytest.raises(ValueError, match="split must be one of test; got 'train'"):
        load_problems("math500", "train")
    with pytest.raises(ValueError, match="field_map applies to files"):
        load_problems("math500", field_map={"question": "q"})
    with pytest.raises(ValueError, match="per_level applies to the 'arith' source only"):
        load_problems("gsm8k", "test", per_level=3)
    with pytest.raises(ValueError, match="unknown problem source 'nonsense'"):
        load_problems("nonsense")
    with pytest.raises(ValueError, match="limit must be >= 0"):
        load_problems("math500", limit=-1)


# --- local files ------------------------------------------------------------------------------------

RECORDS = [
    {"problem": "What is 1+1?", "final": "2", "difficulty": "Level 1", "area": "Arithmetic"},
    {"problem": "What is 2+3?", "final": 5, "difficulty": 2},
    {"problem": "What is 10/4?", "worked": "10/4 is $\\boxed{\\frac{5}{2}}$."},
]
FIELD_MAP = {"question": "problem", "answer": "final", "level": "difficulty", "subject": "area", "solution": "worked"}
EXPECTED = [
    {"id": "probs-0", "question": "What is 1+1?", "answer": "2", "level": 1, "subject": "Arithmetic"},
    {"id": "probs-1", "question": "What is 2+3?", "answer": "5", "level": 2},
    {"id": "probs-2", "question": "What is 10/4?", "answer": "\\frac{5}{2}", "solution": RECORDS[2]["worked"]},
]


def write_as(fmt: str, directory: Path, records, name: str = "probs") -> Path:
    if fmt in ("jsonl", "jsonl.gz"):
        return write_jsonl(directory / f"{name}.{fmt}", records)
    if fmt == "json":
        path = directory / f"{name}.json"
        path.write_text(json.dumps(records, indent=2))
        return path
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(dict.fromkeys(key for rec in records for key in rec))  # from_pylist reads only row 1's keys
    path = directory / f"{name}.parquet"
    pq.write_table(pa.Table.from_pylist([{c: rec.get(c) for c in columns} for rec in records]), path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "json"])
def test_local_file_with_field_map(tmp_path, fmt):
    path = write_as(fmt, tmp_path, RECORDS)
    assert load_problems(str(path), field_map=FIELD_MAP) == EXPECTED
    assert load_problems(path, field_map=FIELD_MAP, limit=1) == EXPECTED[:1]


def test_local_parquet_with_field_map(tmp_path):
    # parquet columns share one type, so 'final' is all strings and 'difficulty' all ints here
    records = [{**rec, "final": rec.get("final") and str(rec["final"])} for rec in RECORDS]
    records[0]["difficulty"] = 1
    path = write_as("parquet", tmp_path, records)
    assert load_problems(str(path), field_map=FIELD_MAP) == EXPECTED


def test_local_file_keeps_its_own_ids_and_unmapped_names(tmp_path):
    path = write_jsonl(
        tmp_path / "mine.jsonl",
        [{"id": "a", "question": "q1", "answer": "1"}, {"id": 7, "question": "q2", "answer": "2", "level": "Level ?"}],
    )
    rows = load_problems(str(path))
    assert rows == [{"id": "a", "question": "q1", "answer": "1"}, {"id": "7", "question": "q2", "answer": "2"}]


def test_missing_answer_names_file_row_and_field(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", RECORDS[:2] + [{"problem": "What is 3+3?"}])
    with pytest.raises(ProblemDataError, match=r"data\.jsonl line 3: missing field 'answer' \(mapped from 'final'\)"):
        load_problems(str(path), field_map={"question": "problem", "answer": "final"})


def test_solution_without_boxed_is_named(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [{"question": "q", "solution": "it is 4"}])
    expected = r"data\.jsonl line 1: missing field 'answer' and no \\boxed\{\.\.\.\} in field 'solution'"
    with pytest.raises(ProblemDataError, match=expected):
        load_problems(str(path))


@pytest.mark.parametrize("bad", [None, "", "   "])
def test_empty_question_names_row(tmp_path, bad):
    path = write_as("json", tmp_path, [{"question": "q", "answer": "1"}, {"question": bad, "answer": "2"}], name="data")
    with pytest.raises(ProblemDataError, match=r"data\.json row 2: empty field 'question'"):
        load_problems(str(path))


def test_parquet_null_answer_names_row(tmp_path):
    records = [{"q": "a", "a": "1"}, {"q": "b", "a": "2"}, {"q": "c", "a": None}]
    path = write_as("parquet", tmp_path, records, name="data")
    with pytest.raises(ProblemDataError, match=r"data\.parquet row 3: empty field 'answer' \(mapped from 'a'\)"):
        load_problems(str(path), field_map={"question": "q", "answer": "a"})


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [{"question": "q", "answer": "1"}, "", '{"question": "q2", "answer": '])
    with pytest.raises(ProblemDataError, match=r"data\.jsonl line 3: invalid JSON"):
        load_problems(str(path))


def test_non_object_record_is_named(tmp_path):
    path = write_as("json", tmp_path, [{"question": "q", "answer": "1"}, ["q", "1"]], name="data")
    with pytest.raises(ProblemDataError, match=r"data\.json row 2: expected an object"):
        load_problems(str(path))


def test_duplicate_ids_are_an_error(tmp_path):
    records = [{"id": "x", "question": "q1", "answer": "1"}, {"id": "y", "question": "q2", "answer": "2"}]
    path = write_jsonl(tmp_path / "data.jsonl", records + [{"id": "x", "question": "q3", "answer": "3"}])
    with pytest.raises(ProblemDataError, match=r"data\.jsonl line 3: duplicate id 'x' \(first at line 1\)"):
        load_problems(str(path))


def test_bad_level_and_field_map_keys(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [{"question": "q", "answer": "1", "level": "hard"}])
    with pytest.raises(ProblemDataError, match=r"data\.jsonl line 1: field 'level' is 'hard'"):
        load_problems(str(path))
    with pytest.raises(ValueError, match="field_map keys must be among"):
        load_problems(str(path), field_map={"prompt": "question"})


def test_missing_local_file(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_problems(str(missing))


# --- data directory -----------------------------------------------------------------------------------


def test_missing_builtin_file_names_data_dir_and_override(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_problems("math500", data_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "math" / "test.jsonl.gz") in message
    assert "data dir" in message and "TTSTRAIN_DATA_DIR" in message


def test_env_var_overrides_data_dir(tmp_path, monkeypatch):
    (tmp_path / "gsm8k").mkdir()
    write_jsonl(tmp_path / "gsm8k" / "test.jsonl.gz", [{"question": "How many?", "answer": "1+1=2\n#### 2,000"}])
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(tmp_path))
    assert paths.data_dir() == tmp_path
    assert load_problems("gsm8k", "test") == [
        {"id": "gsm8k-test-0", "question": "How many?", "answer": "2000", "solution": "1+1=2\n#### 2,000"}
    ]
    other = tmp_path / "other"
    other.mkdir()
    assert paths.data_dir(other) == other  # an explicit argument beats the environment


def test_data_dir_lookup_errors(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="absent.*TTSTRAIN_DATA_DIR"):
        paths.data_dir()
    monkeypatch.delenv(paths.DATA_DIR_ENV)
    monkeypatch.setattr(paths, "repo_root", lambda: tmp_path / "checkout")
    with pytest.raises(FileNotFoundError) as err:
        paths.data_dir()
    assert str(tmp_path / "checkout" / "shared" / "data") in str(err.value)
    assert str(tmp_path / "shared" / "data") in str(err.value)
    assert "TTSTRAIN_DATA_DIR=" in str(err.value)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert paths.data_dir() == tmp_path / "shared" / "data"  # the checkout's sibling


def test_default_data_dir_and_repo_root(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.DATA_DIR_ENV, raising=False)
    assert (paths.repo_root() / "ttstrain" / "problems.py").is_file()
    monkeypatch.setattr(paths, "repo_root", lambda: tmp_path / "checkout")
    for where in (tmp_path / "shared" / "data", tmp_path / "checkout" / "shared" / "data"):
        where.mkdir(parents=True)
    assert paths.data_dir() == tmp_path / "checkout" / "shared" / "data"  # the checkout's own copy before its sibling


def test_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "c"))
    assert paths.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


def write_math_dir(root: Path, full_solutions: list[str]) -> Path:
    (root / "math").mkdir(parents=True)
    write_jsonl(root / "math" / "test.jsonl.gz", [
        {"problem": "P0", "solution": "\\boxed{0}", "answer": "0", "subject": "Algebra", "level": 1, "unique_id": "t/0"}
    ])
    full = [{"problem": "P0", "level": "Level 1", "type": "Algebra", "solution": "\\boxed{0}", "idx": 0}]
    full += [
        {"problem": f"P{i}", "level": "Level 2", "type": "Geometry", "solution": sol, "idx": i}
        for i, sol in enumerate(full_solutions, 1)
    ]
    write_jsonl(root / "math" / "full_test_5000.jsonl.gz", full)
    return root


def test_math_train_from_another_data_dir(tmp_path):
    root = write_math_dir(tmp_path, ["so $\\boxed{\\frac{1}{2}}$", "\\boxed{3}"])
    rows = load_problems("math_train", data_dir=root)
    assert [(r["id"], r["question"], r["answer"], r["level"], r["subject"]) for r in rows] == [
        ("math-full-1", "P1", "\\frac{1}{2}", 2, "Geometry"),
        ("math-full-2", "P2", "3", 2, "Geometry"),
    ]


def test_math_solution_without_boxed_names_line_and_field(tmp_path):
    root = write_math_dir(tmp_path, ["\\boxed{1}", "the answer is 2"])
    with pytest.raises(ProblemDataError) as err:
        load_problems("math_train", data_dir=root)
    assert str(err.value) == (
        f"{root / 'math' / 'full_test_5000.jsonl.gz'} line 3: missing field 'answer' "
        "and no \\boxed{...} in field 'solution'"
    )


def test_math_train_refuses_a_file_missing_math500_problems(tmp_path):
    root = write_math_dir(tmp_path, ["\\boxed{1}"])
    write_jsonl(root / "math" / "test.jsonl.gz", [
        {"problem": "not in the full set", "answer": "0", "unique_id": "t/9"}
    ])
    with pytest.raises(ProblemDataError, match="only 0 of the 1 MATH-500 problems"):
        load_problems("math_train", data_dir=root)


# --- Hugging Face Hub (mocked: no network here) ------------------------------------------------------


def test_hub_dataset_is_read_through_the_field_map(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        table = datasets.Dataset.from_list([
            {"problem": "What is 6*7?", "solution": "$\\boxed{42}$", "level": "Level 1"},
            {"problem": "What is 2^5?", "solution": "$\\boxed{32}$", "level": "Level 2"},
        ])
        return table if split else datasets.DatasetDict({"test": table})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = load_problems("someone/math-like:algebra", "test", field_map={"question": "problem"})
    assert calls == [("someone/math-like", "algebra", "test")]
    assert rows[0] == {
        "id": "math-like-test-0", "question": "What is 6*7?", "answer": "42", "level": 1, "solution": "$\\boxed{42}$"
    }
    assert [r["answer"] for r in rows] == ["42", "32"]
    # without a split, a dataset with one split is read whole
    assert load_problems("someone/math-like", field_map={"question": "problem"}) == rows
    assert calls[-1] == ("someone/math-like", None, None)


def test_hub_failure_is_a_clear_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'someone/math-like' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    expected = r"could not load Hugging Face dataset 'someone/math-like'.*pass that file's path"
    with pytest.raises(RuntimeError, match=expected):
        load_problems("someone/math-like", "train")
