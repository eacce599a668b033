"""Pipeline stages runnable as commands (`ttstrain <stage>`); each takes a config dataclass.

The helpers below are the setup every generating stage shares: its problems and its generator,
both read from the same config field names (problems, split, per_level, limit, data_dir, seed;
backend, model, dtype, max_batch_rows).
"""

from __future__ import annotations


def stage_problems(cfg) -> list[dict]:
    """The problems a stage config names (`per_level` applies to the built-in arithmetic world only)."""
    from ttstrain.problems import load_problems

    kw = {"per_level": cfg.per_level} if cfg.problems == "arith" else {}
    return load_problems(cfg.problems, cfg.split, data_dir=cfg.data_dir, limit=cfg.limit, seed=cfg.seed, **kw)


def stage_generator(cfg):
    """The generator a stage config names (dtype and batch rows matter to the transformers backend only)."""
    from ttstrain.generation import load_generator

    backend_kw = {"dtype": cfg.dtype, "max_batch_rows": cfg.max_batch_rows} if cfg.backend == "transformers" else {}
    return load_generator(cfg.backend, model=cfg.model, **backend_kw)
