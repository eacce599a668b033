"""Small output helpers: atomic writes of JSON and parquet, and the resolved config beside an output.

Every stage writes through these, so a killed run never leaves a half-written file under its
final name (write to a temporary name in the same folder, then rename).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from ttstrain import __version__


def _atomic_target(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_json(path: str | Path, obj: Any) -> Path:
    path = Path(path)
    tmp = _atomic_target(path)
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    tmp = _atomic_target(path)
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_parquet(path: str | Path, rows: Sequence[dict]) -> Path:
    """Rows (a list of dicts with the same keys) to one parquet file, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    tmp = _atomic_target(path)
    pq.write_table(pa.Table.from_pylist(list(rows)), tmp)
    os.replace(tmp, path)
    return path


def read_parquet(path: str | Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def config_dict(cfg) -> dict:
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)


def write_resolved_config(out_dir: str | Path, cfg, name: str = "config.json", **extra) -> Path:
    """The config that made an output, with anything resolved at run time (seeds, versions, identity)."""
    return write_json(Path(out_dir) / name, {**config_dict(cfg), **extra, "ttstrain_version": __version__})
