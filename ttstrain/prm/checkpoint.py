"""What a PRM checkpoint records about itself, and the one function that builds what a PRM reads.

A PRM folder is plain Hugging Face format (`AutoModelForTokenClassification`); its config carries
`ttstrain_prm` (PRM_CONFIG_KEY), written by the trainer (`prm_metadata`, `layout_metadata`) and
read by the scorer before a single step:

  prompt_format    the prompt format of the rows it trained on, with their step format
                   (`step_format`: separator, how a solution ends); missing: plain, LINE
  step_separator   that step format's separator, repeated for readers without ttstrain (must agree)
  label_placement  where a step's value sits. "step_end" (ttstrain's): prompt + solution tokenized
                   in one piece, as the policy wrote it, the value on the token that holds the
                   step's last character (`ttstrain.steps.step_end_positions`). "separator" (TRL's
                   `PRMTrainer.tokenize_row`): the prompt and each step tokenized alone, the
                   separator's tokens appended to every step (the last one too), the value on the
                   last separator token after the step.
  bos              "tokenizer": special tokens as the tokenizer adds them to a text; "trl": as TRL
                   adds them, `tokenizer.bos_token_id` in front when the tokenizer has one, nothing
                   else (with SmolLM2's tokenizer that is `<|im_start|>`, which its tokenizer never adds)
  head, label_mode, activation, base_model, and `reference_features` when fitted

`prm_inputs` builds (input_ids, step-score positions) for every layout: the trainer puts its labels
and the scorer reads its values there, so they cannot drift. A checkpoint without `ttstrain_prm`
is read as TRL's `PRMTrainer` writes one (`trl_metadata`): separator placement, TRL's BOS, the
separator of TRL's `PRMConfig` default (`"\\n"`) unless told otherwise, P(class 1) of a two-class
head; the scorer says so in a warning. Checkpoints from before step formats read as LINE.

    from ttstrain.prm.checkpoint import PRMLayout, prm_inputs
    trl = PRMLayout(label_placement="separator", bos="trl")
    st = prm_inputs(tokenizer, prompt, ["2 + 3 = 5", "The answer is \\\\boxed{5}."], trl)
    st.input_ids, st.step_end_positions     # exactly TRL 1.13's tokenize_row input_ids and label positions
"""

from __future__ import annotations

from dataclasses import dataclass

from ttstrain.prompts import PromptFormat
from ttstrain.steps import LINE, StepFormat, StepTokens, resolve_step_format, step_end_positions

PRM_CONFIG_KEY = "ttstrain_prm"
HEAD_TYPE = "token_value"
TRL_HEAD_TYPE = "trl_token_classification"  # a checkpoint TRL's PRMTrainer wrote (no ttstrain_prm)
PRM_FORMAT_VERSION = 2  # 2: prompt_format with its step format, label_placement, bos (1: "\n" steps, step_end)
LABEL_PLACEMENTS = ("step_end", "separator")
BOS_MODES = ("tokenizer", "trl")
TRL_STEP_SEPARATOR = "\n"  # the default of TRL's PRMConfig.step_separator


@dataclass(frozen=True)
class PRMLayout:
    """How a PRM reads a solution: its step format, where each step's value sits, how BOS is added."""

    steps: StepFormat = LINE
    label_placement: str = "step_end"
    bos: str = "tokenizer"

    def __post_init__(self):
        if self.label_placement not in LABEL_PLACEMENTS:
            raise ValueError(f"label_placement must be one of {LABEL_PLACEMENTS}, got {self.label_placement!r}")
        if self.bos not in BOS_MODES:
            raise ValueError(f"bos must be one of {BOS_MODES}, got {self.bos!r}")

    def describe(self) -> str:
        where = ("on the last token of each step" if self.label_placement == "step_end"
                 else "on the last separator token after each step (TRL's placement)")
        bos = "special tokens as the tokenizer adds them" if self.bos == "tokenizer" else "TRL's BOS in front"
        return f"{self.steps.describe()}; values {where}; {bos}"


DEFAULT_LAYOUT = PRMLayout()


def prm_inputs(tokenizer, prompt: str, steps: list[str], layout: PRMLayout = DEFAULT_LAYOUT) -> StepTokens:
    """The token ids a PRM reads for prompt + steps and the position of each step's value.

    step_end placement with the tokenizer's special tokens is `step_end_positions` itself. The
    separator placement follows TRL 1.13's `PRMTrainer.tokenize_row` token for token: prompt and
    steps tokenized alone without special tokens, `tokenizer.encode(separator,
    add_special_tokens=False)` after every step, the value at the last of those tokens.
    `prompt_length` is the number of tokens before the first step's (BOS included).
    """
    steps = list(steps)
    if not steps:
        raise ValueError("a solution needs at least one step")
    if layout.label_placement == "step_end":
        if layout.bos == "tokenizer":
            return step_end_positions(tokenizer, prompt, steps, fmt=layout.steps)
        st = step_end_positions(tokenizer, prompt, steps, add_special_tokens=False, fmt=layout.steps)
        lead = trl_bos(tokenizer)
        return StepTokens(lead + st.input_ids, [p + len(lead) for p in st.step_end_positions],
                          st.prompt_length + len(lead))
    separator = tokenizer.encode(layout.steps.separator, add_special_tokens=False)
    if not separator:
        raise ValueError(f"the step separator {layout.steps.separator!r} tokenizes to no token: no place for a value")
    lead, trail = (trl_bos(tokenizer), []) if layout.bos == "trl" else added_special_tokens(tokenizer)
    ids = lead + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    prompt_length = len(ids)
    positions = []
    for step in steps:
        ids = ids + tokenizer(step, add_special_tokens=False)["input_ids"] + separator
        positions.append(len(ids) - 1)
    return StepTokens(input_ids=ids + trail, step_end_positions=positions, prompt_length=prompt_length)


