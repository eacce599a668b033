"""Pipeline stages runnable as commands (`ttstrain <stage>`); each takes a config dataclass.

The helpers below are the setup every generating stage shares: its problems and its generator,
both read from the same config field names (problems, split, per_level, limit, data_dir, seed;
backend, model_name_or_path, dtype, device, gpu_memory_utilization, max_batch_rows:
`ttstrain.stages.arguments`).
"""

from __future__ import annotations

from ttstrain.devices import DEFAULT_VLLM_SHARE, resolve_device
from ttstrain.generation import load_generator
from ttstrain.models import model_revision
from ttstrain.problems import load_problems
from ttstrain.prompts import few_shot_examples, resolve_prompt_format, resolve_prompt_kind
from ttstrain.runner.chunked import stage_fingerprint
from ttstrain.steps import LINE, resolve_step_format


def stage_problems(cfg) -> list[dict]:
    """The problems a stage config names (`per_level` applies to the built-in arithmetic world only)."""
    kw = {"per_level": cfg.per_level} if cfg.problems == "arith" else {}
    return load_problems(cfg.problems, cfg.split, data_dir=cfg.data_dir, limit=cfg.limit, seed=cfg.seed,
                         levels=cfg.levels, **kw)


def stage_generator(cfg, gpu_memory_utilization: float | None = None):
    """The generator a stage config names, in its dtype: the transformers backend on `cfg.device`, vLLM with
    `gpu_memory_utilization` (a share planned by the caller, e.g. search beside its verifier), else the
    config's, else vLLM's default share here (`ttstrain.devices.DEFAULT_VLLM_SHARE`)."""
    if cfg.backend == "transformers":
        backend_kw = {"dtype": cfg.dtype, "max_batch_rows": cfg.max_batch_rows, "device": resolve_device(cfg.device)}
    elif cfg.backend == "vllm":
        share = gpu_memory_utilization or cfg.gpu_memory_utilization or DEFAULT_VLLM_SHARE
        gpus = (cfg.gpus_per_worker or 1) if getattr(cfg, "executor", "local") == "ray" else 1
        if gpus < 1 and not (gpu_memory_utilization or cfg.gpu_memory_utilization):
            share = round(DEFAULT_VLLM_SHARE * gpus, 2)  # Ray workers sharing a GPU split its memory
        backend_kw = {"dtype": cfg.dtype, "gpu_memory_utilization": share}
        if gpus > 1:  # a Ray worker holding several GPUs splits the model over them
            backend_kw["tensor_parallel_size"] = int(gpus)
    else:
        backend_kw = {}
    return load_generator(cfg.backend, model=cfg.model_name_or_path, **backend_kw)


def stage_prompt_format(cfg, generator):
    """The prompt format a stage config names (`ttstrain.stages.arguments.PromptArguments`), its
    examples drawn from the few-shot pool, chat built with the generator's tokenizer."""
    shots = few_shot_examples(cfg.few_shot_source, cfg.few_shot, cfg.seed, cfg.data_dir, levels=cfg.levels)
    return resolve_prompt_format(cfg.prompt_format, shots, cfg.system_prompt, generator.tokenizer,
                                 cfg.step_separator, cfg.solution_end)


def run_fingerprint(cfg) -> dict:
    """What a resume of a generating stage must match: the fields that count (`ttstrain.runner.chunked.
    stage_fingerprint`), the step format as resolved, and the policy's revision."""
    fingerprint = stage_fingerprint(cfg)
    if "step_separator" in fingerprint:
        # the resolved step format counts, not how it was asked for; LINE (every run before step formats
        # had it) is left out, so those runs still resume when it resolves the same
        kind = resolve_prompt_kind(fingerprint.get("prompt_format", "auto"), bool(fingerprint.get("few_shot")))
        steps = resolve_step_format(fingerprint.pop("step_separator"), fingerprint.pop("solution_end"), kind)
        if steps != LINE:
            fingerprint["step_format"] = steps.record()
    # fetched when a hub model is not cached yet, so the first run records the commit its resume will find
    return {**fingerprint, "model_revision": model_revision(cfg.model_name_or_path, fetch=True)}
