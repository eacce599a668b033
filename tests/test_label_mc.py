"""Monte Carlo labelling: exact labels from a scripted policy, drops, resume, shards, TRL schema."""

from __future__ import annotations

import json

import pytest

from ttstrain.generation.scripted import ScriptedGenerator
from ttstrain.io import read_parquet
from ttstrain.labeling.mc import MCSettings, label_chunk
from ttstrain.prompts import format_prompt
from ttstrain.runner.shards import Shard, load_dataset_dir
from ttstrain.stages.label_mc import LabelMCConfig, run_label_mc

Q = "Start with 2.\n1. Add 3.\n2. Multiply by 2.\nWhat is the result?"
P = format_prompt(Q)
RIGHT = "2 + 3 = 5\n5 * 2 = 10\nThe answer is \\boxed{10}."
WRONG = "2 + 3 = 6\n6 * 2 = 12\nThe answer is \\boxed{12}."
FINISH_RIGHT = "5 * 2 = 10\nThe answer is \\boxed{10}."
FINISH_WRONG = "5 * 2 = 11\nThe answer is \\boxed{11}."
# what the rollouts from each step prefix write, by rollout index
ROLLOUTS = {
    P + "2 + 3 = 5\n": [FINISH_RIGHT, FINISH_RIGHT, FINISH_WRONG, FINISH_RIGHT],        # 3/4
    P + "2 + 3 = 5\n5 * 2 = 10\n": ["The answer is \\boxed{10}."] * 4,                   # 4/4
    P + "2 + 3 = 6\n": ["6 * 2 = 12\nThe answer is \\boxed{12}."] * 3 + [FINISH_RIGHT],  # 1/4
    P + "2 + 3 = 6\n6 * 2 = 12\n": ["The answer is \\boxed{12}."] * 4,                   # 0/4
}
SAMPLES = [RIGHT, WRONG, "2 + 3 = 5\n5 * 2 = 10"]  # the third has no final answer


def script(prompt, j, params):
    if prompt in ROLLOUTS:
        return ROLLOUTS[prompt][j % 4]
    return SAMPLES[j % 3]


PROBLEM = {"id": "p0", "question": Q, "answer": "10", "level": 2}


def test_exact_soft_and_hard_labels():
    gen = ScriptedGenerator(script)
    rows, counters = label_chunk(gen, [PROBLEM], MCSettings(num_samples=3, num_rollouts=4))
    assert [(r["sample_index"], r["labels"], r["hard_labels"], r["final_correct"]) for r in rows] == [
        (0, [0.75, 1.0, 1.0], [1.0, 1.0, 1.0], True),
        (1, [0.25, 0.0, 0.0], [1.0, 0.0, 0.0], False),
    ]
    assert rows[0]["completions"] == ["2 + 3 = 5", "5 * 2 = 10", "The answer is \\boxed{10}."]
    assert rows[0]["prompt"] == P and rows[0]["rollouts_per_step"] == [4, 4, 0]
    assert counters["samples"] == 3 and counters["samples_dropped_no_answer"] == 1 and counters["samples_kept"] == 2
    assert counters["rollouts"] == 16 and counters["distinct_prefixes"] == 4 and counters["steps_labelled"] == 6
    # one call for the samples, one for all prefixes of the chunk
    assert [len(c.prompts) for c in gen.calls] == [1, 4] and gen.calls[1].params.n == 4
    assert all(0.0 <= x <= 1.0 for r in rows for x in r["labels"])


def test_shared_prefixes_are_rolled_out_once():
    gen = ScriptedGenerator(lambda p, j, params: ROLLOUTS[p][j % 4] if p in ROLLOUTS else RIGHT)
    rows, counters = label_chunk(gen, [PROBLEM], MCSettings(num_samples=5, num_rollouts=4))
    assert len(rows) == 5 and all(r["labels"] == [0.75, 1.0, 1.0] for r in rows)
    assert counters["distinct_prefixes"] == 2 and counters["rollouts"] == 8
    assert counters["rollouts_full_sweep"] == 5 * 2 * 4


