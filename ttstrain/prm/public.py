"""Public PRMs, each read by its own convention: how (question, steps) becomes tokens, and where and how
a forward pass becomes each step's score.

A `PRMFormat` is one row of the table users pick from with `--prm_format` (`PRM_FORMATS`); the verifier
that runs it (`ttstrain.prm.verifiers.ConventionScorer`, and vLLM's pooling runner in
`ttstrain.prm.verifiers_vllm`) only calls the methods below, so a new public PRM is one new entry.

    fmt = PRM_FORMATS["qwen2.5-math-prm"]
    model, tokenizer = fmt.load("Qwen/Qwen2.5-Math-PRM-7B", device="cuda", dtype="bfloat16")
    enc = fmt.encode(tokenizer, "What is 2 + 3?", ["2 + 3 = 5.", "The answer is \\\\boxed{5}."])
    rows = <the model's output rows at enc.positions>           # [steps, width]: LM logits or head logits
    fmt.read(tokenizer, rows)                                   # P(step is good), one per step

The conventions, each as its reference code scores it (read 2025; the repositories named are public):

`math-shepherd` (peiyi9979/math-shepherd-mistral-7b-prm; its model card's example, and search-and-learn's
  `src/sal/models/reward_models.py`, class `MathShepherd`). Text `question + " " + steps`, each step followed
  by " ки", steps joined by "\\n" (the card's example: "Step 1: ... ки\\nStep 2: ... ки"), tokenized in one
  piece with the tokenizer's BOS. The score of a step is read at the tag's own token (the card:
  `scores[input_id == step_tag_id]`, `step_tag_id = encode("ки")[-1]`, 12902 in Mistral's vocabulary):
  softmax over the LM logits of the two tokens of `encode("+ -")[1:]` ([648, 387]), P("+"). We find the
  tag's token from the character offsets of the tags we wrote, not by its id, so a question that holds "ки"
  is no trouble; each step is stripped first (the card's steps carry no edge whitespace).

`rlhflow` (RLHFlow/Llama3.1-8B-PRM-Deepseek-Data, -Mistral-Data; RLHFlow/RLHF-Reward-Modeling
  `math-rm/prm_evaluate.py` and `math-rm/README.md`, and search-and-learn's `RLHFFlow`). A chat through the
  tokenizer's chat template: first user turn `question + " " + step_1`, later user turns one step each
  (stripped, as `prm_evaluate.py` strips them), every assistant turn "+". The score of a step is read at the
  position that predicts its assistant "+" (`prm_evaluate.py` reads position -3 of a conversation ending
  "+<|eot_id|>"): softmax over the LM logits of `encode("+")[-1]` and `encode("-")[-1]`, P("+"). "+" also
  occurs in math, so we render the chat with a placeholder character as each assistant turn, take the
  placeholders' character offsets, put "+" in their place and map offsets to tokens (search-and-learn does
  the same with a second, parallel chat whose assistant turns are "ки").

`qwen2.5-math-prm` (Qwen/Qwen2.5-Math-PRM-7B, -72B, and Qwen2.5-Math-7B-PRM800K, whose card carries the same
  code; the model cards' `make_step_rewards` example, and search-and-learn's `Qwen_2_5_Math`). The chat
  template with system "Please reason step by step, and put your final answer within \\\\boxed{}.", user the
  question, assistant the steps joined by "<extra_0>" with one after the last too; `tokenizer.encode` of the
  rendered text. A two-class token-classification head; at each "<extra_0>" token, softmax over the two
  logits, P(class 1). Loads with `AutoModel.from_pretrained(..., trust_remote_code=True)` when the
  checkpoint's config maps AutoModel to its own code (the real one: `modeling_qwen2_rm.
  Qwen2ForProcessRewardModel`, head `score` = Linear-ReLU-Linear), else as `AutoModelForTokenClassification`.

`skywork` (Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B, -7B; SkyworkAI/skywork-o1-prm-inference
  `model_utils/io_utils.py` `prepare_input` and `model_utils/prm_model.py` `PRM_MODEL`, `ValueHead`). No chat
  template: `encode(bos_token + problem + "\\n")`, then per step `encode(step)` followed by the id of
  `encode("\\n")[-1]`, each step tokenized alone; the reference splits the response on "\\n", so a step is
  a line (a step holding "\\n" is tokenized whole here and scored once). The value head reads the final
  hidden state; a step's score is sigmoid(value) at its appended "\\n" (`reward_flags`; `return_probs=True`
  applies the sigmoid). The checkpoint (config `architectures: ["Qwen2ForPrmModel"]`) holds a Qwen2 causal
  LM's weights plus `v_head.summary.weight` [1, hidden] and `v_head.summary.bias` [1] (names from
  `ValueHead.summary` under `PRM_MODEL.v_head`, which `PRM_MODEL.state_dict` prefixes with "v_head.", and
  from the vLLM plugin `vllm_add_dummy_model/prm_model.py`, which loads `v_head` and drops `lm_head.`). We
  load it as `AutoModelForTokenClassification` with `num_labels=1`, renaming `v_head.summary.*` to
  `score.*`; `lm_head.weight` is left unused. The head's dropout is inactive in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification

from ttstrain.models import DTYPES, load_causal_lm, load_tokenizer, resolve_model


@dataclass(frozen=True)
class PRMInput:
    """One solution as a PRM reads it: its tokens, and per step the index of the token whose output row
    scores that step (the row a forward pass gives at that index)."""

    input_ids: list[int]
    positions: list[int]


@dataclass(frozen=True)
class PRMFormat:
    """One public PRM convention (see the module docstring); a subclass per convention.

    `model_class`: how the checkpoint loads and which outputs `read` gets: "causal_lm" (rows are the LM's
    logits over the vocabulary), "token_classification" (rows are a token-classification head's logits:
    two classes, or one for a value head).
    `known_models`: hub ids published with this convention (detection by name, published figures).
    `source`: where the convention is written down.
    """

    name: str
    model_class: str
    known_models: tuple[str, ...] = field(default=())
    summary: str = ""
    source: str = ""
    # the convention cuts a response into steps at each newline (a step holding one would be read as several)
    cuts_steps_at_newlines: bool = False

    def load(self, name_or_path: str, *, device: str = "cpu", dtype: str = "auto"):
        """(model in eval mode on `device`, tokenizer) of a checkpoint in this convention."""
        raise NotImplementedError

    def check_tokenizer(self, tokenizer) -> None:
        """Raise ValueError naming this format and what the tokenizer lacks (e.g. "<extra_0>")."""
        raise NotImplementedError

    def encode(self, tokenizer, question: str, steps: Sequence[str]) -> PRMInput:
        """The tokens of (question, steps) in this convention, and the position that scores each step."""
        raise NotImplementedError

    def read(self, tokenizer, rows: torch.Tensor) -> torch.Tensor:
        """P(step is good) for each row (float32 [steps, width] model outputs at `encode`'s positions)."""
        raise NotImplementedError

    def describe(self, tokenizer) -> dict:
        """What this format reads, for a stage's config.json: layout, special tokens and their ids, the
        position rule and the formula."""
        raise NotImplementedError

    # ---- shared helpers ----------------------------------------------------------------------------

    def _record(self, tokens: dict, layout: str, position: str, formula: str) -> dict:
        return {"format": self.name, "model_class": self.model_class, "layout": layout,
                "tokens": tokens, "position": position, "formula": formula, "source": self.source}

    def _single_token(self, tokenizer, text: str, what: str) -> int:
        """The id of `text`, which must encode to exactly one known token."""
        ids = tokenizer.encode(text, add_special_tokens=False)
        unk = getattr(tokenizer, "unk_token_id", None)
        if len(ids) != 1 or (unk is not None and ids[0] == unk):
            raise ValueError(f"{self.name}: the tokenizer has no single token for {what} {text!r} "
                             f"(it encodes to {len(ids)} token(s) {ids[:8]}); a {self.name} PRM needs its own "
                             f"tokenizer")
        return ids[0]

    def _need_chat_template(self, tokenizer) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"{self.name}: the tokenizer has no chat template; a {self.name} PRM reads a chat")

    def check_width(self, rows: torch.Tensor, width: int, what: str) -> None:
        """Refuse model outputs of another width than the format reads (a head of the wrong size)."""
        if rows.ndim != 2 or rows.shape[-1] != width:
            raise ValueError(f"{self.name}: expected rows of {width} {what} per step, got shape {tuple(rows.shape)}")


