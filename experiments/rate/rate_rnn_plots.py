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
from matplotlib.lines import Line2D

from experiments.common.loop import save_figure
from experiments.common.plots import integer_ticks, run_title
from jaxnn.layers.recurrent import connectivity_mask, dale_signs, effective_weights
from jaxnn.neuro import spikes, tasks

PEAK_RATE_HZ = 100.0

INPUT_NAMES = {
    "perceptual_decision": ("fixation cue", "evidence for choice 1", "evidence for choice 2"),
    "context_decision": ("fixation cue", "motion, choice 1", "motion, choice 2", "colour, choice 1",
                         "colour, choice 2", "context: motion", "context: colour"),
    "delayed_match_to_sample": ("fixation cue", "ring unit 1", "ring unit 2"),
    "sine_generation": ("frequency cue f / f_max",),
}


def input_names(task) -> list[str]:
    """A name per input channel of `task` (generic "input k" for a task not listed)."""
    names = INPUT_NAMES.get(task.name, ())
    return [names[k] if k < len(names) else f"input {k}" for k in range(task.n_in)]


def output_names(task) -> list[str]:
    """A name per output: P(fixate), P(choice k) for a choice task, else "output k"."""
    if task.higher_is_better:
        return ["P(fixate)"] + [f"P(choice {k})" for k in range(1, task.n_out)]
    return [f"output {k}" for k in range(task.n_out)] if task.n_out > 1 else ["output"]


def _title(task, seed, *details) -> str:
    return run_title(f"RateRNN, {task.name}", seed, *details)


