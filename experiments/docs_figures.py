"""Draw the documentation's figures: every study at small, fast settings, one or two key figures
of each copied into the docs folder as a small PNG, with a README.md naming the study and the
command that drew each file.

    python -m experiments.docs_figures --out docs/figures
    python -m experiments.docs_figures --out docs/figures --only perceptron hebbian --runs /tmp/runs

Each study runs as its own process (`python -m <module> ...`), writing its whole output under a
temporary folder (or --runs, which is kept; a study's folder there is replaced on each run). The
studies that train on MNIST read it from --data-dir, else $JAXNN_DATA_DIR, else the cache of
`jaxnn.data`. A figure is copied downscaled
to at most --width pixels wide and stored as an optimised palette PNG; each copy must stay at most
--max-kb kilobytes (the command fails naming the file otherwise). The settings are the ones below,
so the numbers in these figures are those of short runs, not of the full studies.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["STUDIES", "Figure", "Study", "copy_small", "main", "parse_args", "readme"]


@dataclass(frozen=True)
class Figure:
    """One figure of a study's run folder (`source`, relative to it) copied to docs as `name`,
    at most `width` pixels wide (None: the command's --width)."""
    source: str
    name: str
    caption: str
    width: int | None = None


@dataclass(frozen=True)
class Study:
    """A study: its command (`module` and arguments; "{out}" is its run folder, "{runs}" the folder
    of all runs, for a study that reuses another's output), the figures it contributes, and the
    studies whose runs it needs first."""
    name: str
    module: str
    args: tuple[str, ...]
    figures: tuple[Figure, ...]
    needs: tuple[str, ...] = field(default=())

    def argv(self, runs: Path) -> list[str]:
        return [a.format(out=runs / self.name, runs=runs) for a in self.args]

    def command(self) -> str:
        """The command as a reader would type it (run folder shown as runs/<study>)."""
        return " ".join(["python -m", self.module, *self.argv(Path("runs"))]).replace(os.sep, "/")


LENET_ARGS = ("--epochs", "2", "--train-subset", "6000", "--test-subset", "1000", "--seed", "0",
              "--no-progress", "--out", "{out}")

STUDIES: tuple[Study, ...] = (
    Study("lenet", "experiments.train_lenet", LENET_ARGS, (
        Figure("plots/curves.png", "lenet_curves.png",
               "LeNet-5 (modern) on 6,000 MNIST images for 2 epochs: loss and accuracy per epoch."),
        Figure("plots/filters_conv1.png", "lenet_filters_conv1.png",
               "The six learned 5×5 conv1 filters on one diverging scale centred on 0."),
        Figure("plots/confusion.png", "lenet_confusion.png",
               "Confusion matrix on 1,000 test digits (counts, log colour scale)."),
    )),
    Study("filters", "experiments.lenet.filters",
          ("--lenet", "{runs}/lenet", "--test-subset", "1000", "--out", "{out}"), (
              Figure("curve_slide.png", "filters_curve_slide.png",
                     "A hand-set curve detector slid over a test digit: window, pixels × weights, "
                     "activation map so far."),
              Figure("edges_vs_conv1.png", "filters_edges_vs_conv1.png",
                     "Hand-set edge detectors against the learned conv1 filters, with their "
                     "correlation matrix."),
          ), needs=("lenet",)),
    Study("vision", "experiments.vision.visual_hierarchy",
          ("--lenet", "{runs}/lenet", "--quick", "--out", "{out}"), (
              Figure("f1f0_histograms.png", "vision_f1f0.png",
                     "Modulation ratio F1/F0 per LeNet-5 layer; the line at 1 divides simple from "
                     "complex cells."),
              Figure("tuning_curves.png", "vision_tuning_curves.png",
                     "Orientation tuning of example units to drifting gratings and bars."),
          ), needs=("lenet",)),
    Study("perceptron", "experiments.rules.perceptron",
          ("--epochs", "2", "--train-subset", "5000", "--test-subset", "1000", "--no-sklearn",
           "--no-progress", "--seed", "0", "--out", "{out}"), (
              Figure("separable_mistakes.png", "perceptron_mistakes.png",
                     "Perceptron mistakes per epoch on a separable set against Novikoff's bound."),
              Figure("xor.png", "perceptron_xor.png",
                     "XOR: the perceptron never reaches 0 errors; a two-layer net trained by "
                     "backprop solves it."),
          )),
    Study("hebbian", "experiments.rules.hebbian",
          ("--quick", "--train-subset", "5000", "--test-subset", "1000", "--no-progress",
           "--seed", "0", "--out", "{out}"), (
              Figure("hebb_oja.png", "hebbian_hebb_oja.png",
                     "Plain Hebb's weight grows without bound; Oja's rule converges to the first "
                     "principal component."),
              Figure("sanger.png", "hebbian_sanger.png",
                     "Sanger's rule: the largest principal angle to the top-k subspace and the "
                     "columns' orthonormality against steps."),
          )),
    Study("hebbian_wta", "experiments.rules.hebbian",
          ("--rule", "wta", "--quick", "--train-subset", "5000", "--test-subset", "1000",
           "--no-progress", "--seed", "0", "--out", "{out}"), (
              Figure("units/plots/receptive_fields.png", "hebbian_wta_receptive_fields.png",
                     "Winner-take-all competitive learning (--rule wta): receptive fields of the "
                     "most frequent winners (all weights ≥ 0 here: a sequential scale from 0).",
                     width=700),
          )),
    Study("spikes", "experiments.rate.spikes",
          ("--trials", "30", "--neurons", "20", "--seconds", "6", "--seed", "0", "--out", "{out}"), (
              Figure("spikes.png", "spikes.png",
                     "Poisson spike trains from one rate, two rate estimates, and the estimate's "
                     "error against the window (1/√W)."),
          )),
    Study("rate_rnn", "experiments.rate.rate_rnn",
          ("--task", "perceptual_decision", "--epochs", "3", "--steps-per-epoch", "25",
           "--eval-trials", "256", "--seed", "0", "--no-progress", "--out", "{out}"), (
              Figure("plots/psychometric.png", "rate_rnn_psychometric.png",
                     "Perceptual decision, RateRNN with Dale's law after 75 BPTT steps: "
                     "psychometric curve."),
              Figure("plots/rates.png", "rate_rnn_rates.png",
                     "Rates of every unit over one trial, and Poisson spikes drawn from them "
                     "(excitatory red, inhibitory blue)."),
          )),
    Study("reinforce_bandit", "experiments.reward.reinforce",
          ("--env", "bandit", "--problems", "200", "--epochs", "2", "--seed", "0",
           "--no-progress", "--out", "{out}"), (
              Figure("curves.png", "reinforce_bandit.png",
                     "10-armed bandit: cumulative and per-trial regret of each agent."),
          )),
    Study("reinforce_cartpole", "experiments.reward.reinforce",
          ("--env", "cartpole", "--epochs", "8", "--seed", "0", "--no-progress", "--out", "{out}"), (
              Figure("curves.png", "reinforce_cartpole.png",
                     "CartPole-v1 by REINFORCE, short run: mean return of the last 100 episodes."),
          )),
    Study("connectome_touch", "experiments.connectome",
          ("--experiment", "touch", "--no-progress", "--out", "{out}"), (
              Figure("plots/circuit_signs.png", "connectome_touch_signs.png",
                     "Touch-withdrawal circuit on its real wiring: the fraction of the 64 solving models "
                     "in which each chemical synapse came out excitatory (full run)."),
          )),
    Study("connectome_whole", "experiments.connectome",
          ("--experiment", "whole", "--no-progress", "--out", "{out}"), (
              Figure("plots/controls.png", "connectome_whole_controls.png",
                     "Whole connectome on the perceptual decision task against its controls, 5 seeds "
                     "each (full run)."),
          )),
    Study("compare_backprop", "experiments.backprop.compare_backprop",
          ("--quick", "--repeats", "1", "--out", "{out}"), (
              Figure("compare.png", "compare_backprop.png",
                     "Gradient agreement with reverse mode per layer case, float32 and float64, "
                     "with the tolerances."),
          )),
)


def copy_small(source: Path, target: Path, width: int, max_kb: float) -> int:
    """Copy the PNG `source` to `target` at most `width` pixels wide (aspect kept) as an optimised
    128-colour palette PNG, narrowing it by steps of 15 % (not below 400 px) until it is at most
    `max_kb` kilobytes; returns its size in bytes. ValueError when even 400 px is too large."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as original:
        original = original.convert("RGB")
        while True:
            im = original
            if im.width > width:
                im = im.resize((width, round(im.height * width / im.width)),
                               Image.Resampling.LANCZOS)
            im = im.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            im.save(target, optimize=True)
            size = target.stat().st_size
            if size <= max_kb * 1024 or width <= 400:
                break
            width = max(int(width * 0.85), 400)
    if size > max_kb * 1024:
        raise ValueError(f"{target}: {size / 1024:.0f} KB at {width} px exceeds --max-kb {max_kb:g}")
    return size


def readme(studies=STUDIES) -> str:
    """docs/figures/README.md: each file, its study, its caption and the command that drew it."""
    lines = ["# Documentation figures", "",
             "Drawn by `python -m experiments.docs_figures --out docs/figures`: each study runs at small, "
             "fast settings (short runs, not the full studies, so the numbers in these figures are "
             "those of the short runs) and one or two of its figures are copied here as small PNGs. "
             "The commands below write their run folder to `runs/<study>`; the figure's path inside "
             "it is given.", "",
             "| file | study | caption | command (figure in its run folder) |", "|---|---|---|---|"]
    for study in studies:
        for fig in study.figures:
            lines.append(f"| [{fig.name}]({fig.name}) | {study.name} | {fig.caption} | "
                         f"`{study.command()}` (`{fig.source}`) |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.docs_figures",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="docs figure folder, e.g. docs/figures")
    p.add_argument("--only", nargs="+", choices=[s.name for s in STUDIES], default=None,
                   help="only these studies (and the ones they need)")
    p.add_argument("--runs", default=None, help="keep the run folders here (default: a temporary "
                                                "folder, removed at the end)")
    p.add_argument("--data-dir", default=None, help="MNIST folder (default $JAXNN_DATA_DIR)")
    p.add_argument("--width", type=int, default=900, help="largest width of a copy, pixels")
    p.add_argument("--max-kb", type=float, default=150.0, help="largest size of a copy, KB")
    args = p.parse_args(argv)
    if args.width < 100:
        p.error(f"--width must be ≥ 100 pixels, got {args.width}")
    if args.max_kb <= 0:
        p.error(f"--max-kb must be positive, got {args.max_kb}")
    return args


def _selected(only: list[str] | None) -> list[Study]:
    if only is None:
        return list(STUDIES)
    by_name = {s.name: s for s in STUDIES}
    wanted: set[str] = set()
    stack = list(only)
    while stack:
        name = stack.pop()
        if name not in wanted:
            wanted.add(name)
            stack.extend(by_name[name].needs)
    return [s for s in STUDIES if s.name in wanted]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = None
    if args.runs is None:
        tmp = tempfile.TemporaryDirectory(prefix="jaxnn-docs-figures-")
        runs = Path(tmp.name)
    else:
        runs = Path(args.runs)
        runs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MPLBACKEND": "Agg"}
    if args.data_dir is not None:
        env["JAXNN_DATA_DIR"] = args.data_dir
    done: list[tuple[Study, Figure, int]] = []
    failed: list[str] = []
    try:
        for study in _selected(args.only):
            if any(n in failed for n in study.needs):
                failed.append(study.name)
                print(f"{study.name}: skipped (needs {', '.join(study.needs)})", flush=True)
                continue
            started = time.perf_counter()
            if (runs / study.name).exists():  # a fresh run, not a resumed one
                shutil.rmtree(runs / study.name)
            cmd = [sys.executable, "-m", study.module, *study.argv(runs)]
            result = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                failed.append(study.name)
                print(f"{study.name}: FAILED ({' '.join(cmd)})\n{result.stderr[-2000:]}", flush=True)
                continue
            for fig in study.figures:
                source = runs / study.name / fig.source
                if not source.is_file():
                    failed.append(study.name)
                    print(f"{study.name}: FAILED, it wrote no {source}", flush=True)
                    continue
                size = copy_small(source, out / fig.name, fig.width or args.width, args.max_kb)
                done.append((study, fig, size))
                print(f"{study.name}: {fig.name} {size / 1024:.0f} KB", flush=True)
            print(f"{study.name}: {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    (out / "README.md").write_text(readme())
    total = sum(size for *_, size in done)
    print(f"{len(done)} figures, {total / 1024:.0f} KB in all -> {out}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