def test_step_cap_and_bad_gold_are_counted():
    gen = ScriptedGenerator(script)
    bad = {"id": "p1", "question": "Q?", "answer": "  "}
    rows, counters = label_chunk(gen, [PROBLEM, bad], MCSettings(num_samples=3, num_rollouts=4, max_steps_per_sample=2))
    assert rows == []
    assert counters["problems"] == 2 and counters["problems_skipped_bad_gold"] == 1
    assert counters["samples_dropped_too_many_steps"] == 2 and counters["samples_dropped_no_answer"] == 1


def test_binary_search_finds_first_zero_with_fewer_rollouts():
    five = "Start with 1.\n" + "".join(f"{i}. Add 1.\n" for i in range(1, 5)) + "What is the result?"
    p5 = format_prompt(five)
    wrong_steps = ["1 + 1 = 2", "2 + 1 = 3", "3 + 1 = 5", "5 + 1 = 6", "6 + 1 = 7", "The answer is \\boxed{7}."]
    # the value is positive for prefixes of 1-2 steps, zero from step 3 (the first wrong step) on
    def s(prompt, j, params):
        if prompt == p5:
            return "\n".join(wrong_steps)
        done = prompt[len(p5):].count("\n")
        return "The answer is \\boxed{5}." if done <= 2 and j == 0 else "The answer is \\boxed{9}."
    problem = {"id": "b", "question": five, "answer": "5"}
    rows_full, c_full = label_chunk(ScriptedGenerator(s), [problem], MCSettings(num_samples=1, num_rollouts=4))
    assert rows_full[0]["labels"] == [0.25, 0.25, 0.0, 0.0, 0.0, 0.0]
    rows_bs, c_bs = label_chunk(ScriptedGenerator(s), [problem], MCSettings(num_samples=1, num_rollouts=4, mode="binary_search"))
    assert rows_bs[0]["labels"] == [1.0, 1.0, 0.0] and rows_bs[0]["completions"] == wrong_steps[:3]
    assert c_bs["rollouts"] < c_full["rollouts"] == c_full["rollouts_full_sweep"] == 20
    assert c_bs["rollouts_full_sweep"] == 20


def _arith_cfg(tmp_path, name, **kw):
    base = dict(output_dir=str(tmp_path / name), problems="arith", split="train", per_level=1, num_samples=2,
                num_rollouts=2, problems_per_chunk=2, seed=3)
    return LabelMCConfig(**{**base, **kw})


def _arith_script(prompt, j, params):
    """A policy that copies the question correctly except on odd samples, where it adds 1 at step 1."""
    from ttstrain.world.task import parse_question, apply_op

    q = prompt.split("Problem:\n")[-1].split("\nSolution:\n")[0]
    start, ops = parse_question(q)
    done = prompt.split("\nSolution:\n", 1)[1].count("\n")
    vals = [start]
    for op, x in ops:
        vals.append(apply_op(vals[-1], op, x))
    err = 1 if (j + len(prompt)) % 3 == 0 else 0
    steps = []
    v = vals[0]
    for i, (op, x) in enumerate(ops):
        nv = apply_op(v, op, x) + (err if i == 0 else 0)
        steps.append(f"{v} {op} {x} = {nv}")
        v = nv
    steps.append(f"The answer is \\boxed{{{v}}}.")
    return "\n".join(steps[done:])


