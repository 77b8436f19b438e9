"""Spikes and firing rates: Poisson spike trains drawn from a rate, and the rate read back.

    python -m experiments.rate.spikes --out runs/spikes

Writes to --out: spikes.png (a spike raster of --trials trains drawn from one time-varying rate,
above that rate and its estimates from one train and from all of them; beside them, the
estimate's RMS error against the window length, measured and predicted) and summary.json.

The rate is r(t) = 20 + 15·sin(2π·1.5 Hz·t), jumping up by 40 Hz between 1.0 and 1.4 s (a
"stimulus"); bins of dt = 1 ms. The error is measured for a constant rate of --rate Hz on
--neurons trains of --seconds s, away from the ends, against the binomial prediction
sqrt(r·(1 - r·dt) / W) (`jaxnn.neuro.spikes.rate_estimate_std`): it falls like 1/sqrt(W).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from experiments.common import cli
from experiments.common.loop import UsageError, cli_main, machine, save_figure, write_atomic
from experiments.common.plots import plot_spikes
from jaxnn.neuro import spikes

__all__ = ["WINDOWS", "main", "measure_window_error", "plot_figure", "stimulus_rate"]

WINDOWS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)   # seconds


def stimulus_rate(t: np.ndarray) -> np.ndarray:
    """The raster's rate in Hz at times t (s): a 1.5 Hz oscillation plus a 0.4 s step."""
    return (20.0 + 15.0 * np.sin(2 * np.pi * 1.5 * t) + 40.0 * ((t >= 1.0) & (t < 1.4))).astype(np.float32)


def measure_window_error(rate: float, dt: float, seconds: float, neurons: int, key: jax.Array,
                         windows=WINDOWS) -> list[dict]:
    """RMS error of the boxcar estimate of a constant rate, per window, over `neurons` trains
    of `seconds`, skipping one window at each end; beside the binomial prediction."""
    train = spikes.poisson_spikes(jnp.full(neurons, rate, jnp.float32), dt, key=key,
                                  num_bins=round(seconds / dt))
    rows = []
    for w in windows:
        edge = round(w / dt)
        estimate = np.asarray(spikes.firing_rate(train, dt, w))[edge:-edge]
        rms = float(np.sqrt(np.mean((estimate - rate) ** 2)))
        predicted = spikes.rate_estimate_std(rate, dt, w)
        rows.append({"window_s": w, "rms_error_hz": round(rms, 4), "predicted_hz": round(predicted, 4),
                     "ratio": round(rms / predicted, 4)})
    return rows


def _figure(width, height):
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_figure(t, rate, train, single, pooled, dt, rows, error_rate, slope, path: Path) -> None:
    """Left: the raster above the rate that generated it and two estimates. Right: the error of
    the boxcar estimate against the window length, measured and predicted (log-log)."""
    fig = _figure(13, 5.5)
    grid = fig.add_gridspec(2, 2, width_ratios=[2.2, 1], height_ratios=[1.3, 1])
    ax_raster = fig.add_subplot(grid[0, 0])
    ax_rate = fig.add_subplot(grid[1, 0], sharex=ax_raster)
    trial, time_bin = np.nonzero(np.asarray(train).T)
    ax_raster.scatter(time_bin * dt, trial, marker="|", s=30, color="black", lw=0.8)
    ax_raster.set_ylabel("train")
    ax_raster.set_title(f"{train.shape[1]} Poisson spike trains (dt = {dt * 1e3:g} ms) from one rate")
    ax_rate.plot(t, rate, color="tab:red", lw=2, label="rate that generated them")
    ax_rate.plot(t, single, color="tab:gray", lw=0.8, label="estimate, train 0 alone (boxcar 100 ms)")
    ax_rate.plot(t, pooled, color="tab:blue", lw=1.2, label="estimate, all trains (Gaussian σ 20 ms)")
    ax_rate.set_xlabel("time (s)")
    ax_rate.set_ylabel("rate (Hz)")
    ax_rate.legend(fontsize=8, loc="upper left")
    ax_err = fig.add_subplot(grid[:, 1])
    w = np.array([r["window_s"] for r in rows])
    ax_err.loglog(w, [r["rms_error_hz"] for r in rows], "o", label="measured RMS error")
    ax_err.loglog(w, [r["predicted_hz"] for r in rows], "-", label="sqrt(r(1 − r·dt) / W)")
    ax_err.set_xlabel("window W (s)")
    ax_err.set_ylabel("error of the rate estimate (Hz)")
    ax_err.set_title(f"constant {error_rate:g} Hz: slope {slope:.3f} (1/sqrt(W): −0.5)", fontsize=9)
    ax_err.legend(fontsize=8)
    save_figure(fig, path, dpi=110)


