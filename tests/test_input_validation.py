"""Bad input fails before anything is written, naming the file, the row and the field (issue #20).

Each case here once trained, converted or reported silently, or failed with a bare KeyError.
"""

from __future__ import annotations

import json
import math

import pytest

from ttstrain.io import write_parquet
from ttstrain.prompts import format_prompt
from ttstrain.validation import InputError

PROMPT = format_prompt("Start with 2.\n1. Add 3.\n2. Multiply by 2.\nWhat is the result?")
STEPS = ["2 + 3 = 5", "5 * 2 = 10", "The answer is \\boxed{10}."]


def prm_rows(n: int = 20) -> list[dict]:
    return [{"prompt": PROMPT, "completions": STEPS, "labels": [0.625, 0.5, 1.0], "problem_id": f"p{i % 5}",
             "final_correct": True} for i in range(n)]


def train_prm_cli(base_dir, data, out):
    from ttstrain.stages.train_prm import make_parser

    options = {"model_name_or_path": base_dir, "dataset_path": data, "output_dir": out, "max_steps": 2,
               "per_device_train_batch_size": 4, "validation_fraction": 0.2, "disable_tqdm": "true",
               "use_cpu": "true", "report_to": "none"}
    (cfg,) = make_parser().parse_args_and_config([a for k, v in options.items() for a in (f"--{k}", str(v))])
    return cfg


# ----------------------------------------------------------------------------------- PRM rows (defect 1)

@pytest.mark.parametrize("bad,message", [
    (float("nan"), "label 1 is nan"),
    (1.7, "label 1 is 1.7"),
    (-3.0, "label 1 is -3.0"),
    (None, "label 1 is None"),
])
def test_a_bad_label_stops_train_prm_before_anything_is_written(tmp_path, base_dir, bad, message):
    from ttstrain.stages.train_prm import run_train_prm

    rows = prm_rows()
    rows[6]["labels"] = [0.5, bad, 1.0]
    data = tmp_path / "labels.parquet"
    write_parquet(data, rows)
    out = tmp_path / "prm"
    with pytest.raises(InputError, match=f"labels.parquet, row 7, field 'labels': {message}"):
        run_train_prm(train_prm_cli(base_dir, data, out))
    assert not out.exists() or not any(out.iterdir())


def test_string_labels_are_named_as_strings(tmp_path):
    from ttstrain.prm.data import load_prm_rows

    rows = prm_rows()
    for r in rows:
        r["labels"] = ["0.5", "0.5", "1"]
    write_parquet(tmp_path / "labels.parquet", rows)
    with pytest.raises(InputError, match=r"row 1, field 'labels': label 0 is '0.5' \(str\)"):
        load_prm_rows(tmp_path / "labels.parquet")


def test_missing_column_short_labels_and_empty_file_say_where(tmp_path):
    from ttstrain.prm.data import load_prm_rows

    rows = prm_rows()
    write_parquet(tmp_path / "nolabels.parquet", [{k: v for k, v in r.items() if k != "labels"} for r in rows])
    with pytest.raises(InputError, match=r"nolabels.parquet: no column 'labels'"):
        load_prm_rows(tmp_path / "nolabels.parquet")

    rows[2]["labels"] = [1.0, 0.0]
    write_parquet(tmp_path / "short.parquet", rows)
    with pytest.raises(InputError, match=r"short.parquet, row 3, field 'labels': 2 labels for 3 steps"):
        load_prm_rows(tmp_path / "short.parquet")

    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("prompt", pa.string()), ("completions", pa.list_(pa.string())),
                        ("labels", pa.list_(pa.float64()))])
    pq.write_table(schema.empty_table(), tmp_path / "empty.parquet")
    with pytest.raises(InputError, match=r"empty.parquet: has no rows"):
        load_prm_rows(tmp_path / "empty.parquet")


