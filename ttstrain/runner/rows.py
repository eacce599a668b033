"""One reader of stage outputs (samples, search results, chains, scored samples): path, columns, checks.

    from ttstrain.runner.rows import read_rows
    rows = read_rows("runs/demo", default_name="samples.parquet",
                     columns=["problem_id", "answer", "correct"], required=["problem_id", "correct"])

A folder means its `default_name` file (a `ttstrain sample` folder holds samples.parquet, a search
folder results.parquet and candidates.parquet). Only the columns asked for are read (a
candidates file holds every text), a missing file or column is an `InputError` naming the file,
and `required` columns are checked row by row (`ttstrain.validation.check_sample_rows`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ttstrain.validation import InputError, check_sample_rows


def rows_path(path: str | Path, default_name: str | None = None) -> Path:
    """The parquet file a stage argument names: the file itself, or `default_name` inside a folder."""
    path = Path(path)
    return path / default_name if default_name and path.is_dir() else path


def row_columns(path: str | Path) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_schema(path).names


def read_rows(path: str | Path, *, default_name: str | None = None, columns: Sequence[str] | None = None,
              required: Sequence[str] = (), origin: str | None = None) -> list[dict]:
    """Rows of a stage output; `columns` (those present) or all; `required` checked on every row.

    `origin` names the option the path came from (`--base_samples`) in front of the file in errors.
    """
    import pyarrow.parquet as pq

    path = rows_path(path, default_name)
    where = f"{origin} {path}" if origin else path
    if not path.exists():
        raise InputError(where, "does not exist")
    have = row_columns(path)
    wanted = None if columns is None else [c for c in columns if c in have]
    rows = pq.read_table(path, columns=wanted).to_pylist()
    if required:
        try:
            check_sample_rows(rows, path, tuple(required), columns=have)
        except InputError as e:
            if not origin:
                raise
            raise InputError(where, e.detail, e.row, e.field) from None
    return rows


def recorded_prompt_format(path: str | Path) -> dict | None:
    """The prompt format recorded by the stage that wrote `path` (its config.json beside the data: in the
    folder, the file's folder, or above a `data/` folder); None when the writer recorded none."""
    import json

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    for candidate in (folder / "config.json", folder.parent / "config.json" if folder.name == "data" else None):
        if candidate is not None and candidate.is_file():
            try:
                return json.loads(candidate.read_text()).get("prompt_format")
            except (json.JSONDecodeError, AttributeError):
                return None
    return None
