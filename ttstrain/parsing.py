"""The command-line parser of every stage: TRL's `TrlParser` with two house rules.

- No abbreviations: argparse would take `--num_sample 2` for `--num_samples 2` and start a
  full-size run of the wrong job; here an unknown or shortened option is an error.
- `none` / `null` on the command line means None for an optional field of our own configs
  (`--split none` for a local problems file), as `null` does in a YAML recipe. Fields that
  `transformers.TrainingArguments` owns keep their own meaning (`--report_to none`).

    from ttstrain.parsing import StageParser
    (cfg,) = StageParser((SampleConfig,)).parse_args_and_config(["--split", "none"])
"""

from __future__ import annotations

import dataclasses
import re
import typing

from trl import TrlParser

NONE_WORDS = ("none", "null")
# options renamed to the names of ttstrain.stages.arguments; the parser says which name to use instead
RENAMED_OPTIONS = {"model": "model_name_or_path", "policy": "model_name_or_path", "prm": "prm_path",
                   "orm": "orm_path", "out": "output_dir", "model_dtype": "dtype", "dropout": "model_dropout",
                   "batch_size": "prm_batch_size"}


class StageParser(TrlParser):
    def __init__(self, dataclass_types, **kwargs):
        super().__init__(dataclass_types, allow_abbrev=False, **kwargs)

    def _known_options(self) -> set[str]:
        return {f.name for cls in self.dataclass_types for f in dataclasses.fields(cls)}

    def parse_args_and_config(self, args=None, **kwargs):
        try:
            parsed = super().parse_args_and_config(args, **kwargs)
        except ValueError as e:
            message = str(e)
            if "not used by the HfArgumentParser" in message:  # on the command line
                where, unknown = "", message.split(": ", 1)[-1]
            elif message.startswith("Unknown arguments from config file: "):  # keys of the --config YAML
                where, unknown = " in the --config file", message.split(": ", 1)[-1].split(". Please", 1)[0]
            else:
                raise
            self.error(f"unrecognized arguments{where}: {unknown} (options are never abbreviated; "
                       f"see --help){renamed_hint(message, self._known_options())}")
        for obj in parsed:
            if dataclasses.is_dataclass(obj):
                _none_words_to_none(obj)
        return parsed


def renamed_hint(message: str, known: set[str]) -> str:
    """'; --model is now --model_name_or_path' for every renamed option the message names."""
    hints = [f"--{old} is now --{new}" for old, new in RENAMED_OPTIONS.items()
             if new in known and re.search(rf"(?:--|\b){old}\b(?!_)", message)]
    return "; " + "; ".join(hints) if hints else ""


def _training_argument_names() -> set[str]:
    from transformers import TrainingArguments

    return {f.name for f in dataclasses.fields(TrainingArguments)}


def _allows_none(hint) -> bool:
    return type(None) in typing.get_args(hint)


def _none_words_to_none(cfg) -> None:
    theirs = _training_argument_names()
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if (f.name not in theirs and isinstance(value, str) and value.strip().lower() in NONE_WORDS
                and _allows_none(hints.get(f.name))):
            setattr(cfg, f.name, None)
