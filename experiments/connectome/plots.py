"""Figures of the connectome experiments (headless: Agg canvases, one PNG per figure).

touch_figures: adjacency of the circuit (chemical and gap), the circuit as a graph with the
learned signs, the sign table, the activity of the named neurons on example trials, real vs
shuffled wiring. whole_figures: adjacency of the whole connectome by neuron class, performance
curves per condition with their spread, steps to criterion, activity on example trials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from experiments.common.plots import _figure, _save, signed_image

TYPE_ORDER = ("sensory", "interneuron", "motor")


def adjacency_by_class(path: Path, full: Any) -> Path:
    """Chemical (log10(1 + count)) and gap-junction matrices of the whole connectome, neurons
    grouped sensory / interneuron / motor (when the data set has types), with group boundaries."""
    names = list(full.neurons)
    if full.types is not None:
        order = sorted(range(len(names)), key=lambda i: (TYPE_ORDER.index(full.types[i]), i))
        groups = [sum(1 for t in full.types if t == k) for k in TYPE_ORDER]
    else:
        order, groups = list(range(len(names))), [len(names)]
    fig = _figure(12, 5.6)
    axes = fig.subplots(1, 2)
    for ax, (what, m) in zip(axes, (("chemical synapses", full.chemical), ("gap junctions", full.gap))):
        a = np.log10(1 + np.asarray(m)[np.ix_(order, order)])
        im = ax.imshow(a, cmap="magma_r", interpolation="nearest")
        edges = np.cumsum(groups)[:-1] - 0.5
        for e in edges:
            ax.axhline(e, color="tab:cyan", lw=0.8)
            ax.axvline(e, color="tab:cyan", lw=0.8)
        centres = np.cumsum(groups) - np.asarray(groups) / 2
        labels = TYPE_ORDER if full.types is not None else ("all",)
        ax.set_xticks(centres, labels)
        ax.set_yticks(centres, labels, rotation=90, va="center")
        ax.set_xlabel("postsynaptic neuron (grouped by class)")
        ax.set_ylabel("presynaptic neuron (grouped by class)")
        ax.set_title(f"{what}: {int(np.asarray(m).astype(bool).sum())} connected ordered pairs")
        fig.colorbar(im, ax=ax, shrink=0.8, label="log10(1 + count)")
    fig.suptitle(f"{full.name}: {len(names)} neurons, wiring by neuron class")
    return _save(fig, path)


def circuit_matrices(path: Path, wiring: Any) -> Path:
    fig = _figure(11, 5)
    axes = fig.subplots(1, 2)
    names = list(wiring.neurons)
    for ax, (what, m) in zip(axes, (("chemical synapses (pre row -> post column)", wiring.chemical),
                                    ("gap junctions (symmetric)", wiring.gap))):
        im = ax.imshow(np.asarray(m), cmap="Greys", interpolation="nearest")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("postsynaptic neuron")
        ax.set_ylabel("presynaptic neuron")
        ax.set_title(what, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8, label="count (Varshney 2011)")
    fig.suptitle("touch-withdrawal circuit: wiring")
    return _save(fig, path)


_POS = {"ALM": (0.0, 1.0), "AVM": (1.0, 1.0), "PVD": (2.5, 1.0), "PLM": (4.0, 1.0),
        "AVD": (0.3, 0.0), "AVA": (1.3, 0.0), "DVA": (2.2, 0.45), "AVB": (2.9, 0.0),
        "PVC": (3.9, 0.0)}


def circuit_graph(path: Path, table: list[dict], wiring: Any, n_solved: int) -> Path:
    """Cell classes as nodes; chemical connections as arrows coloured by 2·(fraction
    excitatory) − 1 over the solving models (red excitatory, blue inhibitory), width by synapse
    count; gap junctions as dashed grey lines."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from experiments.connectome.touch import CLASSES, cell_class

    fig = _figure(9, 6.5)
    ax = fig.subplots()
    cmap, norm = colormaps["RdBu_r"], Normalize(-1, 1)
    gap = np.asarray(wiring.gap)
    names = list(wiring.neurons)
    done = set()
    for i in range(len(names)):
        for j in range(len(names)):
            a, b = cell_class(names[i]), cell_class(names[j])
            if gap[i, j] > 0 and a != b and (b, a) not in done:
                done.add((a, b))
                (x0, y0), (x1, y1) = _POS[a], _POS[b]
                ax.plot([x0, x1], [y0, y1], ls="--", color="0.55", lw=1.2, zorder=1)
    for r in table:
        if r["pre"] == r["post"] or r["fraction_excitatory"] is None:
            continue
        (x0, y0), (x1, y1) = _POS[r["pre"]], _POS[r["post"]]
        colour = cmap(norm(2 * r["fraction_excitatory"] - 1))
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color=colour, lw=0.6 + 0.12 * r["synapses"] ** 0.8,
                                    shrinkA=14, shrinkB=14, connectionstyle="arc3,rad=0.15"), zorder=2)
    for k in CLASSES:
        x, y = _POS[k]
        sensory = k in ("ALM", "AVM", "PLM", "PVD")
        ax.scatter([x], [y], s=900, color="#f3e3b0" if sensory else "#cde3c7", edgecolor="k", zorder=3)
        ax.text(x, y, k, ha="center", va="center", fontsize=10, zorder=4)
    ax.plot([], [], ls="--", color="0.55", label="gap junction")
    ax.plot([], [], color="0.3", label="chemical synapses (width ∝ count)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, shrink=0.8,
                 label="2·(fraction of solving models excitatory) − 1")
    ax.set_xlim(-0.6, 4.6)
    ax.set_ylim(-0.45, 1.4)
    ax.set_axis_off()
    ax.set_title(f"touch circuit: learned chemical signs, {n_solved} solving models\n"
                 "(top: sensory neurons, bottom: interneurons)", fontsize=11)
    return _save(fig, path)


