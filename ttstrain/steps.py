"""The one step contract: how a solution is cut into steps, everywhere in ttstrain.

A `StepFormat` says how steps are separated and how a solution ends. It is a setting of the run,
set once (`--step_separator`, `--solution_end`; by default from the prompt format) and recorded
with the prompt format in every output and PRM checkpoint, so a consumer reads steps exactly as
the producer wrote them:

  LINE       one step a line (`"\\n"`); a blank line ends the solution, as a few-shot prompted
             base model ends it (Snell et al.; the default world). Plain and few-shot prompts.
  PARAGRAPH  steps are blank-line paragraphs (`"\\n\\n"`); the end-of-sequence token ends the
             solution (instruct models; search-and-learn, Qwen2.5-Math-PRM, RLHFlow). Chat prompts.

Any other separator string works too. Sampling, Monte Carlo labelling, PRM data and scoring,
step-level search and revisions call the format's methods (`split`, `join`, `prefix`,
`find_stop`, `step_end_positions`); the module-level functions are the LINE format's, kept for
the world's own text. Nothing else in the project hard-codes a separator
(tests/test_steps.py checks it).

    >>> LINE.split("2 + 3 = 5\\n5 * 4 = 20\\nThe answer is \\\\boxed{20}.")
    ['2 + 3 = 5', '5 * 4 = 20', 'The answer is \\\\boxed{20}.']
    >>> PARAGRAPH.split("First, 2 + 3 = 5.\\nSo 5.\\n\\n\\nThen 5 * 4 = 20.")
    ['First, 2 + 3 = 5.\\nSo 5.', 'Then 5 * 4 = 20.']
"""

from __future__ import annotations

from dataclasses import dataclass

SOLUTION_ENDS = ("blank_line", "eos")
BLANK_LINE = "\n\n"


@dataclass(frozen=True)
class StepFormat:
    """How steps are separated (`separator`) and how a solution ends (`solution_end`:
    "blank_line", an empty line, or "eos", the end-of-sequence token only)."""

    separator: str = "\n"
    solution_end: str = "blank_line"

    def __post_init__(self):
        if not isinstance(self.separator, str) or not self.separator:
            raise ValueError(f"the step separator must be a non-empty string, got {self.separator!r}")
        if self.solution_end not in SOLUTION_ENDS:
            raise ValueError(f"solution_end must be one of {SOLUTION_ENDS}, got {self.solution_end!r}")
        if self.solution_end == "blank_line" and BLANK_LINE in self.separator:
            raise ValueError(f"a blank line cannot end the solution when it separates steps "
                             f"(separator {self.separator!r}); use solution_end='eos'")

    # ---- what a solution's text is -----------------------------------------------------------
    @property
    def end_marker(self) -> str | None:
        """The text that ends a solution (None: only the end-of-sequence token does)."""
        return BLANK_LINE if self.solution_end == "blank_line" else None

    def split(self, solution: str) -> list[str]:
        """Steps of a solution: text up to its end, separator-split, stripped, empty ones dropped."""
        if self.end_marker is not None:
            solution = solution.split(self.end_marker, 1)[0]
        return [s.strip() for s in solution.split(self.separator) if s.strip()]

    def join(self, steps: list[str]) -> str:
        """Inverse of `split` for clean steps (no separator inside a step)."""
        for i, step in enumerate(steps):
            if self.separator in step:
                raise ValueError(f"step {i} contains the step separator {self.separator!r}: {step!r}")
        return self.separator.join(steps)

    def flatten(self, step: str) -> str:
        """One step as one step: the pieces of a step that holds the separator (external data such
        as ProcessBench) joined by a space (a newline when steps are paragraphs), so the step count
        and indices survive the step contract."""
        joiner = "\n" if self.separator.strip() == "" and self.separator.count("\n") >= 2 else " "
        return joiner.join(p.strip() for p in step.strip().split(self.separator) if p.strip())

    def prefix(self, steps: list[str], upto: int) -> str:
        """The text of steps[:upto] followed by the separator, so generation starts a new step."""
        if upto <= 0:
            return ""
        return self.join(steps[:upto]) + self.separator

    # ---- where generation stops ----------------------------------------------------------------
    def find_stop(self, prompt: str, generated: str, stop: str) -> tuple[int, str] | None:
        """The first place generation stops in `generated` (the text written after `prompt`), as
        (length of the text kept, reason), or None when it goes on.

        "solution_end": the end marker (a blank line), which may begin in the prompt (a prefix that
        ends with a newline, then a newline); with stop="step" also "step_end": the first separator
        in the generated text (searched there only, as vLLM searches stop strings). Both at one
        place: the solution ended. Both backends apply this same rule.
        """
        found = []
        marker = self.end_marker
        if marker is not None:
            tail = prompt[len(prompt) - (len(marker) - 1):] if len(marker) > 1 and prompt else ""
            i = (tail + generated).find(marker)
            if i >= 0:
                found.append((max(0, i - len(tail)), 0, "solution_end"))
        if stop == "step":
            i = generated.find(self.separator)
            if i >= 0:
                found.append((i, 1, "step_end"))
        if not found:
            return None
        cut, _, reason = min(found)
        return cut, reason

    # ---- records ----------------------------------------------------------------------------------
    def record(self) -> dict:
        return {"separator": self.separator, "solution_end": self.solution_end}

    @classmethod
    def from_record(cls, record: dict | None) -> "StepFormat":
        """A recorded format; a missing record (outputs and checkpoints older than step formats) is LINE."""
        if not record:
            return LINE
        return cls(record["separator"], record.get("solution_end", "blank_line"))

    def describe(self) -> str:
        return f"steps separated by {self.separator!r}, a solution ending at " + \
            ("a blank line or end-of-sequence" if self.solution_end == "blank_line" else "end-of-sequence")