def _figure(rows: int, cols: int, size=(4.2, 3.0)):
    fig = Figure(figsize=(size[0] * cols, size[1] * rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig, path: Path) -> None:
    save_figure(fig, path, dpi=110)
    fig.clear()


def curves(task, rows, steps_per_epoch, path, seed=None):
    """Loss (log) and held-out performance against training steps, the goal as a dashed line."""
    fig, ax = _figure(1, 2)
    steps = [r["epoch"] * steps_per_epoch for r in rows]
    ax[0, 0].plot(steps, [r["train_loss"] for r in rows], label="train")
    ax[0, 0].plot(steps, [r["eval_loss"] for r in rows], label="held out")
    ax[0, 0].set(xlabel="training step", ylabel="loss (log scale)", yscale="log", title="loss")
    ax[0, 0].legend()
    what = "normalised error" if not task.higher_is_better else "fraction correct"
    ax[0, 1].plot(steps, [r["performance"] for r in rows], marker="o", label=f"held out {what}")
    ax[0, 1].axhline(task.goal, ls="--", c="k", lw=1, label=f"goal {task.goal:g}")
    ax[0, 1].set(xlabel="training step", ylabel=what, title="performance")
    if task.higher_is_better:
        ax[0, 1].set_ylim(0, 1.02)
    else:
        ax[0, 1].set_ylim(0, None)
    ax[0, 1].legend(fontsize=8)
    for a in ax[0]:
        integer_ticks(a, "x", steps)
    fig.suptitle(_title(task, seed))
    _save(fig, path)


def example_trials(task, trials, y, path, seed=None):
    """Three trials: inputs (top) and outputs against targets (bottom), every line named in the
    legends below the panels."""
    fig, ax = _figure(2, 3)
    in_names, out_names = input_names(task), output_names(task)
    t = np.arange(task.n_steps) * task.dt
    if task.higher_is_better:  # softmax over the outputs, in NumPy
        e = np.exp(y - y.max(-1, keepdims=True))
        out = e / e.sum(-1, keepdims=True)
    else:
        out = y
    for i in range(3):
        for k, line in enumerate(np.asarray(trials.x[i]).T):
            ax[0, i].plot(t, line, color=f"C{k}", label=in_names[k])
        ax[0, i].set(title=f"trial {i}: " + ", ".join(
            f"{n} {v:.3g}" for n, v in zip(task.conditions, np.asarray(trials.condition[i]))),
            xlabel="time (ms)", ylabel="input (a.u.)")
        for k, line in enumerate(np.asarray(out[i]).reshape(len(t), -1).T):
            ax[1, i].plot(t, line, color=f"C{k}", label=out_names[k])
        if task.higher_is_better:
            ax[1, i].plot(t, np.asarray(trials.target[i]) / (task.n_out - 1), "k:",
                          label=f"target class / {task.n_out - 1} (0 fixate, "
                                + ", ".join(f"{k / (task.n_out - 1):g} choice {k}"
                                            for k in range(1, task.n_out)) + ")")
            ax[1, i].set(xlabel="time (ms)", ylabel="probability (softmax)", ylim=(-0.03, 1.03))
        else:
            target = np.asarray(trials.target[i]).reshape(len(t), -1)
            ax[1, i].plot(t, target, "k:", label="target")
            ax[1, i].set(xlabel="time (ms)", ylabel="output")
    for row in range(2):
        handles, labels = ax[row, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper" if row == 0 else "outside right lower",
                   fontsize=7, title="inputs" if row == 0 else "outputs", title_fontsize=7)
    fig.suptitle(_title(task, seed, "three example trials"))
    _save(fig, path)


def psychometric(task, trials, y, path, seed=None):
    choice = tasks.choices(y, task.decision_from)
    if task.name == "perceptual_decision":
        fig, ax = _figure(1, 1, size=(5.6, 3.8))
        coh = trials.condition[:, 0]
        levels = jnp.unique(coh)
        ax[0, 0].plot(100 * levels, 100 * tasks.psychometric(choice, coh, levels), "o-")
        ax[0, 0].set(xlabel="signed coherence (%)", ylabel="choice 2 (%)", ylim=(-2, 102),
                     title=f"{len(coh)} fresh trials")
        ax[0, 0].grid(alpha=0.3)
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
            ax[0, ctx].grid(alpha=0.3)
    fig.suptitle(_title(task, seed, "psychometric curve"), fontsize=10)
    _save(fig, path)


def sine_outputs(task, apply, params, path, key, seed=None):
    """Outputs and targets at five cue frequencies, offset by 2.5 per frequency."""
    fig, ax = _figure(1, 1, size=(8, 3.8))
    freqs = np.linspace(1.0, 3.0, 5)
    n = task.n_steps
    t = (np.arange(n) + 1) * task.dt
    x = jnp.asarray(np.repeat((freqs / 3.0)[:, None, None], n, 1), jnp.float32)
    y = np.asarray(apply(params, x, key))
    for i, f in enumerate(freqs):
        ax[0, 0].plot(t, y[i, :, 0] + 2.5 * i, c=f"C{i}")
        ax[0, 0].plot(t, np.sin(2 * np.pi * f * t / 1000) + 2.5 * i, "k:", lw=1)
    ax[0, 0].set(xlabel="time (ms)", ylabel="cue frequency (traces offset by 2.5)",
                 yticks=2.5 * np.arange(5), yticklabels=[f"{f:.1f} Hz" for f in freqs],
                 ylim=(-1.6, 2.5 * 4 + 2.4))  # headroom for the legend
    ax[0, 0].legend([Line2D([], [], color="C0"), Line2D([], [], color="k", ls=":")],
                    ["network output (one colour per frequency)", "target sine"], fontsize=7,
                    loc="upper right")
    fig.suptitle(_title(task, seed, "outputs against targets"))
    _save(fig, path)


def rates_and_raster(task, rates, signs, path, key, seed=None):
    """rates (T, H) of one trial -> heat map (diverging, ±1, with its colour bar) and a raster of
    Poisson spikes in 1-ms bins, excitatory units red and inhibitory blue (legend)."""
    fig, ax = _figure(1, 2, size=(5.5, 4.0))
    T, H = rates.shape
    extent = (0, T * task.dt, H, 0)
    im = ax[0, 0].imshow(np.asarray(rates).T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1,
                         extent=extent, interpolation="nearest")
    fig.colorbar(im, ax=ax[0, 0], label="rate f (a.u.)")
    ax[0, 0].set(xlabel="time (ms)", ylabel="unit", title="rates (one trial)")
    integer_ticks(ax[0, 0], "y")
    bins = int(round(task.dt))
    hz = PEAK_RATE_HZ * jnp.repeat(jnp.maximum(rates, 0.0), bins, axis=0)
    train = np.asarray(spikes.poisson_spikes(hz, 1e-3, key=key))
    t_idx, unit = np.nonzero(train)
    colour = "k" if signs is None else np.where(signs[unit] > 0, "tab:red", "tab:blue")
    ax[0, 1].scatter(t_idx, unit, s=0.5, c=colour, marker="|")
    ax[0, 1].set(xlim=(0, T * bins), ylim=(H, 0), xlabel="time (ms, 1-ms bins)", ylabel="unit",
                 title=f"Poisson spikes, ν = {PEAK_RATE_HZ:.0f} Hz · max(f, 0)")
    integer_ticks(ax[0, 1], "y")
    if signs is not None:
        ax[0, 1].legend([Line2D([], [], color="tab:red", ls="", marker="|", ms=8),
                         Line2D([], [], color="tab:blue", ls="", marker="|", ms=8)],
                        [f"excitatory ({int((signs > 0).sum())})",
                         f"inhibitory ({int((signs < 0).sum())})"],
                        fontsize=7, loc="lower right", framealpha=0.9)
    fig.suptitle(_title(task, seed, "one trial"))
    _save(fig, path)


def weights(W, signs, path, task=None, seed=None):
    """The effective recurrent weights W (from row unit to column unit) on a diverging map with
    symmetric limits and its colour bar; with Dale's law, lines split the excitatory rows (all
    weights ≥ 0) from the inhibitory ones (all ≤ 0)."""
    fig, ax = _figure(1, 1, size=(5.4, 4.8))
    lim = float(np.abs(W).max()) or 1.0
    im = ax[0, 0].imshow(W, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    fig.colorbar(im, ax=ax[0, 0], label="weight W (from row unit to column unit)")
    title = "recurrent weights"
    if signs is not None:
        n = int((signs > 0).sum())
        ax[0, 0].axhline(n - 0.5, c="k", lw=1)
        ax[0, 0].axvline(n - 0.5, c="k", lw=1)
        box = dict(boxstyle="round,pad=0.2", fc="white", ec="0.5", alpha=0.9)
        ax[0, 0].text(0.02, 1 - n / 2 / len(signs), "E rows", transform=ax[0, 0].transAxes,
                      ha="left", va="center", color="tab:red", fontweight="bold", fontsize=8, bbox=box)
        ax[0, 0].text(0.02, (len(signs) - n) / 2 / len(signs), "I rows", transform=ax[0, 0].transAxes,
                      ha="left", va="center", color="tab:blue", fontweight="bold", fontsize=8, bbox=box)
        title = f"rows 0–{n - 1}: excitatory (≥ 0), rows {n}–{len(signs) - 1}: inhibitory (≤ 0)"
    ax[0, 0].set(xlabel="to unit", ylabel="from unit", title=title)
    ax[0, 0].title.set_fontsize(8)
    integer_ticks(ax[0, 0], "both")
    name = f"RateRNN, {task.name}" if task is not None else "RateRNN"
    fig.suptitle(run_title(name, seed, "recurrent weights"), fontsize=10)
    _save(fig, path)


def write_all(task, layer, params, rows, out_dir, *, seed, steps_per_epoch, dale, connectivity):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.fold_in(jax.random.key(seed), 7)
    H = params.w_rec.shape[0]
    signs = dale_signs(H, 0.8) if dale else None
    W = np.asarray(effective_weights(params.w_rec, connectivity_mask(H, connectivity, seed), signs))
    curves(task, rows, steps_per_epoch, out / "curves.png", seed=seed)
    apply = jax.jit(lambda p, x, k: layer(p, x, key=k))
    trials = jax.jit(task.sample, static_argnums=1)(key, 2048)
    y = np.asarray(apply(params, trials.x, jax.random.fold_in(key, 1)))
    example_trials(task, jax.tree.map(np.asarray, trials), y, out / "trials.png", seed=seed)
    if task.name in ("perceptual_decision", "context_decision"):
        psychometric(task, trials, y, out / "psychometric.png", seed=seed)
    elif task.name == "sine_generation":
        sine_outputs(task, apply, params, out / "sine.png", key, seed=seed)
    rates = rates_of(apply, params, trials.x[:1], key)[0]
    rates_and_raster(task, rates, signs, out / "rates.png", jax.random.fold_in(key, 2), seed=seed)
    weights(W, signs, out / "weights.png", task=task, seed=seed)


def rates_of(apply, params, x, key):
    """The rates f (N, T, H) behind the readout: the readout replaced by the identity."""
    H = params.w_rec.shape[0]
    eye = params._replace(w_out=jnp.eye(H, dtype=params.w_in.dtype),
                          b_out=jnp.zeros(H, params.w_in.dtype))
    return apply(eye, x, key)


__all__ = ["curves", "example_trials", "psychometric", "rates_and_raster", "rates_of",
           "sine_outputs", "weights", "write_all"]
