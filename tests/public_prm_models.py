"""Tiny offline stand-ins for the public PRMs of `ttstrain.prm.public`, for tests: each is a folder that
`fmt.load(folder)` loads, with a randomly initialised model of the real architecture and a small tokenizer
holding the real checkpoint's special tokens and chat markers.

  math-shepherd     Mistral causal LM; a Metaspace BPE (like Mistral's sentencepiece) with BOS `<s>`, in which
                    " ки", "+" and "-" are single tokens ("▁ки", "▁+", "▁-")
  rlhflow           Llama causal LM; a byte-level BPE with Llama-3's `<|begin_of_text|>`, header and
                    `<|eot_id|>` tokens and Llama-3's chat template
  qwen2.5-math-prm  Qwen2 with a two-class token-classification head; a byte-level BPE with `<|im_start|>`,
                    `<|im_end|>`, `<extra_0>` and Qwen's chat template (default system prompt included).
                    `remote_code=True` instead saves Qwen's own layout: an `auto_map` to a local
                    `modeling_qwen2_rm.Qwen2ForProcessRewardModel` whose head is Linear-ReLU-Linear, as the
                    real checkpoint's
  skywork           a Qwen2 causal LM saved with Skywork's value head beside it (`v_head.summary.weight`,
                    `v_head.summary.bias`, config `architectures: ["Qwen2ForPrmModel"]`), as Skywork's
                    `PRM_MODEL.save_pretrained` writes it; the Qwen tokenizer with `bos_token` set

    from tests.public_prm_models import build_prm_folder
    folder = build_prm_folder("skywork", tmp_path)
    model, tok = PRM_FORMATS["skywork"].load(str(folder))
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Text the tokenizers train on: math with "+" and "-" inside it, so a position search by token id would
# find them, and the tags of each convention.
CORPUS = [
    "What is 2 + 3? 2 + 3 = 5. The answer is \\boxed{5}.",
    "Step 1: 7 - 4 = 3. ки\nStep 2: 3 + 3 = 6. ки",
    "Janet has 16 eggs. She eats 3 and bakes 4, so 16 - 3 - 4 = 9 eggs are left.",
    "+ - + - ки ки ки",
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "You are a helpful assistant. system user assistant",
]

LLAMA3_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

# Qwen2.5's template without the tool branches: a system turn (the default one when none is given),
# then <|im_start|>role\ncontent<|im_end|>\n per message.
QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>"]
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def mistral_like_tokenizer():
    """Metaspace BPE with BOS `<s>` added to every encoding, as Mistral's tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    # newlines stand alone, as Mistral's byte-fallback "<0x0A>": no merge runs across a line end
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split("\n", behavior="isolated"),
                                                  pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")])
    core.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False,
                                  initial_alphabet=[chr(c) for c in range(32, 127)] + ["\n", "к", "и", "▁"])
    core.train_from_iterator(CORPUS * 20, trainer)
    core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                        special_tokens=[("<s>", core.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def _byte_level_tokenizer(specials: list[str], **kw):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, **kw)


def llama3_like_tokenizer():
    """Byte-level BPE with Llama-3's special tokens and chat template; no automatic BOS (the template writes it)."""
    tok = _byte_level_tokenizer(LLAMA3_SPECIALS, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                additional_special_tokens=LLAMA3_SPECIALS[2:4])
    tok.chat_template = LLAMA3_TEMPLATE
    return tok


def qwen_like_tokenizer(*, bos_token: str | None = None, step_tag: bool = True):
    """Byte-level BPE with Qwen2.5's chat tokens, `<extra_0>` (unless `step_tag=False`) and chat template; no
    BOS unless given (Skywork's)."""
    specials = QWEN_SPECIALS if step_tag else [t for t in QWEN_SPECIALS if t != "<extra_0>"]
    tok = _byte_level_tokenizer(specials, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=bos_token,
                                additional_special_tokens=specials[1:2] + specials[3:])
    tok.chat_template = QWEN_TEMPLATE
    return tok


def _small(config_cls, vocab: int, **kw):
    return config_cls(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, **kw)


# A stand-in for Qwen's remote `modeling_qwen2_rm.py`: the same class name, body and Linear-ReLU-Linear head.
_QWEN_REMOTE_CODE = '''
import torch
from torch import nn
from transformers import Qwen2Model, Qwen2PreTrainedModel
from transformers.modeling_outputs import TokenClassifierOutput


class Qwen2ForProcessRewardModel(Qwen2PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = Qwen2Model(config)
        self.score = nn.Sequential(nn.Linear(config.hidden_size, config.hidden_size), nn.ReLU(),
                                   nn.Linear(config.hidden_size, self.num_labels))
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return TokenClassifierOutput(logits=self.score(hidden))
'''


def build_prm_folder(name: str, root: Path, *, remote_code: bool = False, seed: int = 0) -> Path:
    """A folder holding a tiny random checkpoint and tokenizer in the public format `name`."""
    from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM, Qwen2ForTokenClassification)

    folder = Path(root) / (name + ("-remote" if remote_code else ""))
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if name == "math-shepherd":
        tok = mistral_like_tokenizer()
        model = MistralForCausalLM(_small(MistralConfig, len(tok), bos_token_id=tok.bos_token_id,
                                          eos_token_id=tok.eos_token_id))
    elif name == "rlhflow":
        tok = llama3_like_tokenizer()
        model = LlamaForCausalLM(_small(LlamaConfig, len(tok), bos_token_id=tok.bos_token_id,
                                        eos_token_id=tok.eos_token_id))
    elif name == "qwen2.5-math-prm" and remote_code:
        tok = qwen_like_tokenizer()
        _save_qwen_remote(folder, tok)
        tok.save_pretrained(folder)
        return folder
    elif name == "qwen2.5-math-prm":
        tok = qwen_like_tokenizer()
        model = Qwen2ForTokenClassification(_small(Qwen2Config, len(tok), num_labels=2))
    elif name == "skywork":
        tok = qwen_like_tokenizer(bos_token="<|endoftext|>")
        _save_skywork(folder, tok)
        tok.save_pretrained(folder)
        return folder
    else:
        raise KeyError(name)
    model.eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _save_qwen_remote(folder: Path, tok) -> None:
    import importlib.util

    from transformers import Qwen2Config

    (folder / "modeling_qwen2_rm.py").write_text(_QWEN_REMOTE_CODE)
    spec = importlib.util.spec_from_file_location("_tiny_qwen2_rm", folder / "modeling_qwen2_rm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = _small(Qwen2Config, len(tok), num_labels=2)
    model = module.Qwen2ForProcessRewardModel(config)
    with torch.no_grad():  # a random ReLU head may read ~0 everywhere; make both classes move with the input
        for p in model.score.parameters():
            p.normal_(0.0, 0.5)
    model.save_pretrained(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["Qwen2ForProcessRewardModel"]
    cfg["auto_map"] = {"AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"}
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))


def _save_skywork(folder: Path, tok) -> None:
    """Qwen2 causal-LM weights plus `v_head.summary.{weight,bias}` in one safetensors file, as Skywork ships."""
    from safetensors.torch import save_file
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model = Qwen2ForCausalLM(_small(Qwen2Config, len(tok), tie_word_embeddings=False)).eval()
    model.save_pretrained(folder)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["v_head.summary.weight"] = torch.randn(1, model.config.hidden_size) * 0.5
    state["v_head.summary.bias"] = torch.tensor([0.3])
    for f in folder.glob("*.safetensors"):
        f.unlink()
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["Qwen2ForPrmModel"]
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))


def skywork_value_head(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight [1, hidden], bias [1]) of the value head as saved, read straight from the file."""
    from safetensors.torch import load_file

    state = load_file(str(Path(folder) / "model.safetensors"))
    return state["v_head.summary.weight"], state["v_head.summary.bias"]
