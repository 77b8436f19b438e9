"""Seeing what a CNN sees: a hand-set curve detector, hand-set edge detectors, and LeNet-5's conv1.

    python -m experiments.lenet.filters --out runs/filters    # first trains a 1-epoch LeNet-5 in runs/filters/lenet-1ep
    python -m experiments.lenet.filters --out runs/filters --lenet runs/lenet5-modern-autodiff-seed0

Writes to --out: curve_filter.png (the 7×7 filter as pixels and as a curve), curve_slide.png
(the filter slid over a test digit: window positions and the activation map filling in),
curve_extremes.png (the ten test digits whose best window is most and least like the filter, by
cosine: raw peaks saturate at 180 on most digits), edges_vs_conv1.png (hand-set
vertical / horizontal / diagonal edge detectors beside the learned 5×5 conv1 filters, each
labelled with its best match by correlation), conv1_on_curve.png (every conv1 filter's
response to the curve detector's preferred stimulus) and summary.json.

Every convolution is `jaxnn.Conv2D` with its weights set by hand (bias 0): the activation map is
    a[i, j] = Σ_{u,v} x[i + u, j + v] · w[u, v]                (VALID, 28×28 -> 22×22 for 7×7)
on pixels scaled to [0, 1], so the curve detector's largest possible response is 6 · 30 = 180.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn
from experiments import train_lenet
from experiments.common import cli
from experiments.common.loop import UsageError, cli_main, write_atomic
from experiments.lenet import filters_plots as fplots
from jaxnn import data as jdata

__all__ = ["CURVE_FILTER", "EDGE_FILTERS", "activation_maps", "best_matches", "curve_stimulus",
           "load_params", "main", "normalised_maps", "run", "train_short"]

# The lecture's curve detector, exactly as printed (7 rows of 7).
CURVE_FILTER = np.array([
    [0, 0, 0, 0, 0, 30, 0],
    [0, 0, 0, 0, 30, 0, 0],
    [0, 0, 0, 30, 0, 0, 0],
    [0, 0, 0, 30, 0, 0, 0],
    [0, 0, 0, 30, 0, 0, 0],
    [0, 0, 0, 30, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0],
], np.float32)

_RAMP = np.array([-1, -1, 0, 1, 1], np.float32)
_I, _J = np.mgrid[0:5, 0:5]
# 5×5 like LeNet-5's conv1. Each responds positively to dark on one side, ink on the other.
EDGE_FILTERS = {
    "vertical": np.tile(_RAMP, (5, 1)),                                        # dark left, ink right
    "horizontal": np.tile(_RAMP[:, None], (1, 5)),                             # dark above, ink below
    "diagonal ↘": np.sign(_I - _J).astype(np.float32),                          # ink below the main diagonal
    "diagonal ↗": np.sign(_I + _J - 4).astype(np.float32),                      # ink below the anti-diagonal
}


def activation_maps(kernel: np.ndarray, images: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Each image correlated with one fixed kernel through jaxnn.Conv2D (VALID, bias 0).

    kernel: (kh, kw); images: (N, H, W) float. Returns (N, H - kh + 1, W - kw + 1) float32.
    """
    kh, kw = kernel.shape
    conv = jaxnn.Conv2D(1, (kh, kw), padding="VALID")
    params = jaxnn.ConvParams(jnp.asarray(kernel, jnp.float32)[:, :, None, None], jnp.zeros(1, jnp.float32))
    apply = jax.jit(lambda p, x: conv(p, x))
    images = np.asarray(images, np.float32)[..., None]
    return np.concatenate([np.asarray(apply(params, images[i:i + batch]))[..., 0]
                           for i in range(0, len(images), batch)])