def _torch_dtype(dtype):
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use 'auto' or one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def _offsets(tokenizer, text: str, *, add_special_tokens: bool) -> tuple[list[int], list[tuple[int, int]]]:
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def _token_at(offsets: list[tuple[int, int]], char: int) -> int:
    """Index of the token whose character span holds `char`."""
    for i, (start, end) in enumerate(offsets):
        if start <= char < end:
            return i
    raise ValueError(f"no token covers character {char}")


def _load_token_classifier(fmt: PRMFormat, path: str, head_names: str, *, device, dtype, **kw):
    """`AutoModelForTokenClassification` of `path`; refuses a checkpoint whose head (`score.*`) was not in it."""
    model, info = AutoModelForTokenClassification.from_pretrained(path, dtype=_torch_dtype(dtype),
                                                                  output_loading_info=True, **kw)
    missing = [k for k in info.get("missing_keys", ()) if k.startswith("score")]
    if missing:
        raise ValueError(f"{fmt.name}: {path} holds no {head_names}; the head {missing} would be random")
    return model.to(device).eval()


# ---- the conventions -------------------------------------------------------------------------------

@dataclass(frozen=True)
class CausalLMFormat(PRMFormat):
    """A convention read from a causal LM's logits: it loads as one, its tokenizer checked first."""

    def load(self, name_or_path, *, device="cpu", dtype="auto"):
        path = resolve_model(name_or_path)
        tokenizer = load_tokenizer(path)
        self.check_tokenizer(tokenizer)
        return load_causal_lm(path, dtype=dtype, device=device), tokenizer


