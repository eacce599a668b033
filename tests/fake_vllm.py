"""A stand-in for vLLM 0.32.0's offline engine (`vllm.LLM`), built from vLLM 0.32.0's own source.

The model is a script (`script(prompt, seed) -> token ids`: what the model would write, tokenized
with the real tokenizer); everything around it follows vLLM 0.32.0's code path for one request, one
token per engine step, so `VLLMGenerator` can be tested on CPU against what vLLM really returns.
Where each behaviour comes from (paths inside the `vllm-0.32.0` wheel):

* Prompt tokens: the tokenizer's `encode(prompt)` with special tokens (`renderers/params.py`,
  `TokenizeParams.add_special_tokens = True`). The tokenizer is the real one, loaded with
  `AutoTokenizer.from_pretrained(tokenizer or model)` (`tokenizers/hf.py`,
  `HfTokenizer.from_pretrained`); `get_tokenizer()` returns it.
* Sampling parameters (`sampling_params.py`, `SamplingParams.__post_init__`,
  `update_from_generation_config`): `stop` becomes a list; `seed=-1` is None; temperature 0 is greedy
  (top_p reset to 1, n must be 1) and the seed then plays no part (`sampling_type`); the tokenizer's
  `eos_token_id` is the request's EOS unless `ignore_eos`; the generation config's other
  `eos_token_id`s join `stop_token_ids`; an empty stop string is refused (`_verify_args`).
  `max_tokens` defaults to 16, `skip_special_tokens` and `spaces_between_special_tokens` to True,
  `include_stop_str_in_output` to False.
* Per-request seed: each request's seed is its own sampling stream
  (`v1/worker/gpu/sample/states.py` `SamplingStates.add_request` stores it per request;
  `gumbel.py` draws from `murmur3(seed, position, ...)`), so a continuation depends on its prompt
  and seed only, not on the batch. Here the script gets the seed (None when greedy or unseeded).
* Token-level stops, checked after each token is appended (`v1/core/sched/utils.py`, `check_stop`,
  called from `Scheduler._update_request_with_output`), in this order: the EOS id -> finished
  "stop" with stop_reason None; a `stop_token_ids` id -> "stop" with stop_reason that id;
  `num_output_tokens >= max_tokens` -> "length" (`v1/request.py`, `_FINISHED_REASON_MAP`). An EOS
  that is also the max_tokens-th token is "stop".
* Detokenization and stop strings (`v1/engine/detokenizer.py`): `FastIncrementalDetokenizer`
  (the tokenizer is a `transformers.TokenizersBackend`) decodes with
  `tokenizers.decoders.DecodeStream(ids=prompt_token_ids, skip_special_tokens=...)`, so the text
  starts empty: it is the generated text only, read with the prompt as context.
  `BaseIncrementalDetokenizer.update(new_token_ids, stop_terminated)` runs after every engine step
  with `stop_terminated = finish_reason == STOP` (`v1/engine/output_processor.py`,
  `OutputProcessor.process_outputs`): a token that stopped the request (the EOS, a stop token id)
  is kept in `token_ids` but not detokenized when `include_stop_str_in_output` is False. Stop
  strings are then searched incrementally, only in the text the new tokens added (plus the
  stop string's length - 1 before it), by `check_stop_strings`: of several matches the one that
  completes earliest wins (ties: list order); the text is cut to the start of the stop string
  (`include_stop_str_in_output=False`) or to its end (True). `token_ids` keep every token up to and
  including the one that completed the stop string (`bisect_left(token_offsets, stop_end, lo=1)`;
  only later tokens of the same step are dropped). The output processor then sets
  finish_reason "stop" and stop_reason the stop string, overriding a "length" finish of the same
  step, and aborts the request in the engine (`reqs_to_abort`), so no later token is generated.
* Outputs (`outputs.py` `CompletionOutput` and `RequestOutput`; `output_processor.py`
  `RequestState._new_completion_output`): a finished request's `text` is the whole detokenized
  text, `token_ids` the detokenizer's output ids, `finish_reason` "stop" or "length", and
  `LLM.generate` returns one `RequestOutput` per prompt in the order given
  (`entrypoints/llm.py`, `LLM.generate`).

* Engine construction (`entrypoints/llm.py` `LLM.__init__`, `engine/arg_utils.py` `EngineArgs`): a
  keyword that is neither one of `LLM.__init__`'s parameters nor an `EngineArgs` field is a
  `TypeError`; `model` is a local folder or a hub id (this machine is offline, so a name that is not a
  folder fails as the hub lookup would, with an `OSError`); `dtype="auto"` is the checkpoint's
  `torch_dtype`, float32 checkpoints downcast to bfloat16 (`config/model.py` `_resolve_auto_dtype`, CUDA's
  supported dtypes); `max_model_len` defaults to the config's `max_position_embeddings`. The resolved
  values are on `llm.model_config` (`model`, `dtype`, `max_model_len`, `runner_type`), as on the real one.
* GPU memory (`v1/worker/utils.py` `request_memory`, default share `CacheConfig.gpu_memory_utilization`
  0.92): each engine claims `gpu_memory_utilization` x the device's memory at start-up and raises
  `ValueError("Free memory on device ... is less than desired GPU memory utilization ...")` when less
  is free. `DEVICE` is one simulated GPU shared by every engine of the process: engines hold their share
  until `llm.llm_engine.engine_core.shutdown()` (`v1/engine/core_client.py`), and other users of the
  device (a PRM) are `DEVICE.other_bytes`.
* Sampling parameters are validated as `SamplingParams._verify_args` does: temperature finite and in
  [0, 2] (`VLLMValidationError`, a `ValueError`).
* Prompt length (`v1/engine/input_processor.py` `_validate_prompt_len`): a prompt longer than
  `max_model_len`, or as long (no room for one output token), fails the whole `generate` call with
  `VLLMValidationError` before any request runs; a request stops with "length" once prompt + output
  reach `max_model_len` (`v1/core/sched/utils.py` `check_stop`).
* Prefix caching (`v1/core/kv_cache_manager.py` `get_computed_blocks`; block size 16, CUDA's default):
  a request reuses the full 16-token blocks of its prompt that an earlier request of the engine
  computed (blocks are cached when allocated, so copies of a prompt in one call hit each other's), at
  most `len(prompt) - 1` tokens (the last token is always recomputed for its logits);
  `RequestOutput.num_cached_tokens` says how many. No eviction is modelled (the cache never fills).

Left out: n > 1 per request, min_tokens, logprobs, repetition detection, speculative decoding
(several tokens per step), streaming outputs, cache eviction.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import sys
import types
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from tokenizers.decoders import DecodeStream

VERSION = "0.32.0"
_SAMPLING_EPS = 1e-5  # sampling_params.py: below it, temperature is greedy
_BLOCK_SIZE = 16  # CacheConfig.block_size on CUDA
GIB = 1 << 30

# LLM.__init__'s own parameters and EngineArgs' fields (vllm-0.32.0: entrypoints/llm.py, engine/arg_utils.py),
# read from the wheel with ast; anything else is a TypeError there.
_LLM_ARGS = frozenset("""model runner convert tokenizer tokenizer_mode skip_tokenizer_init trust_remote_code
allowed_local_media_path allowed_media_domains tensor_parallel_size dtype quantization revision tokenizer_revision
chat_template seed gpu_memory_utilization cpu_offload_gb offload_group_size offload_num_in_group offload_prefetch_step
offload_params enforce_eager enable_return_routed_experts return_sampling_mask disable_custom_all_reduce hf_token
hf_overrides mm_processor_kwargs pooler_config structured_outputs_config profiler_config attention_config
kv_cache_memory_bytes compilation_config quantization_config logits_processors spec_method spec_model
spec_tokens""".split())
_ENGINE_ARGS = frozenset("""model_weights served_model_name hf_config_path enable_prompt_embeds download_dir
load_format config_format kv_cache_dtype max_model_len distributed_executor_backend pipeline_parallel_size
data_parallel_size block_size enable_prefix_caching prefix_caching_hash_algo disable_sliding_window
disable_cascade_attn max_num_batched_tokens max_num_seqs max_logprobs logprobs_mode disable_log_stats code_revision
enable_lora max_loras max_lora_rank num_gpu_blocks_override enable_chunked_prefill generation_config
override_generation_config enable_sleep_mode model_impl attention_backend async_scheduling optimization_level
performance_mode shutdown_timeout""".split())  # the EngineArgs fields besides LLM's own that ttstrain may pass


class VLLMValidationError(ValueError):
    """vllm.exceptions.VLLMValidationError (a VLLMClientError, itself a ValueError)."""


@dataclass
class SimulatedDevice:
    """One GPU shared by every fake engine of the process (see the module docstring)."""

    total_bytes: int = 80 * GIB
    other_bytes: int = 0  # memory held by others than the engines (a PRM, a reference model)
    engines: dict = field(default_factory=dict)  # id(engine) -> bytes claimed

    @property
    def free_bytes(self) -> int:
        return self.total_bytes - self.other_bytes - sum(self.engines.values())

    def claim(self, engine, share: float) -> None:
        requested = int(-(-self.total_bytes * share // 1))
        if self.free_bytes < requested:  # v1/worker/utils.py request_memory
            raise ValueError(
                f"Free memory on device cuda:0 ({self.free_bytes / GIB:.2f}/{self.total_bytes / GIB:.2f} GiB) on "
                f"startup is less than desired GPU memory utilization ({share}, {requested / GIB:.2f} GiB). "
                "Decrease GPU memory utilization or reduce GPU memory used by other processes.")
        self.engines[id(engine)] = requested


DEVICE = SimulatedDevice()


def reset_device(**kw) -> SimulatedDevice:
    """A fresh simulated GPU (every engine on the old one forgotten); kw: SimulatedDevice fields."""
    global DEVICE
    DEVICE = SimulatedDevice(**kw)
    return DEVICE


def tokens(tokenizer, *pieces, eos: bool = False) -> list[int]:
    """A scripted token stream: each str piece tokenized on its own (so "\\n", "\\n" stays two
    tokens), ints taken as token ids, and the tokenizer's EOS at the end when `eos`."""
    out: list[int] = []
    for piece in pieces:
        out.extend([piece] if isinstance(piece, int) else tokenizer.encode(piece, add_special_tokens=False))
    if eos:
        out.append(tokenizer.eos_token_id)
    return out


