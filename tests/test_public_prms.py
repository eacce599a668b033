"""The public PRM conventions (`ttstrain.prm.public`) against hand computations on tiny offline stand-ins.

For each format the tokens are rebuilt the way its reference code builds them (the model card's or repository's
own recipe), the model is run by hand, the positions indexed by hand and the formula applied by hand; the
format must give the same numbers, and the same formula one token off must not.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.public_prm_models import (build_prm_folder, llama3_like_tokenizer, qwen_like_tokenizer,
                                     skywork_value_head)
from ttstrain.prm.public import PRM_FORMATS, PRMInput

QUESTION = "What is 2 + 3 - 1?"
STEPS = ["2 + 3 = 2+3 = 5.", "Then 5 - 1 = 4.", "The answer is \\boxed{4}."]
NAMES = ["math-shepherd", "rlhflow", "qwen2.5-math-prm", "skywork"]
CASES = [(n, False) for n in NAMES] + [("qwen2.5-math-prm", True)]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("public_prms")


@pytest.fixture(scope="module")
def loaded(root):
    """(format name, remote code) -> (folder, model, tokenizer), each built and loaded once."""
    cache = {}

    def get(name, remote=False):
        if (name, remote) not in cache:
            folder = build_prm_folder(name, root, remote_code=remote)
            cache[name, remote] = (folder, *PRM_FORMATS[name].load(str(folder)))
        return cache[name, remote]

    return get


def _ids(encoded):
    return list(encoded["input_ids"]) if not isinstance(encoded, list) else encoded


@torch.no_grad()
def _outputs(model, ids: list[int]) -> torch.Tensor:
    return model(input_ids=torch.tensor([ids])).logits[0].float()


def _reference(name, folder, model, tok):
    """(input_ids, positions, formula) as the convention's reference code builds and reads them."""
    if name == "math-shepherd":  # the model card: f"{question} {output}", scores[input_id == step_tag_id]
        ids = tok.encode(QUESTION + " " + "\n".join(f"{s} ки" for s in STEPS))
        tag = tok.convert_tokens_to_ids("▁ки")
        plus, minus = tok.convert_tokens_to_ids(["▁+", "▁-"])  # encode("+ -")[1:]
        return ids, [i for i, t in enumerate(ids) if t == tag], lambda r: r[:, [plus, minus]].softmax(-1)[:, 0]
    if name == "rlhflow":  # prm_evaluate.py: one conversation per prefix, logits[:, -3]
        chat, positions = [], []
        for k, step in enumerate(STEPS):
            chat += [{"role": "user", "content": f"{QUESTION} {step}" if k == 0 else step},
                     {"role": "assistant", "content": "+"}]
            positions.append(len(_ids(tok.apply_chat_template(chat, tokenize=True))) - 3)
        plus, minus = tok.encode("+")[-1], tok.encode("-")[-1]
        return _ids(tok.apply_chat_template(chat, tokenize=True)), positions, \
            lambda r: r[:, [plus, minus]].softmax(-1)[:, 0]
    if name == "qwen2.5-math-prm":  # the card: make_step_rewards(outputs[0], input_ids == step_sep_id)
        messages = [{"role": "system",
                     "content": "Please reason step by step, and put your final answer within \\boxed{}."},
                    {"role": "user", "content": QUESTION},
                    {"role": "assistant", "content": "<extra_0>".join(STEPS) + "<extra_0>"}]
        ids = tok.encode(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False))
        sep = tok.encode("<extra_0>")[0]
        return ids, [i for i, t in enumerate(ids) if t == sep], lambda r: r.softmax(-1)[:, 1]
    if name == "skywork":  # prepare_input(problem, "\n".join(steps), tokenizer, step_token="\n")
        ids = tok.encode(tok.bos_token + QUESTION + "\n")
        flags = [0] * len(ids)
        newline = tok.encode("\n")[-1]
        for step in "\n".join(STEPS).split("\n"):
            step_ids = tok.encode(step) + [newline]
            ids += step_ids
            flags += [0] * (len(step_ids) - 1) + [1]
        return ids, [i for i, f in enumerate(flags) if f], None
    raise KeyError(name)