@dataclass(frozen=True)
class MathShepherdFormat(CausalLMFormat):
    step_tag: str = "ки"
    good: str = "+"
    bad: str = "-"

    def _ids(self, tokenizer) -> tuple[int, int, int]:
        # the tag's id as it stands in text, after a space (Mistral: "▁ки", the card's 12902)
        text = "1. " + self.step_tag
        ids, offsets = _offsets(tokenizer, text, add_special_tokens=False)
        first, last = _token_at(offsets, len(text) - len(self.step_tag)), _token_at(offsets, len(text) - 1)
        if first != last or ids[last] == getattr(tokenizer, "unk_token_id", None):
            raise ValueError(f"{self.name}: the tokenizer has no single token for the step tag {self.step_tag!r} "
                             f"(it splits it into {tokenizer.convert_ids_to_tokens(ids[first:last + 1])}); a "
                             f"{self.name} PRM needs its own tokenizer")
        tag = ids[last]
        pair = tokenizer.encode(f"{self.good} {self.bad}", add_special_tokens=False)
        if len(pair) != 2:
            raise ValueError(f"{self.name}: the tokenizer does not encode {self.good!r} and {self.bad!r} as one "
                             f"token each ({pair}); a {self.name} PRM needs its own tokenizer")
        return tag, pair[0], pair[1]

    def label_token_ids(self, tokenizer) -> tuple[int, int]:
        """The (good, bad) token ids whose LM logits `read` compares."""
        return self._ids(tokenizer)[1:]


    def check_tokenizer(self, tokenizer) -> None:
        self._ids(tokenizer)

    def encode(self, tokenizer, question, steps) -> PRMInput:
        tag_id = self._ids(tokenizer)[0]
        text, tag_ends = f"{question} ", []
        for k, step in enumerate(steps):
            text += ("\n" if k else "") + step.strip() + " " + self.step_tag
            tag_ends.append(len(text) - 1)
        ids, offsets = _offsets(tokenizer, text, add_special_tokens=True)
        positions = [_token_at(offsets, end) for end in tag_ends]
        for k, p in enumerate(positions):
            if ids[p] != tag_id:
                raise ValueError(f"{self.name}: step {k + 1}'s tag {self.step_tag!r} merged into token {ids[p]} "
                                 f"({tokenizer.convert_ids_to_tokens(ids[p])!r}), not its own token {tag_id}")
        return PRMInput(ids, positions)

    def read(self, tokenizer, rows):
        _, good, bad = self._ids(tokenizer)
        return rows[:, [good, bad]].float().softmax(-1)[:, 0]

    def describe(self, tokenizer):
        tag, good, bad = self._ids(tokenizer)
        return self._record(
            {self.step_tag: tag, self.good: good, self.bad: bad},
            layout=f'BOS + question + " " + "\\n".join(step + " {self.step_tag}"), one piece',
            position=f"the token of each step's {self.step_tag!r} tag",
            formula=f"softmax(logits[{good}], logits[{bad}])[0] = P({self.good!r})")


