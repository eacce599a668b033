"""Predict best-of-N from a few scored samples per question, and check it on the rest.

    ttstrain predict-bon --samples runs/demo/search-10x16-seed0 --fit_samples 8 --output_dir runs/predict_bon
    ttstrain predict-bon --samples scored.parquet --score_column score_prm --fit_samples 16

Input (`samples`): rows with problem_id, correct and a verifier score (`score_column`): a parquet
file, a `ttstrain search` folder (its best-of-N candidates at the largest budget) or a folder
with samples.parquet. Each question's samples are taken in `sample_index` order when the column
exists (file order otherwise); the first `fit_samples` predict, all of them check.

Output folder: predict_bon.json (per N: predicted and observed mean best-of-N accuracy and
reward, their mean absolute errors over questions, the error of the mean), predict_bon.png
(predicted against observed curves) and config.json. How the prediction is made:
`ttstrain.analysis.bon_prediction`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ttstrain.analysis.bon_prediction import prediction_report
from ttstrain.io import write_json, write_resolved_config
from ttstrain.parsing import StageParser
from ttstrain.reporting.plots import plot_prediction
from ttstrain.runner.rows import read_rows, row_columns
from ttstrain.validation import InputError, check_sample_rows


@dataclass
class PredictBoNConfig:
    samples: str = field(default="", metadata={"help": "Scored samples: parquet, a `ttstrain search` folder or a folder with samples.parquet."})
    output_dir: str = field(default="runs/predict_bon", metadata={"help": "Output folder (JSON, plot, config)."})
    score_column: str = field(default="score", metadata={"help": "Column with the verifier's aggregated score of each sample."})
    fit_samples: int = field(default=8, metadata={"help": "m: samples per question the prediction is made from (the first m)."})
    max_budget: int | None = field(default=None, metadata={"help": "Largest N predicted (default 16 m); checked up to the samples each question has."})
    tail_alpha: float = field(default=0.2, metadata={"help": "Top fraction of the rewards the tail fit uses."})


def samples_path(path: str | Path) -> tuple[Path, str | None]:
    """(parquet file, the `run` to keep or None) for a samples argument."""
    p = Path(path)
    if p.is_dir():
        if (p / "candidates.parquet").exists():
            return p / "candidates.parquet", "best_of_n"
        return p / "samples.parquet", None
    return p, None


def load_questions(cfg: PredictBoNConfig) -> dict[str, tuple[list[float], list[bool]]]:
    path, run = samples_path(cfg.samples)
    if not path.exists():
        raise InputError(path, "does not exist (give a parquet file or a search / sample folder)")
    columns = row_columns(path)
    rows = read_rows(path, columns=["problem_id", "correct", cfg.score_column, "sample_index", "run"])
    if run is not None:
        rows = [r for r in rows if r.get("run") == run]
    check_sample_rows(rows, path, ("problem_id", "correct", cfg.score_column), columns=columns)
    for i, r in enumerate(rows, 1):
        if r[cfg.score_column] is None:
            raise InputError(path, "is empty; every sample needs a score", i, cfg.score_column)
    grouped: dict[str, list[dict]] = {}
    for r in rows:
        grouped.setdefault(str(r["problem_id"]), []).append(r)
    out = {}
    for q, rs in grouped.items():
        if "sample_index" in columns:
            rs = sorted(rs, key=lambda r: r["sample_index"])
        out[q] = ([float(r[cfg.score_column]) for r in rs], [bool(r["correct"]) for r in rs])
    return out


def run_predict_bon(cfg: PredictBoNConfig) -> dict:
    if cfg.fit_samples < 1:
        raise ValueError(f"fit_samples must be >= 1, got {cfg.fit_samples}")
    questions = load_questions(cfg)
    few = [q for q, (r, _) in questions.items() if len(r) < cfg.fit_samples]
    if few:
        raise ValueError(f"{len(few)} question(s) have fewer than fit_samples={cfg.fit_samples} samples, e.g. {few[0]!r}")
    top = cfg.max_budget or 16 * cfg.fit_samples
    budgets, b = [], 1
    while b <= top:
        budgets.append(b)
        b *= 2
    report = prediction_report(questions, cfg.fit_samples, budgets, cfg.tail_alpha)
    report["budgets_predicted"] = budgets
    out = Path(cfg.output_dir)
    write_json(out / "predict_bon.json", report)
    plot_prediction(out / "predict_bon.png", report)
    write_resolved_config(out, cfg)
    return report


def make_parser():
    return StageParser((PredictBoNConfig,))


def main(args: list[str] | None = None) -> None:
    (cfg,) = make_parser().parse_args_and_config(args)
    report = run_predict_bon(cfg)
    print(json.dumps({n: {k: round(v, 4) for k, v in c.items()} for n, c in report["curves"].items()}, indent=1))
    print(f"[predict-bon] accuracy MAE at N={report['largest_checked_n']}: {report['accuracy_mae_at_largest_n']:.4f}; "
          f"written to {cfg.output_dir}")


if __name__ == "__main__":
    main()
