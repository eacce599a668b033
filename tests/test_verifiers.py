"""The verifier table (`ttstrain.prm.verifiers`): which convention reads a checkpoint, a public PRM behind the
verifier interface (batched as one solution alone, the question taken back out of the policy's prompt),
and search and eval-prm run from the command line with a tiny model in each public format
(`tests/public_prm_models.py`: random weights, offline tokenizers with the real special tokens)."""

from __future__ import annotations

import json

import pytest
import torch

from public_prm_models import build_prm_folder
from ttstrain import cli
from ttstrain.io import read_parquet
from ttstrain.prm.checkpoint import PRM_CONFIG_KEY
from ttstrain.prompts import PromptFormat
from ttstrain.prm.public import PRM_FORMATS
from ttstrain.steps import PARAGRAPH
from ttstrain.prm.verifiers import ConventionScorer, QuestionReader, load_verifier, resolve_prm_format

FORMATS = list(PRM_FORMATS)
QUESTION = "What is 3 + 4 * 2?"
STEPS = [["4 * 2 = 8.", "3 + 8 = 11.", "The answer is 11."], ["3 + 4 = 7.", "7 * 2 = 14."]]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("public_prms")
    return {name: str(build_prm_folder(name, root)) for name in FORMATS}


def test_every_public_format_has_a_tiny_model():
    assert set(FORMATS) == {"math-shepherd", "rlhflow", "qwen2.5-math-prm", "skywork"}


@pytest.mark.parametrize("kind", ["plain", "few_shot", "chat"])
def test_question_reader_takes_the_question_back_out_of_a_policy_prompt(kind, smollm2_tokenizer):
    fmt = {"plain": PromptFormat(),
           "few_shot": PromptFormat("few_shot", [("1 + 1?", "1 + 1 = 2\nThe answer is 2")]),
           "chat": PromptFormat("chat", [], "Solve it.", smollm2_tokenizer, PARAGRAPH)}[kind]
    read = QuestionReader(fmt)
    for q in (QUESTION, "Tom has 3 apples.\nHe eats one. How many are left?"):
        assert read(fmt.build(q)) == q.strip()
    with pytest.raises(ValueError, match="was not built by the policy prompt format"):
        read("something else entirely")


@pytest.mark.parametrize("name", FORMATS)
@torch.no_grad()
def test_the_scorer_reads_a_batch_as_each_solution_alone(folders, name):
    """Batched, right-padded, LM head on the read positions only: equal to the format's formula on one
    solution's full forward pass; questions read back from plain policy prompts."""
    fmt = PRM_FORMATS[name]
    scorer = load_verifier(folders[name], name, device="cpu", batch_size=2)
    assert isinstance(scorer, ConventionScorer)
    scorer.read_prompts_as(PromptFormat())
    prompts = [PromptFormat().build(QUESTION)] * len(STEPS)
    got = scorer.score(prompts, STEPS)
    for steps, row in zip(STEPS, got):
        enc = fmt.encode(scorer.tokenizer, QUESTION, steps)
        out = scorer.model(input_ids=torch.tensor([enc.input_ids]))
        logits = (out.logits if hasattr(out, "logits") else out[0])[0].float()
        expected = fmt.read(scorer.tokenizer, logits[enc.positions])
        torch.testing.assert_close(torch.tensor(row), expected, atol=1e-5, rtol=1e-5)
    assert scorer.last_scored_tokens == [len(fmt.encode(scorer.tokenizer, QUESTION, s).input_ids) for s in STEPS]
    assert scorer.stats["tokens"] == sum(scorer.last_scored_tokens) and scorer.num_parameters > 0
    assert scorer.describe()["prm_format"] == name


# ---- which convention reads a checkpoint --------------------------------------------------------------

@pytest.fixture
def ttstrain_prm(tmp_path):
    folder = tmp_path / "ours"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForTokenClassification"],
                                                    PRM_CONFIG_KEY: {"format_version": 2}}))
    return str(folder)


def test_formats_are_detected_from_the_checkpoint_or_the_hub_id(ttstrain_prm, folders):
    assert resolve_prm_format(ttstrain_prm) == "ttstrain"
    assert resolve_prm_format("Qwen/Qwen2.5-Math-PRM-7B") == "qwen2.5-math-prm"  # no download: a known hub id
    assert resolve_prm_format("skywork/skywork-o1-open-prm-qwen-2.5-1.5b") == "skywork"
    assert resolve_prm_format("peiyi9979/math-shepherd-mistral-7b-prm") == "math-shepherd"
    assert resolve_prm_format(folders["qwen2.5-math-prm"]) == "trl"  # a local token-classification folder
    assert resolve_prm_format(folders["qwen2.5-math-prm"], "qwen2.5-math-prm") == "qwen2.5-math-prm"


def test_a_format_that_contradicts_the_checkpoint_is_refused_naming_both(ttstrain_prm, folders):
    with pytest.raises(ValueError, match=r"--prm_format skywork was given, but .* is a ttstrain PRM"):
        resolve_prm_format(ttstrain_prm, "skywork")
    with pytest.raises(ValueError, match=r"--prm_format rlhflow was given, but Qwen/Qwen2.5-Math-PRM-7B was published "
                                         r"as a qwen2.5-math-prm PRM"):
        resolve_prm_format("Qwen/Qwen2.5-Math-PRM-7B", "rlhflow")
    with pytest.raises(ValueError, match="cannot tell how to read the PRM .* name its convention with --prm_format"):
        resolve_prm_format(folders["math-shepherd"])  # a causal LM folder: nothing says how to read it
    with pytest.raises(ValueError, match=r"rlhflow: the tokenizer has no single token for the chat marker "
                                         r"'<\|start_header_id\|>'"):
        load_verifier(folders["qwen2.5-math-prm"], "rlhflow", device="cpu")  # Qwen's tokenizer has no Llama-3 turns


