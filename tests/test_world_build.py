"""World building (ttstrain.world_builder.build, ttstrain.world_builder.checking): the v2 mixture's checked
solutions, resumable builds that end where an uninterrupted one does, and v1 kept by name."""

from __future__ import annotations

import random

import pytest
import torch

from ttstrain.world_builder.build import RESUME_DIR, BuildWorldConfig, train_policy, training_batch
from ttstrain.world_builder.checking import ALL_RIGHT, WRONG_MARK, check_example, check_prompt, checked_solution, wrong_step
from ttstrain.world.task import first_error, generate_problems
from ttstrain.world.tokenizer import build_char_tokenizer
from ttstrain.steps import join_steps


def tiny(tmp_path, **kw):
    return BuildWorldConfig(output_dir=str(tmp_path / "w"), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, batch_size=4, max_steps=6, warmup_steps=2, probe_every=0,
                            check_fraction=0.5, num_threads=1, **kw)


def test_interrupted_build_resumes_to_the_same_weights(tmp_path):
    straight, _, stats = train_policy(tiny(tmp_path / "a"))
    first, _, stopped = train_policy(tiny(tmp_path / "b", stop_after_steps=3))
    assert first is None and stopped == {"stopped_at_step": 3}
    assert (tmp_path / "b" / "w" / RESUME_DIR / "state.pt").exists()
    resumed, _, resumed_stats = train_policy(tiny(tmp_path / "b", resume=True))
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert resumed_stats["train_tokens"] == stats["train_tokens"]


def test_resume_refuses_another_config_and_a_fresh_start_over_a_stopped_build(tmp_path):
    train_policy(tiny(tmp_path, stop_after_steps=2))
    with pytest.raises(SystemExit, match=r"differs in \['learning_rate'\]"):
        train_policy(tiny(tmp_path, resume=True, learning_rate=5e-4))
    with pytest.raises(SystemExit, match="holds an interrupted build; pass --resume"):
        train_policy(tiny(tmp_path))
    with pytest.raises(SystemExit, match="does not exist"):
        train_policy(tiny(tmp_path / "elsewhere", resume=True))


def test_checked_solutions_train_on_verdicts_only():
    tok = build_char_tokenizer()
    rng = random.Random(0)
    seen_wrong = seen_right = 0
    for _ in range(60):
        ids, labels = check_example(rng, 3, tok)
        text = tok.decode(ids, skip_special_tokens=True)
        trained = tok.decode([i for i, y in zip(ids, labels) if y != -100], skip_special_tokens=True)
        assert text.startswith("Problem:\n") and "\nCheck:\n" in text and "Solution:" not in text
        if WRONG_MARK in text:
            seen_wrong += 1
            # trained: one newline per right step, then the mark and the right step
            right_steps = text.split("\nCheck:\n")[1].count("\n")
            assert trained == "\n" * right_steps + WRONG_MARK + text.split(WRONG_MARK)[1]
        else:
            seen_right += 1
            assert text.endswith(ALL_RIGHT) and trained == "\n" * 4 + ALL_RIGHT
    assert seen_wrong > 20 and seen_right > 10


def test_injected_mistakes_are_wrong_at_their_step_and_right_before():
    rng = random.Random(1)
    kinds = set()
    for p in generate_problems("train", 4, 80, seed=0):
        i = rng.randrange(len(p.gold_steps()))
        kind, text = wrong_step(rng, p, i)
        kinds.add(kind)
        err = first_error(p.question, join_steps(p.gold_steps()[:i] + [text] + p.gold_steps()[i + 1:]))
        assert err is not None and err.step == i, (kind, text)
        pieces = checked_solution(random.Random(i), p, error_rate=1.0)
        assert pieces[-1][0].startswith(WRONG_MARK) and pieces[-1][1]
    assert kinds == {"arithmetic", "copy_previous", "copy_operand", "skipped", "answer"}


