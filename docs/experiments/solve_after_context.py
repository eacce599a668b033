"""Experiment: can a policy solve a problem when other text comes before it? Greedy pass@1 on 90
test problems of levels 1-3 (from a demo's samples) with nothing before the problem, after one
earlier attempt at the same problem (right or wrong, in the revision prompt's layout), after another
problem's solution and after three of them (same layout), and after one or three other worked
problems in the few-shot layout (`format_prompt` with examples).

    python docs/experiments/solve_after_context.py POLICY runs/demo/samples.parquet
"""
import collections
import random
import sys

import pyarrow.parquet as pq
import torch

from ttstrain.answers.grading import grade
from ttstrain.models import load_causal_lm, load_tokenizer, resolve_model
from ttstrain.prompts import format_prompt
from ttstrain.revisions.pairs import format_revision_prompt


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    torch.set_num_threads(2)
    path = resolve_model(argv[0])
    tok, model = load_tokenizer(path), load_causal_lm(path).eval()
    tok.padding_side = "left"
    by_question = collections.defaultdict(list)
    for s in pq.read_table(argv[1]).to_pylist():
        by_question[s["problem_id"]].append(s)
    rng = random.Random(0)
    questions = [q for q, v in by_question.items() if v[0]["level"] <= 3
                 and any(x["correct"] for x in v) and any(not x["correct"] for x in v)]
    rng.shuffle(questions)
    questions = questions[:90]
    everyone = sorted(by_question)

    def attempts(rows: list[dict], right: bool) -> list[str]:
        return [next(x for x in rows if x["correct"] == right)["completion"]]

    def others(n: int) -> list[dict]:
        return [by_question[rng.choice(everyone)][0] for _ in range(n)]

    def prompt(kind: str, q: str) -> str:
        """The problem `q` with the text `kind` names before it."""
        question = by_question[q][0]["question"]
        if kind.startswith("as worked"):  # the layout of few-shot prompts: each earlier text as a worked problem
            shots = [(o["question"], o["completion"]) for o in others(1 if kind.endswith("one") else 3)]
            return format_prompt(question, shots)
        if kind == "nothing":
            earlier = []
        elif kind.startswith("own"):
            earlier = attempts(by_question[q], right=kind == "own right attempt")
        else:
            earlier = [o["completion"] for o in others(3 if kind.startswith("3") else 1)]
        return format_revision_prompt(question, earlier)

    for kind in ("nothing", "own right attempt", "own wrong attempt", "another problem's solution",
                 "3 other problems' solutions", "as worked problems: one", "as worked problems: three"):
        prompts = [prompt(kind, q) for q in questions]
        right, seen = collections.Counter(), collections.Counter()
        for i in range(0, len(prompts), 30):
            enc = tok(prompts[i:i + 30], return_tensors="pt", padding=True)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=200, do_sample=False, pad_token_id=tok.pad_token_id)
            for q, o in zip(questions[i:i + 30], out):
                text = tok.decode(o[enc["input_ids"].shape[1]:], skip_special_tokens=True)
                level = by_question[q][0]["level"]
                seen[level] += 1
                right[level] += grade(text, by_question[q][0]["gold"])
        print(f"{kind:30s} greedy pass@1 {sum(right.values()) / len(questions):.3f}  by level",
              {lv: f"{right[lv]}/{seen[lv]}" for lv in sorted(seen)})


if __name__ == "__main__":
    main()