def trl_bos(tokenizer) -> list[int]:
    """What TRL's PRMTrainer puts in front of the prompt: the tokenizer's BOS id when it has one."""
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []


def added_special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """(leading, trailing) special tokens the tokenizer adds around a text."""
    full = tokenizer("a")["input_ids"]
    core = tokenizer("a", add_special_tokens=False)["input_ids"]
    for i in range(len(full) - len(core) + 1):
        if full[i:i + len(core)] == core:
            return full[:i], full[i + len(core):]
    raise ValueError("cannot tell which special tokens this tokenizer adds: its text tokens change with them")


# ---- what a checkpoint records ----------------------------------------------------------------------

def layout_metadata(prompt_format: dict | None, label_placement: str = "step_end", bos: str = "tokenizer") -> dict:
    """The entries of `ttstrain_prm` that say how the PRM reads a solution (checked by building the layout)."""
    steps = StepFormat.from_record((prompt_format or {}).get("step_format"))
    PRMLayout(steps, label_placement, bos)
    out = {"step_separator": steps.separator, "label_placement": label_placement, "bos": bos}
    if prompt_format is not None:
        out["prompt_format"] = {**prompt_format, "step_format": steps.record()}
    return out


def prm_metadata(label_mode: str, base_model: str | None = None, *, prompt_format: dict | None = None,
                 label_placement: str = "step_end", bos: str = "tokenizer") -> dict:
    """What `config.ttstrain_prm` records, so a checkpoint says how to score with it."""
    return {"format_version": PRM_FORMAT_VERSION, "head": HEAD_TYPE, "label_mode": label_mode,
            "activation": "sigmoid", "base_model": base_model,
            **layout_metadata(prompt_format, label_placement, bos)}


def layout_from_metadata(meta: dict) -> PRMLayout:
    """The layout a checkpoint records (before format 2: LINE steps, step_end, the tokenizer's special tokens)."""
    steps = StepFormat.from_record((meta.get("prompt_format") or {}).get("step_format"))
    sep = meta.get("step_separator", steps.separator)
    if sep != steps.separator:
        raise ValueError(f"this PRM's metadata contradicts itself: step_separator says steps are separated by "
                         f"{sep!r}, its prompt format records {steps.describe()}; its step ends would be misplaced")
    return PRMLayout(steps, meta.get("label_placement", "step_end"), meta.get("bos", "tokenizer"))


def trl_metadata(config, step_separator: str = "auto") -> dict:
    """The metadata of a checkpoint TRL's PRMTrainer wrote (no `ttstrain_prm`): TRL's placement and BOS, the
    separator given (`auto`: TRL's default "\\n"), P(class 1) of a two-class head; `assumed` says all that."""
    steps = resolve_step_format(TRL_STEP_SEPARATOR if step_separator in (None, "", "auto") else step_separator,
                                "auto", "plain")
    n = getattr(config, "num_labels", None)
    if n not in (1, 2):
        raise ValueError(f"a token-classification PRM without {PRM_CONFIG_KEY!r} (read as TRL's PRMTrainer writes "
                         f"one) needs 1 or 2 outputs per token, this one has {n}")
    activation = "softmax" if n == 2 else "sigmoid"
    assumed = (f"the checkpoint has no {PRM_CONFIG_KEY!r} in its config, so it is read as TRL's PRMTrainer writes "
               f"one: each step's value on the last token of the separator {steps.separator!r} appended after the "
               f"step (" + ("TRL's PRMConfig default; " if step_separator in (None, "", "auto") else "as given; ")
               + "pass step_separator / --step_separator if it was trained with another), the prompt and each step "
               "tokenized alone, the tokenizer's BOS in front, and "
               + ("P(class 1) of its two-class head" if n == 2 else "the sigmoid of its one output")
               + "; questions given alone are put in the plain prompt format")
    return {"format_version": PRM_FORMAT_VERSION, "head": TRL_HEAD_TYPE, "activation": activation,
            "label_mode": None, "base_model": None, "assumed": assumed,
            **layout_metadata(PromptFormat("plain", steps=steps).record(), "separator", "trl")}
