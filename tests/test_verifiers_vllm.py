"""The vLLM pooling-runner verifier (`ttstrain.prm.verifiers_vllm`) against the transformers verifiers, on CPU.

The engine is `tests/fake_vllm.py`'s pooling side (vLLM 0.32.0's runner/convert resolution, `encode` checks,
STEP/ALL pooling, classifier head and activation, read from its source) running the real tiny checkpoints of
`tests/public_prm_models.py` and a tiny ttstrain PRM; step scores must equal `ConventionScorer`'s /
`PRMScorer`'s on the same solutions, tokens and parameters must be counted alike, and what cannot run there is
refused with the way out.

    .venv/bin/python -m pytest tests/test_verifiers_vllm.py -q
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch

import fake_vllm  # tests/fake_vllm.py
from public_prm_models import build_prm_folder
from ttstrain.prm.checkpoint import PRM_CONFIG_KEY
from ttstrain.prompts import format_prompt
from ttstrain.prm.reference_features import META_KEY
from ttstrain.prm.scoring import PRMScorer
from ttstrain.steps import split_steps
from ttstrain.prm.verifiers import load_verifier, reads_questions
from ttstrain.prm.verifiers_vllm import VLLMPoolingScorer, convert_skywork_checkpoint, load_pooling_verifier
from ttstrain.world.task import problems_split

QUESTIONS = ["What is 2 + 3 - 1?", "Janet has 16 eggs. She eats 3 and bakes 4. How many are left?", "What is 7 - 4?"]
STEPS = [["2 + 3 = 2+3 = 5.", "Then 5 - 1 = 4.", "The answer is \\boxed{4}."],
         ["16 - 3 - 4 = 9.", "The answer is \\boxed{9}."],
         []]  # a solution with no step scores []
CASES = [("math-shepherd", False), ("rlhflow", False), ("qwen2.5-math-prm", False), ("qwen2.5-math-prm", True),
         ("skywork", False)]


@pytest.fixture
def vllm_fake(monkeypatch):
    for name, mod in fake_vllm.modules().items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(fake_vllm.LLM, "instances", [])
    fake_vllm.reset_device()
    return fake_vllm


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pooling_prms")
    cache = {}

    def get(name, remote=False):
        if (name, remote) not in cache:
            cache[name, remote] = build_prm_folder(name, root, remote_code=remote)
        return cache[name, remote]

    return get


def _close(a: list[list[float]], b: list[list[float]], tol: float = 1e-5) -> bool:
    return [len(x) for x in a] == [len(x) for x in b] and all(abs(x - y) <= tol for u, v in zip(a, b)
                                                             for x, y in zip(u, v))


@pytest.mark.parametrize("name,remote", CASES)
def test_public_prm_scores_equal_the_transformers_verifier(vllm_fake, folders, tmp_path, name, remote):
    folder = folders(name, remote)
    reference = load_verifier(str(folder), name, device="cpu", dtype="float32")
    expected = reference.score(QUESTIONS, STEPS)
    if name == "skywork":  # Qwen2ForPrmModel is no vLLM 0.32 architecture: refused, then converted
        with pytest.raises(ValueError, match="convert_skywork_checkpoint"):
            load_pooling_verifier(str(folder), name)
        folder = convert_skywork_checkpoint(str(folder), tmp_path / "skywork-vllm")
        converted = load_verifier(str(folder), name, device="cpu", dtype="float32")
        assert _close(converted.score(QUESTIONS, STEPS), expected, 1e-6)
    prm = load_pooling_verifier(str(folder), name, batch_size=2)
    assert isinstance(prm, VLLMPoolingScorer) and reads_questions(prm)
    scores = prm.score(QUESTIONS, STEPS)
    assert _close(scores, expected), (scores, expected)
    assert len(set(round(s, 4) for row in scores for s in row)) > 2  # the scores move with the input
    # the same accounting as the transformers verifier
    assert prm.last_scored_tokens == reference.last_scored_tokens and prm.last_scored_tokens[2] == 0
    assert prm.stats["tokens"] == reference.stats["tokens"] and prm.stats["solutions"] == 2
    assert prm.stats["forward_passes"] == 1  # two solutions, batch_size 2: one encode call
    assert prm.num_parameters == reference.num_parameters > 0
    (llm,) = fake_vllm.LLM.instances
    assert llm.runner_type == "pooling" and llm.pooling_task == "token_classify"
    call = llm.calls[-1]
    assert call.pooling_task == "token_classify" and all(p.use_activation is False for p in call.params)
    assert all(isinstance(q, dict) and "prompt_token_ids" in q for q in call.prompts)  # token ids, not text
    if name in ("qwen2.5-math-prm", "math-shepherd", "skywork"):  # step positions share one token: STEP pooling
        tags = {p.step_tag_id for p in call.params}
        assert len(tags) == 1 and None not in tags
        assert all(o.outputs.data.shape[0] < len(o.prompt_token_ids) for o in call.outputs)
    assert prm.score_solutions(QUESTIONS[:2], STEPS[:2], "min") == [min(s) for s in scores[:2]]


def test_math_shepherd_tag_in_the_question_is_matched_by_occurrence(vllm_fake, folders):
    """vLLM's STEP pooling returns the question's "ки" row too; the scorer keeps the steps' rows."""
    folder = str(folders("math-shepherd"))
    question = ["Step tags look like ки here. What is 2 + 3?"]
    steps = [["2 + 3 = 5.", "The answer is \\boxed{5}."]]
    prm = load_pooling_verifier(folder, "math-shepherd")
    reference = load_verifier(folder, "math-shepherd", device="cpu")
    assert _close(prm.score(question, steps), reference.score(question, steps))
    (out,) = fake_vllm.LLM.instances[0].calls[-1].outputs
    assert out.outputs.data.shape == (3, 2)  # one question tag + two step tags, two label columns