# ---- vllm.SamplingParams ------------------------------------------------------------------------

@dataclass
class SamplingParams:
    """The fields of `vllm.SamplingParams` this stand-in reads, with vLLM's defaults and post-init."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    max_tokens: int | None = 16
    min_tokens: int = 0
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    include_stop_str_in_output: bool = False

    def __post_init__(self):
        if self.seed == -1:
            self.seed = None
        self.stop = [] if self.stop is None else [self.stop] if isinstance(self.stop, str) else list(self.stop)
        self.stop_token_ids = list(dict.fromkeys(self.stop_token_ids or []))
        if any(not s for s in self.stop):
            raise ValueError("stop cannot contain an empty string.")
        if not math.isfinite(self.temperature):
            raise VLLMValidationError(f"temperature must be a finite number, got {self.temperature}.")
        if self.temperature < 0.0:
            raise VLLMValidationError(f"temperature must be non-negative, got {self.temperature}.")
        if self.temperature > 2.0:
            raise VLLMValidationError(f"temperature must be in [0, 2], got {self.temperature}.")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}.")
        if self.n != 1:
            raise NotImplementedError("the fake vLLM runs n=1 requests only (ttstrain sends n=1)")
        if self.temperature < _SAMPLING_EPS:
            self.top_p, self.top_k = 1.0, 0
        if self.min_tokens:
            raise NotImplementedError("the fake vLLM has no min_tokens")
        self._eos_token_id: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature < _SAMPLING_EPS

    def update_from_generation_config(self, generation_config: dict, eos_token_id: int | None) -> None:
        """sampling_params.py `update_from_generation_config`: the primary EOS stops the request
        (unless ignore_eos); the generation config's other EOS ids become stop token ids."""
        if not self.ignore_eos:
            self._eos_token_id = eos_token_id
        eos_ids = generation_config.get("eos_token_id")
        if eos_ids is not None:
            eos_ids = {eos_ids} if isinstance(eos_ids, int) else set(eos_ids)
            eos_ids.discard(eos_token_id)
            if eos_ids and not self.ignore_eos:
                self.stop_token_ids = list(eos_ids | set(self.stop_token_ids))


