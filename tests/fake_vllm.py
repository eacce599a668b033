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

The pooling runner (`LLM(model, runner="pooling", convert=..., pooler_config=PoolerConfig(...),
hf_overrides=...)`, `LLM.encode(prompts, pooling_params, *, use_tqdm, pooling_task=...)`), with a real
transformers model of the checkpoint computing every row (`PoolingModel`, whose docstring cites each part):

* runner and convert resolution from the architecture (`config/model.py`), the architectures the fake knows
  (Llama/Mistral/Qwen2 causal LMs, `*ForTokenClassification` converted to them, vLLM's own
  `Qwen2ForProcessRewardModel`; anything else is "not supported for now", as Skywork's `Qwen2ForPrmModel`);
* the engine's pooling task (`ModelConfig.get_pooling_task`) and `encode`'s refusals
  (`entrypoints/pooling/offline.py` `_verify_pooling_task`): `encode` on a generate engine, no pooling_task,
  a task the model lacks ("Classification API is not supported ... `--convert classify`"), a supported task
  that is not the engine's ('Try switching ... `PoolerConfig(task=...)`'); `generate` on a pooling engine;
* `PoolingParams.verify` per request (defaults merged from the `PoolerConfig`, `use_activation` True unless
  set, step parameters only under STEP pooling, `dimensions` only for embeddings);
* prompts as text or `TokensPrompt` dicts (`{"prompt_token_ids": [...]}`), outputs `PoolingRequestOutput`
  with `outputs.data` a float32 tensor: [tokens, labels] under ALL pooling, [tag tokens, labels] under STEP
  with a `step_tag_id`, probabilities unless `use_activation=False`.
Embeddings (embed, token_embed) are refused by the fake as not computed.

Left out: n > 1 per request, min_tokens, logprobs, repetition detection, speculative decoding
(several tokens per step), streaming outputs, cache eviction.
"""

from __future__ import annotations

import copy
import importlib.machinery
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
        self.runner_type = self.model_config.runner_type
        self.pooling: PoolingModel | None = None
        if _runner_type(str(model), engine_kwargs) == "pooling":
            self.pooling = PoolingModel(str(model), self.tokenizer, engine_kwargs)
            self.runner_type = self.model_config.runner_type = "pooling"
            self.model_config.convert_type = self.pooling.convert_type
            self.model_config.pooler_config = self.pooling.pooler_config
            self.model_config.dtype = _pooling_dtype(str(model), engine_kwargs.get("dtype", "auto"))
            self.supported_tasks = tuple(sorted(self.pooling.supported_tasks))
            self.pooling_task = self.pooling.default_task
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
        if self.runner_type != "generate":  # entrypoints/llm.py LLM.generate
            raise ValueError("LLM.generate() is only supported for generative models. Try passing `--runner generate` "
                             "to use the model as a generative model.")
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


# ---- the pooling runner (LLM(..., runner="pooling"), LLM.encode) -------------------------------------

_POOLING_TASKS = ("embed", "classify", "token_embed", "token_classify", "plugin", "embed&token_classify")  # tasks.py
_SEQ_POOLING_TYPES, _TOK_POOLING_TYPES = ("CLS", "LAST", "MEAN"), ("ALL", "STEP")  # config/pooler.py
# config/model.py _SUFFIX_TO_DEFAULTS: (architecture suffix, (runner, convert)), first match wins
_SUFFIX_TO_DEFAULTS = (
    ("ForCausalLM", ("generate", "none")), ("ForConditionalGeneration", ("generate", "none")),
    ("ChatModel", ("generate", "none")), ("LMHeadModel", ("generate", "none")),
    ("ForTextEncoding", ("pooling", "embed")), ("EmbeddingModel", ("pooling", "embed")),
    ("ForSequenceClassification", ("pooling", "classify")), ("ForTokenClassification", ("pooling", "classify")),
    ("ClassificationModel", ("pooling", "classify")), ("ForRewardModeling", ("pooling", "embed")),
    ("RewardModel", ("pooling", "embed")), ("Model", ("pooling", "embed")),
)
# model_executor/models/registry.py: the architectures the fake knows (text generation ones convert to pooling);
# the reward models with their @default_pooling_type(tok_pooling_type=...) and num_labels (qwen2_rm.py)
_GENERATION_ARCHS = frozenset({"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"})
_REWARD_ARCHS = {"Qwen2ForProcessRewardModel": ("STEP", 2)}
_QWEN_PRM_STEP_TAG = 151651  # models/config.py Qwen2ForProcessRewardModelConfig: the default step_tag_id


@dataclass
class PoolerConfig:
    """config/pooler.py `PoolerConfig` (the fields ttstrain can touch); `pooling_type` fills `seq_pooling_type`
    or `tok_pooling_type` in `__post_init__`."""

    task: str | None = None
    pooling_type: str | None = None
    seq_pooling_type: str | None = None
    tok_pooling_type: str | None = None
    use_activation: bool | None = None
    dimensions: int | None = None
    logit_mean: float | None = None
    logit_sigma: float | None = None
    step_tag_id: int | None = None
    returned_token_ids: list[int] | None = None

    def __post_init__(self):
        if self.task in ("score", "encode"):  # tasks.py check_removed_pooling_task
            raise VLLMValidationError(f"`{self.task}` task was removed")
        if self.logit_sigma is not None and self.logit_sigma == 0:
            raise ValueError("logit_sigma cannot be 0 (division by zero)")
        if self.pooling_type:
            if self.seq_pooling_type is not None or self.tok_pooling_type is not None:
                raise ValueError("Cannot set both `pooling_type` and `seq_pooling_type`/`tok_pooling_type`")
            if self.pooling_type in _SEQ_POOLING_TYPES:
                self.seq_pooling_type = self.pooling_type
            elif self.pooling_type in _TOK_POOLING_TYPES:
                self.tok_pooling_type = self.pooling_type
            else:
                raise NotImplementedError(self.pooling_type)


@dataclass
class PoolingParams:
    """pooling_params.py `PoolingParams`, with `verify` (`_merge_default_parameters`, `_verify_step_pooling`,
    `_set_default_parameters`, `_verify_valid_parameters`) as 0.32 runs it for each request."""

    use_activation: bool | None = None
    dimensions: int | None = None
    step_tag_id: int | None = None
    returned_token_ids: list[int] | None = None
    task: str | None = None
    requires_token_ids: bool = False
    skip_reading_prefix_cache: bool | None = None

    _VALID = {"embed": ["dimensions", "use_activation"], "classify": ["use_activation"],
              "token_embed": ["dimensions", "use_activation"], "token_classify": ["use_activation"]}

    def clone(self) -> "PoolingParams":
        return copy.deepcopy(self)

    def verify(self, pooler_config: PoolerConfig) -> None:
        valid = self._VALID[self.task]
        for k in valid:
            if getattr(pooler_config, k, None) is not None and getattr(self, k) is None:
                setattr(self, k, getattr(pooler_config, k))
        if self.skip_reading_prefix_cache is None:
            self.skip_reading_prefix_cache = self.task in ("token_embed", "token_classify")
        step = ["step_tag_id", "returned_token_ids"]
        if pooler_config.tok_pooling_type != "STEP":
            bad = [k for k in step if getattr(self, k) is not None]
            if bad:
                raise VLLMValidationError(f"Task {self.task} only supports {valid} parameters, does not support "
                                          f"{bad} parameters")
        else:
            for k in step:
                if getattr(pooler_config, k) is not None and getattr(self, k) is None:
                    setattr(self, k, getattr(pooler_config, k))
        if self.use_activation is None:  # _set_default_parameters: True for every task
            self.use_activation = True
        if self.dimensions is not None and "dimensions" not in valid:
            raise VLLMValidationError(f"Task {self.task!r} only supports {valid} parameters, does not support "
                                      f"['dimensions'] parameters")
        if self.dimensions is not None:
            raise VLLMValidationError("this model does not support Matryoshka embeddings; dimensions must be unset")


class PoolingOutput:
    """outputs.py `PoolingOutput`: `data`, the pooled tensor of one request."""

    def __init__(self, data):
        self.data = data

    def __repr__(self) -> str:
        return f"PoolingOutput(data={self.data})"


class PoolingRequestOutput:
    """outputs.py `PoolingRequestOutput`."""

    def __init__(self, request_id: str, outputs: PoolingOutput, prompt_token_ids: list[int], num_cached_tokens: int,
                 finished: bool):
        self.request_id, self.outputs, self.prompt_token_ids = request_id, outputs, prompt_token_ids
        self.num_cached_tokens, self.finished = num_cached_tokens, finished


def _hf_config(model: str, engine_kwargs: dict) -> dict:
    config = json.loads((Path(model) / "config.json").read_text())
    overrides = engine_kwargs.get("hf_overrides") or {}
    if callable(overrides):
        raise NotImplementedError("the fake takes hf_overrides as a dict")
    return {**config, **overrides}


def _match_suffix(arch: str, runner: str | None = None, convert: str | None = None):
    for suffix, (r, c) in _SUFFIX_TO_DEFAULTS:
        if (runner is None or runner == r) and (convert is None or convert == c) and arch.endswith(suffix):
            return suffix, (r, c)
    return None


def _runner_type(model: str, engine_kwargs: dict) -> str:
    """config/model.py `_get_runner_type` / `_get_default_runner_type`."""
    runner = engine_kwargs.get("runner", "auto")
    if runner != "auto":
        return runner
    if engine_kwargs.get("convert", "auto") not in ("auto", "none"):
        return "pooling"
    for arch in _hf_config(model, engine_kwargs).get("architectures") or []:
        if arch in _REWARD_ARCHS:
            return "pooling"
        if arch in _GENERATION_ARCHS:
            return "generate"
        match = _match_suffix(arch)
        if match:
            return match[1][0]
    return "generate"


def _pooling_dtype(model: str, dtype: str):
    """config/model.py `_resolve_auto_dtype(is_pooling_model=True)`: float32 checkpoints run in float16 on CUDA."""
    import torch

    if dtype != "auto":
        return getattr(torch, {"half": "float16", "float": "float32"}.get(dtype, dtype))
    config = json.loads((Path(model) / "config.json").read_text())
    resolved = getattr(torch, config.get("torch_dtype") or config.get("dtype") or "float32")
    return torch.float16 if resolved == torch.float32 else resolved


def _checkpoint_keys(model: str) -> set[str]:
    keys: set[str] = set()
    for f in Path(model).glob("*.safetensors"):
        with open(f, "rb") as handle:
            keys |= set(json.loads(handle.read(int.from_bytes(handle.read(8), "little")))) - {"__metadata__"}
    return keys


class PoolingModel:
    """The model of a pooling engine, as 0.32 builds it, computed with a real (transformers) torch model on CPU:

    * runner and convert (config/model.py `_get_runner_type`, `_get_default_convert_type`, `_SUFFIX_TO_DEFAULTS`;
      `_RUNNER_CONVERTS["pooling"] = ["embed", "classify"]`); the architecture is found as
      registry.py `_normalize_arch` finds it (`Qwen2ForTokenClassification` -> `Qwen2ForCausalLM` converted), an
      architecture vLLM does not have (Skywork's `Qwen2ForPrmModel`) is refused (`_raise_for_unsupported`);
    * `convert="classify"` (models/adapters.py `as_seq_cls_model`): the LM head is dropped and a `score` Linear
      (hidden -> num_labels, bias only when the checkpoint has `score.bias`) is the classifier; its weights come
      from the checkpoint (`score.*`; missing: default_loader.py "Following weights were not initialized from
      checkpoint"; a tensor outside the model: utils.py "There is no module or parameter named ..."), or, with
      `hf_overrides={"classifier_from_token": [...], "method": "no_post_processing"}`, are the LM head's rows of
      those tokens (`load_weights_no_post_processing`, tokens by `convert_tokens_to_ids`; num_labels = their
      number, `SequenceClassificationConfig`); "from_2_way_softmax": one row, lm_head[true] - lm_head[false];
    * `Qwen2ForProcessRewardModel` (qwen2_rm.py): the model's forward ends in its Linear-ReLU-Linear `score`, so
      the pooler gets 2 logits per token and has no classifier; default tok pooling STEP, step_tag_id 151651
      unless set (models/config.py `Qwen2ForProcessRewardModelConfig`). The fake runs the checkpoint's own code;
    * the token_classify pooler (layers/pooler/tokwise/poolers.py `pooler_for_token_classify`): the pooling
      method (tokwise/methods.py: `AllPool` every token's row; `StepPool` first keeps the `returned_token_ids`
      columns of the pooled rows (before the classifier: a classifier head then fails on the width), then the rows
      whose prompt token is `step_tag_id`), then `TokenClassifierPoolerHead.forward_chunk`: rows cast to the head
      dtype (float32 for pooling runners, config/model.py `_get_head_dtype`), classifier, (x - logit_mean) /
      logit_sigma, and the activation when the request's `use_activation` (default True): activations.py
      `get_act_fn(static_num_labels=False)`: problem_type "regression" none, "multi_label_classification"
      sigmoid, otherwise `PoolerClassify`: sigmoid for one column, softmax over the columns for more.
    """

    def __init__(self, model: str, tokenizer, engine_kwargs: dict):
        self.path, self.tokenizer = model, tokenizer
        cfg = _hf_config(model, engine_kwargs)
        self.hf_config = cfg
        self.architectures = list(cfg.get("architectures") or [])
        reward = next((a for a in self.architectures if a in _REWARD_ARCHS), None)
        convert = engine_kwargs.get("convert", "auto")
        if convert == "auto":
            convert = "none" if reward else next(
                (m[1][1] for a in self.architectures if (m := _match_suffix(a, runner="pooling"))), "embed")
        if reward is None and convert not in ("embed", "classify"):
            raise ValueError("This model does not support `--runner pooling`. You can pass `--convert <embed|classify> "
                             "to adapt it into a pooling model.")
        self.convert_type = convert
        self.arch = reward or self._normalize_arch(convert)
        pooler_config = engine_kwargs.get("pooler_config")
        pooler_config = PoolerConfig(**pooler_config) if isinstance(pooler_config, dict) else \
            copy.deepcopy(pooler_config) if pooler_config is not None else PoolerConfig()
        if pooler_config.seq_pooling_type is None:
            pooler_config.seq_pooling_type = "LAST"
        if pooler_config.tok_pooling_type is None:
            pooler_config.tok_pooling_type = _REWARD_ARCHS[reward][0] if reward else "ALL"
        if reward == "Qwen2ForProcessRewardModel" and pooler_config.step_tag_id is None:
            pooler_config.step_tag_id = _QWEN_PRM_STEP_TAG
        self.pooler_config = pooler_config
        self.supported_tasks = ({"token_classify"} if reward else
                                {"token_classify", "classify"} if convert == "classify" else {"token_embed", "embed"})
        self.default_task = self._pooling_task()
        self._build(reward, engine_kwargs)

    def _normalize_arch(self, convert: str) -> str:
        for arch in self.architectures:
            if arch in _GENERATION_ARCHS:
                return arch
            match = _match_suffix(arch, runner="pooling", convert=convert)
            if match:
                for repl, _ in _SUFFIX_TO_DEFAULTS:
                    base = arch.replace(match[0], repl)
                    if base in _GENERATION_ARCHS:
                        return base
        raise ValueError(f"Model architectures {self.architectures} are not supported for now. Supported "
                         f"architectures: {sorted(_GENERATION_ARCHS | set(_REWARD_ARCHS))}")

    def _pooling_task(self) -> str | None:
        """config/model.py `ModelConfig.get_pooling_task`."""
        task = self.pooler_config.task
        if task is not None:
            if task not in self.supported_tasks:
                raise RuntimeError(f"Unsupported task: {task!r} Supported tasks: {tuple(sorted(self.supported_tasks))}")
            return task
        if "token_classify" in self.supported_tasks and any("ForTokenClassification" in a for a in self.architectures):
            return "token_classify"
        return next((t for t in ("embed&token_classify", "embed", "classify", "token_embed", "token_classify",
                                 "plugin") if t in self.supported_tasks), None)

    def _build(self, reward: str | None, engine_kwargs: dict) -> None:
        import torch
        from transformers import AutoModel, AutoModelForCausalLM, AutoModelForTokenClassification

        self.classifier = None
        self.num_parameters = 0
        if reward is not None:
            net = AutoModel.from_pretrained(self.path, trust_remote_code=True, dtype=torch.float32).eval()
            self.body = lambda ids: net(input_ids=ids).logits[0]
            self.num_parameters = sum(p.numel() for p in net.parameters())
            return
        if self.convert_type != "classify":
            self.body = None  # embedding models: the fake computes no embeddings
            return
        method, tokens = self.hf_config.get("method"), self.hf_config.get("classifier_from_token")
        if method is not None:
            if method not in ("no_post_processing", "from_2_way_softmax") or not tokens:
                raise AssertionError(f"method {method} not supported")
            lm = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch.float32).eval()
            ids = [self.tokenizer.convert_tokens_to_ids(t) for t in tokens]
            head = lm.get_output_embeddings().weight.detach()
            weight = head[ids] if method == "no_post_processing" else (head[[ids[0]]] - head[[ids[1]]])
            body = lm.get_decoder()
            self.classifier = lambda x: x @ weight.T.to(x.dtype)
            self.num_parameters = sum(p.numel() for p in body.parameters()) + weight.numel()
        else:
            keys = _checkpoint_keys(self.path)
            stray = sorted({k.split(".")[0] for k in keys} - {"model", "score", "lm_head"})
            if stray:
                raise ValueError(f"There is no module or parameter named {stray[0]!r} in "
                                 f"{self.arch.replace('ForCausalLM', 'ForSequenceClassification')}")
            if "score.weight" not in keys:
                raise ValueError("Following weights were not initialized from checkpoint: {'score.weight'}")
            net = AutoModelForTokenClassification.from_pretrained(self.path, dtype=torch.float32).eval()
            body, score = net.model, net.score
            bias = score.bias.detach() if ("score.bias" in keys and score.bias is not None) else None
            weight = score.weight.detach()
            self.classifier = lambda x: x @ weight.T.to(x.dtype) + (0 if bias is None else bias.to(x.dtype))
            self.num_parameters = sum(p.numel() for p in body.parameters()) + weight.numel() + \
                (0 if bias is None else bias.numel())
        self.body = lambda ids: body(input_ids=ids).last_hidden_state[0]

    def activation(self, x):
        import torch

        problem = self.hf_config.get("problem_type")
        if problem == "regression":
            return x
        if problem == "multi_label_classification" or x.shape[-1] < 2:
            return torch.sigmoid(x)
        return torch.softmax(x, dim=-1)

    def run(self, prompt_ids: list[int], params: PoolingParams):
        import torch

        if self.body is None:
            raise NotImplementedError(f"the fake computes no {params.task!r} outputs")
        with torch.inference_mode():
            data = self.body(torch.tensor([prompt_ids])).float()  # [n_tokens, hidden or labels]
            if self.pooler_config.tok_pooling_type == "STEP":  # tokwise/methods.py StepPool.forward
                if params.returned_token_ids:
                    data = data[:, params.returned_token_ids]
                if params.step_tag_id is not None:
                    data = data[torch.tensor(prompt_ids) == params.step_tag_id]
            data = data.to(torch.float32)  # head dtype
            if self.classifier is not None:
                data = self.classifier(data)
            if self.pooler_config.logit_mean is not None:
                data = data - self.pooler_config.logit_mean
            if self.pooler_config.logit_sigma is not None:
                data = data / self.pooler_config.logit_sigma
            if params.use_activation:
                data = self.activation(data)
        return data.clone()


def _encode(self, prompts, pooling_params=None, *, use_tqdm=True, lora_request=None, pooling_task=None,
            tokenization_kwargs=None) -> list[PoolingRequestOutput]:
    """entrypoints/pooling/offline.py `PoolingOfflineMixin.encode` (`_verify_pooling_task`), then
    pooling/base/io_processor.py `get_request_factory_offline` (prompts as text or `TokensPrompt` dicts; params
    cloned per request, their task set or checked), v1/engine/input_processor.py `_validate_params` and
    `_validate_prompt_len` for every request before any runs, and the pooler (`PoolingModel.run`); outputs in
    prompt order (`_run_tiling_engine` sorts by request id). `num_cached_tokens` is 0: token tasks skip reading
    the prefix cache (`PoolingParams.skip_reading_prefix_cache`)."""
    if self.runner_type != "pooling":
        raise ValueError("LLM.encode() is only supported for pooling models. Try passing `--runner pooling` to use "
                         "the model as a pooling model.")
    if pooling_task is None:
        raise ValueError("pooling_task required for `LLM.encode`.")
    supported = self.supported_tasks
    if pooling_task in ("embed", "token_embed") and pooling_task not in supported:
        raise ValueError("Embedding API is not supported by this model. Try converting the model using "
                         "`--convert embed`.")
    if pooling_task in ("classify", "token_classify") and pooling_task not in supported:
        raise ValueError("Classification API is not supported by this model. Try converting the model using "
                         "`--convert classify`.")
    if pooling_task != "plugin" and pooling_task != self.pooling_task:
        if pooling_task not in supported:
            raise ValueError(f"Unsupported task: {pooling_task!r} Supported tasks: {supported}")
        raise ValueError(f'Try switching the model\'s pooling_task via `PoolerConfig(task="{pooling_task}")`')
    if id(self) not in DEVICE.engines:
        raise RuntimeError("this engine was shut down")
    seq = [prompts] if isinstance(prompts, (str, dict)) else list(prompts)
    if not seq:
        raise ValueError("You must pass at least one prompt")
    params = PoolingParams() if pooling_params is None else pooling_params
    if isinstance(params, PoolingParams):
        params = [params] * len(seq)
    elif len(params) != len(seq):
        raise VLLMValidationError(f"The lengths of prompts ({len(seq)}) and params ({len(params)}) must be the same.")
    params = [p.clone() for p in params]
    ids_seq = []
    for prompt, p in zip(seq, params):
        if p.task is None:
            p.task = pooling_task
        elif p.task != pooling_task:
            raise VLLMValidationError(f"You cannot overwrite p.task={p.task!r} with pooling_task={pooling_task!r}!")
        p.verify(self.pooling.pooler_config)
        if isinstance(prompt, dict):
            ids = list(prompt["prompt_token_ids"]) if "prompt_token_ids" in prompt else \
                self.tokenizer.encode(prompt["prompt"])
        else:
            ids = self.tokenizer.encode(prompt)
        if not ids:
            raise VLLMValidationError("The decoder prompt cannot be empty")
        if len(ids) > self.model_config.max_model_len:
            raise VLLMValidationError(f"The decoder prompt (length {len(ids)}) is longer than the maximum model "
                                      f"length of {self.model_config.max_model_len}. Make sure that `max_model_len` "
                                      "is no smaller than the number of text tokens.")
        ids_seq.append(ids)
    outputs = [PoolingRequestOutput(str(k), PoolingOutput(self.pooling.run(ids, p)), ids, 0, True)
               for k, (ids, p) in enumerate(zip(ids_seq, params))]
    self.calls.append(types.SimpleNamespace(prompts=seq, params=params, pooling_task=pooling_task, use_tqdm=use_tqdm,
                                            outputs=outputs))
    return outputs


LLM.encode = _encode


def module() -> types.ModuleType:
    """A `vllm` module to put in `sys.modules`."""
    mod = types.ModuleType("vllm")
    mod.LLM = LLM
    mod.SamplingParams = SamplingParams
    mod.PoolingParams = PoolingParams
    mod.PoolingOutput = PoolingOutput
    mod.PoolingRequestOutput = PoolingRequestOutput
    mod.config = types.ModuleType("vllm.config")  # `from vllm.config import PoolerConfig`: see `modules()`
    mod.config.PoolerConfig = PoolerConfig
    mod.inputs = types.ModuleType("vllm.inputs")
    mod.inputs.TokensPrompt = dict  # a TypedDict in vLLM (inputs/llm.py): {"prompt_token_ids": [...]}
    mod.__version__ = VERSION
    mod.exceptions = types.SimpleNamespace(VLLMValidationError=VLLMValidationError)
    return mod


def modules() -> dict[str, types.ModuleType]:
    """`vllm` and its submodules the pooling side imports, for `sys.modules` (monkeypatch.setitem each)."""
    mod = module()
    out = {"vllm": mod, "vllm.config": mod.config, "vllm.inputs": mod.inputs}
    for name, m in out.items():  # importlib.util.find_spec (TRL probes for vLLM) needs a spec
        m.__spec__ = importlib.machinery.ModuleSpec(name, None)
    return out