def test_resume_after_interrupt_equals_uninterrupted(tmp_path):
    full = run_label_mc(_arith_cfg(tmp_path, "full"), generator=ScriptedGenerator(_arith_script), progress=False)

    class Dies(ScriptedGenerator):
        def generate(self, prompts, params):
            if len(self.calls) >= 4:  # two chunks done (2 calls each), die inside the third
                raise KeyboardInterrupt("killed")
            return super().generate(prompts, params)

    cfg = _arith_cfg(tmp_path, "resumed")
    with pytest.raises(KeyboardInterrupt):
        run_label_mc(cfg, generator=Dies(_arith_script), progress=False)
    assert len(list((tmp_path / "resumed" / "chunks").glob("*.parquet"))) == 2
    again = ScriptedGenerator(_arith_script)
    resumed = run_label_mc(cfg, generator=again, progress=False)
    assert len(again.calls) == 2, "only the unfinished chunk is recomputed"
    a = read_parquet(next((tmp_path / "full" / "data").glob("*.parquet")))
    b = read_parquet(next((tmp_path / "resumed" / "data").glob("*.parquet")))
    assert a == b and len(a) > 0
    keys = [(r["problem_id"], r["sample_index"]) for r in b]
    assert len(keys) == len(set(keys)), "no duplicate rows"
    timing = {"seconds", "labelled_steps_per_second"}
    assert {k: v for k, v in full.items() if k not in timing} == {k: v for k, v in resumed.items() if k not in timing}


def test_shards_merge_to_the_single_run(tmp_path):
    single = _arith_cfg(tmp_path, "single")
    run_label_mc(single, generator=ScriptedGenerator(_arith_script), progress=False)
    sharded = [_arith_cfg(tmp_path, "sharded", shard=f"{i}/2") for i in range(2)]
    assert run_label_mc(sharded[0], generator=ScriptedGenerator(_arith_script), progress=False) is None
    summary = run_label_mc(sharded[1], generator=ScriptedGenerator(_arith_script), progress=False)
    assert summary is not None and summary["problems"] == 5
    assert load_dataset_dir(tmp_path / "single").to_list() == load_dataset_dir(tmp_path / "sharded").to_list()
    assert (tmp_path / "sharded" / "config.shard-1-of-2.json").exists()
    # the merged dataset records the prompt format with its step format, as the single run does (train-prm reads it)
    from ttstrain.runner.rows import recorded_prompt_format
    merged = recorded_prompt_format(tmp_path / "sharded")
    assert merged == recorded_prompt_format(tmp_path / "single") and merged["step_format"]["separator"] == "\n"


def test_resume_refuses_a_different_config(tmp_path):
    run_label_mc(_arith_cfg(tmp_path, "x"), generator=ScriptedGenerator(_arith_script), progress=False)
    with pytest.raises(ValueError, match=r"different config \(differs in \['num_rollouts'\]\)"):
        run_label_mc(_arith_cfg(tmp_path, "x", num_rollouts=3), generator=ScriptedGenerator(_arith_script), progress=False)


def test_summary_config_and_trl_schema(tmp_path, char_tokenizer):
    cfg = _arith_cfg(tmp_path, "s")
    summary = run_label_mc(cfg, generator=ScriptedGenerator(_arith_script), progress=False)
    written = json.loads((tmp_path / "s" / "summary.json").read_text())
    for key in ("problems", "samples", "samples_kept", "steps_labelled", "rollouts", "generated_tokens", "seconds"):
        assert key in written
    assert written["samples"] == 10 and summary["rows"] == written["samples_kept"]
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    assert config["seed"] == 3 and config["generator"]["backend"] == "scripted"
    ds = load_dataset_dir(tmp_path / "s")
    for col in ("prompt", "completions", "labels", "problem_id", "sample_index", "final_correct",
                "rollouts_per_step", "hard_labels"):
        assert col in ds.column_names
    from trl.experimental.prm import PRMTrainer

    row = ds[0]
    hard = {**row, "labels": [bool(x) for x in row["hard_labels"]]}
    tok = PRMTrainer.tokenize_row(hard, char_tokenizer, "\n", max_length=None, max_completion_length=None,
                                  train_on_last_step_only=False, is_eval=False)
    assert sum(1 for x in tok["labels"] if x != -100) == len(row["completions"])
    assert Shard.parse("1/4") == Shard(1, 4)
    with pytest.raises(ValueError):
        Shard.parse("4/4")


# ----------------------------------------------------------------------------------- merges and resumes (#20)

