"""Where models run, and how one GPU is shared between a vLLM engine and the verifier beside it.

vLLM claims a fixed share of its GPU's memory when its engine starts (`gpu_memory_utilization`) and
refuses to start when less is free; a PRM (and its reference model, and their prefix caches) loaded
on the same GPU must fit in what is left. `vllm_memory_share` picks the share: the one asked for, or
0.9 when nothing else runs on the engine's GPU, or 0.9 less what the verifier needs
(`verifier_bytes`: its weights at the dtype it loads in, its prefix caches, and a workspace for its
forward passes) when it runs there too.

    from ttstrain.devices import resolve_device, vllm_memory_share
    resolve_device("auto")                       # "cuda" when torch sees a GPU, else "cpu"
    vllm_memory_share(None, verifier_device="cuda", verifier_need=6 << 30, gpu_bytes=80 << 30)   # 0.82
"""

from __future__ import annotations

import json
import math
import os

import torch

from ttstrain.models import local_model_folder, resolve_model

DEFAULT_VLLM_SHARE = 0.9
MIN_VLLM_SHARE = 0.2  # below this the engine has too little KV cache to be worth running beside the verifier
WORKSPACE_BYTES = 2 << 30  # the verifier's activations for one batch, allocator slack, CUDA context
_SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                      "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def resolve_device(device: str | torch.device = "auto") -> str:
    """A model's device: `auto` is cuda when torch sees a GPU, else cpu; cpu, cuda and cuda:N pass through."""
    if str(device) == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind = torch.device(device).type  # refuses a malformed name
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return str(device)


def checkpoint_bytes(name_or_path: str | os.PathLike, dtype: str = "auto") -> int | None:
    """Bytes a checkpoint's weights take loaded in `dtype` ("auto": as stored), from its safetensors headers
    (no weight is read); None when it is not local or not safetensors."""
    folder = local_model_folder(name_or_path)
    files = sorted(folder.glob("*.safetensors")) if folder is not None else []
    per_element = None if dtype == "auto" else torch.empty(0, dtype=getattr(torch, dtype)).element_size()
    if not files:
        return _hub_checkpoint_bytes(os.fspath(name_or_path), per_element) if folder is None else None
    total = 0
    for f in files:
        with open(f, "rb") as handle:
            header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
        for key, entry in header.items():
            if key == "__metadata__":
                continue
            n = 1
            for d in entry["shape"]:
                n *= d
            total += n * (per_element or _SAFETENSORS_BYTES.get(entry["dtype"], 4))
    return total


def _hub_checkpoint_bytes(repo: str, per_element: int | None) -> int | None:
    """The same from the hub's safetensors metadata of a model not downloaded yet (None: offline, or no such repo)."""
    if "/" not in repo or os.path.isabs(repo):
        return None
    try:
        from huggingface_hub import get_safetensors_metadata

        counts = get_safetensors_metadata(repo).parameter_count  # dtype -> parameters
    except Exception:
        return None
    return sum(n * (per_element or _SAFETENSORS_BYTES.get(kind, 4)) for kind, n in counts.items())


def prm_reference_model(prm_path: str | os.PathLike) -> str | None:
    """The reference model a ttstrain PRM with reference features loads beside it (None: it has none)."""
    folder = local_model_folder(prm_path)
    config = folder / "config.json" if folder is not None else None
    if config is None or not config.is_file():
        return None
    spec = (json.loads(config.read_text()).get("ttstrain_prm") or {}).get("reference_features")
    return spec.get("reference_model") if spec else None


def verifier_bytes(models: list[str], dtype: str = "auto", prefix_cache_bytes: int = 0) -> int:
    """What a verifier needs on its GPU: its models' weights, a prefix cache per model, a workspace.
    A model whose size cannot be read from local files is refused: the share cannot be planned without it."""
    total = WORKSPACE_BYTES
    for name in models:
        size = checkpoint_bytes(resolve_model(name), dtype)
        if size is None:
            raise ValueError(f"cannot size the verifier model {name!r} (no local safetensors files, and the hub's "
                             f"metadata could not be read): set --gpu_memory_utilization, or put the verifier on "
                             f"another device with --prm_device")
        total += size + prefix_cache_bytes
    return total


def gpu_total_bytes() -> int:
    """Memory of the first visible GPU (the one vLLM's engine takes), read through NVML where vLLM's dependency
    nvidia-ml-py is installed, so CUDA is not initialised in this process before vLLM starts its engine."""
    try:
        import pynvml  # noqa: PLC0415 - optional, comes with vLLM

        pynvml.nvmlInit()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
        handle = (pynvml.nvmlDeviceGetHandleByIndex(int(visible)) if visible.isdigit() else
                  pynvml.nvmlDeviceGetHandleByUUID(visible) if visible else pynvml.nvmlDeviceGetHandleByIndex(0))
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
    except Exception:
        return torch.cuda.get_device_properties(0).total_memory


def same_gpu(device: str) -> bool:
    """Is `device` the GPU vLLM's engine runs on (the first visible one)?"""
    return device in ("cuda", "cuda:0")


def pooling_engine_share(weights_bytes: int, gpu_bytes: int) -> float:
    """The GPU share of a PRM served by vLLM's pooling runner beside a vLLM policy: its weights and a workspace
    of 10% of the GPU for activations and the few KV blocks a prefill-only engine needs, at least 0.1."""
    return max(0.1, math.ceil((weights_bytes / gpu_bytes + 0.1) * 100) / 100)


def vllm_memory_share(requested: float | None, *, verifier_device: str | None, verifier_need: int,
                      gpu_bytes: int) -> float:
    """vLLM's `gpu_memory_utilization`: `requested` when set, else DEFAULT_VLLM_SHARE less the verifier's need
    when the verifier runs on the engine's GPU (see the module docstring)."""
    if requested is not None:
        return requested
    if verifier_device is None or not same_gpu(verifier_device):
        return DEFAULT_VLLM_SHARE
    share = math.floor((DEFAULT_VLLM_SHARE - verifier_need / gpu_bytes) * 100) / 100  # never more than planned
    if share < MIN_VLLM_SHARE:
        raise ValueError(f"the verifier needs {verifier_need / 2**30:.1f} GiB of this GPU's {gpu_bytes / 2**30:.1f} "
                         f"GiB, leaving vLLM a share of {share} (under {MIN_VLLM_SHARE}): put the verifier on another "
                         "GPU (--prm_device cuda:1), load it in bfloat16 (--prm_dtype bfloat16), shrink its prefix "
                         "cache (--prm_prefix_cache_mb), or set --gpu_memory_utilization yourself")
    return share
