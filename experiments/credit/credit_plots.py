"""Figures of the credit-assignment study (experiments.credit.credit_assignment), from its
summary.json: learning curves of every method (one figure per dataset) and the angle between
each method's weight update and backprop's gradient, per weight layer, over training.

    python -m experiments.credit.credit_plots runs/credit      # redraw from runs/credit/summary.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from matplotlib.ticker import FormatStrFormatter

from experiments.common.plots import _figure, _save, integer_ticks

LABELS = {"backprop": "backprop", "fa": "FA", "dfa": "DFA", "usf": "uSF", "brsf": "brSF",
          "frsf": "frSF"}
COLORS = {"backprop": "black", "fa": "tab:blue", "dfa": "tab:orange", "usf": "tab:green",
          "brsf": "tab:red", "frsf": "tab:purple"}
TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


def plot_curves(dataset: str, results: dict, path: Path) -> Path:
    """Test and validation error (%) per epoch, mean over seeds, one line per method."""
    fig = _figure(10, 4)
    axes = fig.subplots(1, 2)
    for ax, key, what in zip(axes, ("test_error", "val_error"), ("test", "validation")):
        for method, r in results.items():
            ax.plot(r["epochs"], r["curves_mean_percent"][key], marker="o", ms=3,
                    color=COLORS.get(method), label=f"{LABELS.get(method, method)} "
                    f"(final {r['curves_mean_percent'][key][-1]:.2f}%)")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{what} error (%, log scale)")
        ax.set_title(f"{what.capitalize()} error, mean over seeds")
        integer_ticks(ax, "x", next(iter(results.values()))["epochs"])
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"LeNet-5 on {TITLES.get(dataset, dataset)}: learning curves of every credit-"
                 f"assignment method")
    return _save(fig, path)


def plot_alignment(dataset: str, results: dict, path: Path) -> Path:
    """One panel per weight layer: angle (degrees) between each feedback method's update and
    backprop's gradient over training; 90° (orthogonal, no alignment) dashed."""
    methods = [m for m in results if m != "backprop"]
    layers = list(next(iter(results.values()))["angle_degrees_mean_over_seeds"]) if results else []
    fig = _figure(3.2 * max(len(layers), 1), 3.6)
    axes = np.atleast_1d(fig.subplots(1, max(len(layers), 1), sharey=True))
    for ax, layer in zip(axes, layers):
        for method in methods:
            r = results[method]
            ax.plot(r["epochs"], r["angle_degrees_mean_over_seeds"][layer], marker="o", ms=3,
                    color=COLORS.get(method), label=LABELS.get(method, method))
        ax.axhline(90, color="grey", ls="--", lw=1, label="90° (orthogonal)")
        ax.set_ylim(0, 120)
        ax.set_title(f"layer {layer}" + (" (exact: gets e)" if layer == layers[-1] else ""))
        ax.set_xlabel("epoch")
        if methods:
            integer_ticks(ax, "x", results[methods[0]]["epochs"])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("angle to backprop's gradient (degrees)")
    axes[-1].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"LeNet-5 on {TITLES.get(dataset, dataset)}: alignment of each method's weight "
                 f"update with backprop's (mean over seeds)")
    return _save(fig, path)


def plot_all(summary: dict, out: Path) -> list[Path]:
    paths = []
    for dataset, results in summary["results"].items():
        if not results:
            continue
        paths.append(plot_curves(dataset, results, out / f"curves_{dataset}.png"))
        if any(m != "backprop" for m in results):
            paths.append(plot_alignment(dataset, results, out / f"alignment_{dataset}.png"))
    return paths


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m experiments.credit.credit_plots RUN_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    summary = json.loads((out / "summary.json").read_text())
    for p in plot_all(summary, out / "figures"):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