@torch.no_grad()
def _skywork_values(folder, ids: list[int]) -> torch.Tensor:
    """PRM_MODEL's forward by hand: the causal LM's last hidden state through v_head.summary, from the file."""
    from transformers import Qwen2ForCausalLM

    lm = Qwen2ForCausalLM.from_pretrained(folder).eval()
    hidden = lm(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0].float()
    weight, bias = skywork_value_head(folder)
    return hidden @ weight.float().T + bias.float()  # [seq, 1]


@pytest.mark.parametrize("name,remote", CASES, ids=[n + ("-remote" if r else "") for n, r in CASES])
def test_scores_are_read_at_the_reference_positions_with_the_reference_formula(loaded, name, remote):
    folder, model, tok = loaded(name, remote)
    fmt = PRM_FORMATS[name]
    fmt.check_tokenizer(tok)
    enc = fmt.encode(tok, QUESTION, STEPS)
    ids, positions, formula = _reference(name, folder, model, tok)
    assert isinstance(enc, PRMInput)
    assert enc.input_ids == ids
    assert enc.positions == positions and len(positions) == len(STEPS)

    if name == "skywork":
        values = _skywork_values(folder, ids)
        expected = torch.sigmoid(values[positions, 0])
        got = fmt.read(tok, _outputs(model, ids)[positions])
        hand = lambda pos: torch.sigmoid(values[pos, 0])  # noqa: E731
        assert not torch.allclose(got, values[positions, 0], atol=1e-3)  # the sigmoid is applied
    else:
        outputs = _outputs(model, ids)
        expected = formula(outputs[positions])
        got = fmt.read(tok, outputs[positions])
        hand = lambda pos: formula(outputs[pos])  # noqa: E731
        if fmt.model_class == "causal_lm":  # a softmax over the two label tokens, not over the vocabulary
            good = fmt.describe(tok)["tokens"]["+"]
            assert not torch.allclose(got, outputs[positions].softmax(-1)[:, good], atol=1e-3)
        else:  # class 1, not class 0
            assert not torch.allclose(got, outputs[positions].softmax(-1)[:, 0], atol=1e-3)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert ((got > 0) & (got < 1)).all()
    # one token off either way reads other numbers
    for shift in (-1, 1):
        moved = [p + shift for p in positions if 0 <= p + shift < len(ids)]
        kept = [k for k, p in enumerate(positions) if 0 <= p + shift < len(ids)]
        assert not torch.allclose(hand(moved), expected[kept], atol=1e-4), f"{name}: shift {shift} reads the same"


@pytest.mark.parametrize("name,remote", CASES, ids=[n + ("-remote" if r else "") for n, r in CASES])
@torch.no_grad()
def test_right_padded_batch_reads_what_a_single_solution_reads(loaded, name, remote):
    """As the verifier runs it: two solutions of different lengths, right-padded, with an attention mask."""
    _, model, tok = loaded(name, remote)
    fmt = PRM_FORMATS[name]
    encs = [fmt.encode(tok, QUESTION, STEPS), fmt.encode(tok, "What is 1 + 1?", ["1 + 1 = 2."])]
    width = max(len(e.input_ids) for e in encs)
    ids = torch.zeros((2, width), dtype=torch.long)
    mask = torch.zeros((2, width), dtype=torch.long)
    for r, e in enumerate(encs):
        ids[r, :len(e.input_ids)], mask[r, :len(e.input_ids)] = torch.tensor(e.input_ids), 1
    batch = model(input_ids=ids, attention_mask=mask).logits.float()
    for r, e in enumerate(encs):
        alone = fmt.read(tok, _outputs(model, e.input_ids)[e.positions])
        torch.testing.assert_close(fmt.read(tok, batch[r, e.positions]), alone, atol=1e-5, rtol=1e-4)