@dataclass(frozen=True)
class RLHFlowFormat(CausalLMFormat):
    good: str = "+"
    bad: str = "-"
    chat_tokens: tuple[str, ...] = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
    placeholder: str = "\ue000"  # a private-use character no math text holds, one character like "+"

    def _ids(self, tokenizer) -> tuple[int, int]:
        for t in self.chat_tokens:
            self._single_token(tokenizer, t, "the chat marker")
        return (self._single_token(tokenizer, self.good, "the good label"),
                self._single_token(tokenizer, self.bad, "the bad label"))

    def label_token_ids(self, tokenizer) -> tuple[int, int]:
        """The (good, bad) token ids whose LM logits `read` compares."""
        return self._ids(tokenizer)


    def check_tokenizer(self, tokenizer) -> None:
        self._need_chat_template(tokenizer)
        self._ids(tokenizer)

    def encode(self, tokenizer, question, steps) -> PRMInput:
        good = self._ids(tokenizer)[0]
        chat = []
        for k, step in enumerate(steps):
            chat.append({"role": "user", "content": f"{question} {step.strip()}" if k == 0 else step.strip()})
            chat.append({"role": "assistant", "content": self.placeholder})
        rendered = tokenizer.apply_chat_template(chat, tokenize=False)
        marks = [i for i, c in enumerate(rendered) if c == self.placeholder]
        if len(marks) != len(steps):
            raise ValueError(f"{self.name}: the chat holds {len(marks)} assistant turns for {len(steps)} steps "
                             f"(the text contains {self.placeholder!r}, or the template drops turns)")
        ids, offsets = _offsets(tokenizer, rendered.replace(self.placeholder, self.good), add_special_tokens=False)
        label_tokens = [_token_at(offsets, m) for m in marks]
        for k, t in enumerate(label_tokens):
            if ids[t] != good or offsets[t] != (marks[k], marks[k] + 1):
                raise ValueError(f"{self.name}: assistant turn {k + 1}'s {self.good!r} is not a token of its own")
        return PRMInput(ids, [t - 1 for t in label_tokens])

    def read(self, tokenizer, rows):
        good, bad = self._ids(tokenizer)
        return rows[:, [good, bad]].float().softmax(-1)[:, 0]

    def describe(self, tokenizer):
        good, bad = self._ids(tokenizer)
        return self._record(
            {self.good: good, self.bad: bad},
            layout='chat template: user question + " " + step 1, then one user turn per step; every '
                   f'assistant turn {self.good!r}',
            position=f"the token before each assistant {self.good!r} (the one that predicts it)",
            formula=f"softmax(logits[{good}], logits[{bad}])[0] = P({self.good!r})")


