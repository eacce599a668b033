"""Character-level tokenizer of the default world, built with the `tokenizers` library.

One token per printable ASCII character plus the newline, and four special tokens
(<pad>=0, <s>=1, </s>=2, <unk>=3); encoding with special tokens
prepends <s>. Built as a BPE with no merges, so it saves and loads as an
ordinary `tokenizer.json` through `PreTrainedTokenizerFast` / `AutoTokenizer`, with offsets.

    from ttstrain.world.tokenizer import build_char_tokenizer
    tok = build_char_tokenizer()
    tok("12 + 3")["input_ids"]
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, processors
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
CHARACTERS = ["\n"] + [chr(c) for c in range(32, 127)]


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    core.add_special_tokens(SPECIAL_TOKENS)
    # like Llama tokenizers: a sequence starts with <s> when special tokens are added
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )
    tok.model_max_length = 1024
    return tok
