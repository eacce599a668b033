"""A verifier served by vLLM's pooling runner, so search need not run a transformers PRM beside a vLLM policy.

`load_pooling_verifier` starts `vllm.LLM(model, runner="pooling", ...)` on a PRM this toolkit trained (or
TRL did) or a public one (`ttstrain.prm.public`), and `VLLMPoolingScorer` implements `ttstrain.prm.verifiers.
Verifier` on it: each solution is encoded as the transformers verifier encodes it (`fmt.encode` for a public
PRM, `ttstrain.prm.checkpoint.prm_inputs` with the checkpoint's layout for ours), sent as token ids (a
`TokensPrompt`, `{"prompt_token_ids": ids}`), and `LLM.encode(..., pooling_task="token_classify")` returns one
row of head outputs per token; the rows at the step positions are read by the same formula as the
transformers verifier, applied once.

How vLLM 0.32 is driven (read from its source; `tests/fake_vllm.py` reproduces it):

* vLLM's activation is switched off (`PoolerConfig(use_activation=False)` and `PoolingParams(use_activation=
  False)`): by default its token-classify head applies softmax over the columns (sigmoid for one column,
  `layers/pooler/activations.py` `PoolerClassify`), and the format's own formula (softmax of two logits,
  sigmoid of a value) on top of that would be a second activation. We get logits and apply the formula.
* STEP pooling (`PoolerConfig(tok_pooling_type="STEP")`, `layers/pooler/tokwise/methods.py` `StepPool`): a
  request whose step positions all hold one token id (Qwen's `<extra_0>`, Math-Shepherd's tag, Skywork's
  "\\n") sends it as `step_tag_id` and gets back only the rows of that token (the question's own occurrences
  included, so rows are matched to positions by occurrence); otherwise (ttstrain's step ends) every row.
  `returned_token_ids` is not used: in 0.32 it picks columns of the pooled hidden state *before* the
  classifier, so it cannot pick vocabulary logits (the pooling adapter drops a causal LM's LM head).
* A causal-LM PRM (math-shepherd, rlhflow) runs as a classifier whose two columns are the LM head's rows of the
  good and bad tokens: `convert="classify"`, `hf_overrides={"classifier_from_token": [good, bad], "method":
  "no_post_processing"}` (`models/adapters.py` `load_weights_no_post_processing`), and `PoolerConfig(task=
  "token_classify")`, since such a model's default task is "classify" and `encode` refuses another.
* Qwen2.5-Math-PRM is vLLM's own `Qwen2ForProcessRewardModel`; a `*ForTokenClassification` checkpoint
  (ttstrain's, TRL's, a converted one) is converted to a classifier by vLLM itself.
* Skywork's checkpoints (`Qwen2ForPrmModel`, a value head named `v_head.summary`) are not an architecture vLLM
  0.32 has: `convert_skywork_checkpoint` writes a `Qwen2ForTokenClassification` copy that it loads.
* `dtype="auto"` runs a float32 checkpoint in float16 on the pooling runner (`config/model.py`
  `_resolve_auto_dtype`); the head runs in float32 (`_get_head_dtype`).

A PRM with reference features combines its head with a reference policy's token log-probs, which the pooling
runner cannot give: it is refused (use `ttstrain.prm.verifiers.load_verifier`). Tokens are counted as read (token
tasks skip reading vLLM's prefix cache), and parameters from the checkpoint's safetensors headers, as the
other verifiers count them.

    from ttstrain.prm.verifiers_vllm import load_pooling_verifier
    prm = load_pooling_verifier("Qwen/Qwen2.5-Math-PRM-7B", gpu_memory_utilization=0.3, dtype="bfloat16")
    prm.score([prm.prompt_for("What is 2 + 3?")], [["2 + 3 = 5.", "The answer is \\\\boxed{5}."]])
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path

import torch
from transformers import AutoConfig

from ttstrain.aggregation import DEFAULT_AGGREGATION, aggregate
from ttstrain.generation.vllm_backend import shutdown_engine
from ttstrain.models import check_weight_files, checkpoint_parameters, load_tokenizer, local_model_folder, resolve_model
from ttstrain.prm.checkpoint import HEAD_TYPE, PRM_CONFIG_KEY, TRL_HEAD_TYPE, layout_from_metadata, prm_inputs, trl_metadata
from ttstrain.prompts import PromptFormat
from ttstrain.prm.public import PRM_FORMATS, PRMFormat
from ttstrain.prm.reference_features import META_KEY
from ttstrain.prm.verifiers import OWN_FORMATS, QuestionReader, question_format, resolve_prm_format

_INSTALL_HINT = ("scoring with a PRM on vLLM's pooling runner needs vLLM, which is not installed. Install it with: "
                 "pip install 'ttstrain[vllm]' on a CUDA machine, or score with transformers "
                 "(ttstrain.prm.verifiers.load_verifier).")
POOLING_TASK = "token_classify"


def _import_vllm():
    try:
        vllm = importlib.import_module("vllm")
        config = importlib.import_module("vllm.config")
    except ImportError as exc:  # also raised when sys.modules["vllm"] is None
        raise ImportError(_INSTALL_HINT) from exc
    return vllm, config.PoolerConfig


# ---- how a checkpoint's rows are read -----------------------------------------------------------------

class _PublicReading:
    """A public format: `fmt.encode`, and `fmt.read` on the rows (for a causal LM the two logit columns vLLM
    returns are put back at their vocabulary ids, the rest -inf, so the format's own formula reads them)."""

    reads_questions = True

    def __init__(self, fmt: PRMFormat, tokenizer):
        fmt.check_tokenizer(tokenizer)
        self.fmt, self.tokenizer = fmt, tokenizer
        self.label_ids = tuple(fmt.label_token_ids(tokenizer)) if fmt.model_class == "causal_lm" else None
        self.prompt_format = question_format(fmt)

    def engine_kwargs(self) -> dict:
        if self.label_ids is None:
            return {}
        tokens = self.tokenizer.convert_ids_to_tokens(list(self.label_ids))
        return {"convert": "classify",
                "hf_overrides": {"classifier_from_token": tokens, "method": "no_post_processing"}}

    def encode(self, question: str, steps: list[str]) -> tuple[list[int], list[int]]:
        enc = self.fmt.encode(self.tokenizer, question, steps)
        return list(enc.input_ids), list(enc.positions)

    def read(self, rows: torch.Tensor) -> torch.Tensor:
        if self.label_ids is not None:
            self.fmt.check_width(rows, 2, "label logits")
            full = torch.full((rows.shape[0], max(self.label_ids) + 1), float("-inf"))
            full[:, list(self.label_ids)] = rows
            rows = full
        return self.fmt.read(self.tokenizer, rows)


class _OwnReading:
    """A PRM ttstrain (or TRL) trained: `prm_inputs` with its recorded layout; sigmoid of a one-output head, or
    P(class 1) = sigmoid(logit1 - logit0) of a two-class head, as `ttstrain.prm.scoring.PRMScorer` reads it."""

    reads_questions = False

    def __init__(self, config, tokenizer, step_separator: str = "auto"):
        meta = getattr(config, PRM_CONFIG_KEY, None)
        if meta is None:
            meta = trl_metadata(config, step_separator)
        if meta.get(META_KEY):
            raise ValueError(f"this PRM combines its value head with the token log-probs of the reference policy "
                             f"{meta[META_KEY].get('reference_model')!r} (reference features), which vLLM's pooling "
                             "runner cannot compute; score it with transformers (ttstrain.prm.verifiers.load_verifier)")
        if (meta.get("prompt_format") or {}).get("examples_dropped"):
            raise ValueError("this PRM was trained without the policy's worked examples (drop_worked_examples), and "
                             "the vLLM pooling runner does not yet take questions back out of policy prompts; score "
                             "it with --prm_backend transformers")
        head, outputs = meta.get("head", HEAD_TYPE), getattr(config, "num_labels", 1)
        if not ((head == HEAD_TYPE and outputs == 1) or (head == TRL_HEAD_TYPE and outputs in (1, 2))):
            raise ValueError(f"expected a {HEAD_TYPE!r} head with one output, got {head!r} with {outputs} outputs")
        self.width, self.tokenizer, self.metadata = outputs, tokenizer, dict(meta)
        self.layout = layout_from_metadata(meta)
        self.prompt_format = PromptFormat.from_record(meta.get("prompt_format"), tokenizer)

    def engine_kwargs(self) -> dict:
        return {}

    def encode(self, prompt: str, steps: list[str]) -> tuple[list[int], list[int]]:
        st = prm_inputs(self.tokenizer, prompt, list(steps), self.layout)
        return list(st.input_ids), list(st.step_end_positions)

    def read(self, rows: torch.Tensor) -> torch.Tensor:
        if rows.ndim != 2 or rows.shape[-1] != self.width:
            raise ValueError(f"expected {self.width} output(s) per step, got rows of shape {tuple(rows.shape)}")
        logits = rows[:, 0] if self.width == 1 else rows[:, 1] - rows[:, 0]
        return torch.sigmoid(logits.float())


# ---- the verifier ------------------------------------------------------------------------------------

class VLLMPoolingScorer:
    """The `Verifier` interface on a vLLM pooling engine (see the module docstring). `stats` counts solutions,
    `encode` calls ("forward_passes"), tokens read and tokens vLLM took from its prefix cache."""

    def __init__(self, llm, tokenizer, reading, *, batch_size: int = 256, name: str | None = None,
                 num_parameters: int | None = None):
        self.llm, self.tokenizer, self.reading = llm, tokenizer, reading
        self._vllm, _ = _import_vllm()
        self.name, self.batch_size = name, batch_size
        self._num_parameters = num_parameters
        self.prompt_format = reading.prompt_format
        self.question_of = lambda prompt: prompt
        self._policy_format = None
        self.stats = {"solutions": 0, "forward_passes": 0, "tokens": 0, "tokens_from_prefix_cache": 0}
        self.last_scored_tokens: list[int] = []
        self.progress_hook = None

    @property
    def reads_questions(self) -> bool:
        return self.reading.reads_questions

    @property
    def fmt(self) -> PRMFormat | None:
        return getattr(self.reading, "fmt", None)

    @property
    def num_parameters(self) -> int:
        return self._num_parameters or 0

    def read_prompts_as(self, prompt_format) -> None:
        """The policy's prompt format (a public PRM reads the question back out of each prompt, and `prompt_for`
        builds prompts in it)."""
        if self.reads_questions:
            self.question_of = QuestionReader(prompt_format)
            self._policy_format = prompt_format

    def prompt_for(self, question: str) -> str:
        return (self._policy_format or self.prompt_format).build(question)

    def describe(self) -> dict:
        out = {"backend": "vllm-pooling", "model": self.name, "pooling_task": POOLING_TASK}
        if self.fmt is not None:
            out.update(prm_format=self.fmt.name, **self.fmt.describe(self.tokenizer))
        return out

    def clear_prefix_caches(self) -> None:
        """Nothing to clear: vLLM's token tasks do not read its prefix cache."""

    def _request(self, ids: list[int], positions: list[int]):
        """(TokensPrompt, PoolingParams, rows to keep of what comes back) of one solution."""
        tags = {ids[p] for p in positions}
        tag = tags.pop() if len(tags) == 1 else None
        params = self._vllm.PoolingParams(use_activation=False, step_tag_id=tag)
        if tag is None:
            return {"prompt_token_ids": ids}, params, positions, len(ids)
        occurrences = {p: k for k, p in enumerate(i for i, t in enumerate(ids) if t == tag)}
        return {"prompt_token_ids": ids}, params, [occurrences[p] for p in positions], len(occurrences)

    @torch.inference_mode()
    def score(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        if len(prompts) != len(steps):
            raise ValueError(f"{len(prompts)} prompts but {len(steps)} step lists")
        encoded = {i: self.reading.encode(self.question_of(p), list(s))
                   for i, (p, s) in enumerate(zip(prompts, steps)) if len(s)}
        for i, (_, positions) in encoded.items():
            if len(positions) != len(steps[i]):
                raise RuntimeError(f"{len(positions)} score positions for {len(steps[i])} steps")
        out: list[list[float]] = [[] for _ in prompts]
        order = list(encoded)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            requests = [self._request(*encoded[i]) for i in chunk]
            results = self.llm.encode([r[0] for r in requests], [r[1] for r in requests], use_tqdm=False,
                                      pooling_task=POOLING_TASK)
            for i, (_, _, keep, expected), res in zip(chunk, requests, results):
                data = res.outputs.data
                data = data if isinstance(data, torch.Tensor) else torch.as_tensor(data)
                if data.ndim != 2 or data.shape[0] != expected:
                    raise RuntimeError(f"vLLM returned pooled rows of shape {tuple(data.shape)} for a solution that "
                                       f"should give {expected} rows (is the engine's pooling STEP with this "
                                       "step tag?)")
                out[i] = [float(x) for x in self.reading.read(data[keep].float().cpu())]
                self.stats["tokens_from_prefix_cache"] += int(res.num_cached_tokens or 0)
            self.stats["forward_passes"] += 1
            self.stats["tokens"] += sum(len(encoded[i][0]) for i in chunk)
            if self.progress_hook is not None:
                self.progress_hook(len(chunk))
        self.stats["solutions"] += len(encoded)
        self.last_scored_tokens = [len(encoded[i][0]) if i in encoded else 0 for i in range(len(prompts))]
        return out

    def score_solutions(self, prompts: list[str], steps: list[list[str]], how: str = DEFAULT_AGGREGATION,
                        batch_size: int | None = None) -> list[float]:
        return [aggregate(s, how) for s in self.score(prompts, steps)]

    def close(self) -> None:
        """Shut the engine down and give its GPU memory back."""
        shutdown_engine(self.llm)
        self.llm = None


# ---- loading -----------------------------------------------------------------------------------------

def _config_json(path: str) -> dict:
    folder = local_model_folder(path)
    config = folder / "config.json" if folder is not None else None
    return json.loads(config.read_text()) if config is not None and config.is_file() else {}


def load_pooling_verifier(name_or_path: str, prm_format: str = "auto", *, gpu_memory_utilization: float = 0.3,
                          dtype: str = "auto", batch_size: int = 256, llm=None, step_separator: str = "auto",
                          **engine_kwargs) -> VLLMPoolingScorer:
    """A `VLLMPoolingScorer` of a checkpoint read in `prm_format` (`ttstrain.prm.verifiers.resolve_prm_format`);
    `llm` reuses an engine (tests inject a fake one); `engine_kwargs` go to `vllm.LLM`."""
    vllm, PoolerConfig = _import_vllm()
    fmt_name = resolve_prm_format(name_or_path, prm_format)
    path = resolve_model(name_or_path)
    check_weight_files(path, "PRM")
    if fmt_name in OWN_FORMATS:
        tokenizer = load_tokenizer(path)
        reading = _OwnReading(AutoConfig.from_pretrained(path), tokenizer, step_separator)
    else:
        if "Qwen2ForPrmModel" in (_config_json(path).get("architectures") or []):
            raise ValueError(f"{name_or_path} is Skywork's Qwen2ForPrmModel, an architecture vLLM 0.32 does not have; "
                             "write a copy it loads with ttstrain.prm.verifiers_vllm.convert_skywork_checkpoint(src, dst) "
                             "and score that folder with --prm_format skywork")
        tokenizer = load_tokenizer(path, trust_remote_code=True)
        reading = _PublicReading(PRM_FORMATS[fmt_name], tokenizer)
    if llm is None:
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        kwargs = dict(model=path, runner="pooling", dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                      trust_remote_code=fmt_name not in OWN_FORMATS,
                      pooler_config=PoolerConfig(task=POOLING_TASK, tok_pooling_type="STEP", use_activation=False),
                      **reading.engine_kwargs())
        kwargs.update(engine_kwargs)
        llm = vllm.LLM(**kwargs)
    return VLLMPoolingScorer(llm, tokenizer, reading, batch_size=batch_size, name=os.fspath(name_or_path),
                             num_parameters=checkpoint_parameters(path))


def convert_skywork_checkpoint(src: str, dst: str | os.PathLike) -> Path:
    """A copy of a Skywork PRM that vLLM 0.32 loads: its Qwen2 body and value head (`v_head.summary.*` renamed
    `score.*`) as a one-output `Qwen2ForTokenClassification`, the unused LM head left out, the tokenizer files
    copied. Read it with `--prm_format skywork` (transformers reads it the same way)."""
    from safetensors.torch import load_file, save_file

    folder, dst = local_model_folder(src), Path(dst)
    if folder is None:
        raise ValueError(f"{src} is not a local folder or a cached hub snapshot")
    dst.mkdir(parents=True, exist_ok=True)
    state = {}
    for f in sorted(folder.glob("*.safetensors")):
        state.update(load_file(str(f)))
    if "v_head.summary.weight" not in state:
        raise ValueError(f"{src} holds no Skywork value head (v_head.summary.weight)")
    state = {("score." + k[len("v_head.summary."):] if k.startswith("v_head.summary.") else k): v
             for k, v in state.items() if not k.startswith("lm_head.")}
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["Qwen2ForTokenClassification"], num_labels=1,
                  id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    for f in folder.iterdir():
        if f.is_file() and f.suffix != ".safetensors" and f.name not in ("config.json", "model.safetensors.index.json"):
            shutil.copy2(f, dst / f.name)
    return dst


__all__ = ["VLLMPoolingScorer", "convert_skywork_checkpoint", "load_pooling_verifier"]
