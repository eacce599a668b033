"""The published ProcessBench table is well formed, and looking a model up finds its figure (fast suite)."""

from __future__ import annotations

import pytest

from ttstrain.analysis.published_figures import FORMATS, PROCESSBENCH_F1, SPLITS, published_processbench, split_name


@pytest.mark.parametrize("model", sorted(PROCESSBENCH_F1))
def test_entry_shape(model):
    entry = PROCESSBENCH_F1[model]
    assert entry["format"] in FORMATS
    assert "/" in model, "keyed by hub id (owner/name)"
    assert set(entry["splits"]) == set(SPLITS)
    assert all(0 <= f1 <= 100 for f1 in entry["splits"].values())
    assert entry["source"].strip()
    if entry.get("average") is not None:
        # the papers print the average of the four splits, rounded: a transcription slip shows up here
        mean = sum(entry["splits"].values()) / len(SPLITS)
        assert abs(entry["average"] - mean) <= 0.15, (model, entry["average"], mean)


def test_hub_ids_are_unique_ignoring_case():
    assert len({m.lower() for m in PROCESSBENCH_F1}) == len(PROCESSBENCH_F1)


def test_every_format_has_a_published_model():
    assert {e["format"] for e in PROCESSBENCH_F1.values()} == set(FORMATS)


def test_lookup():
    got = published_processbench("Qwen/Qwen2.5-Math-PRM-7B", "gsm8k")
    assert got == {"model": "Qwen/Qwen2.5-Math-PRM-7B", "format": "qwen2.5-math-prm", "split": "gsm8k",
                   "f1": 82.4, "average": 73.5, "source": PROCESSBENCH_F1["Qwen/Qwen2.5-Math-PRM-7B"]["source"]}
    assert published_processbench("qwen/QWEN2.5-math-prm-7b", "GSM8K") == got
    assert published_processbench("Qwen/Qwen2.5-Math-PRM-7B/", "../shared/data/processbench/gsm8k.json.gz") == got
    assert published_processbench("peiyi9979/math-shepherd-mistral-7b-prm", "Omni-MATH")["f1"] == 23.8


@pytest.mark.parametrize("name_or_path, split", [
    ("runs/llama-3.2-1b-instruct/prm", "gsm8k"),  # a PRM trained here: no published figure
    ("Qwen2.5-Math-PRM-7B", "gsm8k"),              # a bare name is not the hub id
    ("Qwen/Qwen2.5-Math-PRM-7B", "aime"),          # not a ProcessBench split
    ("Qwen/Qwen2.5-Math-PRM-7B", "my_pb.jsonl"),
])
def test_lookup_misses(name_or_path, split):
    assert published_processbench(name_or_path, split) is None


def test_split_name():
    assert [split_name(s) for s in ("MATH", "OlympiadBench", "omni_math", "x/omnimath.json", "gsm8k.jsonl")] == \
        ["math", "olympiadbench", "omnimath", "omnimath", "gsm8k"]


@pytest.mark.parametrize("model", sorted(PROCESSBENCH_F1))
def test_agrees_with_the_format_table(model):
    """A model with a published figure is one its format says it reads (`PRMFormat.known_models`), so
    `--prm_format auto` detects it; skipped while that format is not registered."""
    public_prms = pytest.importorskip("ttstrain.prm.public")
    fmt = public_prms.PRM_FORMATS.get(PROCESSBENCH_F1[model]["format"])
    if fmt is None:
        pytest.skip(f"format {PROCESSBENCH_F1[model]['format']!r} is not registered in ttstrain.prm.public yet")
    assert model.lower() in {m.lower() for m in fmt.known_models}