# ---- vllm.outputs ------------------------------------------------------------------------------

@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: list | None = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)
    finished: bool = True
    num_cached_tokens: int | None = None


# ---- v1/engine/detokenizer.py ------------------------------------------------------------------

def check_stop_strings(output_text: str, new_char_count: int, stop: list[str],
                       include_in_output: bool) -> tuple[str, int] | None:
    """detokenizer.py `check_stop_strings`: (stop string, length to cut the text to, -1: no cut) of
    the stop string that completes earliest in the newly added text, or None."""
    if not new_char_count or not stop:
        return None
    best, best_index, best_end = None, 0, sys.maxsize
    for s in stop:
        # only text not searched before: the new characters and len(s) - 1 before them
        index = output_text.find(s, 1 - new_char_count - len(s))
        if index != -1 and index + len(s) < best_end:
            best, best_index, best_end = s, index, index + len(s)
    if best is None:
        return None
    if include_in_output:
        return best, (-1 if best_end >= len(output_text) else best_end)
    return best, best_index


class IncrementalDetokenizer:
    """detokenizer.py `FastIncrementalDetokenizer` with `BaseIncrementalDetokenizer.update`."""

    def __init__(self, tokenizer, prompt_token_ids: list[int], params: SamplingParams):
        self.stop = list(params.stop)
        self.include_stop_str_in_output = params.include_stop_str_in_output
        self.min_tokens = params.min_tokens
        self.backend = tokenizer._tokenizer  # the `tokenizers.Tokenizer` vLLM steps with
        self.stream = DecodeStream(ids=list(prompt_token_ids), skip_special_tokens=params.skip_special_tokens)
        self.token_ids: list[int] = []
        self.output_text = ""

    def update(self, new_token_ids: list[int], stop_terminated: bool) -> str | None:
        """Detokenize the new tokens, then look for stop strings; return the matched one or None."""
        if not new_token_ids:
            return None
        skipped = None
        if stop_terminated and not self.include_stop_str_in_output:
            # the token that stopped the request (EOS, a stop token id) is kept but not detokenized
            skipped, new_token_ids = new_token_ids[-1], new_token_ids[:-1]
        num_prev = len(self.token_ids)
        offsets = [len(self.output_text)] if self.stop else None  # text length at each token boundary
        for token_id in new_token_ids:
            self.token_ids.append(token_id)
            self.output_text += self.stream.step(self.backend, token_id) or ""
            if offsets is not None:
                offsets.append(len(self.output_text))
        if skipped is not None:
            self.token_ids.append(skipped)
            if offsets is not None:
                offsets.append(len(self.output_text))

        if offsets is None or len(self.token_ids) <= self.min_tokens:
            return None
        start = offsets[max(self.min_tokens - num_prev, 0)]
        hit = check_stop_strings(self.output_text, len(self.output_text) - start, self.stop,
                                 self.include_stop_str_in_output)
        if hit is None:
            return None
        stop_string, truncate_to = hit
        stop_end = len(self.output_text) if truncate_to == -1 else truncate_to
        if not self.include_stop_str_in_output:
            stop_end += len(stop_string)
        # keep the tokens up to the one that completed the stop string; drop later ones of this step
        del self.token_ids[num_prev + bisect_left(offsets, stop_end, lo=1):]
        if truncate_to != -1:
            self.output_text = self.output_text[:truncate_to]
        return stop_string


