"""World pretraining rows read as documents: solving text after other worked problems
(`build-world --solve_context_share`), so the policy solves wherever its problem starts."""
import random

import torch

from ttstrain.prompts import QUESTION_HEAD, SOLUTION_HEAD
from ttstrain.revisions.pairs import ATTEMPT_HEAD
from ttstrain.world_builder.build import training_batch
from ttstrain.world.task import CONTEXT_CHARS
from ttstrain.world.tokenizer import build_char_tokenizer


def _rows(batch, tok):
    texts, trained = [], []
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist()):
        texts.append(tok.decode([t for t in ids if t != tok.pad_token_id], skip_special_tokens=True))
        trained.append(tok.decode([t for t in labels if t != -100], skip_special_tokens=True))
    return texts, trained


def test_share_zero_leaves_the_mixture_as_it_was():
    tok = build_char_tokenizer()
    before = training_batch(random.Random(3), 2, 16, tok, 0.5, 0.3, 5.0, "every_step", "any_digit", 0.15)
    now = training_batch(random.Random(3), 2, 16, tok, 0.5, 0.3, 5.0, "every_step", "any_digit", 0.15,
                         solve_context_share=0.0)
    assert all(torch.equal(before[k], now[k]) for k in before)


def test_every_solving_row_comes_after_other_worked_problems():
    tok = build_char_tokenizer()
    batch = training_batch(random.Random(11), 3, 48, tok, solve_context_share=1.0, solve_context_max=4)
    texts, trained = _rows(batch, tok)
    counts = []
    for text, target in zip(texts, trained):
        blocks = text.split(QUESTION_HEAD)[1:]
        questions = [b.split(SOLUTION_HEAD)[0] for b in blocks]
        counts.append(len(blocks) - 1)
        # the problem solved last is not one of those before it, and no block is a previous attempt
        assert questions[-1] not in questions[:-1]
        assert ATTEMPT_HEAD not in text
        # the loss is on the last solution only, which ends the row
        assert text.endswith(target) and target == blocks[-1].split(SOLUTION_HEAD)[1]
        assert len(QUESTION_HEAD.join([""] + blocks[:-1])) <= CONTEXT_CHARS + len(QUESTION_HEAD)
    # one to four worked problems before each, all but the longest fitting under the cap
    assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) >= 3


def test_a_share_of_the_rows_only():
    tok = build_char_tokenizer()
    texts, _ = _rows(training_batch(random.Random(12), 1, 200, tok, solve_context_share=0.3), tok)
    with_context = sum(t.count(QUESTION_HEAD) > 1 for t in texts)
    assert 0.2 * 200 < with_context < 0.4 * 200


def test_the_problem_solved_is_never_one_of_its_worked_problems(monkeypatch):
    """Every draw is the same problem: no worked problem can precede it, so each row is that problem alone."""
    import ttstrain.world.task as task

    only = task.sample_training_problem(random.Random(0), 2)
    monkeypatch.setattr(task, "sample_training_problem", lambda rng, level: only)
    tok = build_char_tokenizer()
    texts, _ = _rows(training_batch(random.Random(5), 2, 8, tok, solve_context_share=1.0), tok)
    assert all(t.count(QUESTION_HEAD) == 1 and only.question in t for t in texts)
