"""Where ttstrain finds its offline data and keeps its caches.

    from ttstrain.paths import data_dir, cache_dir
    data_dir()                  # the offline data (MATH, GSM8K, ...); see data_dir() for the lookup order
    data_dir("/mnt/data")       # an explicit directory wins over everything else
    cache_dir()                 # $TTSTRAIN_CACHE or ~/.cache/ttstrain, created on demand

Set TTSTRAIN_DATA_DIR to point every command at another copy of the data.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "TTSTRAIN_DATA_DIR"
CACHE_ENV = "TTSTRAIN_CACHE"


def repo_root() -> Path:
    """The checkout that holds the `ttstrain` package (the package directory's parent)."""
    return Path(__file__).resolve().parent.parent


def data_dir(override: str | Path | None = None) -> Path:
    """The offline data directory.

    Looked up in this order: `override`, then $TTSTRAIN_DATA_DIR, then `<repo>/shared/data`, then
    `<repo>/../shared/data` (a checkout beside the shared data). A directory named explicitly (argument
    or environment) must exist: it is an error, not a reason to fall back to the defaults.
    """
    for explicit, origin in ((override, "data_dir argument"), (os.environ.get(DATA_DIR_ENV), f"${DATA_DIR_ENV}")):
        if explicit:
            path = Path(explicit).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"data directory {path} (from {origin}) does not exist")
            return path
    candidates = [repo_root() / "shared" / "data", repo_root().parent / "shared" / "data"]
    for path in candidates:
        if path.is_dir():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(
        f"no data directory found (tried {tried}); set {DATA_DIR_ENV}=/path/to/shared/data or pass data_dir=..."
    )


def cache_dir() -> Path:
    """$TTSTRAIN_CACHE or ~/.cache/ttstrain, created if missing."""
    path = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ttstrain").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