def test_row_targets_refuses_nan_given_in_memory():
    from ttstrain.prm.data import row_targets

    row = {"prompt": PROMPT, "completions": STEPS, "labels": [0.5, math.nan, 1.0], "problem_id": "p9"}
    with pytest.raises(InputError, match=r"problem 'p9'.*label 1 is nan"):
        row_targets(row)
    assert row_targets({**row, "labels": [0.625, 0.5, 1.0]}) == ([0, 1, 2], [0.625, 0.5, 1.0])


# ----------------------------------------------------------------------------------- converters (defect 4)

def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.mark.parametrize("row,message", [
    ({"prompt": "q", "completions": "abc", "labels": [1, 0, 1]}, r"line 2, field 'completions': is str 'abc'; expected a list"),
    ({"prompt": "q", "completions": ["a", "b", "c"], "labels": "101"}, r"line 2, field 'labels': is str '101'; expected a list"),
    ({"prompt": "q", "completions": ["a"], "labels": ["1"]}, r"line 2, field 'labels': entry 0 is '1' \(str\)"),
    ({"prompt": "q", "completions": ["a"], "labels": [2.0]}, r"line 2, field 'labels': entry 0 is 2.0"),
    ({"prompt": "q", "completions": ["a", "b"], "labels": [True]}, r"line 2, field 'labels': 1 labels for 2 steps"),
    ({"prompt": "q", "completions": ["a"]}, r"line 2: has no field 'labels'"),
    ({"prompt": "q", "completions": [], "labels": []}, r"line 2, field 'completions': is empty"),
    ({"prompt": 3, "completions": ["a"], "labels": [True]}, r"line 2, field 'prompt': is int 3"),
])
def test_trl_converter_refuses_bad_rows_and_writes_nothing(tmp_path, row, message):
    from ttstrain.converters import main

    good = {"prompt": "q", "completions": ["a", "b"], "labels": [True, False]}
    src = _jsonl(tmp_path / "in.jsonl", [good, row])
    with pytest.raises(InputError, match=f"in.jsonl, {message}"):
        main(["trl", src, str(tmp_path / "out.parquet"), "--on_bad_row", "fail"])
    assert not (tmp_path / "out.parquet").exists()
    summary = main(["trl", src, str(tmp_path / "out.parquet")])  # the default: skipped, and reported
    assert summary["rows_converted"] == 1 and [bad["line"] for bad in summary["unreadable"]] == [2]


def test_math_shepherd_converter_refuses_a_non_string_input(tmp_path):
    from ttstrain.converters import main

    src = _jsonl(tmp_path / "ms.jsonl", [{"input": ["Step 1: a ки"], "label": "Step 1: a +"}])
    with pytest.raises(InputError, match=r"ms.jsonl: none of its 1 rows could be converted .*line 1, field 'input': is list"):
        main(["math_shepherd", src, str(tmp_path / "out.parquet")])


def test_empty_file_and_broken_json_line_are_errors(tmp_path):
    from ttstrain.converters import main

    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match=r"empty.jsonl: has no rows to convert"):
        main(["trl", str(tmp_path / "empty.jsonl"), str(tmp_path / "out.parquet")])
    good = json.dumps({"prompt": "q", "completions": ["a"], "labels": [True]})
    (tmp_path / "broken.jsonl").write_text(good + "\n" + good + "\n{\"prompt\": \"q\",\n")
    with pytest.raises(InputError, match=r"broken.jsonl, line 3: not valid JSON"):
        main(["trl", str(tmp_path / "broken.jsonl"), str(tmp_path / "out.parquet"), "--on_bad_row", "fail"])
    assert not (tmp_path / "out.parquet").exists()


def test_trl_converter_keeps_good_rows(tmp_path):
    from ttstrain.converters import main
    from ttstrain.io import read_parquet

    src = _jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "completions": ["a", "b"], "labels": [True, 0.25]}])
    main(["trl", src, str(tmp_path / "out.parquet")])
    (row,) = read_parquet(tmp_path / "out.parquet")
    assert row["completions"] == ["a", "b"] and row["labels"] == [1.0, 0.25]


# ----------------------------------------------------------------------------------- compute-optimal (defect 5)