def test_training_batch_mixes_checked_solutions_in():
    tok = build_char_tokenizer()
    batch = training_batch(random.Random(0), 2, 32, tok, check_fraction=0.5)
    texts = [tok.decode(row, skip_special_tokens=True) for row in batch["input_ids"]]
    checks = sum("\nCheck:\n" in t for t in texts)
    assert 8 <= checks <= 24 and sum("\nSolution:\n" in t for t in texts) == 32 - checks
    assert check_prompt("Q") == "Problem:\nQ\nCheck:\n"


def test_both_worlds_are_loadable_by_name():
    import json

    import torch
    from transformers import AutoModelForCausalLM

    from ttstrain.models import default_policy_dir, resolve_model, world_v1_policy_dir, world_v2_check_policy_dir

    assert resolve_model("world-v1") == str(world_v1_policy_dir()) != str(default_policy_dir())
    assert resolve_model("world-v2-check") == str(world_v2_check_policy_dir()) != str(default_policy_dir())
    assert resolve_model("default") == resolve_model("world-v2") == str(default_policy_dir())
    v1 = AutoModelForCausalLM.from_pretrained(resolve_model("world-v1"))
    v2_check = AutoModelForCausalLM.from_pretrained(resolve_model("world-v2-check"))
    v2 = AutoModelForCausalLM.from_pretrained(resolve_model("world-v2"))
    assert v1.config.model_type == v2_check.config.model_type == v2.config.model_type == "llama"
    assert not torch.equal(v1.model.embed_tokens.weight, v2.model.embed_tokens.weight)
    assert not torch.equal(v2_check.model.embed_tokens.weight, v2.model.embed_tokens.weight)
    # v2's checking phase is v1 read on with checked solutions; v2 reads that on with slipped
    # solving text as well; v1 read neither
    config = {d: json.loads((d / "build_config.json").read_text())
              for d in (world_v1_policy_dir(), world_v2_check_policy_dir(), default_policy_dir())}
    assert config[default_policy_dir()]["check_fraction"] > 0 and config[default_policy_dir()]["solve_step_error_rate"] > 0
    assert config[default_policy_dir()]["init_from"] == "world-v2-check"
    assert config[world_v2_check_policy_dir()]["check_fraction"] > 0
    assert config[world_v2_check_policy_dir()].get("solve_step_error_rate", 0) == 0
    assert config[world_v1_policy_dir()].get("check_fraction", 0) == 0


def test_reports_name_the_world_version():
    from ttstrain.models import DEFAULT_WORLD_VERSION, default_policy_dir, policy_name, world_v1_policy_dir

    assert policy_name("default") == policy_name(str(default_policy_dir())) == DEFAULT_WORLD_VERSION == "world-v2"
    assert policy_name("world-v2") == "world-v2"
    assert policy_name("world-v1") == policy_name(str(world_v1_policy_dir())) == "world-v1"
    assert policy_name("world-v2-check") == "world-v2-check"
    assert policy_name("Qwen/Qwen2.5-Math-1.5B-Instruct") == "Qwen/Qwen2.5-Math-1.5B-Instruct"


def test_verdict_weight_weighs_the_verdict_tokens_only(tmp_path):
    from ttstrain.world_builder.build import make_model, weighted_loss

    tok = build_char_tokenizer()
    model = make_model(tiny(tmp_path), tok)
    plain = training_batch(random.Random(3), 2, 8, tok, check_fraction=0.5)
    weighted = training_batch(random.Random(3), 2, 8, tok, check_fraction=0.5, verdict_weight=1.0 + 1e-9)
    assert torch.equal(plain["input_ids"], weighted["input_ids"])
    with torch.no_grad():
        assert abs(float(weighted_loss(model, weighted)) - float(model(**plain).loss)) < 1e-5
    heavy = training_batch(random.Random(3), 2, 8, tok, check_fraction=0.5, verdict_weight=5.0)
    marked = heavy["weights"] == 5.0
    # one verdict token per judged step, each right after a copied step, all in checked solutions
    texts = [tok.decode(r, skip_special_tokens=True) for r in heavy["input_ids"]]
    for row, text in zip(marked, texts):
        assert ("\nCheck:\n" in text) == bool(row.any())
        if row.any():
            judged = text.split("\nCheck:\n")[1].count("\n") + (WRONG_MARK in text)
            assert int(row.sum()) == judged


