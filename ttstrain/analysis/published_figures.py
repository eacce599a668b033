"""Published ProcessBench F1 of public PRMs, as their authors report them: the figures users compare their
own PRM (and our reading of the public ones) against.

    from ttstrain.analysis.published_figures import PROCESSBENCH_F1, published_processbench
    published_processbench("Qwen/Qwen2.5-Math-PRM-7B", "gsm8k")
    # {'model': 'Qwen/Qwen2.5-Math-PRM-7B', 'format': 'qwen2.5-math-prm', 'split': 'gsm8k', 'f1': 82.4,
    #  'average': 73.5, 'source': 'Zhang et al. 2025 ...'}

`PROCESSBENCH_F1` is keyed by hub id. Each entry holds `format` (the `--prm_format` name that reads the
model), `splits` (F1 in percent on ProcessBench's four splits: the harmonic mean of the accuracy on
erroneous and on correct solutions, ProcessBench's metric), `average` (the mean of the four, as
printed) and `source` (the paper and table the numbers were copied from).

Where from: the ProcessBench paper (Zheng et al., 2024, arXiv:2412.06559) Table 3 for the Math-Shepherd,
RLHFlow and Skywork PRMs, read from the PDF in QwenLM/ProcessBench (`paper/process_bench.pdf`, commit
2f2fd8a); "The Lessons of Developing Process Reward Models in Mathematical Reasoning" (Zhang et al., 2025,
arXiv:2501.07301v2) Table 7 for Qwen2.5-Math-PRM-7B/72B, whose other PRM rows repeat Table 3's numbers.
The papers name models by short names; the hub ids are the checkpoints those names refer to.

Protocol differences matter when comparing: the papers take a step as wrong when the PRM's own
classification says so (P(good) < 0.5; for RLHFlow, the greedy next token not being `+`), except for
the Skywork PRMs, which output a score whose threshold the paper picked as the one with the best F1 on
the GSM8K split. Figures only: a number that could not be read in a source is left out, not filled in.
"""

from __future__ import annotations

from pathlib import PurePath

SPLITS = ("gsm8k", "math", "olympiadbench", "omnimath")
FORMATS = ("math-shepherd", "rlhflow", "qwen2.5-math-prm", "skywork")

_PROCESSBENCH_T3 = "Zheng et al. 2024, ProcessBench (arXiv:2412.06559), Table 3"
_LESSONS_T7 = "Zhang et al. 2025, The Lessons of Developing PRMs in Mathematical Reasoning (arXiv:2501.07301v2), Table 7"


def _entry(fmt: str, gsm8k: float, math: float, olympiadbench: float, omnimath: float, average: float,
           source: str) -> dict:
    return {"format": fmt, "splits": {"gsm8k": gsm8k, "math": math, "olympiadbench": olympiadbench,
                                      "omnimath": omnimath}, "average": average, "source": source}


PROCESSBENCH_F1: dict[str, dict] = {
    # paper name: Math-Shepherd-PRM-7B
    "peiyi9979/math-shepherd-mistral-7b-prm": _entry("math-shepherd", 47.9, 29.5, 24.8, 23.8, 31.5, _PROCESSBENCH_T3),
    # RLHFlow-PRM-Mistral-8B
    "RLHFlow/Llama3.1-8B-PRM-Mistral-Data": _entry("rlhflow", 50.4, 33.4, 13.8, 15.8, 28.4, _PROCESSBENCH_T3),
    # RLHFlow-PRM-Deepseek-8B
    "RLHFlow/Llama3.1-8B-PRM-Deepseek-Data": _entry("rlhflow", 38.8, 33.8, 16.9, 16.9, 26.6, _PROCESSBENCH_T3),
    # Skywork-PRM-1.5B (threshold chosen on the GSM8K split)
    "Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B": _entry("skywork", 59.0, 48.0, 19.3, 19.2, 36.4, _PROCESSBENCH_T3),
    # Skywork-PRM-7B (threshold chosen on the GSM8K split)
    "Skywork/Skywork-o1-Open-PRM-Qwen-2.5-7B": _entry("skywork", 70.8, 53.6, 22.9, 21.0, 42.1, _PROCESSBENCH_T3),
    "Qwen/Qwen2.5-Math-PRM-7B": _entry("qwen2.5-math-prm", 82.4, 77.6, 67.5, 66.3, 73.5, _LESSONS_T7),
    "Qwen/Qwen2.5-Math-PRM-72B": _entry("qwen2.5-math-prm", 87.3, 80.6, 74.3, 71.1, 78.3, _LESSONS_T7),
}

_BY_LOWER = {name.lower(): name for name in PROCESSBENCH_F1}


def split_name(split: str) -> str | None:
    """ProcessBench's split name for `split`: a split name in any case ("Omni-MATH" too) or a file named
    after one (`../shared/data/processbench/gsm8k.json.gz`); None for anything else."""
    stem = PurePath(split).name.lower()
    for suffix in (".gz", ".jsonl", ".json"):
        stem = stem.removesuffix(suffix)
    stem = stem.replace("-", "").replace("_", "")
    return stem if stem in SPLITS else None


def published_processbench(name_or_path: str, split: str) -> dict | None:
    """The published ProcessBench F1 of the hub id `name_or_path` (matched case-insensitively) on `split`:
    {"model", "format", "split", "f1", "average", "source"}; None when the model or split has none."""
    model = _BY_LOWER.get(name_or_path.strip().rstrip("/").lower())
    name = split_name(split)
    if model is None or name is None:
        return None
    entry = PROCESSBENCH_F1[model]
    return {"model": model, "format": entry["format"], "split": name, "f1": entry["splits"][name],
            "average": entry["average"], "source": entry["source"]}