def _search_folder(path, rows):
    from ttstrain.io import write_json

    write_parquet(path / "results.parquet", rows)
    write_parquet(path / "candidates.parquet", [{"problem_id": f"q{i}", "run": "best_of_n", "correct": i % 2 == 0,
                                                 "score": 0.5} for i in range(4)])
    write_json(path / "config.json", {})
    return path


def _results(n=4, **override):
    rows = [{"problem_id": f"q{i}", "method": "best_of_n_weighted", "budget": b, "generations": b,
             "accuracy": 0.5} for i in range(n) for b in (1, 2)]
    rows[3].update(override)
    return rows


@pytest.mark.parametrize("rows,message", [
    ([{k: v for k, v in r.items() if k != "accuracy"} for r in _results()], r"results.parquet: no column 'accuracy'"),
    (_results(accuracy=1.7), r"results.parquet, row 4, field 'accuracy': accuracy is 1.7"),
    (_results(accuracy=float("nan")), r"results.parquet, row 4, field 'accuracy': accuracy is nan"),
    ([{**r, "accuracy": str(r["accuracy"])} for r in _results()], r"row 1, field 'accuracy': accuracy is '0.5' \(str\)"),
    (_results(generations=0), r"results.parquet, row 4, field 'generations': is 0; expected a positive number"),
])
def test_compute_optimal_refuses_bad_results_and_writes_nothing(tmp_path, rows, message):
    from ttstrain.stages.compute_optimal import make_parser, run_compute_optimal

    folder = _search_folder(tmp_path / "search", rows)
    out = tmp_path / "co"
    (cfg,) = make_parser().parse_args_and_config(["--search_dirs", str(folder), "--output_dir", str(out)])
    with pytest.raises(InputError, match=message):
        run_compute_optimal(cfg, progress=False)
    assert not out.exists()


def test_compute_optimal_refuses_an_empty_results_file_and_bad_samples(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ttstrain.stages.compute_optimal import make_parser, run_compute_optimal

    folder = _search_folder(tmp_path / "search", _results())
    schema = pa.schema([("problem_id", pa.string()), ("method", pa.string()), ("budget", pa.int64()),
                        ("generations", pa.int64()), ("accuracy", pa.float64())])
    pq.write_table(schema.empty_table(), folder / "results.parquet")
    out = tmp_path / "co"
    (cfg,) = make_parser().parse_args_and_config(["--search_dirs", str(folder), "--output_dir", str(out)])
    with pytest.raises(InputError, match=r"results.parquet: has no results"):
        run_compute_optimal(cfg, progress=False)

    _search_folder(folder, _results())
    write_parquet(tmp_path / "samples.parquet", [{"problem_id": "q0", "correct": None}])
    (cfg,) = make_parser().parse_args_and_config(["--search_dirs", str(folder), "--output_dir", str(out),
                                                  "--samples", str(tmp_path / "samples.parquet")])
    with pytest.raises(InputError, match=r"samples.parquet, row 1, field 'correct': is None; expected true/false"):
        run_compute_optimal(cfg, progress=False)
    assert not out.exists()


# ----------------------------------------------------------------------------------- revision rows

def test_revision_sft_refuses_a_row_without_a_target(tmp_path, tiny_llama, char_tokenizer):
    from ttstrain.trainers.revision_config import RevisionConfig
    from ttstrain.trainers.revision_trainer import build_revision_trainer

    rows = [{"question": "Start with 2.", "previous_attempts": ["2 + 1 = 3"], "target": "2 + 2 = 4", "k": 1},
            {"question": "Start with 3.", "previous_attempts": ["3 + 1 = 4"], "target": "", "k": 1}]
    write_parquet(tmp_path / "rev" / "data" / "train-00000-of-00001.parquet", rows)
    cfg = RevisionConfig(output_dir=str(tmp_path / "out"), dataset_path=str(tmp_path / "rev"), use_cpu=True,
                         report_to="none")
    with pytest.raises(InputError, match=r"rev \(data/train-\*.parquet\), row 2, field 'target': is empty"):
        build_revision_trainer(cfg, model=tiny_llama, tokenizer=char_tokenizer)