def _world_solutions():
    rows = problems_split("test", 2, seed=7)
    return [format_prompt(r["question"]) for r in rows], [split_steps(r["solution"]) for r in rows]


def test_ttstrain_prm_scores_equal_prm_scorer(vllm_fake, prm_dir):
    prompts, steps = _world_solutions()
    prompts, steps = prompts + [prompts[0]], steps + [[]]
    reference = PRMScorer.from_pretrained(prm_dir, device="cpu", batch_size=4)
    prm = load_pooling_verifier(str(prm_dir), "auto", batch_size=4)
    assert not reads_questions(prm) and prm.prompt_for("What is 2?") == reference.prompt_for("What is 2?")
    scores = prm.score(prompts, steps)
    assert _close(scores, reference.score(prompts, steps))
    assert prm.last_scored_tokens == reference.last_scored_tokens and prm.stats["tokens"] == reference.stats["tokens"]
    assert prm.num_parameters == reference.num_parameters
    (llm,) = fake_vllm.LLM.instances
    assert llm.pooling.convert_type == "classify" and llm.pooling.arch == "LlamaForCausalLM"


def test_trl_two_class_prm_reads_class_one(vllm_fake, tmp_path, char_tokenizer):
    """A checkpoint TRL's PRMTrainer wrote (two-class head, no ttstrain_prm): P(class 1), as PRMScorer reads it."""
    from transformers import LlamaConfig, LlamaForTokenClassification

    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=len(char_tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, num_labels=2,
                      pad_token_id=char_tokenizer.pad_token_id, bos_token_id=char_tokenizer.bos_token_id)
    LlamaForTokenClassification(cfg).eval().save_pretrained(tmp_path)
    char_tokenizer.save_pretrained(tmp_path)
    prompts, steps = _world_solutions()
    reference = PRMScorer.from_pretrained(tmp_path, device="cpu")
    prm = load_pooling_verifier(str(tmp_path), "trl")
    assert _close(prm.score(prompts, steps), reference.score(prompts, steps))


def test_vllm_activation_is_off_because_a_second_softmax_would_be_wrong(vllm_fake, folders):
    """0.32's token_classify head applies softmax over the columns unless use_activation=False (activations.py
    PoolerClassify); the scorer asks for logits and applies the format's softmax once."""
    folder = str(folders("qwen2.5-math-prm", True))
    prm = load_pooling_verifier(folder, "qwen2.5-math-prm")
    scores = prm.score(QUESTIONS[:1], STEPS[:1])
    call = fake_vllm.LLM.instances[0].calls[-1]
    ids, tag = call.prompts[0]["prompt_token_ids"], call.params[0].step_tag_id
    prm.close()
    llm = fake_vllm.LLM(folder, runner="pooling", trust_remote_code=True)  # vLLM's defaults
    (probs,) = llm.encode([{"prompt_token_ids": ids}], fake_vllm.PoolingParams(step_tag_id=tag), use_tqdm=False,
                          pooling_task="token_classify")
    assert torch.allclose(probs.outputs.data.sum(-1), torch.ones(3))  # vLLM's default: probabilities
    assert torch.allclose(probs.outputs.data[:, 1], torch.tensor(scores[0]), atol=1e-6)
    twice = probs.outputs.data.softmax(-1)[:, 1]  # what reading them as logits would give
    assert not torch.allclose(twice, torch.tensor(scores[0]), atol=1e-3)


