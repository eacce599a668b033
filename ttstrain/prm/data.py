"""PRM datasets: rows in TRL's stepwise-supervision schema (prompt, completions, labels) -> training targets.

Reading (`load_prm_rows`: a label-mc folder, parquet files or a glob, every row checked with the
file, row and field named in an error), the split by question (`split_by_question`), the targets a
row trains on (`row_targets`: soft, hard or orm), the prompt and step format the rows were written
in (`rows_prompt_format`: the dataset's record, else LINE steps unless the trainer's config says
otherwise) and tokenisation with labels where `ttstrain.prm.checkpoint.prm_inputs` places them for the
PRM's layout (step format, label placement, BOS), the same function the scorer reads them with.
Used by the trainer, by eval-prm (held-out rows) and by the reference-feature fit.

    from ttstrain.prm.data import load_prm_rows, split_by_question
    train, val = split_by_question(load_prm_rows("runs/default/label_mc_demo"), 0.1, seed=0)
"""

from __future__ import annotations

import glob
import os
import random
from pathlib import Path

from ttstrain.prm.checkpoint import DEFAULT_LAYOUT, PRMLayout, prm_inputs
from ttstrain.prompts import PromptFormat
from ttstrain.steps import StepFormat, check_same_steps, resolve_step_format
from ttstrain.validation import InputError, check_prm_rows, number_list, probability


def parquet_files(path: str | os.PathLike) -> list[str]:
    """Parquet files of a label-mc output folder (`data/train-*.parquet`), a folder, a file or a glob."""
    p = Path(path)
    if p.is_dir():
        for pattern in ("data/train-*.parquet", "train-*.parquet", "data/*.parquet", "*.parquet"):
            files = sorted(glob.glob(str(p / pattern)))
            if files:
                return files
        raise FileNotFoundError(f"no parquet files under {p} (expected a label-mc output with data/train-*.parquet)")
    if p.is_file():
        return [str(p)]
    files = sorted(glob.glob(str(path)))
    if not files:
        raise FileNotFoundError(f"dataset_path {str(path)!r} is not a folder, a file or a glob that matches anything")
    return files


def load_prm_rows(path: str | os.PathLike):
    """The PRM dataset at `path` as an in-memory `datasets.Dataset` (no cache files, safe for many processes)."""
    import pyarrow as pa
    from datasets import Dataset

    tables = [_checked_table(f) for f in parquet_files(path)]
    table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    return Dataset(table)


