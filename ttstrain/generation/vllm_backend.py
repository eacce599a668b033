"""A `Generator` backed by vLLM's offline engine (`vllm.LLM`), for fast sampling on a CUDA machine.

It implements the contract in `ttstrain.generation.base` on top of vLLM:

* every continuation is its own vLLM request (`n=1`) seeded with
  `row_seed(params.seed, prompt, j)`, so continuation j of a prompt does not depend on the
  batch it was submitted in or on `params.n`; vLLM's automatic prefix caching (on by default)
  makes the `n` copies of a prompt share one prefill;
* all requests of one `generate` call go to vLLM in a single `LLM.generate` call, so the
  engine schedules them together;
* stopping follows `params.step_format` (`ttstrain.steps.StepFormat.find_stop`, the rule the
  transformers backend applies token by token): the format's separator (stop="step") and end
  marker are vLLM stop strings, so the engine stops early; vLLM 0.32 searches them in the
  generated text only and keeps the stopping token in `token_ids`, so each continuation is then
  read again with the same rule over its token ids (`apply_stop_rule`): a blank line that
  begins in the prompt ends the solution here too, the text is cut where the rule cuts it, and
  `num_tokens` counts the tokens up to the one that stopped it, as the other backend does.

Around the engine (`docs/gpu.md`):

* the model name is resolved as the other backends resolve it (`ttstrain.models.resolve_model`: the
  aliases "default" and "smollm2-135m" are local folders), and `num_parameters` is read from the
  checkpoint's safetensors headers, so FLOPs are counted as on the transformers backend;
* `gpu_memory_utilization` is vLLM's share of the GPU (vLLM refuses to start when less is free, so
  a PRM or a second engine on the same GPU needs a smaller share); `close()` shuts the engine down
  and gives its memory back;
* batch-invariant mode (`VLLM_BATCH_INVARIANT=1`, set before the engine starts) is on by default, so
  a continuation does not depend on what else shares its batch or on prefix-cache hits, and a resumed
  chunk equals an uninterrupted one; `batch_invariant=False` trades that for speed;
* temperatures outside [0, 2] are refused before anything is sent (vLLM refuses them too, for the
  whole call), and a prompt with no room for one new token under `max_model_len` is not sent: it
  comes back empty with finish reason "length" (vLLM would fail the whole call);
* `prefill_tokens` counts what vLLM computed: each request's prompt minus its `num_cached_tokens`.

vLLM needs a CUDA machine; it is an optional extra (`pip install 'ttstrain[vllm]'`) and is
imported only when a `VLLMGenerator` is built.

Example::

    from ttstrain.generation.base import SamplingParams
    from ttstrain.generation.vllm_backend import VLLMGenerator
    from ttstrain.steps import STEP_SEPARATOR

    gen = VLLMGenerator("Qwen/Qwen2.5-0.5B", dtype="bfloat16", seed=0)
    results = gen.generate(
        [few_shot_prompt + "Problem: 2 + 3 * 4?" + STEP_SEPARATOR],
        SamplingParams(n=4, temperature=0.8, max_new_tokens=128, stop="step", seed=1),
    )
    for c in results[0].completions:
        print(repr(c.text), c.num_tokens, c.finish_reason)
    print(gen.stats)

An existing engine can be reused with `VLLMGenerator(model_name, llm=my_llm)` (tests inject a
fake engine the same way).
"""

from __future__ import annotations

import gc
import os
from typing import Any, Sequence

import torch

from ttstrain.generation.base import (Completion, Generator, PromptResult, SamplingParams, check_streams, eos_id_list,
                                      row_seed)
from ttstrain.models import check_weight_files, checkpoint_parameters, resolve_model
from ttstrain.steps import STEP_SEPARATOR, StepFormat

MAX_TEMPERATURE = 2.0  # vllm.SamplingParams._verify_args refuses more

_INSTALL_HINT = (
    "VLLMGenerator needs vLLM, which is not installed. "
    "Install it with: pip install 'ttstrain[vllm]' on a CUDA machine "
    "(vLLM has no CPU build; use another backend on CPU)."
)


def stop_strings(fmt: StepFormat, stop: str) -> list[str]:
    """The stop strings handed to vLLM for a stop mode: the end marker, and the separator for steps."""
    out = [fmt.end_marker] if fmt.end_marker is not None else []
    if stop == "step" and fmt.separator not in out:
        out.append(fmt.separator)
    return out