def test_reference_feature_prm_is_refused(vllm_fake, prm_dir, tmp_path):
    bad = tmp_path / "ref"
    shutil.copytree(prm_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg[PRM_CONFIG_KEY][META_KEY] = {"reference_model": "some/policy"}
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"reference features.*load_verifier"):
        load_pooling_verifier(str(bad), "ttstrain")
    assert fake_vllm.LLM.instances == []  # refused before any engine starts


def test_missing_vllm_gives_the_install_hint(monkeypatch, prm_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match=r"pip install 'ttstrain\[vllm\]' on a CUDA machine"):
        load_pooling_verifier(str(prm_dir))


# ---- the fake follows 0.32's refusals ---------------------------------------------------------------

def test_fake_pooling_engine_refuses_what_vllm_refuses(vllm_fake, folders):
    folder = str(folders("math-shepherd"))
    labels = {"classifier_from_token": ["▁+", "▁-"], "method": "no_post_processing"}
    pooling = fake_vllm.LLM(folder, runner="pooling", convert="classify",
                            pooler_config=fake_vllm.PoolerConfig(task="token_classify"), hf_overrides=labels)
    with pytest.raises(ValueError, match=r"LLM.generate\(\) is only supported for generative models"):
        pooling.generate(["a"])
    with pytest.raises(ValueError, match=r"pooling_task required"):
        pooling.encode(["a"])
    with pytest.raises(fake_vllm.VLLMValidationError, match="only supports"):  # no `dimensions` for token_classify
        pooling.encode(["a"], fake_vllm.PoolingParams(dimensions=4), pooling_task="token_classify")
    with pytest.raises(fake_vllm.VLLMValidationError, match="does not support"):  # step params need STEP pooling
        pooling.encode(["a"], fake_vllm.PoolingParams(step_tag_id=3), pooling_task="token_classify")
    (out,) = pooling.encode("Step 1 ки", pooling_task="token_classify", use_tqdm=False)
    assert out.outputs.data.shape == (len(out.prompt_token_ids), 2)  # ALL pooling: one row per token
    fake_vllm.reset_device()
    # a causal LM's default pooling task is "classify": encode(token_classify) needs PoolerConfig(task=...)
    default_task = fake_vllm.LLM(folder, runner="pooling", convert="classify", hf_overrides=labels)
    assert default_task.pooling_task == "classify"
    with pytest.raises(ValueError, match=r'PoolerConfig\(task="token_classify"\)'):
        default_task.encode(["a"], pooling_task="token_classify")
    fake_vllm.reset_device()
    embed = fake_vllm.LLM(folder, runner="pooling")  # convert resolves to "embed" for a *ForCausalLM
    with pytest.raises(ValueError, match="Classification API is not supported"):
        embed.encode(["a"], pooling_task="token_classify")
    fake_vllm.reset_device()
    with pytest.raises(ValueError, match="Following weights were not initialized"):  # no score.* in a causal LM
        fake_vllm.LLM(folder, runner="pooling", convert="classify")
    fake_vllm.reset_device()
    generate = fake_vllm.LLM(folder)
    with pytest.raises(ValueError, match=r"LLM.encode\(\) is only supported for pooling models"):
        generate.encode(["a"], pooling_task="token_classify")


