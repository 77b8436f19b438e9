"""Figures of `experiments.rate.rate_rnn`, written once at the end of a run into OUT/plots/:

curves.png       training loss and held-out performance against steps, the goal dashed;
trials.png       three example trials: inputs, outputs (choice probabilities) and targets;
psychometric.png percent choice 2 against signed coherence (perceptual decision), and per
                 context against the relevant and the irrelevant evidence (context task);
                 sine_generation draws outputs against targets at five frequencies instead;
rates.png        every unit's rate over one trial, and a spike raster drawn from it
                 (`jaxnn.neuro.spikes.poisson_spikes`, ν = 100 Hz · max(f, 0) in 1-ms bins);
weights.png      the trained recurrent weights W (from row unit to column unit), excitatory
                 and inhibitory blocks split by lines.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxnn.neuro import spikes, tasks
from jaxnn.layers.recurrent import connectivity_mask, dale_signs, effective_weights

PEAK_RATE_HZ = 100.0


def _figure(rows: int, cols: int, size=(4.2, 3.0)):
    fig = Figure(figsize=(size[0] * cols, size[1] * rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=110)


def curves(task, rows, steps_per_epoch, path):
    fig, ax = _figure(1, 2)
    steps = [r["epoch"] * steps_per_epoch for r in rows]
    ax[0, 0].plot(steps, [r["train_loss"] for r in rows], label="train")
    ax[0, 0].plot(steps, [r["eval_loss"] for r in rows], label="held out")
    ax[0, 0].set(xlabel="step", ylabel="loss", yscale="log", title=task.name)
    ax[0, 0].legend()
    ax[0, 1].plot(steps, [r["performance"] for r in rows], marker="o")
    ax[0, 1].axhline(task.goal, ls="--", c="k", lw=1)
    ax[0, 1].set(xlabel="step", ylabel="normalised error" if not task.higher_is_better
                 else "fraction correct", title=f"goal {task.goal}")
    _save(fig, path)


def example_trials(task, trials, y, path):
    fig, ax = _figure(2, 3)
    t = np.arange(task.n_steps) * task.dt
    if task.higher_is_better:  # softmax over the outputs, in NumPy
        e = np.exp(y - y.max(-1, keepdims=True))
        out = e / e.sum(-1, keepdims=True)
    else:
        out = y
    for i in range(3):
        ax[0, i].plot(t, np.asarray(trials.x[i]))
        ax[0, i].set(title=f"trial {i}: " + ", ".join(
            f"{n} {v:.3g}" for n, v in zip(task.conditions, np.asarray(trials.condition[i]))),
            xlabel="time (ms)", ylabel="inputs")
        ax[1, i].plot(t, out[i])
        if task.higher_is_better:
            ax[1, i].plot(t, np.asarray(trials.target[i]) / 2, "k:", label="target class / 2")
        else:
            ax[1, i].plot(t, np.asarray(trials.target[i]), "k:", label="target")
        ax[1, i].set(xlabel="time (ms)", ylabel="outputs")
        ax[1, i].legend(fontsize=7)
    _save(fig, path)


def psychometric(task, trials, y, path):
    choice = tasks.choices(y, task.decision_from)
    if task.name == "perceptual_decision":
        fig, ax = _figure(1, 1)
        coh = trials.condition[:, 0]
        levels = jnp.unique(coh)
        ax[0, 0].plot(100 * levels, 100 * tasks.psychometric(choice, coh, levels), "o-")
        ax[0, 0].set(xlabel="signed coherence (%)", ylabel="choice 2 (%)", ylim=(-2, 102))
    else:
        fig, ax = _figure(1, 2)
        for ctx, name in enumerate(("motion", "colour")):
            sel = trials.condition[:, 0] == ctx
            for k, evidence in enumerate(("motion", "colour")):
                coh = trials.condition[:, 1 + k]
                levels = jnp.unique(coh)
                frac = tasks.psychometric(jnp.where(sel, choice, -1), jnp.where(sel, coh, jnp.nan),
                                          levels)
                ax[0, ctx].plot(100 * levels, 100 * frac, "o-", label=f"{evidence} evidence")
            ax[0, ctx].set(title=f"{name} context", xlabel="signed coherence (%)",
                           ylabel="choice 2 (%)", ylim=(-2, 102))
            ax[0, ctx].legend()
    _save(fig, path)


def sine_outputs(task, apply, params, path, key):
    fig, ax = _figure(1, 1, size=(8, 3.5))
    freqs = np.linspace(1.0, 3.0, 5)
    n = task.n_steps
    t = (np.arange(n) + 1) * task.dt
    x = jnp.asarray(np.repeat((freqs / 3.0)[:, None, None], n, 1), jnp.float32)
    y = np.asarray(apply(params, x, key))
    for i, f in enumerate(freqs):
        ax[0, 0].plot(t, y[i, :, 0] + 2.5 * i, c=f"C{i}")
        ax[0, 0].plot(t, np.sin(2 * np.pi * f * t / 1000) + 2.5 * i, "k:", lw=1)
    ax[0, 0].set(xlabel="time (ms)", yticks=2.5 * np.arange(5),
                 yticklabels=[f"{f:.1f} Hz" for f in freqs], title="outputs (colour), targets (dotted)")
    _save(fig, path)


def rates_and_raster(task, rates, signs, path, key):
    """rates (T, H) of one trial -> heat map and a raster of Poisson spikes in 1-ms bins."""
    fig, ax = _figure(1, 2, size=(5.5, 4.0))
    T, H = rates.shape
    extent = (0, T * task.dt, H, 0)
    im = ax[0, 0].imshow(np.asarray(rates).T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1,
                         extent=extent, interpolation="nearest")
    fig.colorbar(im, ax=ax[0, 0], label="rate f")
    ax[0, 0].set(xlabel="time (ms)", ylabel="unit", title="rates (one trial)")
    bins = int(round(task.dt))
    hz = PEAK_RATE_HZ * jnp.repeat(jnp.maximum(rates, 0.0), bins, axis=0)
    train = np.asarray(spikes.poisson_spikes(hz, 1e-3, key=key))
    t_idx, unit = np.nonzero(train)
    colour = "k" if signs is None else np.where(signs[unit] > 0, "tab:red", "tab:blue")
    ax[0, 1].scatter(t_idx, unit, s=0.5, c=colour, marker="|")
    ax[0, 1].set(xlim=(0, T * bins), ylim=(H, 0), xlabel="time (ms)", ylabel="unit",
                 title=f"spikes, ν = {PEAK_RATE_HZ:.0f} Hz·max(f, 0)")
    _save(fig, path)


def weights(W, signs, path):
    fig, ax = _figure(1, 1, size=(5.0, 4.4))
    lim = float(np.abs(W).max()) or 1.0
    im = ax[0, 0].imshow(W, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    fig.colorbar(im, ax=ax[0, 0], label="W (from row to column)")
    if signs is not None:
        n_exc = int((signs > 0).sum()) - 0.5
        ax[0, 0].axhline(n_exc, c="k", lw=1)
        ax[0, 0].axvline(n_exc, c="k", lw=1)
        ax[0, 0].set(title="E rows (red) | I rows (blue)")
    ax[0, 0].set(xlabel="to unit", ylabel="from unit")
    _save(fig, path)


def write_all(task, layer, params, rows, out_dir, *, seed, steps_per_epoch, dale, connectivity):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.fold_in(jax.random.key(seed), 7)
    H = params.w_rec.shape[0]
    signs = dale_signs(H, 0.8) if dale else None
    W = np.asarray(effective_weights(params.w_rec, connectivity_mask(H, connectivity, seed), signs))
    curves(task, rows, steps_per_epoch, out / "curves.png")
    apply = jax.jit(lambda p, x, k: layer(p, x, key=k))
    trials = jax.jit(task.sample, static_argnums=1)(key, 2048)
    y = np.asarray(apply(params, trials.x, jax.random.fold_in(key, 1)))
    example_trials(task, jax.tree.map(np.asarray, trials), y, out / "trials.png")
    if task.name in ("perceptual_decision", "context_decision"):
        psychometric(task, trials, y, out / "psychometric.png")
    elif task.name == "sine_generation":
        sine_outputs(task, apply, params, out / "sine.png", key)
    rates = rates_of(apply, params, trials.x[:1], key)[0]
    rates_and_raster(task, rates, signs, out / "rates.png", jax.random.fold_in(key, 2))
    weights(W, signs, out / "weights.png")


def rates_of(apply, params, x, key):
    """The rates f (N, T, H) behind the readout: the readout replaced by the identity."""
    H = params.w_rec.shape[0]
    eye = params._replace(w_out=jnp.eye(H, dtype=params.w_in.dtype),
                          b_out=jnp.zeros(H, params.w_in.dtype))
    return apply(eye, x, key)


__all__ = ["curves", "example_trials", "psychometric", "rates_and_raster", "rates_of",
           "sine_outputs", "weights", "write_all"]
