"""Score solutions with a trained PRM: one forward pass per solution reads every step's value.

A PRM checkpoint written by `ttstrain train-prm` is an ordinary Hugging Face token-classification
folder whose config carries `ttstrain_prm` (`ttstrain.prm.checkpoint`: the prompt and step format of
its rows, where a step's value sits, how BOS is added, label mode, head type); it loads by path,
nothing to register. The scorer tokenises prompt + steps with `ttstrain.prm.checkpoint.prm_inputs` and
the recorded layout, the function the trainer placed its labels with, runs the solutions in packed
batches (several solutions per row, each attending only to itself, as in training) and returns
sigmoid(logit) at each step's position: the PRM's estimate that the solution, continued from that
step, reaches the right answer.

A folder with no `ttstrain_prm` is read as TRL's `PRMTrainer` writes one (`prm_format.trl_metadata`):
values on the last separator token after each step (separator `"\\n"`, TRL's default, unless
`step_separator=` says otherwise), the tokenizer's BOS in front, P(class 1) of a two-class head; a
warning says what was assumed.

A solution's step scores become one number with an aggregation from the project's one table
(`ttstrain.aggregation.AGGREGATIONS`, re-exported here); Snell et al. found the last step's score
best for PRMs trained on Monte Carlo labels, so `"last"` is the default.

A PRM trained with `--reference_features true` also records a small combiner over the frozen
reference policy's token log-probs (`ttstrain.prm.reference_features`); the scorer then loads that
policy too and returns the combined probability. `use_reference_features=False` scores with the
value head alone (the ablation).

    from ttstrain.prm.scoring import PRMScorer, aggregate
    prm = PRMScorer.from_pretrained("runs/default/prm_demo")
    step_scores = prm.score([prompt, prompt], [["3 + 4 = 7", "The answer is \\\\boxed{7}."], ["3 + 4 = 8"]])
    best = max(range(2), key=lambda i: aggregate(step_scores[i]))            # "last"
    prm.score_solutions(prompts, steps, how="min")                           # one value per solution
"""

from __future__ import annotations

import logging
import os

import torch
from transformers import AutoModelForTokenClassification

from ttstrain.aggregation import AGGREGATIONS, DEFAULT_AGGREGATION, aggregate
from ttstrain.devices import resolve_device
from ttstrain.prm.reference_features import (META_KEY, combined_logits, load_reference_model, prefix_features,
                                         token_logprobs)
from ttstrain.generation.prefix_cache import PrefixKVCache, cached_forward, value_head_logits
from ttstrain.models import _torch_dtype, check_weight_files, load_tokenizer
from ttstrain.prm.batching import packed_batches
from ttstrain.prm.checkpoint import (HEAD_TYPE, PRM_CONFIG_KEY, TRL_HEAD_TYPE, layout_from_metadata, prm_inputs,
                                 trl_metadata)
from ttstrain.prompts import PromptFormat, QuestionReader
from ttstrain.steps import resolve_step_format

logger = logging.getLogger(__name__)