def test_fake_refuses_skywork_architecture_and_returned_ids_before_a_classifier(vllm_fake, folders):
    with pytest.raises(ValueError, match=r"\['Qwen2ForPrmModel'\] are not supported"):
        fake_vllm.LLM(str(folders("skywork")), runner="pooling")
    fake_vllm.reset_device()
    # StepPool takes returned_token_ids columns of the hidden state before the classifier: the head then fails
    llm = fake_vllm.LLM(str(folders("qwen2.5-math-prm")), runner="pooling",
                        pooler_config=fake_vllm.PoolerConfig(pooling_type="STEP"))
    assert llm.pooling.convert_type == "classify" and llm.pooling_task == "token_classify"
    with pytest.raises(RuntimeError):
        llm.encode(["What is 2?"], fake_vllm.PoolingParams(returned_token_ids=[0, 1]), pooling_task="token_classify")
    fake_vllm.reset_device()
    # vLLM's own Qwen2ForProcessRewardModel: STEP by default, step_tag_id 151651 unless given
    prm = fake_vllm.LLM(str(folders("qwen2.5-math-prm", True)), runner="pooling", trust_remote_code=True)
    assert prm.pooling.pooler_config.tok_pooling_type == "STEP" and prm.pooling.pooler_config.step_tag_id == 151651
    (out,) = prm.encode(["What is 2?"], pooling_task="token_classify")
    assert out.outputs.data.shape == (0, 2)  # the tiny vocabulary has no token 151651


def test_search_runs_the_policy_and_the_prm_as_two_vllm_engines_on_one_gpu(vllm_fake, folders, tmp_path, monkeypatch):
    """--backend vllm --prm_backend vllm: the PRM's pooling engine gets its weights and a workspace, the policy
    engine what is left of 0.9, so both start on one simulated 80 GiB GPU (vLLM refuses an engine whose share
    is not free) and search scores with no transformers forward pass."""
    from fake_vllm import tokens
    from ttstrain.io import read_parquet
    from ttstrain.models import load_tokenizer
    from ttstrain.stages.run_search import SearchStageConfig, run_search_stage

    monkeypatch.setattr(fake_vllm.LLM, "default_script",
                        tokens(load_tokenizer("default"), "1 + 1 = 2", "\n", "The answer is 2", eos=True))
    monkeypatch.setattr("ttstrain.stages.run_search.gpu_total_bytes", lambda: 80 << 30)
    out = tmp_path / "search"
    cfg = SearchStageConfig(backend="vllm", prm_backend="vllm", prm_path=str(folders("qwen2.5-math-prm")),
                            prm_format="qwen2.5-math-prm", methods=["best_of_n_weighted"], levels=[1], per_level=2,
                            max_budget=2, max_new_tokens=32, output_dir=str(out))
    run_search_stage(cfg, progress=False)
    policy, prm = fake_vllm.LLM.instances
    assert prm.kwargs["runner"] == "pooling"
    shares = policy.kwargs["gpu_memory_utilization"], prm.kwargs["gpu_memory_utilization"]
    assert shares[1] >= 0.1 and sum(shares) <= 0.9 + 1e-9
    rows = read_parquet(out / "results.parquet")
    assert rows and all(r["verifier_flops"] > 0 for r in rows)
    config = json.loads((out / "config.json").read_text())
    assert config["scorer"]["type"] == "VLLMPoolingScorer" and config["scorer"]["reads"]["backend"] == "vllm-pooling"


def test_eval_prm_scores_on_the_pooling_runner_from_the_command_line(vllm_fake, folders, tmp_path):
    """ttstrain eval-prm --prm_backend vllm: ProcessBench scored by a public PRM on vLLM's pooling runner gives the
    transformers verifier's F1, and the config records what read it."""
    from ttstrain import cli

    bench = tmp_path / "processbench.json"
    bench.write_text(json.dumps([
        {"id": f"t-{i}", "problem": QUESTIONS[i % 2], "steps": STEPS[i % 2], "label": label,
         "final_answer_correct": label == -1} for i, label in enumerate([-1, 1, -1, 0])]))
    folder = str(folders("qwen2.5-math-prm"))
    results = {}
    for backend in ("transformers", "vllm"):
        out = tmp_path / backend
        cli.main(["eval-prm", "--prm_path", folder, "--prm_format", "qwen2.5-math-prm", "--prm_backend", backend,
                  "--prm_device", "cpu", "--processbench", str(bench), "--processbench_threshold", "0.5",
                  "--output_dir", str(out)])
        results[backend] = json.loads((out / "eval_prm.json").read_text())["processbench"][str(bench)]
    assert results["vllm"]["f1"] == results["transformers"]["f1"]
    assert json.loads((tmp_path / "vllm" / "config.json").read_text())["verifier"]["backend"] == "vllm-pooling"
