"""The verifier a stage scores with: a PRM this toolkit trained, one TRL trained, or a public PRM read by its
own convention, all behind one interface (`Verifier`).

`--prm_format` picks how a checkpoint is read (`resolve_prm_format`):

* `ttstrain`: a checkpoint `ttstrain train-prm` wrote (its config records `ttstrain_prm`): `PRMScorer`;
* `trl`: a token-classification checkpoint without that record, as TRL's `PRMTrainer` writes: `PRMScorer`
  in TRL's layout (`ttstrain.prm.checkpoint.trl_metadata`);
* `math-shepherd`, `rlhflow`, `qwen2.5-math-prm`, `skywork`: the public PRMs of `ttstrain.prm.public`,
  each with its own input layout and step-score formula: `ConventionScorer`;
* `auto` (the default): `ttstrain` or `trl` from the checkpoint's config, a public format from the hub id
  when it is one of the known checkpoints; anything else must be named.

A format that contradicts the checkpoint (a ttstrain PRM given `--prm_format skywork`, a known hub id
given another public format, a tokenizer without the format's special tokens) is refused with a message
naming both.

A public PRM reads the *question*, not the policy's prompt: callers hand every verifier the prompts the
policy was given, so a `ConventionScorer` is told the policy's prompt format (`read_prompts_as`) and takes
the question back out of each prompt (`QuestionReader`).

    from ttstrain.prm.verifiers import load_verifier
    prm = load_verifier("Qwen/Qwen2.5-Math-PRM-7B", device="cuda", dtype="bfloat16")   # auto: qwen2.5-math-prm
    prm.score([prm.prompt_for("What is 2 + 3?")], [["2 + 3 = 5.", "The answer is \\\\boxed{5}."]])
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import torch

from ttstrain.aggregation import DEFAULT_AGGREGATION, aggregate
from ttstrain.devices import resolve_device
from ttstrain.models import check_weight_files, local_model_folder, resolve_model
from ttstrain.prm.checkpoint import PRM_CONFIG_KEY
from ttstrain.prm.public import PRM_FORMATS, PRMFormat
from ttstrain.prm.scoring import PRMScorer
from ttstrain.prompts import PromptFormat, QuestionReader
from ttstrain.steps import LINE, StepFormat

OWN_FORMATS = ("ttstrain", "trl")  # read by ttstrain.prm.scoring.PRMScorer


def prm_format_choices() -> list[str]:
    return ["auto", *OWN_FORMATS, *PRM_FORMATS]


@runtime_checkable
class Verifier(Protocol):
    """What search, eval-prm, revision selection and compute-optimal call on a verifier. Every verifier class
    of the package has each member (tests/test_verifier_protocol.py), so callers use them without probing.

    `score` gives each solution's per-step probabilities; `prompt_for` puts a bare question in the form
    the verifier reads, `prompt_format` (whose `steps` cut a solution the way the verifier reads it);
    `reads_questions` is True for a public PRM, which reads bare questions, not the policy's prompts.
    `stats["tokens"]` and `last_scored_tokens` count what it read, and `num_parameters` turns those tokens
    into FLOPs (search's budget accounting). `progress_hook`, when set, is called with the number of
    solutions of each batch a verifier that reports its batches runs. `describe()` is what a run records
    about how it reads solutions beyond its type and path ({} when nothing more); `clear_prefix_caches()`
    empties the prefix caches it keeps (nothing to do without one), so a run's scores depend on it alone.
    """

    stats: dict
    last_scored_tokens: list[int]
    reads_questions: bool
    prompt_format: PromptFormat | QuestionFormat
    progress_hook: Callable[[int], None] | None

    @property
    def num_parameters(self) -> int: ...

    def score(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]: ...

    def score_solutions(self, prompts: list[str], steps: list[list[str]], how: str = DEFAULT_AGGREGATION
                        ) -> list[float]: ...

    def prompt_for(self, question: str) -> str: ...

    def describe(self) -> dict: ...

    def clear_prefix_caches(self) -> None: ...


# ---- which convention a checkpoint is read by --------------------------------------------------------

def _local_config(name_or_path: str, download: bool = True) -> dict | None:
    """The checkpoint's config.json: from its folder or the Hugging Face cache, else downloaded (None: neither)."""
    folder = local_model_folder(name_or_path)
    config = folder / "config.json" if folder is not None else None
    if config is None and download and "/" in os.fspath(name_or_path) and not os.path.isabs(os.fspath(name_or_path)):
        try:
            from huggingface_hub import hf_hub_download

            config = Path(hf_hub_download(os.fspath(name_or_path), "config.json"))
        except Exception:  # offline, or not a repo: detection falls back to the hub id alone
            config = None
    return json.loads(config.read_text()) if config is not None and config.is_file() else None


def known_format(name_or_path: str) -> str | None:
    """The public format a hub id was published with (matched case-insensitively), or None."""
    name = os.fspath(name_or_path).rstrip("/").lower()
    for fmt in PRM_FORMATS.values():
        if name in (m.lower() for m in fmt.known_models):
            return fmt.name
    return None


def resolve_prm_format(name_or_path: str, prm_format: str = "auto") -> str:
    """The format a checkpoint is read in (see the module docstring); refuses one that contradicts it."""
    choices = prm_format_choices()
    if prm_format not in choices:
        raise ValueError(f"--prm_format {prm_format!r} is not one of {choices}")
    published = known_format(name_or_path)
    config = _local_config(name_or_path, download=published is None)  # a known hub id needs no download to be read
    own = None
    if config is not None and config.get(PRM_CONFIG_KEY):
        own = "ttstrain"
    elif config is not None and any(a.endswith("ForTokenClassification") for a in config.get("architectures") or []) \
            and config.get("num_labels", len(config.get("id2label") or {}) or 2) in (1, 2) \
            and published is None:
        own = "trl"
    if prm_format == "auto":
        found = own or published
        if found is None and config is None and local_model_folder(name_or_path) is None:
            raise OSError(f"cannot read the PRM {name_or_path!r}: it is not a local folder nor in the Hugging Face "
                          "cache, and its config.json could not be downloaded (offline, or no such repository)")
        if found is None:
            raise ValueError(f"cannot tell how to read the PRM {name_or_path!r}: it records no ttstrain_prm, is not a "
                             f"token-classification checkpoint and is not one of the known public PRMs; name its "
                             f"convention with --prm_format ({', '.join(choices[1:])})")
        return found
    if own == "ttstrain" and prm_format != "ttstrain":
        raise ValueError(f"--prm_format {prm_format} was given, but {name_or_path} is a ttstrain PRM (its config.json "
                         f"records {PRM_CONFIG_KEY}): use --prm_format ttstrain or auto")
    if published is not None and prm_format != published:
        raise ValueError(f"--prm_format {prm_format} was given, but {name_or_path} was published as a {published} PRM "
                         f"(its own input layout and score): use --prm_format {published} or auto")
    return prm_format


# ---- the question inside a policy prompt: `ttstrain.prompts.QuestionReader` -------------------------------


class QuestionFormat:
    """The 'prompt format' of a verifier that reads bare questions: a question is its own prompt. `steps` says
    how a step holding the verifier's separator is flattened before scoring (ProcessBench's steps)."""

    kind = "question"

    def __init__(self, prm_format: str, steps: StepFormat):
        self.prm_format, self.steps = prm_format, steps

    def build(self, question: str) -> str:
        return question.strip()

    def record(self) -> dict:
        return {"kind": self.kind, "prm_format": self.prm_format, "step_format": self.steps.record()}


def question_format(fmt: PRMFormat) -> QuestionFormat:
    """The question format of a public PRM; its steps flatten a step holding a newline into one line where the
    convention cuts steps at newlines, and leave steps whole otherwise."""
    return QuestionFormat(fmt.name, LINE if fmt.cuts_steps_at_newlines else _WHOLE_STEPS)


_WHOLE_STEPS = StepFormat("\x00", "eos")  # a separator no text holds: a step is never cut


# ---- a public PRM, run with transformers ------------------------------------------------------------

class ConventionScorer:
    """A public PRM (`ttstrain.prm.public.PRMFormat`) behind the `Verifier` interface: solutions are encoded
    by the format, run in right-padded batches, and the rows at the format's positions read by its formula.
    For a causal-LM format only the rows at those positions go through the LM head (a full-vocabulary
    tensor for every token of a batch would not fit beside a policy)."""

    def __init__(self, model, tokenizer, fmt: PRMFormat, *, batch_size: int = 8, name: str | None = None):
        fmt.check_tokenizer(tokenizer)
        self.model, self.tokenizer, self.fmt = model.eval(), tokenizer, fmt
        self.name = name or getattr(getattr(model, "config", None), "_name_or_path", None)
        self.batch_size = batch_size
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        self.prompt_format = question_format(fmt)
        self.question_of = lambda prompt: prompt  # prompts are questions until read_prompts_as says otherwise
        self._prompt_format = None
        self.stats = {"solutions": 0, "forward_passes": 0, "tokens": 0}
        self.last_scored_tokens: list[int] = []
        self.progress_hook = None

    reads_questions = True

    def read_prompts_as(self, prompt_format) -> None:
        """The policy's prompt format: prompts given to `score` are taken back to their questions with it, and
        `prompt_for` builds prompts in it (so a caller's prompts and its own read back alike)."""
        self.question_of = QuestionReader(prompt_format)
        self._prompt_format = prompt_format

    def prompt_for(self, question: str) -> str:
        return (self._prompt_format or self.prompt_format).build(question)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def describe(self) -> dict:
        return {"prm_format": self.fmt.name, "model": self.name, **self.fmt.describe(self.tokenizer)}

    def clear_prefix_caches(self) -> None:
        """No prefix cache: every solution is run whole."""

    def _rows(self, ids: torch.Tensor, mask: torch.Tensor, where: list[tuple[int, list[int]]]) -> list[torch.Tensor]:
        """The output rows at each (batch row, positions) of one batch."""
        if self.fmt.model_class == "causal_lm":
            hidden = self.model.get_decoder()(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            head = self.model.get_output_embeddings()
            return [head(hidden[r, torch.as_tensor(pos, device=hidden.device)]).float() for r, pos in where]
        out = self.model(input_ids=ids, attention_mask=mask, use_cache=False)
        logits = out.logits if hasattr(out, "logits") else out[0]
        return [logits[r, torch.as_tensor(pos, device=logits.device)].float() for r, pos in where]

    @torch.inference_mode()
    def score(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        if len(prompts) != len(steps):
            raise ValueError(f"{len(prompts)} prompts but {len(steps)} step lists")
        encoded = {i: self.fmt.encode(self.tokenizer, self.question_of(p), list(s))
                   for i, (p, s) in enumerate(zip(prompts, steps)) if len(s)}
        for i, enc in encoded.items():
            if len(enc.positions) != len(steps[i]):
                raise RuntimeError(f"{self.fmt.name}: {len(enc.positions)} score positions for {len(steps[i])} steps")
        out: list[list[float]] = [[] for _ in prompts]
        order = sorted(encoded, key=lambda i: len(encoded[i].input_ids))  # similar lengths share a batch
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            width = max(len(encoded[i].input_ids) for i in chunk)
            ids = torch.full((len(chunk), width), self.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, i in enumerate(chunk):
                seq = encoded[i].input_ids
                ids[r, :len(seq)] = torch.as_tensor(seq)
                mask[r, :len(seq)] = 1
            rows = self._rows(ids.to(self.device), mask.to(self.device),
                              [(r, encoded[i].positions) for r, i in enumerate(chunk)])
            for i, row in zip(chunk, rows):
                out[i] = [float(x) for x in self.fmt.read(self.tokenizer, row).cpu()]
            self.stats["forward_passes"] += 1
            self.stats["tokens"] += sum(len(encoded[i].input_ids) for i in chunk)
            if self.progress_hook is not None:
                self.progress_hook(len(chunk))
        self.stats["solutions"] += len(encoded)
        self.last_scored_tokens = [len(encoded[i].input_ids) if i in encoded else 0 for i in range(len(prompts))]
        return out

    def score_solutions(self, prompts: list[str], steps: list[list[str]], how: str = DEFAULT_AGGREGATION,
                        batch_size: int | None = None) -> list[float]:
        return [aggregate(s, how) for s in self.score(prompts, steps)]


# ---- one entry for every stage -----------------------------------------------------------------------

def load_verifier(name_or_path: str, prm_format: str = "auto", *, device: str = "auto", dtype: str = "auto",
                  batch_size: int = 32, **prm_kw) -> Verifier:
    """The verifier a checkpoint and `--prm_format` name, on `device` (`ttstrain.devices.resolve_device`);
    `prm_kw` go to `PRMScorer.from_pretrained` for the ttstrain and TRL formats."""
    fmt_name = resolve_prm_format(name_or_path, prm_format)
    device = resolve_device(device)
    check_weight_files(resolve_model(name_or_path), "PRM")
    if fmt_name in OWN_FORMATS:
        return PRMScorer.from_pretrained(name_or_path, device=device, dtype=dtype, batch_size=batch_size, **prm_kw)
    fmt = PRM_FORMATS[fmt_name]
    model, tokenizer = fmt.load(name_or_path, device=device, dtype=dtype)
    return ConventionScorer(model, tokenizer, fmt, batch_size=batch_size, name=os.fspath(name_or_path))


def reads_questions(verifier) -> bool:
    """Does this verifier read bare questions (a public PRM) rather than the policy's prompts?"""
    return bool(verifier.reads_questions)


__all__ = ["ConventionScorer", "QuestionReader", "Verifier", "load_verifier", "prm_format_choices",
           "reads_questions", "resolve_prm_format"]