def test_merge_only_checks_the_config_like_a_resume(tmp_path):
    sharded = [_arith_cfg(tmp_path, "sharded", shard=f"{i}/2") for i in range(2)]
    for cfg in sharded:
        run_label_mc(cfg, generator=ScriptedGenerator(_arith_script), progress=False)
    data = tmp_path / "sharded" / "data"
    before = {p.name: p.read_bytes() for p in data.glob("*.parquet")}
    for change, differs in (({"num_samples": 3}, "num_samples"), ({"num_rollouts": 3}, "num_rollouts"),
                            ({"limit": 1}, "limit")):
        with pytest.raises(ValueError, match=rf"different config \(differs in \['{differs}'\]\)"):
            run_label_mc(_arith_cfg(tmp_path, "sharded", merge_only=True, **change), progress=False)
    assert {p.name: p.read_bytes() for p in data.glob("*.parquet")} == before, "data/ untouched"
    assert run_label_mc(_arith_cfg(tmp_path, "sharded", merge_only=True), progress=False)["problems"] == 5
    with pytest.raises(ValueError, match=r"has no run_fingerprint.json.*nothing to merge"):
        run_label_mc(_arith_cfg(tmp_path, "never-run", merge_only=True), progress=False)
    assert not (tmp_path / "never-run").exists()


def test_a_sharded_folder_records_its_config(tmp_path):
    for i in range(2):
        run_label_mc(_arith_cfg(tmp_path, "sharded", shard=f"{i}/2"), generator=ScriptedGenerator(_arith_script),
                     progress=False)
    config = json.loads((tmp_path / "sharded" / "config.json").read_text())
    assert config["num_rollouts"] == 2 and config["problems_loaded"] == 5
    assert config["shard_configs"] == ["config.shard-0-of-2.json", "config.shard-1-of-2.json"]
    assert config["generator"] == {"backend": "scripted", "model": "scripted"}


def test_resume_removes_its_own_stale_temporaries_only(tmp_path):
    from ttstrain.runner.shards import remove_stale_temporaries

    chunks = tmp_path / "x" / "chunks"
    chunks.mkdir(parents=True)
    mine = [chunks / ".chunk-000000-000002.parquet.k1j2.tmp", chunks / ".chunk-000004-000005.json.zz.tmp"]
    theirs = chunks / ".chunk-000002-000004.parquet.abcd.tmp"  # chunk 1: shard 1/2's, maybe being written now
    for p in mine + [theirs]:
        p.write_bytes(b"half")
    assert remove_stale_temporaries(chunks, 5, 2, Shard(0, 2)) == 2
    assert not any(p.exists() for p in mine) and theirs.exists()
    run_label_mc(_arith_cfg(tmp_path, "x"), generator=ScriptedGenerator(_arith_script), progress=False)
    assert not list(chunks.glob(".*.tmp"))


@pytest.mark.parametrize("change,differs", [({"backend": "vllm"}, "backend"), ({"dtype": "bfloat16"}, "dtype")])
def test_resume_refuses_another_backend_or_dtype(tmp_path, change, differs):
    run_label_mc(_arith_cfg(tmp_path, "x"), generator=ScriptedGenerator(_arith_script), progress=False)
    with pytest.raises(ValueError, match=rf"differs in \['{differs}'\]"):
        run_label_mc(_arith_cfg(tmp_path, "x", **change), generator=ScriptedGenerator(_arith_script), progress=False)


def test_resume_refuses_other_weights_under_the_same_path(tmp_path, base_dir):
    import shutil

    model = tmp_path / "policy"
    shutil.copytree(base_dir, model)
    run_label_mc(_arith_cfg(tmp_path, "x", model_name_or_path=str(model)), generator=ScriptedGenerator(_arith_script),
                 progress=False)
    weights = next(model.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)  # same size, other weights
    with pytest.raises(ValueError, match=r"differs in \['model_revision'\]"):
        run_label_mc(_arith_cfg(tmp_path, "x", model_name_or_path=str(model)), generator=ScriptedGenerator(_arith_script),
                     progress=False)