def _checked_table(path: str):
    """One parquet file of PRM rows, checked row by row (file, row and field in every error)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    wanted = [c for c in ("prompt", "completions", "labels", "hard_labels", "final_correct") if c in table.column_names]
    check_prm_rows(table.select(wanted).to_pylist(), path, columns=table.column_names)
    return table


def split_by_question(dataset, fraction: float, seed: int, column: str = "problem_id"):
    """(train, validation) with no question on both sides; validation is None when fraction is 0.

    The questions (distinct values of `column`) are sorted, shuffled with `seed` and the first
    round(fraction * n) (at least 1) are held out, so the split depends only on the set of
    questions and the seed, not on row order or the number of processes.
    """
    if fraction <= 0:
        return dataset, None
    if column not in dataset.column_names:
        raise ValueError(f"the dataset has no {column!r} column to split by question; columns: {dataset.column_names}")
    ids = dataset[column]
    questions = sorted(set(ids), key=lambda q: (str(type(q)), str(q)))
    if len(questions) < 2:
        raise ValueError(f"validation_fraction={fraction} needs at least 2 questions, the dataset has {len(questions)}")
    random.Random(f"prm-validation-split-{seed}").shuffle(questions)
    n_val = min(len(questions) - 1, max(1, round(fraction * len(questions))))
    held_out = set(questions[:n_val])
    val_idx = [i for i, q in enumerate(ids) if q in held_out]
    train_idx = [i for i, q in enumerate(ids) if q not in held_out]
    return dataset.select(train_idx), dataset.select(val_idx)


def row_targets(row: dict, label_mode: str = "soft", hard_threshold: float = 0.0,
                hard_labels_from_dataset: bool = False) -> tuple[list[int], list[float]]:
    """(step indices, targets) a row trains on.

    soft: every step, target = its label unchanged. hard: every step, target = 1.0 if the label
    is above `hard_threshold` (or the row's `hard_labels`) else 0.0. orm: only the last step,
    target = `final_correct` (the last label if the row has no such column).
    """
    source = f"PRM row of problem {row.get('problem_id')!r}"
    labels = [probability(x, source, None, "labels", what=f"label {k}") for k, x in
              enumerate(number_list(row["labels"], source, None, "labels"))]
    n = len(row["completions"])
    if len(labels) != n:
        raise InputError(source, f"{n} steps but {len(labels)} labels", None, "labels")
    if label_mode == "soft":
        return list(range(n)), labels
    if label_mode == "hard":
        if hard_labels_from_dataset:
            hard = list(row["hard_labels"])
            if len(hard) != n:
                raise ValueError(f"row has {n} steps but {len(hard)} hard_labels")
            return list(range(n)), [1.0 if float(x) > 0.5 else 0.0 for x in hard]
        return list(range(n)), [1.0 if float(x) > hard_threshold else 0.0 for x in labels]
    if label_mode == "orm":
        final = row.get("final_correct")
        return [n - 1], [float(labels[-1] if final is None else bool(final))]
    raise ValueError(f"unknown label_mode {label_mode!r}; use soft, hard or orm")


def rows_prompt_format(recorded: dict | None, step_separator: str = "auto", solution_end: str = "auto") -> dict:
    """The prompt format record (with its step format) of PRM rows: the one their writer recorded, else the
    plain format with the step format given (`auto`: LINE, the one TRL's `"\\n"` default makes). A step format
    given for rows that record another is refused, naming both."""
    if recorded is None:
        return PromptFormat("plain", steps=resolve_step_format(step_separator, solution_end, "plain")).record()
    steps = StepFormat.from_record(recorded.get("step_format"))
    if (step_separator, solution_end) != ("auto", "auto"):
        wanted = resolve_step_format(step_separator, solution_end, recorded.get("kind", "plain"))
        check_same_steps(steps.record(), wanted.record(), "the PRM dataset",
                         f"--step_separator {step_separator} --solution_end {solution_end}")
    return {**recorded, "step_format": steps.record()}


def without_worked_examples(record: dict, tokenizer, *datasets):
    """(record, datasets) for a PRM that reads each question without the policy's worked examples: the record
    with none (marked `examples_dropped`), each dataset's `prompt` rebuilt in it from the row's `question`.
    Rows whose prompts hold no examples are returned as they are."""
    if not record.get("examples"):
        return (record, *datasets)
    if record.get("kind") == "few_shot":
        raise ValueError("drop_worked_examples: a few-shot prompt is its worked examples; a PRM can drop them "
                         "from a chat prompt (the examples as earlier turns), not from this one")
    record = {**record, "examples": [], "examples_dropped": True}
    fmt = PromptFormat.from_record(record, tokenizer)
    out = []
    for ds in datasets:
        if ds is not None:
            if "label_positions" in ds.column_names:
                raise ValueError("drop_worked_examples: these rows are already tokenized; pass raw rows")
            if "question" not in ds.column_names:
                raise ValueError(f"drop_worked_examples: the PRM rows have no 'question' field to rebuild their "
                                 f"prompts from (columns: {', '.join(ds.column_names)})")
            ds = ds.map(lambda row: {"prompt": fmt.build(row["question"])}, desc="prompts without worked examples")
        out.append(ds)
    return (record, *out)


def tokenize_row(row: dict, tokenizer, label_mode: str = "soft", hard_threshold: float = 0.0,
                 hard_labels_from_dataset: bool = False, max_length: int | None = None,
                 layout: PRMLayout = DEFAULT_LAYOUT) -> dict:
    """One row -> input_ids, label_positions (token indices of the labelled steps' values), label_values, length.

    Positions come from `prm_inputs` with the PRM's `layout` (by default `step_end_positions` on the
    prompt and steps exactly as the policy wrote them, with the tokenizer's special tokens); the
    scorer reads the same positions. Truncation to `max_length` drops the labels of steps whose
    value sits past it (a row can end with no label), as TRL's `max_length` does; how many it
    dropped is `labels_truncated`. TRL's `train_on_last_step_only` is `label_mode="orm"` on rows
    without `final_correct` (their last label, here unrounded).
    """
    st = prm_inputs(tokenizer, row["prompt"], list(row["completions"]), layout)
    steps, values = row_targets(row, label_mode, hard_threshold, hard_labels_from_dataset)
    ids = st.input_ids
    positions = [st.step_end_positions[i] for i in steps]
    if max_length is not None and len(ids) > max_length:
        ids = ids[:max_length]
        kept = [(p, v) for p, v in zip(positions, values) if p < max_length]
        positions, values = [p for p, _ in kept], [v for _, v in kept]
    return {"input_ids": ids, "label_positions": positions, "label_values": values, "length": len(ids),
            "labels_truncated": len(steps) - len(positions)}


def tokenize_dataset(dataset, tokenizer, label_mode: str = "soft", hard_threshold: float = 0.0,
                     hard_labels_from_dataset: bool = False, max_length: int | None = None,
                     num_proc: int | None = None, desc: str = "tokenizing", return_summary: bool = False,
                     layout: PRMLayout = DEFAULT_LAYOUT):
    """`tokenize_row` over a dataset, once, keeping only the tokenised columns; rows with no label are dropped.

    With `return_summary`, also what `max_length` cost: (dataset, {"rows_truncated", "labels_truncated",
    "rows_without_label"})."""
    from datasets import Features, Sequence, Value

    features = Features({"input_ids": Sequence(Value("int32")), "label_positions": Sequence(Value("int32")),
                         "label_values": Sequence(Value("float64")), "length": Value("int32"),
                         "labels_truncated": Value("int32")})
    out = dataset.map(tokenize_row, fn_kwargs=dict(tokenizer=tokenizer, label_mode=label_mode,
                                                   hard_threshold=hard_threshold,
                                                   hard_labels_from_dataset=hard_labels_from_dataset,
                                                   max_length=max_length, layout=layout),
                      remove_columns=dataset.column_names, features=features, num_proc=num_proc, desc=desc)
    lost = out["labels_truncated"]
    summary = {"rows_truncated": sum(1 for n in lost if n), "labels_truncated": int(sum(lost)),
               "rows_without_label": sum(1 for p in out["label_positions"] if not p)}
    if summary["rows_without_label"]:
        out = out.filter(lambda pos: len(pos) > 0, input_columns=["label_positions"],
                         desc="dropping rows with no label")
    return (out, summary) if return_summary else out


def truncation_warning(summary: dict, max_length: int | None) -> str | None:
    """A sentence when truncation to `max_length` cost labels, else None."""
    if not summary.get("labels_truncated"):
        return None
    return (f"max_length {max_length} truncated {summary['rows_truncated']} rows, dropping {summary['labels_truncated']} "
            f"step labels ({summary['rows_without_label']} rows lost every label and were left out); raise max_length "
            "(default: the model's context length)")
