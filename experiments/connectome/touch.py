"""Experiment A: the touch-withdrawal circuit as a trained network on its real wiring.

    python -m experiments.connectome --experiment touch --out DIR [--quick]

Circuit (Chalfie et al. 1985, J Neurosci 5:956; Wicks & Rankin 1995; Wicks, Roehrig & Rankin 1996,
J Neurosci 16:4017): the gentle-touch receptors ALML/R, AVM (anterior) and PLML/R (posterior), the
harsh-touch/proprioceptive PVDL/R, and the interneurons AVAL/R, AVBL/R, AVDL/R, PVCL/R and DVA,
with the chemical synapses and gap junctions among them from the Varshney et al. 2011 connectome
(`jaxnn.data.connectome`, a subset: synapses to and from neurons outside the circuit are left out).

Task: anterior touch (a step of input onto ALML, ALMR, AVM) must drive "backward" — the mean
activation of AVA and AVD above that of AVB and PVC over the response window — and posterior
touch (input onto PLML, PLMR) "forward" (AVB/PVC above AVA/AVD). Loss: the logistic loss of
β·(backward − forward) with the trial's sign, over the response window. An ensemble of models
(one per seed; signs, gains and time constants free, the wiring fixed) trains at once with
`jax.vmap`; a model "solves" the task when, on noise-free test trials, the difference has the
right sign with margin ≥ `MARGIN` for both touches. The control is the same ensemble on
degree-preserving shuffles of the circuit (`jaxnn.neuro.connectome.degree_preserving_shuffle`),
inputs and readouts on the same named neurons.

Reported (summary.json): the fraction of models solving the task on the real and on the shuffled
wiring; for each connection between cell classes (L/R pooled: the summed signed weight of its
synapses) the fraction of solving models in which it is excitatory; the same per presynaptic
class; and, beside them, what the literature says (`LITERATURE`).

What it can claim: which sign configurations of this wiring, under this rate model, are
consistent with the two reflexes, and how constrained that set is (a connection whose sign is
the same in nearly every solving model is forced by the wiring plus the task). What it cannot:
the true signs (the model has no receptor identities, neuromodulation, body or muscles; two
behavioural constraints are far fewer than Wicks et al. fitted, who used the behaviour of
ablated animals), nor that the real worm computes the reflex this way.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.common import cli
from experiments.common.loop import LoopConfig, UsageError, fold_epoch_key, run, write_atomic
from experiments.connectome.ensemble import ensemble_step, init_ensemble
from jaxnn.losses import Loss
from jaxnn.neuro.connectome import (
    ConnectomeSpec,
    connectome_layer,
    connectome_spec,
    degree_preserving_shuffle,
    effective,
)

SENSORY = ("ALML", "ALMR", "AVM", "PLML", "PLMR", "PVDL", "PVDR")
INTER = ("AVAL", "AVAR", "AVBL", "AVBR", "AVDL", "AVDR", "PVCL", "PVCR", "DVA")
NEURONS = SENSORY + INTER
ANTERIOR, POSTERIOR = ("ALML", "ALMR", "AVM"), ("PLML", "PLMR")
BACKWARD, FORWARD = ("AVAL", "AVAR", "AVDL", "AVDR"), ("AVBL", "AVBR", "PVCL", "PVCR")
MARGIN = 0.05  # activation units (f ∈ (0, 1))
BETA = 20.0  # slope of the logistic loss per activation unit

# Steps of DT ms: stimulus on [STIM_ON, STIM_OFF), response window [STIM_ON + 5, STIM_OFF + 5).
DT, TAU, N_STEPS, STIM_ON, STIM_OFF = 10.0, 50.0, 50, 10, 35

# What the literature says, with sources; the signs Wicks et al. 1996 inferred are not given here
# (their table could not be retrieved reliably while writing this experiment).
LITERATURE = {
    "wicks_1996": (
        "Wicks, Roehrig & Rankin 1996 (J Neurosci 16:4017) enumerated every sign configuration of "
        "a dynamic network model of this circuit and compared each with the behaviour of "
        "ablated animals; their abstract reports predicted polarities for seven of the nine "
        "cell classes and roles for DVA and PVD. Their per-class table was not available to this "
        "experiment, so no comparison with it is made here."),
    "chalfie_1985_ablations": (
        "Chalfie et al. 1985 (J Neurosci 5:956), laser ablations: ALM and AVM are needed for the "
        "response to anterior touch and PLM for posterior touch; AVD (with AVA) for backward "
        "movement and PVC (with AVB) for forward movement after touch."),
    "chalfie_1985_model": (
        "Chalfie et al. 1985 proposed that the touch cells drive the interneurons of the right "
        "response through gap junctions (AVM-AVD, PLM-PVC) and reach those of the opposite "
        "response through chemical synapses that would be inhibitory (ALM/AVM -> PVC/AVB, "
        "PLM -> AVA/AVD). Stated here as a hypothesis from that paper, not as a measurement."),
}
# The chemical connections the Chalfie et al. 1985 hypothesis makes inhibitory (class level).
CHALFIE_INHIBITORY = (("ALM", "PVC"), ("AVM", "PVC"), ("AVM", "AVB"), ("PLM", "AVA"), ("PLM", "AVD"))


def cell_class(name: str) -> str:
    """The class of a neuron: its name without the L/R suffix (AVM, DVA keep theirs)."""
    return name[:-1] if name[-1] in "LR" and name not in ("AVM",) and len(name) == 4 else name


CLASSES = tuple(dict.fromkeys(cell_class(n) for n in NEURONS))


@dataclasses.dataclass(frozen=True)
class Config:
    out: str
    quick: bool = False
    models: int = 64
    shuffles: int = 4
    epochs: int = 10
    steps_per_epoch: int = 20
    batch: int = 16
    lr: float = 0.05
    signs: str = "synapse"
    noise: float = 0.05
    input_noise: float = 0.2
    seed: int = 0
    data_dir: str | None = None
    resume: bool = False
    progress: bool = True
    plots: bool = True

    def filled(self) -> Config:
        cfg = (dataclasses.replace(self, models=16, shuffles=2, epochs=2, steps_per_epoch=30)
               if self.quick else self)
        if cfg.models < cfg.shuffles or cfg.models < 1 or cfg.shuffles < 1:
            raise UsageError("need --models >= --shuffles >= 1")
        if cfg.signs not in ("synapse", "neuron", "transmitter"):
            raise UsageError(f"--signs must be synapse, neuron or transmitter, got {cfg.signs!r}")
        if cfg.batch < 2 or cfg.batch % 2:
            raise UsageError("--batch must be an even number >= 2 (half anterior, half posterior)")
        return cfg


def touch_trials(key: jax.Array | None, batch: int, sigma: float) -> tuple[jax.Array, jax.Array]:
    """x (batch, N_STEPS, 2): channel 0 anterior, 1 posterior touch, a unit step on
    [STIM_ON, STIM_OFF) plus N(0, σ²) noise while it lasts (none for key None); the first half of
    the trials anterior. Returns (x, sign) with sign +1 anterior (backward), −1 posterior."""
    t = jnp.arange(N_STEPS)
    on = ((t >= STIM_ON) & (t < STIM_OFF)).astype(jnp.float32)
    anterior = jnp.arange(batch) < batch // 2
    which = jnp.stack([anterior, ~anterior], axis=1).astype(jnp.float32)  # (B, 2)
    x = which[:, None, :] * on[None, :, None]
    if key is not None:
        x = x + sigma * jax.random.normal(key, x.shape) * on[None, :, None]
    return x, jnp.where(anterior, 1.0, -1.0)


def response_window() -> jax.Array:
    t = jnp.arange(N_STEPS)
    return ((t >= STIM_ON + 5) & (t < STIM_OFF + 5)).astype(jnp.float32)


def touch_loss(beta: float = BETA) -> Loss:
    """J = Σ_{n,t} w_t softplus(−β s_n (y_nt0 − y_nt1)) / (N Σ w): y (N, T, 2) = (backward,
    forward) activations, target (s (N,), w (T,)). dJ/dy_nt0 = −dJ/dy_nt1 =
    −β s_n w_t sigmoid(−β s_n d_nt) / (N Σ w)."""
    def forward(y, target):
        s, w = target
        m = -beta * s[:, None] * (y[..., 0] - y[..., 1])
        scale = w[None, :] / (y.shape[0] * w.sum())
        return (scale * jax.nn.softplus(m)).sum(), (m, s, scale)

    def backward(residuals, dloss):
        m, s, scale = residuals
        dd = -beta * s[:, None] * jax.nn.sigmoid(m) * scale * dloss
        return jnp.stack([dd, -dd], axis=-1)

    return Loss("touch_logistic", forward, backward, lambda y, t: forward(y, t)[0])


def margins(layer, params, x) -> jax.Array:
    """(N,) mean over the response window of backward − forward, noise-free."""
    y = layer(params, x)
    w = response_window()
    return ((y[..., 0] - y[..., 1]) * w[None, :]).sum(1) / w.sum()


def build(wiring: Any, cfg: Config) -> tuple[ConnectomeSpec, Any]:
    spec = connectome_spec(wiring, (ANTERIOR, POSTERIOR), (BACKWARD, FORWARD), signs=cfg.signs,
                           tau=TAU, dt=DT, noise=cfg.noise, rec_gain=1.5, gap_gain=1.0)
    return spec, connectome_layer(spec)


def train(cfg: Config, wiring: Any, out: Path, seeds: list[int], name: str) -> dict:
    """Train one ensemble (one model per seed) on `wiring`; returns its evaluation."""
    spec, layer = build(wiring, cfg)
    init, step = ensemble_step(layer, touch_loss(), optax.adam(cfg.lr))
    x_test, s_test = touch_trials(None, 2, 0.0)

    @jax.jit
    def evaluate_all(params):
        d = jax.vmap(lambda p: margins(layer, p, x_test))(params)  # (M, 2)
        return d[:, 0], -d[:, 1]

    def batches(epoch):
        key = jax.random.fold_in(fold_epoch_key(cfg.seed, epoch), 10 ** 6)
        out_ = []
        for i in range(cfg.steps_per_epoch):
            x, s = touch_trials(jax.random.fold_in(key, i), cfg.batch, cfg.input_noise)
            out_.append((x, (s, response_window())))
        return out_

    curve: list[float] = []

    def evaluate(ts, epoch):
        ant, post = evaluate_all(ts.params)
        solved = (np.asarray(ant) >= MARGIN) & (np.asarray(post) >= MARGIN)
        curve.append(float(solved.mean()))
        return {"fraction_solved": curve[-1]}

    loop = LoopConfig(out=str(out), epochs=cfg.epochs, seed=cfg.seed, resume=cfg.resume,
                      progress=cfg.progress, plots=False)
    final: dict[str, Any] = {}

    def summarize(ts):
        ant, post = evaluate_all(ts.params)
        final["ts"] = ts
        return {"anterior_margin": np.asarray(ant).tolist(),
                "posterior_margin": np.asarray(post).tolist()}

    summary = run(loop, init=lambda: init_ensemble(layer, init, seeds, (cfg.batch, N_STEPS, 2)),
                  step=step, batches=batches, evaluate=evaluate, name=name, summarize=summarize,
                  config_dict={**dataclasses.asdict(cfg), "seeds": seeds, "wiring": name})
    ant, post = np.asarray(summary["anterior_margin"]), np.asarray(summary["posterior_margin"])
    return {"spec": spec, "layer": layer, "ts": final["ts"], "solved": (ant >= MARGIN) & (post >= MARGIN),
            "anterior_margin": ant, "posterior_margin": post, "summary": summary,
            "curve": curve, "curve_steps": [cfg.steps_per_epoch * (cfg.epochs - len(curve) + i + 1)
                                            for i in range(len(curve))]}


def class_signs(spec: ConnectomeSpec, params: Any) -> tuple[np.ndarray, np.ndarray]:
    """(M, K, K) summed signed chemical weight from class a onto class b per model (0 where the
    classes are not connected), and the (K, K) synapse count between the classes."""
    W = np.asarray(jax.vmap(lambda p: effective(spec, p).W)(params))  # (M, N, N)
    k = len(CLASSES)
    member = np.zeros((len(spec.neurons), k))
    for i, n in enumerate(spec.neurons):
        member[i, CLASSES.index(cell_class(n))] = 1.0
    counts = member.T @ (spec.chemical / spec.kappa) @ member
    return np.einsum("ia,mij,jb->mab", member, W, member), counts


def sign_table(weights: np.ndarray, counts: np.ndarray, solved: np.ndarray) -> list[dict]:
    """Per connected class pair: synapses, fraction of solving models where it is excitatory."""
    rows = []
    sel = weights[solved] if solved.any() else weights[:0]
    for a, pre in enumerate(CLASSES):
        for b, post in enumerate(CLASSES):
            if counts[a, b] <= 0:
                continue
            frac = float((sel[:, a, b] > 0).mean()) if len(sel) else None
            rows.append({"pre": pre, "post": post, "synapses": int(round(counts[a, b])),
                         "fraction_excitatory": frac,
                         "chalfie_1985_hypothesis": ("inhibitory" if (pre, post) in CHALFIE_INHIBITORY
                                                     else None)})
    return rows


def run_touch(cfg: Config) -> dict:
    from jaxnn.data.connectome import load_connectome

    cfg = cfg.filled()
    out = Path(cfg.out)
    full = load_connectome("varshney2011", cfg.data_dir)
    wiring = full.subset(list(NEURONS))
    seeds = list(range(cfg.seed, cfg.seed + cfg.models))
    real = train(cfg, wiring, out / "real", seeds, "touch real")
    per = cfg.models // cfg.shuffles
    shuffled = []
    for k in range(cfg.shuffles):
        w = degree_preserving_shuffle(wiring, seed=cfg.seed + 1000 + k)
        shuffled.append(train(cfg, w, out / f"shuffle{k}", seeds[k * per:(k + 1) * per],
                              f"touch shuffle {k}"))
    weights, counts = class_signs(real["spec"], real["ts"].params)
    table = sign_table(weights, counts, real["solved"])
    agree = [r for r in table if r["chalfie_1985_hypothesis"] and r["fraction_excitatory"] is not None]
    solved_shuffle = np.concatenate([s["solved"] for s in shuffled])
    summary = {
        "experiment": "touch", "data": "varshney2011", "neurons": list(NEURONS),
        "command": "python -m experiments.connectome --experiment touch --out " + cfg.out
                   + (" --quick" if cfg.quick else ""),
        "config": dataclasses.asdict(cfg), "margin": MARGIN,
        "models": cfg.models, "fraction_solved_real": float(real["solved"].mean()),
        "fraction_solved_shuffled": float(solved_shuffle.mean()),
        "models_shuffled": int(solved_shuffle.size), "shuffles": cfg.shuffles,
        "fraction_solved_by_step": {
            "steps": real["curve_steps"], "real": real["curve"],
            "shuffled": np.mean([s["curve"] for s in shuffled], 0).round(4).tolist()},
        "sign_table": table,
        "chalfie_hypothesis_agreement": {f"{r['pre']}->{r['post']}": 1 - r["fraction_excitatory"]
                                         for r in agree},
        "time_constants_ms": {
            "median_per_neuron": dict(zip(NEURONS, np.median(np.asarray(
                jax.vmap(lambda p: effective(real["spec"], p).tau)(real["ts"].params), np.float64), 0)
                .round(1).tolist()))},
        "literature": LITERATURE,
        "seconds": {"real": real["summary"]["seconds"]["total"],
                    "shuffled": sum(s["summary"]["seconds"]["total"] for s in shuffled)},
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    if cfg.plots:
        from experiments.connectome import plots
        plots.touch_figures(out / "plots", full, wiring, real, shuffled, weights, counts, table,
                            x_trials=touch_trials(None, 2, 0.0)[0])
    return summary


def headline(summary: dict) -> None:
    """Print the fraction solved and the inferred sign of each connection as tables."""
    cli.print_table(f"touch circuit ({len(summary['neurons'])} neurons, Varshney 2011 wiring), "
                    f"margin {summary['margin']}", [
        ("solved, real wiring", f"{summary['fraction_solved_real']:.2f} of {summary['models']} models"),
        ("solved, degree-preserving shuffles",
         f"{summary['fraction_solved_shuffled']:.2f} of {summary['models_shuffled']} models")])
    cli.print_table("inferred chemical signs (solving models)", [
        {"pre -> post": f"{r['pre']} -> {r['post']}", "synapses": r["synapses"],
         "fraction excitatory": "-" if r["fraction_excitatory"] is None else f"{r['fraction_excitatory']:.2f}",
         "Chalfie 1985 hypothesis": r["chalfie_1985_hypothesis"] or ""}
        for r in summary["sign_table"]])


def main(cfg: Config) -> int:
    summary = run_touch(cfg)
    headline(summary)
    return 0


__all__ = ["Config", "NEURONS", "build", "class_signs", "headline", "main", "margins",
           "run_touch", "sign_table", "touch_loss", "touch_trials", "train"]