# ---- vllm.LLM ----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _model_config(model: str, dtype: str, max_model_len: int | None) -> types.SimpleNamespace:
    """The resolved `ModelConfig` fields ttstrain reads (config/model.py)."""
    import torch

    config = json.loads((Path(model) / "config.json").read_text())
    if dtype == "auto":
        resolved = getattr(torch, config.get("torch_dtype") or config.get("dtype") or "float32")
        resolved = torch.bfloat16 if resolved == torch.float32 else resolved
    else:
        resolved = getattr(torch, {"half": "float16", "float": "float32"}.get(dtype, dtype))
    return types.SimpleNamespace(model=model, dtype=resolved, runner_type="generate",
                                 max_model_len=max_model_len or config.get("max_position_embeddings", 2048))


def _generation_config(model: str) -> dict:
    path = Path(model) / "generation_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


Script = Callable[[str, "int | None"], Sequence[int]]


class LLM:
    """`vllm.LLM(model, tokenizer=None, seed=0, ...)`: the tokenizer (and generation config) load from
    `tokenizer or model`, a local folder. `script(prompt, seed)` gives the tokens the model would write
    (a plain sequence: the same for every request); every call and its outputs are recorded in `calls`."""

    instances: list["LLM"] = []
    default_script: Script | Sequence[int] | None = None  # the script of engines built without one (by ttstrain)

    def __init__(self, model: str, *, tokenizer: str | None = None, seed: int = 0,
                 script: Script | Sequence[int] | None = None, **engine_kwargs):
        unknown = sorted(set(engine_kwargs) - _LLM_ARGS - _ENGINE_ARGS)
        if unknown:
            raise TypeError(f"EngineArgs.__init__() got an unexpected keyword argument '{unknown[0]}'")
        if not (Path(model) / "config.json").is_file():
            raise OSError(f"We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find "
                          f"them in the cached files. Check your internet connection or see how to run the library "
                          f"in offline mode. (model={model!r} is not a local folder with a config.json)")
        self.kwargs = dict(model=model, tokenizer=tokenizer, seed=seed, **engine_kwargs)
        self.tokenizer = _load_tokenizer(str(tokenizer or model))
        self.generation_config = _generation_config(str(model))
        self.model_config = _model_config(str(model), engine_kwargs.get("dtype", "auto"),
                                          engine_kwargs.get("max_model_len"))
        self.enable_prefix_caching = engine_kwargs.get("enable_prefix_caching", True)
        self.cached_blocks: set[tuple[int, ...]] = set()
        self.script = script if script is not None else LLM.default_script
        self.calls: list[types.SimpleNamespace] = []
        DEVICE.claim(self, engine_kwargs.get("gpu_memory_utilization", 0.92))
        self.llm_engine = types.SimpleNamespace(
            model_config=self.model_config,
            engine_core=types.SimpleNamespace(shutdown=lambda timeout=None: DEVICE.engines.pop(id(self), None)))
        LLM.instances.append(self)

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, sampling_params=None, *, use_tqdm=True, **kwargs) -> list[RequestOutput]:
        if id(self) not in DEVICE.engines:
            raise RuntimeError("this engine was shut down")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if sampling_params is None:
            sampling_params = SamplingParams()
        if isinstance(sampling_params, SamplingParams):
            sampling_params = [sampling_params] * len(prompts)
        sampling_params = list(sampling_params)
        if len(sampling_params) != len(prompts):
            raise ValueError("The lengths of prompts and sampling_params must be the same.")
        prompt_ids = [self.tokenizer.encode(p) for p in prompts]  # add_special_tokens=True
        max_len = self.model_config.max_model_len
        for ids in prompt_ids:  # every request is validated before any runs
            if len(ids) > max_len:
                raise VLLMValidationError(
                    f"The decoder prompt (length {len(ids)}) is longer than the maximum model length of {max_len}. "
                    "Make sure that `max_model_len` is no smaller than the number of text tokens.")
            if len(ids) == max_len:
                raise VLLMValidationError(
                    f"The decoder prompt (length {len(ids)}) plus the number of requested output tokens (at least 1) "
                    f"is longer than the maximum model length of {max_len}.")
        outputs = [self._run(str(k), p, ids, sp)
                   for k, (p, ids, sp) in enumerate(zip(prompts, prompt_ids, sampling_params))]
        self.calls.append(types.SimpleNamespace(prompts=prompts, params=sampling_params, use_tqdm=use_tqdm,
                                                outputs=outputs))
        return outputs

    def _written(self, prompt: str, seed: int | None) -> list[int]:
        if self.script is None:
            raise RuntimeError("this fake LLM was built without a script of what the model writes")
        return list(self.script(prompt, seed) if callable(self.script) else self.script)

    def _cache_hit(self, prompt_ids: list[int]) -> int:
        """Tokens of the prompt found in the prefix cache (whole blocks, at most len - 1); caches its blocks."""
        if not self.enable_prefix_caching:
            return 0
        full = (len(prompt_ids) - 1) // _BLOCK_SIZE
        hit = 0
        while hit < full and tuple(prompt_ids[:(hit + 1) * _BLOCK_SIZE]) in self.cached_blocks:
            hit += 1
        for b in range(1, len(prompt_ids) // _BLOCK_SIZE + 1):
            self.cached_blocks.add(tuple(prompt_ids[:b * _BLOCK_SIZE]))
        return hit * _BLOCK_SIZE

    def _run(self, request_id: str, prompt: str, prompt_ids: list[int], params: SamplingParams) -> RequestOutput:
        tok = self.tokenizer
        cached = self._cache_hit(prompt_ids)
        params = copy.copy(params)  # each request gets its own copy (input_processor.py clones it)
        params.update_from_generation_config(self.generation_config, tok.eos_token_id)
        written = self._written(prompt, None if params.greedy else params.seed)
        detok = IncrementalDetokenizer(tok, prompt_ids, params)
        output_ids: list[int] = []
        finish_reason = stop_reason = None
        while finish_reason is None:
            if len(output_ids) == len(written):
                raise RuntimeError(f"the script ran out after {len(written)} tokens before the request "
                                   f"finished (end it with EOS or give max_tokens < its length): {written}")
            token = written[len(output_ids)]
            output_ids.append(token)
            # v1/core/sched/utils.py check_stop
            if token == params._eos_token_id:
                finish_reason = "stop"
            elif token in params.stop_token_ids:
                finish_reason, stop_reason = "stop", token
            elif (len(prompt_ids) + len(output_ids) >= self.model_config.max_model_len
                  or len(output_ids) >= params.max_tokens):
                finish_reason = "length"
            # v1/engine/output_processor.py process_outputs: detokenize, then stop strings
            stop_string = detok.update([token], finish_reason == "stop")
            if stop_string:
                finish_reason, stop_reason = "stop", stop_string
        completion = CompletionOutput(index=0, text=detok.output_text, token_ids=list(detok.token_ids),
                                      finish_reason=finish_reason, stop_reason=stop_reason)
        return RequestOutput(request_id=request_id, prompt=prompt, prompt_token_ids=prompt_ids,
                             outputs=[completion], num_cached_tokens=cached)


def module() -> types.ModuleType:
    """A `vllm` module to put in `sys.modules`."""
    mod = types.ModuleType("vllm")
    mod.LLM = LLM
    mod.SamplingParams = SamplingParams
    mod.__version__ = VERSION
    mod.exceptions = types.SimpleNamespace(VLLMValidationError=VLLMValidationError)
    return mod