def sign_matrix(path: Path, weights: np.ndarray, counts: np.ndarray, solved: np.ndarray) -> Path:
    from experiments.connectome.touch import CLASSES

    sel = weights[solved] if solved.any() else weights
    frac = np.where(counts > 0, (sel > 0).mean(0) * 2 - 1, np.nan)
    fig = _figure(6.5, 5.5)
    ax = fig.subplots()
    im = signed_image(ax, np.nan_to_num(frac), lim=1.0)
    for a in range(len(CLASSES)):
        for b in range(len(CLASSES)):
            if counts[a, b] > 0:
                ax.text(b, a, f"{int(counts[a, b])}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=90)
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("postsynaptic class")
    ax.set_ylabel("presynaptic class")
    fig.colorbar(im, ax=ax, label="2·(fraction excitatory) − 1  (numbers: synapses)")
    ax.set_title(f"inferred chemical signs, {int(solved.sum())} solving models")
    return _save(fig, path)


def touch_activity(path: Path, layer: Any, spec: Any, params: Any, x: np.ndarray) -> Path:
    """Activations of every circuit neuron on a noise-free anterior and posterior trial."""
    from experiments.connectome.touch import DT, STIM_OFF, STIM_ON
    from jaxnn.neuro.connectome import connectome_layer

    probe = connectome_layer(spec._replace(readout=np.eye(len(spec.neurons)), readout_scale=1.0,
                                           noise=0.0))
    f = np.asarray(probe(params, jax.numpy.asarray(x)))  # (2, T, N)
    t = np.arange(f.shape[1]) * DT
    fig = _figure(12, 4.8)
    axes = fig.subplots(1, 2, sharey=True)
    groups = {"AVA": "tab:red", "AVD": "tab:orange", "AVB": "tab:blue", "PVC": "tab:cyan",
              "ALM": "0.6", "AVM": "0.4", "PLM": "0.2", "PVD": "tab:purple", "DVA": "tab:green"}
    for ax, trial, title in zip(axes, range(2), ("anterior touch (ALM, AVM)", "posterior touch (PLM)")):
        for i, n in enumerate(spec.neurons):
            cls = n[:-1] if len(n) == 4 and n[-1] in "LR" else n
            ax.plot(t, f[trial, :, i], color=groups.get(cls, "k"),
                    ls="-" if not n.endswith("R") else ":", label=n)
        ax.axvspan(STIM_ON * DT, STIM_OFF * DT, color="0.92", zorder=0)
        ax.set_title(title)
        ax.set_xlabel("time (ms)")
    axes[0].set_ylabel("activation f = σ(v)")
    axes[1].legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("example trials of one solving model (grey band: touch)")
    return _save(fig, path)


def real_vs_shuffled(path: Path, real: dict, shuffled: list[dict]) -> Path:
    fig = _figure(15, 4.5)
    ax1, ax3, ax2 = fig.subplots(1, 3)
    ax3.plot(real["curve_steps"], real["curve"], "o-", color="tab:green", label="real wiring")
    for k, s in enumerate(shuffled):
        ax3.plot(s["curve_steps"], s["curve"], "o-", color="0.6", lw=0.8,
                 label="degree-preserving shuffles" if k == 0 else None)
    ax3.set_ylim(0, 1.05)
    ax3.set_xlabel("training step (batches)")
    ax3.set_ylabel("fraction of models solving both touches")
    ax3.set_title("learning speed")
    ax3.legend()
    sh_solved = np.concatenate([s["solved"] for s in shuffled])
    vals = [real["solved"].mean(), sh_solved.mean()]
    ax1.bar(["real wiring", f"degree-preserving\nshuffles ({len(shuffled)})"], vals,
            color=["tab:green", "0.6"])
    for i, (v, n) in enumerate(zip(vals, (real["solved"].size, sh_solved.size))):
        ax1.text(i, v + 0.02, f"{v:.2f} of {n}", ha="center")
    ax1.set_ylim(0, 1.1)
    ax1.set_ylabel("fraction of models solving both touches")
    ax1.set_title("task solved")
    for name, res, colour in [("real", real, "tab:green")] + [(f"shuffle {k}", s, "0.6")
                                                               for k, s in enumerate(shuffled)]:
        ax2.scatter(res["anterior_margin"], res["posterior_margin"], s=12, color=colour,
                    label={"real": "real wiring", "shuffle 0": "shuffled wirings"}.get(name), alpha=0.7)
    ax2.axhline(0.05, color="k", lw=0.6, ls=":")
    ax2.axvline(0.05, color="k", lw=0.6, ls=":", label="margin")
    ax2.set_xlabel("anterior: backward − forward (activation)")
    ax2.set_ylabel("posterior: forward − backward (activation)")
    ax2.set_title("per model (solved: upper right of the dotted lines)")
    ax2.legend()
    fig.suptitle("touch circuit: real wiring against degree-preserving shuffles")
    return _save(fig, path)


def touch_figures(out: Path, full: Any, wiring: Any, real: dict, shuffled: list[dict],
                  weights: np.ndarray, counts: np.ndarray, table: list[dict], x_trials: Any) -> list[Path]:
    from experiments.connectome.ensemble import unstack

    out = Path(out)
    paths = [adjacency_by_class(out / "adjacency_by_class.png", full),
             circuit_matrices(out / "circuit_wiring.png", wiring),
             circuit_graph(out / "circuit_signs.png", table, wiring, int(real["solved"].sum())),
             sign_matrix(out / "sign_matrix.png", weights, counts, real["solved"]),
             real_vs_shuffled(out / "real_vs_shuffled.png", real, shuffled)]
    best = int(np.argmax(np.minimum(real["anterior_margin"], real["posterior_margin"])))
    paths.append(touch_activity(out / "activity.png", real["layer"], real["spec"],
                                unstack(real["ts"].params, best), np.asarray(x_trials)))
    return paths


def whole_curves(path: Path, results: dict, goal: float) -> Path:
    colours = {"real": "tab:green", "shuffle": "tab:orange", "random_sparse": "tab:purple",
               "dense": "tab:blue"}
    fig = _figure(12, 4.8)
    ax1, ax2 = fig.subplots(1, 2)
    for name, r in results.items():
        steps, perf = np.asarray(r["curve_steps"]), np.asarray(r["curve"]) * 100
        c = colours.get(name, "k")
        ax1.plot(steps, perf.mean(1), color=c, label=f"{name} (mean of {perf.shape[1]})")
        ax1.fill_between(steps, perf.min(1), perf.max(1), color=c, alpha=0.15)
    ax1.axhline(goal * 100, color="k", ls=":", lw=0.8, label="criterion")
    ax1.set_xlabel("training step (batches)")
    ax1.set_ylabel("held-out performance (% correct, coherence ≠ 0)")
    ax1.set_ylim(0, 100)
    ax1.set_title("learning curves (band: min–max over seeds)")
    ax1.legend(fontsize=8)
    names = list(results)
    for i, name in enumerate(names):
        r = results[name]
        final = np.asarray(r["final_performance"]["per_seed"]) * 100
        ax2.scatter(np.full(final.size, i) + np.linspace(-0.1, 0.1, final.size), final,
                    color=colours.get(name, "k"), s=25)
        ax2.errorbar(i + 0.25, final.mean(), yerr=final.std(), fmt="o", color="k", capsize=3)
        reached = r["steps_to_criterion"]["reached"]
        ax2.text(i, 2, f"{reached}/{final.size}\nreached", ha="center", fontsize=8)
    ax2.set_xticks(range(len(names)), names)
    ax2.set_ylim(0, 100)
    ax2.set_ylabel("final performance (% correct)")
    ax2.set_xlabel("wiring")
    ax2.set_title("final performance per seed (black: mean ± sd)")
    fig.suptitle("whole connectome vs controls with the same 279 neurons")
    return _save(fig, path)


def whole_activity(path: Path, result: dict, task: Any) -> Path:
    from experiments.connectome.ensemble import unstack
    from experiments.connectome.whole import INPUTS, READOUT
    from jaxnn.neuro.connectome import connectome_layer

    spec = result["_spec"]
    names = [n for g in INPUTS + READOUT for n in g]
    idx = [spec.neurons.index(n) for n in names]
    R = np.zeros((len(spec.neurons), len(idx)))
    R[idx, np.arange(len(idx))] = 1.0
    probe = connectome_layer(spec._replace(readout=R, readout_scale=1.0, noise=0.0))
    trials = task.sample(jax.random.key(7), 32)
    label, coherence = np.asarray(trials.label), np.asarray(trials.condition[:, 0])
    picks = [int(np.flatnonzero((label == k) & (coherence != 0))[0]) for k in (1, 2)
             if ((label == k) & (coherence != 0)).any()]
    best = int(np.argmax(result["final_performance"]["per_seed"]))
    f = np.asarray(probe(unstack(result["_ts"].params, best), trials.x))
    t = np.arange(f.shape[1]) * task.dt
    fig = _figure(12, 4.8)
    axes = np.atleast_1d(fig.subplots(1, len(picks), sharey=True))
    for ax, p in zip(axes, picks):
        im = ax.imshow(f[p].T, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                       extent=(t[0], t[-1] + task.dt, len(names) - 0.5, -0.5), interpolation="nearest")
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.axvline(task.decision_from * task.dt, color="w", ls=":", lw=1)
        ax.set_xlabel("time (ms)")
        ax.set_title(f"correct choice {label[p]} (coherence {float(trials.condition[p, 0]):+.3f})")
        fig.colorbar(im, ax=ax, label="activation f")
    axes[0].set_ylabel("input neurons (top) and readout neurons")
    fig.suptitle(f"real wiring, best seed (index {best}): named neurons on example trials "
                 "(dotted: decision period starts)")
    return _save(fig, path)


def whole_figures(out: Path, full: Any, results: dict, task: Any) -> list[Path]:
    out = Path(out)
    paths = [adjacency_by_class(out / "adjacency_by_class.png", full),
             whole_curves(out / "controls.png", results, task.goal)]
    if "real" in results:
        paths.append(whole_activity(out / "activity.png", results["real"], task))
    return paths


__all__ = ["adjacency_by_class", "circuit_graph", "touch_figures", "whole_figures"]