def test_rlhflow_positions_come_from_the_turns_not_from_plus_signs_in_the_math(loaded):
    _, _, tok = loaded("rlhflow")
    fmt = PRM_FORMATS["rlhflow"]
    enc = fmt.encode(tok, QUESTION, STEPS)
    plus, eot = tok.encode("+")[-1], tok.convert_tokens_to_ids("<|eot_id|>")
    assert enc.input_ids.count(plus) > len(STEPS)  # the first step's "2+3" holds the same "+" token
    for p in enc.positions:  # each reads the turn's last header token and predicts the "+" that closes it
        assert enc.input_ids[p + 1] == plus and enc.input_ids[p + 2] == eot


def test_math_shepherd_tag_in_the_question_is_no_step(loaded):
    _, _, tok = loaded("math-shepherd")
    question = "What does ки mean in 2 + 3?"
    enc = PRM_FORMATS["math-shepherd"].encode(tok, question, STEPS)
    tag = tok.convert_tokens_to_ids("▁ки")
    assert [i for i, t in enumerate(enc.input_ids) if t == tag][1:] == enc.positions  # the first is the question's
    assert len(enc.positions) == len(STEPS)


def test_qwen_refuses_a_step_holding_the_step_tag(loaded):
    _, _, tok = loaded("qwen2.5-math-prm")
    with pytest.raises(ValueError, match=r"qwen2\.5-math-prm.*<extra_0>"):
        PRM_FORMATS["qwen2.5-math-prm"].encode(tok, QUESTION, ["2 + 3 = 5.<extra_0>", "4"])


def test_skywork_refuses_a_checkpoint_without_its_value_head(loaded, root):
    import shutil

    from safetensors.torch import load_file, save_file

    folder = loaded("skywork")[0]
    bare = root / "skywork-bare"
    shutil.copytree(folder, bare)
    state = {k: v for k, v in load_file(str(bare / "model.safetensors")).items() if not k.startswith("v_head.")}
    save_file(state, str(bare / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"skywork.*v_head\.summary\.weight"):
        PRM_FORMATS["skywork"].load(str(bare))


@pytest.mark.parametrize("name,wrong,missing", [
    ("math-shepherd", "char", "ки"),
    ("rlhflow", "qwen", "<|start_header_id|>"),
    ("qwen2.5-math-prm", "qwen-without-tag", "<extra_0>"),
    ("qwen2.5-math-prm", "llama3", "<|im_start|>"),
    ("skywork", "qwen", "bos_token"),
])
def test_check_tokenizer_refuses_a_tokenizer_without_the_format_tokens(char_tokenizer, name, wrong, missing):
    tok = {"char": lambda: char_tokenizer, "qwen": qwen_like_tokenizer, "llama3": llama3_like_tokenizer,
           "qwen-without-tag": lambda: qwen_like_tokenizer(step_tag=False)}[wrong]()
    with pytest.raises(ValueError) as err:
        PRM_FORMATS[name].check_tokenizer(tok)
    assert name in str(err.value) and missing in str(err.value)


def test_registry_and_describe(loaded):
    assert list(PRM_FORMATS) == NAMES
    assert {n: f.model_class for n, f in PRM_FORMATS.items()} == {
        "math-shepherd": "causal_lm", "rlhflow": "causal_lm",
        "qwen2.5-math-prm": "token_classification", "skywork": "token_classification"}
    hub_ids = [m for f in PRM_FORMATS.values() for m in f.known_models]
    assert len(hub_ids) == len(set(hub_ids))
    assert "Qwen/Qwen2.5-Math-PRM-7B" in PRM_FORMATS["qwen2.5-math-prm"].known_models
    for name in NAMES:
        tok = loaded(name)[2]
        record = json.loads(json.dumps(PRM_FORMATS[name].describe(tok)))
        assert record["format"] == name and record["tokens"] and record["position"] and record["formula"]
    assert PRM_FORMATS["qwen2.5-math-prm"].describe(loaded("qwen2.5-math-prm")[2])["tokens"] == {
        "<extra_0>": loaded("qwen2.5-math-prm")[2].convert_tokens_to_ids("<extra_0>")}