@dataclass(frozen=True)
class QwenMathPRMFormat(PRMFormat):
    system: str = "Please reason step by step, and put your final answer within \\boxed{}."
    step_tag: str = "<extra_0>"
    chat_tokens: tuple[str, ...] = ("<|im_start|>", "<|im_end|>")

    def _tag_id(self, tokenizer) -> int:
        for t in self.chat_tokens:
            self._single_token(tokenizer, t, "the chat marker")
        return self._single_token(tokenizer, self.step_tag, "the step tag")

    def load(self, name_or_path, *, device="cpu", dtype="auto"):
        path = resolve_model(name_or_path)
        tokenizer = load_tokenizer(path, trust_remote_code=True)
        self.check_tokenizer(tokenizer)
        config = AutoConfig.from_pretrained(path, trust_remote_code=True)
        if "AutoModel" in (getattr(config, "auto_map", None) or {}):
            # the published checkpoints: Qwen2ForProcessRewardModel from the checkpoint's own code
            model, info = AutoModel.from_pretrained(path, trust_remote_code=True, dtype=_torch_dtype(dtype),
                                                    output_loading_info=True)
            missing = [k for k in info.get("missing_keys", ()) if k.startswith("score")]
            if missing:
                raise ValueError(f"{self.name}: {path} holds no reward head; {missing} would be random")
            return model.to(device).eval(), tokenizer
        return _load_token_classifier(self, path, "two-class head (score.*)", device=device, dtype=dtype), tokenizer

    def check_tokenizer(self, tokenizer) -> None:
        self._need_chat_template(tokenizer)
        self._tag_id(tokenizer)

    def encode(self, tokenizer, question, steps) -> PRMInput:
        tag = self._tag_id(tokenizer)
        if any(self.step_tag in s for s in (question, *steps)):
            raise ValueError(f"{self.name}: the text holds the step tag {self.step_tag!r}; its steps would not count")
        chat = [{"role": "system", "content": self.system}, {"role": "user", "content": question},
                {"role": "assistant", "content": self.step_tag.join(steps) + self.step_tag}]
        ids = list(tokenizer.encode(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=False)))
        positions = [i for i, t in enumerate(ids) if t == tag]
        if len(positions) != len(steps):
            raise ValueError(f"{self.name}: {len(positions)} {self.step_tag!r} tokens for {len(steps)} steps")
        return PRMInput(ids, positions)

    def read(self, tokenizer, rows):
        self.check_width(rows, 2, "class logits")
        return rows.float().softmax(-1)[:, 1]

    def describe(self, tokenizer):
        tag = self._tag_id(tokenizer)
        return self._record(
            {self.step_tag: tag},
            layout=f"chat template: system {self.system!r}, user question, assistant "
                   f"{self.step_tag!r}.join(steps) + {self.step_tag!r}",
            position=f"each {self.step_tag!r} token",
            formula="softmax(head logits)[1] = P(class 1)")