def parse_args(argv=None) -> argparse.Namespace:
    p = cli.parser("python -m experiments.rate.spikes", __doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=cli.seed, default=0)
    p.add_argument("--trials", type=int, default=40, help="trains in the raster")
    p.add_argument("--rate", type=cli.finite_float, default=40.0, help="constant rate (Hz) for the error curve")
    p.add_argument("--neurons", type=int, default=100, help="trains for the error curve")
    p.add_argument("--seconds", type=cli.finite_float, default=20.0, help="length of each train for the error curve")
    args = p.parse_args(argv)
    for name in ("trials", "neurons"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be ≥ 1, got {getattr(args, name)}")
    if not args.seconds > 2 * max(WINDOWS) + 1:
        raise UsageError(f"--seconds must exceed {2 * max(WINDOWS) + 1:g} (two of the longest window, "
                         f"plus room to measure), got {args.seconds}")
    if not 0 < args.rate < 1000:
        raise UsageError(f"--rate must lie in (0, 1000) Hz for dt = 1 ms, got {args.rate}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.check_memory(f"--neurons {args.neurons} × --seconds {args.seconds:g}",
                     4 * args.neurons * args.seconds * 1000 + 4 * args.trials * 2000)  # 1 ms steps
    out, dt = cli.claim_out(args.out), 1e-3
    out.mkdir(parents=True, exist_ok=True)
    raster_key, error_key = jax.random.split(jax.random.key(args.seed))

    t = np.arange(2000, dtype=np.float32) * np.float32(dt)
    rate = stimulus_rate(t)
    train = spikes.poisson_spikes(jnp.broadcast_to(jnp.asarray(rate)[:, None], (len(t), args.trials)),
                                  dt, key=raster_key)
    single = np.asarray(spikes.firing_rate(train[:, 0], dt, 0.1))
    pooled = np.asarray(spikes.firing_rate(train, dt, 0.02, kernel="gaussian").mean(axis=1))
    rows = measure_window_error(args.rate, dt, args.seconds, args.neurons, error_key)
    slope = float(np.polyfit(np.log([r["window_s"] for r in rows]),
                             np.log([r["rms_error_hz"] for r in rows]), 1)[0])
    plot_spikes(t, rate, train, single, pooled, dt, rows, args.rate, slope, out / "spikes.png", seed=args.seed)

    summary = {
        "config": vars(args) | {"dt": dt},
        "raster": {"trials": args.trials, "seconds": 2.0,
                   "spikes_per_train_mean": float(np.asarray(train).sum(0).mean()),
                   "expected_per_train": float(rate.sum() * dt),
                   "rms_error_single_boxcar_100ms_hz": round(float(np.sqrt(np.mean((single - rate) ** 2))), 3),
                   "rms_error_pooled_gaussian_20ms_hz": round(float(np.sqrt(np.mean((pooled - rate) ** 2))), 3)},
        "window_error": rows,
        "fitted_slope": round(slope, 4),
        "machine": machine(),
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    for r in rows:
        print(f"window {r['window_s'] * 1e3:6.0f} ms: RMS error {r['rms_error_hz']:7.3f} Hz, "
              f"predicted {r['predicted_hz']:7.3f} Hz (×{r['ratio']:.3f})")
    print(f"fitted slope {slope:.3f} (1/sqrt(W) gives -0.5); results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