def apply_stop_rule(prompt: str, token_ids: Sequence[int], decode, fmt: StepFormat, stop: str,
                    eos_ids=()) -> tuple[str, int, str | None]:
    """(text, tokens used, reason or None) of one continuation read with `fmt.find_stop`: the fewest
    leading tokens whose text stops (found by bisection: once a stop is in the text, more tokens keep it),
    the text cut there; None when the rule never stops it (then all tokens and their text). A trailing
    end-of-sequence id is not text."""
    ids = list(token_ids)
    if ids and ids[-1] in set(eos_ids):
        ids = ids[:-1]
    text = decode(ids)
    if fmt.find_stop(prompt, text, stop) is None:
        return text, len(token_ids), None
    lo, hi = 1, len(ids)  # the smallest k whose decoded prefix stops is in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if fmt.find_stop(prompt, decode(ids[:mid]), stop) is not None:
            hi = mid
        else:
            lo = mid + 1
    head = decode(ids[:lo])
    cut, reason = fmt.find_stop(prompt, head, stop)
    return head[:cut], lo, reason


def _import_vllm():
    try:
        import vllm  # noqa: PLC0415 - optional, heavy, CUDA-only dependency
    except ImportError as exc:  # also raised when sys.modules["vllm"] is None
        raise ImportError(_INSTALL_HINT) from exc
    return vllm


def _vllm_version(vllm_module) -> str | None:
    version = getattr(vllm_module, "__version__", None)
    if version:
        return str(version)
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version

        return dist_version("vllm")
    except (ImportError, PackageNotFoundError, ValueError):
        return None


def shutdown_engine(llm) -> None:
    """Shut a `vllm.LLM` engine down (vLLM 0.32 runs it in a process of its own) and give its GPU memory back;
    None: nothing to do."""
    if llm is None:
        return
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None:
        core.shutdown()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def map_finish_reason(finish_reason: str | None, stop_reason: Any) -> str:
    """Map vLLM's (finish_reason, stop_reason) of one CompletionOutput to ours.

    'length' -> "length"; 'stop' with stop_reason None (the EOS token) or an int (a stop token
    id) -> "eos"; 'stop' on a stop string -> "stop_string" (the stop rule then says which:
    `apply_stop_rule`).
    """
    if finish_reason == "length":
        return "length"
    if finish_reason == "stop":
        if stop_reason is None or (isinstance(stop_reason, int) and not isinstance(stop_reason, bool)):
            return "eos"
        if isinstance(stop_reason, str):
            return "stop_string"
        raise RuntimeError(f"vLLM stopped on an unexpected stop reason {stop_reason!r}")
    raise RuntimeError(
        f"vLLM returned finish_reason={finish_reason!r} (stop_reason={stop_reason!r}); "
        "expected 'stop' or 'length' (was the request aborted?)"
    )