def test_every_step_checking_judges_each_step_against_what_was_written():
    from ttstrain.world_builder.checking import every_step_checked

    rng = random.Random(4)
    wrong_seen = 0
    for p in generate_problems("train", 4, 40, seed=1):
        pieces = every_step_checked(rng, p, step_error_rate=0.3)
        written, value = [t for t, trained in pieces if not trained and t != "\n"], p.start
        verdicts = [t for t, trained in pieces if trained]
        assert len(written) == len(verdicts) == len(p.ops) + 1
        for (op, x), step, verdict in zip(p.ops, written, verdicts):
            right = f"{value} {op} {x} = {value + x if op == '+' else value - x if op == '-' else value * x}"
            assert (verdict == "\n") == (step == right), (step, right, verdict)
            if verdict != "\n":
                wrong_seen += 1
                assert verdict == WRONG_MARK + right
            value = int(step.rsplit("= ", 1)[1])  # the next step starts from the value as written
        assert (verdicts[-1] == "\n") == (written[-1] == f"The answer is \\boxed{{{value}}}.")
    assert 20 < wrong_seen < 100


def test_card_checking_measures_scripted_verdicts(monkeypatch):
    import ttstrain.world_builder.checking as checking
    from ttstrain.world_builder.card import measure_checking

    rows, scripted = [], []
    for k, p in enumerate(generate_problems("test", 1, 2, seed=0)):
        gold = p.gold_steps()
        slip = gold[0].rsplit("= ", 1)[0] + f"= {p.values()[1] + 1}"
        rows += [{"problem_id": p.id, "question": p.question, "completion": join_steps(gold), "correct": True},
                 {"problem_id": p.id, "question": p.question, "completion": join_steps([slip] + gold[1:]),
                  "correct": False}]
        # question 0: the slip is flagged; question 1: it is not, and its right sample scores higher
        scripted += [[0.1, 0.1], [0.9, 0.2]] if k == 0 else [[0.6, 0.1], [0.3, 0.2]]
    monkeypatch.setattr(checking, "check_scores", lambda model, tok, rs: scripted)
    got = measure_checking(None, None, rows)
    # right samples' 4 steps (0.1, 0.1, 0.6, 0.1) against the slips (0.9, 0.3): 7 of 8 pairs ordered; the
    # steps after a slip are left out
    assert got["step_auroc"] == 0.875 and got["wrong_samples_with_a_located_step"] == 2
    assert got["solution_auroc_within_question"] == 0.5 and got["within_question_problems"] == 2
    assert got["first_wrong_step_found"] == 0.5


def test_carry_slips_keep_the_units_digit_and_are_still_wrong_at_their_step():
    from ttstrain.world_builder.checking import _carry_slip

    rng = random.Random(5)
    values = [rng.randrange(10, 5000) for _ in range(400)]
    slipped = [_carry_slip(rng, v) for v in values]
    assert all(s != v and s >= 0 for v, s in zip(values, slipped))
    units_kept = sum(s % 10 == v % 10 for v, s in zip(values, slipped))
    tens_by_one_or_two = sum(abs(s - v) in (10, 20) for v, s in zip(values, slipped))
    # 85% are carry slips (units kept, 80% of them in the tens); an any-digit slip keeps the units
    # now and then too
    assert 0.84 * 400 < units_kept < 0.97 * 400 and tens_by_one_or_two > 0.6 * 400
    assert all(_carry_slip(rng, v) != v for v in range(10))
    for p in generate_problems("train", 3, 40, seed=2):
        i = rng.randrange(len(p.ops))
        kind, text = wrong_step(rng, p, i, slips="carry")
        err = first_error(p.question, join_steps(p.gold_steps()[:i] + [text] + p.gold_steps()[i + 1:]))
        assert err is not None and err.step == i, (kind, text)


def test_build_refuses_an_unknown_slip_kind_before_writing(tmp_path):
    from ttstrain.world_builder.build import build_world

    with pytest.raises(SystemExit, match="check_slips 'typo' is not one of"):
        build_world(tiny(tmp_path, check_slips="typo"))
    assert not (tmp_path / "w").exists()