LINE = StepFormat("\n", "blank_line")
PARAGRAPH = StepFormat("\n\n", "eos")
STEP_FORMATS = {"line": LINE, "paragraph": PARAGRAPH}


def resolve_step_format(separator: str = "auto", solution_end: str = "auto", prompt_kind: str = "plain") -> StepFormat:
    """The run's step format from its options: `auto` takes the prompt format's convention (chat:
    PARAGRAPH, plain and few-shot: LINE); a separator is given as typed on a command line, with
    escapes (`\\n\\n`), or as a name (`line`, `paragraph`)."""
    base = PARAGRAPH if prompt_kind == "chat" else LINE
    if separator in STEP_FORMATS:
        base, separator = STEP_FORMATS[separator], "auto"
    sep = base.separator if separator == "auto" else unescape(separator)
    if solution_end == "auto":  # a named or default format ends as it does; a typed separator by what it holds
        solution_end = base.solution_end if separator == "auto" else ("eos" if BLANK_LINE in sep else "blank_line")
    if prompt_kind == "few_shot" and solution_end != "blank_line":
        raise ValueError("a few-shot prompt closes each worked example with a blank line, so its solutions end "
                         f"at one: --solution_end must be blank_line with --prompt_format few_shot (got {solution_end!r})")
    return StepFormat(sep, solution_end)


def unescape(text: str) -> str:
    """A separator as typed on a command line or in YAML: `\\n`, `\\t` and `\\\\` are escapes, every other
    character (`ки` included) stays as it is."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def check_same_steps(producer: dict | None, consumer: dict | None, producer_name: str, consumer_name: str) -> None:
    """Fail when two recorded step formats differ (a missing record is LINE)."""
    a, b = StepFormat.from_record(producer), StepFormat.from_record(consumer)
    if a != b:
        raise ValueError(f"step formats differ: {producer_name} has {a.describe()}; {consumer_name} has "
                         f"{b.describe()}. Steps read another way are other steps: use the same "
                         "--step_separator and --solution_end")


# ---- the LINE format's functions (the world's own text, and callers that have no format) ------------
STEP_SEPARATOR = LINE.separator
SOLUTION_END = BLANK_LINE


def split_steps(solution: str, fmt: StepFormat = LINE) -> list[str]:
    return fmt.split(solution)


def flatten_step(step: str, fmt: StepFormat = LINE) -> str:
    return fmt.flatten(step)


def join_steps(steps: list[str], fmt: StepFormat = LINE) -> str:
    return fmt.join(steps)


def prefix_text(steps: list[str], upto: int, fmt: StepFormat = LINE) -> str:
    return fmt.prefix(steps, upto)


@dataclass
class StepTokens:
    """A tokenized prompt + solution and where each step ends in it.

    input_ids: token ids of prompt + solution, with the tokenizer's special tokens (e.g. <s>).
    step_end_positions: for step i, the index of the token that holds the last character of
        step i. A PRM reads its value for step i at that position, in training and in scoring.
    """

    input_ids: list[int]
    step_end_positions: list[int]
    prompt_length: int


def step_end_positions(tokenizer, prompt: str, steps: list[str], add_eos: bool = False,
                       add_special_tokens: bool = True, fmt: StepFormat = LINE) -> StepTokens:
    """Tokenize prompt + joined steps once and locate each step's end token.

    The whole text is tokenized in one piece, exactly as the policy generated it, so a
    tokenizer that merges the newline into neighbouring tokens gets the same tokens it would
    see at generation time. Step i's end is the token whose character span contains the last
    character of step i (found from the offset mapping), so the value at that position has
    read the whole step.
    """
    if not steps:
        raise ValueError("a solution needs at least one step")
    solution = fmt.join(steps)
    text = prompt + solution
    # special tokens (a leading <s>) as the policy saw them when it generated; their offsets are (0, 0)
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    offsets = enc["offset_mapping"]
    # character index (in `text`) of the last character of each step
    last_chars = []
    cursor = len(prompt)
    for step in steps:
        cursor += len(step)
        last_chars.append(cursor - 1)
        cursor += len(fmt.separator)
    positions = []
    t = 0
    for ch in last_chars:
        while t < len(offsets) and not (offsets[t][0] <= ch < offsets[t][1]):
            t += 1
        if t == len(offsets):
            raise ValueError(f"no token covers character {ch} of {text!r}; does the tokenizer return offsets?")
        positions.append(t)
    prompt_length = 0
    while prompt_length < len(offsets) and offsets[prompt_length][1] <= len(prompt):
        prompt_length += 1
    if add_eos:
        if tokenizer.eos_token_id is None:
            raise ValueError("add_eos=True but the tokenizer has no eos token")
        ids.append(tokenizer.eos_token_id)
    return StepTokens(input_ids=ids, step_end_positions=positions, prompt_length=prompt_length)