# ---- from the command line ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", FORMATS)
def test_search_and_eval_prm_run_with_each_public_format(folders, name, tmp_path, monkeypatch):
    out = tmp_path / "search"
    cli.main(["search", "--prm_path", folders[name], "--prm_format", name, "--prm_device", "cpu",
              "--methods", "best_of_n_weighted", "beam_search", "--levels", "1", "--per_level", "2",
              "--max_budget", "2", "--beam_width", "2", "--max_new_tokens", "48", "--output_dir", str(out)])
    config = json.loads((out / "config.json").read_text())
    assert config["scorer"]["type"] == "ConventionScorer" and config["scorer"]["reads"]["prm_format"] == name
    rows = read_parquet(out / "results.parquet")
    assert {r["method"] for r in rows} == {"best_of_n_weighted", "beam_search"}
    assert all(r["verifier_tokens"] > 0 and r["verifier_flops"] > 0 for r in rows)

    bench = tmp_path / "processbench.json"
    bench.write_text(json.dumps([
        {"id": f"t-{i}", "problem": QUESTION, "steps": steps, "label": label, "final_answer_correct": label == -1}
        for i, (steps, label) in enumerate([(STEPS[0], -1), (STEPS[1], 1), (STEPS[0], -1), (STEPS[1], 0)])]))
    monkeypatch.setattr("ttstrain.analysis.published_figures.published_processbench",
                        lambda model, split: {"model": model, "f1": 12.3, "source": "a test"})
    cli.main(["eval-prm", "--prm_path", folders[name], "--prm_format", name, "--prm_device", "cpu",
              "--processbench", str(bench), "--processbench_threshold", "0.5", "--output_dir", str(tmp_path / "ev")])
    result = json.loads((tmp_path / "ev" / "eval_prm.json").read_text())
    assert result["prm_format"] == name
    figures = result["processbench"][str(bench)]
    assert 0.0 <= figures["f1"] <= 1.0 and figures["published"]["f1"] == 12.3
    assert json.loads((tmp_path / "ev" / "config.json").read_text())["verifier"]["prm_format"] == name


# ---- review fixes: prompts the verifier builds, templates that change, attempts cut in their own format --------

def test_prompts_the_scorer_builds_read_back_after_it_knows_the_policy_format(folders):
    """search --methods revisions builds prompts with prompt_for: after read_prompts_as they are policy prompts."""
    scorer = load_verifier(folders["skywork"], "skywork", device="cpu")
    fmt = PromptFormat("few_shot", [("1 + 1?", "1 + 1 = 2\nThe answer is 2")])
    assert scorer.prompt_for(QUESTION) == QUESTION  # eval-prm: a bare question
    scorer.read_prompts_as(fmt)
    assert scorer.prompt_for(QUESTION) == fmt.build(QUESTION)
    assert scorer.score([scorer.prompt_for(QUESTION)], [STEPS[0]]) == scorer.score([fmt.build(QUESTION)], [STEPS[0]])


def test_the_question_reader_frames_again_when_the_template_changes():
    """A chat template that prints today's date builds other prompts after midnight."""
    class Dated:
        day = "7 Dec"

        def build(self, q):
            return f"Today is {self.day}.\nQ: {q.strip()}\nA:"

    fmt = Dated()
    read = QuestionReader(fmt)
    fmt.day = "8 Dec"
    assert read(fmt.build(QUESTION)) == QUESTION


def test_a_public_prm_scores_revision_attempts_cut_in_their_own_step_format():
    """eval-revision: a public PRM reads step lists, so attempts are cut in the chains' format (paragraphs here),
    not by the PRM's own (which leaves a step whole)."""
    from ttstrain.revisions.verifier import score_attempts

    seen = []

    class Public:
        reads_questions = True
        prompt_format = None

        def prompt_for(self, q):
            return q

        def score_solutions(self, prompts, steps, how="last"):
            seen.extend(steps)
            return [0.5] * len(prompts)

    rows = [{"completion": "3 + 4 = 7.\n\nSo the answer is 7.", "question": QUESTION, "prompt": "p"}]
    assert score_attempts(Public(), rows, context=False, attempt_steps=PARAGRAPH) == [0.5]
    assert seen == [["3 + 4 = 7.", "So the answer is 7."]]


def test_an_uncached_hub_prm_is_sized_from_the_hubs_metadata(monkeypatch):
    """A hub PRM not downloaded yet was 'cannot size' on its first run; the hub's safetensors metadata sizes it."""
    import huggingface_hub

    from ttstrain import devices

    class Meta:
        parameter_count = {"BF16": 7_000_000_000, "F32": 1000}

    monkeypatch.setattr(huggingface_hub, "get_safetensors_metadata", lambda repo: Meta())
    assert devices.checkpoint_bytes("Qwen/Qwen2.5-Math-PRM-7B") == 14_000_000_000 + 4000
    assert devices.checkpoint_bytes("Qwen/Qwen2.5-Math-PRM-7B", "float32") == 4 * 7_000_001_000