@dataclass(frozen=True)
class SkyworkFormat(PRMFormat):
    cuts_steps_at_newlines: bool = True
    step_end: str = "\n"
    value_head: tuple[str, ...] = ("v_head.summary.weight", "v_head.summary.bias")

    def _ids(self, tokenizer) -> tuple[int, int]:
        if tokenizer.bos_token is None:
            raise ValueError(f"{self.name}: the tokenizer has no bos_token; a {self.name} PRM reads "
                             f"bos_token + problem + '\\n' (skywork-o1-prm-inference prepare_input)")
        end = tokenizer.encode(self.step_end)
        if not end:
            raise ValueError(f"{self.name}: the tokenizer encodes {self.step_end!r} to nothing")
        return tokenizer.convert_tokens_to_ids(tokenizer.bos_token), end[-1]

    def load(self, name_or_path, *, device="cpu", dtype="auto"):
        path = resolve_model(name_or_path)
        tokenizer = load_tokenizer(path, trust_remote_code=True)
        self.check_tokenizer(tokenizer)
        model = _load_token_classifier(self, path, "value head (" + ", ".join(self.value_head) + ")",
                                       device=device, dtype=dtype, num_labels=1,
                                       key_mapping={r"^v_head\.summary\.": "score."})
        return model, tokenizer

    def check_tokenizer(self, tokenizer) -> None:
        self._ids(tokenizer)

    def encode(self, tokenizer, question, steps) -> PRMInput:
        end = self._ids(tokenizer)[1]
        # as prepare_input: `tokenizer.encode` with its defaults, each piece alone
        ids = list(tokenizer.encode(tokenizer.bos_token + question + "\n"))
        positions = []
        for step in steps:
            ids += (list(tokenizer.encode(step)) if step else []) + [end]
            positions.append(len(ids) - 1)
        return PRMInput(ids, positions)

    def read(self, tokenizer, rows):
        self.check_width(rows, 1, "value")
        return torch.sigmoid(rows.float()[:, 0])

    def describe(self, tokenizer):
        bos, end = self._ids(tokenizer)
        return self._record(
            {tokenizer.bos_token: bos, self.step_end: end},
            layout='encode(bos + question + "\\n") + per step encode(step) + [id of "\\n"], no chat template',
            position='the "\\n" token appended after each step',
            formula="sigmoid(value head)")


PRM_FORMATS: dict[str, PRMFormat] = {f.name: f for f in (
    MathShepherdFormat(
        "math-shepherd", "causal_lm", ("peiyi9979/math-shepherd-mistral-7b-prm",),
        summary='question + " " + steps each ending " ки"; P("+") against "-" at each tag',
        source="huggingface.co/peiyi9979/math-shepherd-mistral-7b-prm (card); "
               "github.com/huggingface/search-and-learn src/sal/models/reward_models.py MathShepherd"),
    RLHFlowFormat(
        "rlhflow", "causal_lm",
        ("RLHFlow/Llama3.1-8B-PRM-Deepseek-Data", "RLHFlow/Llama3.1-8B-PRM-Mistral-Data"),
        summary='a chat, one user turn per step, assistant "+"; P("+") against "-" where "+" is predicted',
        source="github.com/RLHFlow/RLHF-Reward-Modeling math-rm/prm_evaluate.py, math-rm/README.md; "
               "github.com/huggingface/search-and-learn src/sal/models/reward_models.py RLHFFlow"),
    QwenMathPRMFormat(
        "qwen2.5-math-prm", "token_classification",
        ("Qwen/Qwen2.5-Math-PRM-7B", "Qwen/Qwen2.5-Math-PRM-72B", "Qwen/Qwen2.5-Math-7B-PRM800K"),
        summary="Qwen chat, assistant steps each ending <extra_0>; P(class 1) of the two-class head there",
        source="huggingface.co/Qwen/Qwen2.5-Math-PRM-7B (card, make_step_rewards); "
               "github.com/huggingface/search-and-learn src/sal/models/reward_models.py Qwen_2_5_Math"),
    SkyworkFormat(
        "skywork", "token_classification",
        ("Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B", "Skywork/Skywork-o1-Open-PRM-Qwen-2.5-7B"),
        summary='BOS + problem + "\\n" + each step line and "\\n"; sigmoid of the value head at each "\\n"',
        source="github.com/SkyworkAI/skywork-o1-prm-inference model_utils/io_utils.py (prepare_input), "
               "model_utils/prm_model.py (PRM_MODEL, ValueHead)"),
)}