class VLLMGenerator(Generator):
    """Generation with `vllm.LLM`; see the module docstring."""

    backend = "vllm"
    min_call_rows = 4096  # 4x vLLM 0.32's batch on an H100 (max_num_seqs 1,024), so no call ends on a thin tail

    def __init__(
        self,
        model: str,
        *,
        tokenizer: str | None = None,
        dtype: str = "auto",
        seed: int = 0,
        gpu_memory_utilization: float = 0.9,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        enable_prefix_caching: bool = True,
        batch_invariant: bool = True,
        llm=None,
        **engine_kwargs,
    ):
        super().__init__()
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        self.batch_invariant = batch_invariant
        # read by vLLM's engine process and kernels as they start: set (either way) before the import and the engine
        os.environ["VLLM_BATCH_INVARIANT"] = "1" if batch_invariant else "0"
        self._vllm = _import_vllm()
        self.model = model
        self.model_path = resolve_model(model)  # what the engine loads: an alias's folder, else as given
        self.tokenizer_name = tokenizer
        self.dtype = dtype
        self.seed = seed
        self.gpu_memory_utilization = gpu_memory_utilization
        self.enable_prefix_caching = enable_prefix_caching
        if llm is None:
            check_weight_files(self.model_path, "model")  # a damaged local checkpoint, named before vLLM starts
            kwargs = dict(
                model=self.model_path,
                tokenizer=resolve_model(tokenizer) if tokenizer else None,
                dtype=dtype,
                seed=seed,
                gpu_memory_utilization=gpu_memory_utilization,
                tensor_parallel_size=tensor_parallel_size,
                enable_prefix_caching=enable_prefix_caching,
            )
            if max_model_len is not None:
                kwargs["max_model_len"] = max_model_len
            kwargs.update(engine_kwargs)
            llm = self._vllm.LLM(**kwargs)
        self.llm = llm
        config = llm.llm_engine.model_config
        self.engine_dtype, self.max_model_len = str(config.dtype), config.max_model_len  # read after close() too
        self._tokenizer = llm.get_tokenizer()
        self._num_parameters = checkpoint_parameters(self.model_path)
        self.prompts_too_long = 0  # prompts not sent: no room under max_model_len

    def close(self) -> None:
        """Shut the engine down and give its GPU memory back; this generator cannot generate after."""
        shutdown_engine(self.llm)
        self.llm = None

    # -- the contract -------------------------------------------------------------------------

    def _vllm_params(self, params: SamplingParams, prompt: str, index: int, stream: int = 0):
        greedy = params.temperature == 0
        return self._vllm.SamplingParams(
            n=1,
            # vLLM samples greedily at temperature 0; top_p and the seed do not matter then.
            temperature=0.0 if greedy else float(params.temperature),
            top_p=1.0 if greedy else float(params.top_p),
            max_tokens=params.max_new_tokens,
            stop=stop_strings(params.step_format, params.stop),
            include_stop_str_in_output=False,
            seed=None if greedy else row_seed(params.seed, prompt, index, stream),
        )

    def generate(self, prompts: Sequence[str], params: SamplingParams,
                 streams: Sequence[int] | None = None) -> list[PromptResult]:
        prompts = list(prompts)
        if not prompts:
            return []
        if self.llm is None:
            raise RuntimeError("this VLLMGenerator was closed: its engine is shut down")
        if not 0 <= params.temperature <= MAX_TEMPERATURE:
            raise ValueError(f"temperature {params.temperature}: the vLLM backend samples at temperatures in "
                             f"[0, {MAX_TEMPERATURE:g}] (vLLM refuses others); use --backend transformers for more")
        streams = check_streams(prompts, streams)
        tok = self.tokenizer
        # a prompt with no room for one new token would fail vLLM's whole call: it is not sent
        max_len = self.max_model_len
        lengths = {p: len(tok.encode(p)) for p in dict.fromkeys(prompts)}  # with special tokens, as vLLM counts
        # One n=1 request per continuation, prompt-major: request i*n + j is continuation j of
        # prompt i. Per-request seeds make the result batch-invariant.
        req_prompts: list[str] = []
        req_params = []
        for prompt, stream in zip(prompts, streams):
            if lengths[prompt] >= max_len:
                continue
            for j in range(params.n):
                req_prompts.append(prompt)
                req_params.append(self._vllm_params(params, prompt, j, stream))

        outputs = list(self.llm.generate(req_prompts, req_params, use_tqdm=False)) if req_prompts else []
        if len(outputs) != len(req_prompts):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(req_prompts)} requests")

        decode, eos_ids = (lambda ids: tok.decode(ids, skip_special_tokens=True)), eos_id_list(tok.eos_token_id)
        results: list[PromptResult] = []
        prefill_tokens, k = 0, 0
        for prompt in prompts:
            if lengths[prompt] >= max_len:
                self.prompts_too_long += 1
                too_long = Completion(text="", num_tokens=0, finish_reason="length")
                results.append(PromptResult(prompt=prompt, prompt_tokens=lengths[prompt],
                                            completions=[too_long] * params.n))
                continue
            completions: list[Completion] = []
            prompt_tokens = None
            for _ in range(params.n):
                out = outputs[k]
                out_prompt = getattr(out, "prompt", None)
                if out_prompt is not None and out_prompt != prompt:
                    raise RuntimeError(f"vLLM output {k} is for another prompt (order lost)")
                if out.prompt_token_ids is None:
                    raise RuntimeError("vLLM returned no prompt_token_ids; cannot count prompt tokens")
                prompt_tokens = len(out.prompt_token_ids)
                prefill_tokens += prompt_tokens - (getattr(out, "num_cached_tokens", None) or 0)
                completions.append(self._completion(prompt, out.outputs[0], params, decode, eos_ids))
                k += 1
            results.append(PromptResult(prompt=prompt, prompt_tokens=prompt_tokens, completions=completions))

        self.stats.add(results, prefill_tokens=prefill_tokens)
        rows = sum(len(r.completions) for r in results)
        self.report_progress(rows, rows, sum(r.generated_tokens for r in results), finished=True)
        return results

    @staticmethod
    def _completion(prompt: str, out, params: SamplingParams, decode, eos_ids: list[int]) -> Completion:
        finish_reason = map_finish_reason(out.finish_reason, out.stop_reason)
        text, used, reason = apply_stop_rule(prompt, out.token_ids, decode, params.step_format, params.stop, eos_ids)
        if reason is not None:
            return Completion(text=text, num_tokens=used, finish_reason=reason)
        if finish_reason == "stop_string":
            raise RuntimeError(f"vLLM stopped on {out.stop_reason!r}, but its text {out.text!r} has no stop there "
                               f"under {params.step_format.describe()}")
        return Completion(text=text, num_tokens=used, finish_reason=finish_reason)

    def identity(self) -> dict:
        return {
            "backend": self.backend,
            "model": self.model,
            "tokenizer": self.tokenizer_name or self.model,
            "dtype": self.engine_dtype,  # what the engine runs in ("auto" resolved)
            "parameters": self.num_parameters,
            "vllm_version": _vllm_version(self._vllm),
            "enable_prefix_caching": self.enable_prefix_caching,
            "batch_invariant": self.batch_invariant,
            "gpu_memory_utilization": self.gpu_memory_utilization,
        }

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def num_parameters(self) -> int | None:
        # the weights live in vLLM's engine process: counted from the checkpoint's headers instead
        return self._num_parameters