class PRMScorer:
    """A token-value PRM and its tokenizer; `score` gives per-step probabilities.

    `stats` counts what scoring cost: solutions, forward passes and tokens run through the PRM
    (the "PRM-scored tokens" of a search budget); `last_scored_tokens` holds the tokens of each
    solution of the latest `score` call (0 for a solution with no step).

    `value_cache`, a dict, keeps the value head's logits of every token sequence scored, so another
    scorer of the same model given the same dict (the value-head-only ablation in eval-prm) reads
    them instead of running the model again. It grows with every sequence; leave it None for search.

    `step_separator` is for a checkpoint without `ttstrain_prm` (TRL's): the separator it was trained
    with (`auto`: TRL's default `"\\n"`). A ttstrain checkpoint records its own, and another given here
    is refused.
    """

    def __init__(self, model, tokenizer, *, batch_size: int = 32, packing: bool = True,
                 packing_length: int | None = None, reference_model=None, use_reference_features: bool = True,
                 value_cache: dict | None = None, prefix_cache_bytes: int = 0, step_separator: str = "auto"):
        meta = getattr(model.config, PRM_CONFIG_KEY, None)
        if meta is None:
            meta = trl_metadata(model.config, step_separator)
            logger.warning("%s", meta["assumed"])
        self.layout = layout_from_metadata(meta)
        if step_separator not in (None, "", "auto"):
            given = resolve_step_format(step_separator, "auto", "plain").separator
            if given != self.layout.steps.separator:
                raise ValueError(f"step_separator {given!r} was given, but this PRM records that it was trained on "
                                 f"{self.layout.steps.describe()}")
        head, outputs = meta.get("head", HEAD_TYPE), getattr(model.config, "num_labels", 1)
        if not ((head == HEAD_TYPE and outputs == 1) or (head == TRL_HEAD_TYPE and outputs in (1, 2))):
            raise ValueError(f"expected a {HEAD_TYPE!r} head with one output, got {head!r} with {outputs} outputs")
        # one logit per token: the value head's, or for a two-class head (TRL's) logit1 - logit0, whose
        # sigmoid is the softmax probability of class 1
        self._head_logits = value_head_logits if outputs == 1 else _class_one_logits
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.metadata = dict(meta)
        # the layout the PRM was trained on: questions it is given alone are put into it (`prompt_for`)
        self.prompt_format = PromptFormat.from_record(meta.get("prompt_format"), tokenizer)
        # trained without the policy's worked examples (`drop_worked_examples`): it reads questions, taking each
        # policy prompt back to its question (`read_prompts_as`) and putting it into its own format
        self.reads_questions = bool((meta.get("prompt_format") or {}).get("examples_dropped"))
        self.question_of = lambda prompt: prompt
        self._policy_format = None
        self.batch_size = batch_size
        self.packing = packing
        self.packing_length = packing_length
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stats = {"solutions": 0, "forward_passes": 0, "tokens": 0, "tokens_from_prefix_cache": 0}
        self.progress_hook = None  # called with the number of solutions of each value-head batch run
        # one cache per model: keys are token ids, and the two models' outputs differ
        self.prefix_cache = PrefixKVCache(prefix_cache_bytes) if prefix_cache_bytes > 0 else None
        self.reference_prefix_cache = PrefixKVCache(prefix_cache_bytes) if prefix_cache_bytes > 0 else None
        self.value_cache = value_cache
        self.last_scored_tokens: list[int] = []
        self.reference_spec = meta.get(META_KEY) if use_reference_features else None
        self.reference_model = reference_model.eval() if (self.reference_spec and reference_model is not None) else None
        if self.reference_spec and self.reference_model is None:
            raise ValueError(f"this PRM combines its value head with the token log-probs of "
                             f"{self.reference_spec.get('reference_model')!r}: pass reference_model= (or load with "
                             "PRMScorer.from_pretrained), or use_reference_features=False for the value head alone")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, device: str | torch.device = "auto", dtype: str = "auto",
                        attn_implementation: str | None = None, reference_model: str | None = None,
                        **kw) -> "PRMScorer":
        """Load a PRM folder (or hub id) written by the PRM trainer on `device` (`resolve_device`: auto is
        cuda when available); keyword arguments go to `__init__`.

        A PRM with reference features also loads its reference policy (the recorded
        `reference_model`, or `reference_model` given here, e.g. where the policy now lives).
        """
        path, device = os.fspath(path), resolve_device(device)
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        check_weight_files(path, "PRM")
        model = AutoModelForTokenClassification.from_pretrained(path, dtype=_torch_dtype(dtype), **extra)
        tokenizer = load_tokenizer(path)
        spec = (getattr(model.config, PRM_CONFIG_KEY, None) or {}).get(META_KEY)
        ref = None
        if spec and kw.get("use_reference_features", True):
            ref = load_reference_model(reference_model or spec["reference_model"], tokenizer, device=device,
                                       dtype=dtype, **extra)
        return cls(model.to(device), tokenizer, reference_model=ref, **kw)

    def clear_prefix_caches(self) -> None:
        """Empty the prefix KV caches (the PRM's and its reference model's), keeping their size limit."""
        if self.prefix_cache is not None:
            self.prefix_cache = PrefixKVCache(self.prefix_cache.max_bytes)
            self.reference_prefix_cache = PrefixKVCache(self.reference_prefix_cache.max_bytes)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_parameters(self) -> int:
        """Parameters that read every scored token: the PRM, plus its reference model when the
        scores combine the value head with that model's token log-probs (it reads the same tokens).
        Verifier FLOPs are 2 * this * tokens read."""
        n = sum(p.numel() for p in self.model.parameters())
        if self.reference_spec and self.reference_model is not None:
            n += sum(p.numel() for p in self.reference_model.parameters())
        return n

    reads_questions = False  # it reads the policy's prompts, in the format it was trained on (unless set above)

    def read_prompts_as(self, prompt_format) -> None:
        """A PRM that reads questions: prompts given to `score` were built by the policy's `prompt_format` (worked
        examples and all); each is taken back to its question, then put into this PRM's own format."""
        self.question_of = QuestionReader(prompt_format)
        self._policy_format = prompt_format

    def prompt_for(self, question: str) -> str:
        """`question` in the prompt format this PRM was trained on (plain when its checkpoint records none); for a
        PRM that reads questions, as `score` takes it (the policy's format once told of it, else the bare question)."""
        if self.reads_questions:
            return self._policy_format.build(question) if self._policy_format is not None else question
        return self.prompt_format.build(question)

    def describe(self) -> dict:
        """Nothing beyond its type and checkpoint path, which a run records itself."""
        return {}

    def tokenize(self, prompt: str, steps: list[str]):
        """The tokens and the positions of the step values the PRM reads: `prm_inputs` with its recorded
        layout, as in training."""
        return prm_inputs(self.tokenizer, prompt, list(steps), self.layout)

    @torch.inference_mode()
    def score(self, prompts: list[str], steps: list[list[str]], batch_size: int | None = None) -> list[list[float]]:
        """Per-step probabilities for each (prompt, steps); a solution with no step gets []."""
        if len(prompts) != len(steps):
            raise ValueError(f"{len(prompts)} prompts but {len(steps)} step lists")
        if self.reads_questions:
            prompts = [self.prompt_format.build(self.question_of(p)) for p in prompts]
        batch_size = batch_size or self.batch_size
        encoded = {i: self.tokenize(p, s) for i, (p, s) in enumerate(zip(prompts, steps)) if len(s)}
        keys = list(encoded)
        seqs = [encoded[i].input_ids for i in keys]
        ends = [encoded[i].step_end_positions for i in keys]
        # prefixes a later sequence may share: the prompt, and the solution up to each step end
        cuts = ([[encoded[i].prompt_length] + [e + 1 for e in encoded[i].step_end_positions] for i in keys]
                if self.prefix_cache is not None else None)
        logits = self.value_logits(seqs, ends, batch_size, boundaries=cuts)
        if self.reference_spec:
            lps = token_logprobs(self.reference_model, seqs, self.pad_token_id, batch_size, self.packing,
                                 cache=self.reference_prefix_cache, boundaries=cuts)
            logits = [combined_logits(self.reference_spec, v, prefix_features(lp, encoded[i].prompt_length, e))
                      for i, v, lp, e in zip(keys, logits, lps, ends)]
        # the value head's logits are float32 as the model made them; combined logits are float64 and stay
        # so (out-of-domain text can reach logits of -100, where a float32 sigmoid is exactly 0)
        dtype = torch.float64 if self.reference_spec else torch.float32
        out: list[list[float]] = [[] for _ in prompts]
        for i, v in zip(keys, logits):
            out[i] = torch.sigmoid(torch.tensor(v, dtype=dtype)).tolist()
        self.stats["solutions"] += len(encoded)
        self.last_scored_tokens = [len(encoded[i].input_ids) if i in encoded else 0 for i in range(len(prompts))]
        return out

    @torch.inference_mode()
    def value_logits(self, seqs: list[list[int]], step_ends: list[list[int]], batch_size: int | None = None,
                     boundaries: list[list[int]] | None = None) -> list[list[float]]:
        """The value head's logit at each step end of each token sequence (one forward pass per packed batch).

        With a prefix cache and `boundaries` (prefix lengths a later sequence may share), a sequence
        runs only from its longest cached prefix (`ttstrain.generation.prefix_cache`); `stats["tokens"]` counts
        the tokens the model ran, `stats["tokens_from_prefix_cache"]` those it reused.
        """
        batch_size = batch_size or self.batch_size
        out: list[list[float]] = [[] for _ in seqs]
        cache = self.value_cache
        keys = [(tuple(q), tuple(e)) for q, e in zip(seqs, step_ends)] if cache is not None else None
        todo = []
        for i in range(len(seqs)):
            if cache is not None and keys[i] in cache:
                out[i] = list(cache[keys[i]])
            else:
                todo.append(i)
        if self.prefix_cache is not None and boundaries is not None and todo:
            before = dict(self.prefix_cache.stats)
            per_token = cached_forward(self.model, seqs, boundaries, self.prefix_cache, self.pad_token_id, batch_size,
                                       self._head_logits, indices=todo)
            for i in todo:
                out[i] = per_token[i][torch.as_tensor(step_ends[i], dtype=torch.long)].tolist()
                if cache is not None:
                    cache[keys[i]] = tuple(out[i])
            self.stats["forward_passes"] += -(-len(todo) // batch_size)
            self.stats["tokens"] += self.prefix_cache.stats["tokens_computed"] - before["tokens_computed"]
            self.stats["tokens_from_prefix_cache"] += self.prefix_cache.stats["tokens_reused"] - before["tokens_reused"]
            if self.progress_hook is not None:
                self.progress_hook(len(todo))
            return out
        for chunk, inputs, where in packed_batches(seqs, self.pad_token_id, batch_size, self.packing,
                                                   self.packing_length, indices=todo):
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            logits = self._head_logits(self.model(**inputs, use_cache=False).logits.float(), None)
            for i, (r, o) in zip(chunk, where):
                pos = torch.as_tensor(step_ends[i], device=logits.device) + o
                out[i] = logits[r, pos].tolist()
                if cache is not None:
                    cache[keys[i]] = tuple(out[i])
            self.stats["forward_passes"] += 1
            self.stats["tokens"] += sum(len(seqs[i]) for i in chunk)
            if self.progress_hook is not None:
                self.progress_hook(len(chunk))
        return out

    def score_solutions(self, prompts: list[str], steps: list[list[str]], how: str = DEFAULT_AGGREGATION,
                        batch_size: int | None = None) -> list[float]:
        """One aggregated score per solution (`ttstrain.aggregation.aggregate` of `score`)."""
        return [aggregate(s, how) for s in self.score(prompts, steps, batch_size)]


def _class_one_logits(logits: torch.Tensor, next_ids: torch.Tensor | None = None) -> torch.Tensor:
    """A two-class head's logit of class 1 against class 0 at each position (sigmoid of it = softmax's class 1)."""
    return logits[..., 1].float() - logits[..., 0].float()


__all__ = ["AGGREGATIONS", "DEFAULT_AGGREGATION", "PRMScorer", "aggregate", "resolve_device"]
