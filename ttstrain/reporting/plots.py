"""Every plot ttstrain draws (PNG, matplotlib's Agg backend, set up in one place).

    from ttstrain.reporting.plots import plot_curves
    plot_curves("runs/x/curve.png", {"majority@N": {1: 0.3, 2: 0.35}}, "Majority vote")
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int | None = None) -> Path:
    """Write `fig` to `path` (parents created) and free it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **({"dpi": dpi} if dpi else {}))
    pyplot().close(fig)
    return path


def plot_curves(path: str | Path, curves: Mapping[str, Mapping[int, float]], title: str,
                xlabel: str = "samples per problem (N)", ylabel: str = "accuracy") -> Path:
    """One line per named curve {budget: value}, log2 x axis."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for name, curve in curves.items():
        xs = sorted(curve)
        ax.plot(xs, [curve[x] for x in xs], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_bin_bars(path: str | Path, series: Mapping[str, Mapping[int, Mapping[int, float | None]]],
                  budgets: Sequence[int], title: str) -> Path:
    """One panel per difficulty bin; in each, bars per budget for every named series {bin: {B: acc}}."""
    plt = pyplot()
    kinds = sorted({k for s in series.values() for k in s})
    fig, axes = plt.subplots(1, max(1, len(kinds)), figsize=(2.6 * max(1, len(kinds)), 3.4), dpi=110, sharey=True,
                             squeeze=False)
    width = 0.8 / max(1, len(series))
    for ax, k in zip(axes[0], kinds):
        for j, (name, per_bin) in enumerate(series.items()):
            ys = [per_bin.get(k, {}).get(B) for B in budgets]
            ax.bar([i + j * width for i in range(len(budgets))], [0.0 if y is None else y for y in ys], width,
                   label=name)
        ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(budgets))], [str(b) for b in budgets])
        ax.set_title(f"bin {k}" + (" (easiest)" if k == kinds[0] else " (hardest)" if k == kinds[-1] else ""))
        ax.set_xlabel("generation budget")
        ax.set_ylim(0, 1.02)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_ratio_sweep(path: str | Path, sweep: Mapping[int, Mapping[int, Mapping[float, float]]], title: str) -> Path:
    """One panel per bin: accuracy vs sequential/parallel ratio L/P (log2 x), a line per budget."""
    plt = pyplot()
    kinds = sorted(sweep)
    fig, axes = plt.subplots(1, max(1, len(kinds)), figsize=(2.6 * max(1, len(kinds)), 3.4), dpi=110, sharey=True,
                             squeeze=False)
    for ax, k in zip(axes[0], kinds):
        for n, per_q in sweep[k].items():
            if len(per_q) > 1:
                xs = sorted(per_q)
                ax.plot(xs, [per_q[x] for x in xs], marker="o", label=f"N={n}")
        ax.set_xscale("log", base=2)
        ax.set_title(f"bin {k}")
        ax.set_xlabel("sequential / parallel")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_accuracy_vs_budget(path: str | Path, curves: Mapping[str, Mapping[int, float | None]],
                            optimal: Mapping[str, Mapping[int, float | None]], baseline: str, title: str) -> Path:
    """Accuracy vs generation budget (log2 x): every strategy, the baseline in black, compute-optimal dashed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for name, curve in curves.items():
        xs = sorted(b for b, a in curve.items() if a is not None)
        style = {"color": "black", "lw": 2} if name == baseline else {}
        ax.plot(xs, [curve[x] for x in xs], marker="o", ms=4, label=name, **style)
    for name, curve in optimal.items():
        xs = sorted(b for b, a in curve.items() if a is not None)
        ax.plot(xs, [curve[x] for x in xs], ls="--", lw=2, marker="s", ms=4, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("generation budget")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def family_plots(out_dir: str | Path, name: str, family: Mapping) -> list[Path]:
    """accuracy_<name>.png (every strategy + compute-optimal, log2 x) and bins_<name>_<kind>.png per kind of bins."""
    out_dir = Path(out_dir)
    optimal = {f"compute-optimal ({kind} bins)": sel["accuracy"] for kind, sel in family["compute_optimal"].items()}
    paths = [plot_accuracy_vs_budget(out_dir / f"accuracy_{name}.png", family["curves"], optimal, family["baseline"],
                                     f"{name}: accuracy vs budget")]
    for kind, sel in family["compute_optimal"].items():
        series = {family["baseline"]: family["by_bin"][kind][family["baseline"]],
                  "compute-optimal (2-fold CV)": sel["by_bin"]}
        paths.append(plot_bin_bars(out_dir / f"bins_{name}_{kind}.png", series, family["budgets"],
                                   f"{name}, {kind} bins: compute-optimal vs {family['baseline']}"))
    return paths


def plot_prediction(path: Path, report: dict) -> Path:
    """Observed and predicted best-of-N accuracy and reward against N (`ttstrain predict-bon`)."""
    plt = pyplot()
    curves = report["curves"]
    ns = sorted(int(n) for n in curves)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, label in ((axes[0], "accuracy", "best-of-N accuracy"), (axes[1], "reward", "best-of-N reward")):
        ax.plot(ns, [curves[n][f"observed_{key}"] for n in ns], "o-", label="observed (all samples)")
        ax.plot(ns, [curves[n][f"predicted_{key}"] for n in ns], "s--", label=f"predicted from {report['fit_samples']}")
        ax.axvline(report["fit_samples"], color="grey", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("N")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