def normalised_maps(kernel: np.ndarray, images: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """cos[i, j] = a[i, j] / (‖w‖ · ‖x[i:i+kh, j:j+kw]‖) in [-1, 1] (0 on blank windows): how much
    each window looks like the kernel, whatever its ink. ‖window‖² is x² correlated with ones.
    images (N, H, W) and their `activation_maps` -> (N, H - kh + 1, W - kw + 1)."""
    window_norm = np.sqrt(np.maximum(activation_maps(np.ones_like(kernel), np.square(images)), 0.0))
    denom = float(np.linalg.norm(kernel)) * window_norm
    return np.where(denom > 0, maps / np.where(denom > 0, denom, 1.0), 0.0).astype(np.float32)


def curve_stimulus(size: int = 28) -> np.ndarray:
    """The curve detector's preferred stimulus: its own shape as ink (1.0) centred on a blank
    (size, size) canvas. By Cauchy–Schwarz no image of the same norm responds more."""
    canvas = np.zeros((size, size), np.float32)
    top = (size - 7) // 2
    canvas[top:top + 7, top:top + 7] = CURVE_FILTER / CURVE_FILTER.max()
    return canvas


def best_matches(learned: np.ndarray, handset: dict[str, np.ndarray]) -> tuple[np.ndarray, list[dict]]:
    """Pearson correlation of every learned filter with every hand-set one.

    learned: (kh, kw, 1, K) conv1 kernel (HWIO). Returns the (K, len(handset)) correlation matrix
    and, per learned filter, the hand-set one with the largest |r| and its signed r (a negative
    r is the same edge with the opposite polarity: ink and background swapped).
    """
    names = list(handset)
    flat = np.asarray(learned, np.float64)[:, :, 0, :].reshape(-1, learned.shape[-1]).T
    ref = np.stack([handset[n].ravel() for n in names]).astype(np.float64)
    corr = np.corrcoef(np.concatenate([flat, ref]))[:len(flat), len(flat):]
    matches = []
    for k, row in enumerate(corr):
        best = int(np.argmax(np.abs(row)))
        matches.append({"filter": k, "best": names[best], "r": round(float(row[best]), 4)})
    return corr, matches


def train_short(run_dir: Path, *, data_dir: str | None, epochs: int) -> None:
    """A short modern LeNet-5 run by experiments.train_lenet (its checkpoints, its layout).
    A run already in run_dir is resumed: finished, it is reused as it is."""
    train_lenet.train_and_evaluate(train_lenet.Config(
        epochs=epochs, out=str(run_dir), data_dir=data_dir, eval_train=False, plots=False,
        progress=False, resume=True))


def load_params(run_dir: Path) -> tuple[str, list]:
    """(variant, LeNet-5 params) from the newest intact checkpoint of an experiments.train_lenet run."""
    config, state = train_lenet.load_trained(run_dir)
    return config.variant, state.params


def run(out: Path, lenet_dir: Path | None, data_dir: str | None, digit_index: int,
        lenet_epochs: int, test_subset: int | None = None) -> dict:
    images, labels = jdata.load("mnist", "test", data_dir=data_dir)
    images, labels = images[:test_subset], labels[:test_subset]
    if not 0 <= digit_index < len(images):
        raise UsageError(f"--digit must lie in [0, {len(images)}), got {digit_index}")
    pixels = images.astype(np.float32) / 255.0
    out.mkdir(parents=True, exist_ok=True)

    fplots.plot_curve_filter(CURVE_FILTER, out / "curve_filter.png")
    maps = activation_maps(CURVE_FILTER, pixels)
    peak = maps.reshape(len(maps), -1).max(axis=1)
    fplots.plot_slide(pixels[digit_index], maps[digit_index], CURVE_FILTER, out / "curve_slide.png")
    # Raw peaks saturate at 6 · 30 on most digits (a stroke two pixels wide covers all six taps),
    # so digits are ranked by the cosine between filter and window, which only a curve reaches.
    cosine = normalised_maps(CURVE_FILTER, pixels, maps)
    score = cosine.reshape(len(cosine), -1).max(axis=1)
    order = np.argsort(-score, kind="stable")
    most, least = order[:10], order[::-1][:10]
    fplots.plot_extremes(pixels, cosine, labels, most, least, score, peak, out / "curve_extremes.png",
                         raw_max=float(CURVE_FILTER.sum()), window=CURVE_FILTER.shape[0])

    if lenet_dir is None:
        lenet_dir = out / f"lenet-{lenet_epochs}ep"  # its own folder: the schedule spans the epochs
        train_short(lenet_dir, data_dir=data_dir, epochs=lenet_epochs)
    variant, params = load_params(lenet_dir)
    conv1 = np.asarray(params[0].w)                                     # (5, 5, 1, 6) HWIO
    corr, matches = best_matches(conv1, EDGE_FILTERS)
    fplots.plot_edges_vs_learned(EDGE_FILTERS, conv1, corr, matches, out / "edges_vs_conv1.png")

    stimulus = curve_stimulus()
    c1 = jaxnn.models.lenet5_stages(variant)[0][1]                       # the trained C1 itself
    normalised = jdata.add_channel_axis(jdata.normalize(stimulus[None] * 255.0))
    responses = np.asarray(c1(params[0], jnp.asarray(normalised)))[0]   # (28, 28, 6)
    blank = np.asarray(c1(params[0], jnp.asarray(jdata.add_channel_axis(
        jdata.normalize(np.zeros((1, 28, 28), np.float32))))))[0]
    fplots.plot_conv1_on_curve(stimulus, responses, blank, out / "conv1_on_curve.png")

    summary = {
        "curve_filter": CURVE_FILTER.astype(int).tolist(),
        "curve_on_digit": {"test_index": digit_index, "label": int(labels[digit_index]),
                           "max": float(maps[digit_index].max()),
                           "argmax": [int(v) for v in np.unravel_index(maps[digit_index].argmax(),
                                                                       maps[digit_index].shape)],
                           "max_possible": float(CURVE_FILTER.sum())},
        "test_digits_ranked": int(len(images)),
        "ranked_by": "peak cosine between the filter and a 7×7 window (normalised_maps)",
        "test_digits_most": [_digit(i, labels, score, peak) for i in most],
        "test_digits_least": [_digit(i, labels, score, peak) for i in least],
        "fraction_raw_peak_at_max": round(float(np.mean(peak >= 0.99 * CURVE_FILTER.sum())), 4),
        "mean_peak_cosine_by_label": {str(d): round(float(score[labels == d].mean()), 4) for d in range(10)},
        "lenet": {"run": str(lenet_dir), "variant": variant},
        "edge_filters": {n: f.astype(int).tolist() for n, f in EDGE_FILTERS.items()},
        "conv1_best_match": matches,
        "conv1_correlation": {"rows": "conv1 filter", "columns": list(EDGE_FILTERS),
                              "r": np.round(corr, 4).tolist()},
        "conv1_on_curve_stimulus": [
            {"filter": k, "max": round(float(responses[..., k].max()), 4),
             "max_minus_blank": round(float((responses[..., k] - blank[..., k]).max()), 4)}
            for k in range(responses.shape[-1])],
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _digit(i, labels, score, peak) -> dict:
    return {"index": int(i), "label": int(labels[i]), "peak_cosine": round(float(score[i]), 4),
            "peak": round(float(peak[i]), 2)}


def parse_args(argv=None) -> argparse.Namespace:
    p = cli.parser("python -m experiments.lenet.filters", __doc__)
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--lenet", default=None,
                   help="a run folder written by experiments.train_lenet; default: train a short run "
                        "in OUT/lenet-<epochs>ep")
    p.add_argument("--lenet-epochs", type=int, default=1, help="epochs of the short run (when --lenet is not given)")
    p.add_argument("--digit", type=cli.nonnegative_int, default=0,
                   help="index of the test digit the curve detector slides over")
    p.add_argument("--test-subset", type=int, default=None,
                   help="rank only the first N test digits (default: all 10,000)")
    p.add_argument("--data-dir", default=None, help="default: $JAXNN_DATA_DIR, then the cache")
    args = p.parse_args(argv)
    if args.test_subset is not None and args.test_subset < 20:
        raise UsageError(f"--test-subset must be ≥ 20 (ten digits responding most, ten least), "
                         f"got {args.test_subset}")
    if args.lenet_epochs < 1:
        raise UsageError(f"--lenet-epochs must be ≥ 1, got {args.lenet_epochs}")
    if args.lenet is not None and not Path(args.lenet).is_dir():
        raise UsageError(f"--lenet {args.lenet}: no such run folder")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.claim_out(args.out)
    summary = run(Path(args.out), None if args.lenet is None else Path(args.lenet), args.data_dir,
                  args.digit, args.lenet_epochs, args.test_subset)
    for m in summary["conv1_best_match"]:
        print(f"conv1 filter {m['filter']}: best match {m['best']} (r = {m['r']:+.2f})")
    print(f"curve detector on test digit {args.digit}: max {summary['curve_on_digit']['max']:.1f} "
          f"of {summary['curve_on_digit']['max_possible']:.0f}; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
