"""Simple cells, complex cells and the hierarchy: LeNet-5 measured the way Hubel and Wiesel measured V1.

    python -m experiments.vision.visual_hierarchy --out runs/vision            # trains modern + classic
    python -m experiments.vision.visual_hierarchy --out runs/vision --quick    # 1 epoch on 5,000 images
    python -m experiments.vision.visual_hierarchy --out runs/vision --lenet runs/lenet5-modern-autodiff-seed0

Without --lenet, LeNet-5 "modern" (ReLU, max pooling) and "classic" (tanh, average pooling) are
trained briefly by experiments.train_lenet in OUT/lenet-<variant> (a finished run there is
reused). Each network is measured at conv1, pool1, conv2 and pool2 (after the nonlinearity
where the variant has one), one unit per channel at the centre of the map, with drifting
sinusoidal gratings (12 orientations 15° apart, several spatial frequencies, one drift cycle in
16 frames) and bars, by `jaxnn.neuro.physiology`: preferred orientation, OSI and the
modulation ratio F1/F0 (Skottun et al. 1991) per unit; theoretical and effective receptive
field (95 % of the mean |∂r/∂x| over test digits) per layer. A hand-built simple cell (a
rectified Gabor) and complex cell (the energy model) are measured the same way as references.
MNIST is read from $JAXNN_DATA_DIR (or the cache).

Writes to --out: summary.json; stimuli.png, tuning_curves.png, f1f0_histograms.png,
orientation.png, receptive_fields.png, rf_sizes.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from experiments import train_lenet
from experiments.common import cli
from experiments.common.loop import UsageError, cli_main, write_atomic
from experiments.vision import plots as vplots
from jaxnn import data as jdata
from jaxnn.data.batching import MNIST_MEAN, MNIST_STD
from jaxnn.models import LENET5_VARIANTS, lenet5, lenet5_stages
from jaxnn.neuro import physiology as ph

__all__ = ["LAYERS", "PROTOCOL", "QUICK", "measure_network", "measure_references", "parse_args",
           "main", "run", "trained_params"]

LAYERS = {"conv1": "C1", "pool1": "S2", "conv2": "C3", "pool2": "S4"}  # label -> LeNet-5 stage
SIZE = (28, 28)
PROTOCOL = {"orientations": [15.0 * i for i in range(12)], "wavelengths": [3, 4, 6, 8, 12, 16],
            "steps": 16, "contrast": 1.0, "bar_width": 2.0, "bar_offsets": list(range(-6, 7)),
            "erf_images": 256, "erf_fraction": 0.95,
            "reference": {"orientation": 30.0, "wavelength": 8.0, "sigma": 3.0}}
QUICK = {**PROTOCOL, "wavelengths": [4, 8, 12], "erf_images": 64}
TRAIN = {"epochs": 2, "train_subset": None, "test_subset": 2000}
TRAIN_QUICK = {"epochs": 1, "train_subset": 5000, "test_subset": 500}


def trained_params(state):
    """(params, model_state) of a trained state: a TrainState or a dict holding them."""
    get = (lambda k: state[k]) if isinstance(state, dict) else (lambda k: getattr(state, k))
    return get("params"), get("model_state")


def layer_names(variant: str) -> dict[str, str]:
    """{"conv1": "serial[1] Relu", ...}: the last stage of each of C1, S2, C3, S4 (the
    nonlinearity after it, where there is one), named as `jaxnn.intermediates` names it."""
    stages, model = lenet5_stages(variant), lenet5(variant)
    names = {}
    for label, stage in LAYERS.items():
        i = max(i for i, (n, _) in enumerate(stages) if n == stage or n.startswith(stage + " "))
        names[label] = f"serial[{i}] {model.children[i].name}"
    return names


def stimuli(protocol: dict) -> tuple[ph.GratingSet, np.ndarray, np.ndarray]:
    """(gratings, bars (O·B, 28, 28, 1), dark screen (1, 28, 28, 1)) in MNIST's normalisation."""
    gratings = ph.drifting_gratings(SIZE, protocol["orientations"],
                                    [1.0 / w for w in protocol["wavelengths"]], protocol["steps"],
                                    protocol["contrast"], mean=MNIST_MEAN, std=MNIST_STD)
    o, b = np.asarray(protocol["orientations"]), np.asarray(protocol["bar_offsets"], float)
    bar = ph.to_input(ph.bars(SIZE, o[:, None], b[None, :], protocol["bar_width"]), MNIST_MEAN, MNIST_STD)
    return gratings, bar, ph.to_input(np.zeros(SIZE), MNIST_MEAN, MNIST_STD)


def _bar_tuning(model, params, names, bars, dark, n_orient, *, state=()) -> dict[str, np.ndarray]:
    """{layer: (U, O)} max over bar positions of the response rise above the dark screen."""
    resp = ph.unit_responses(model, params, bars, names, state=state)
    base = ph.unit_responses(model, params, dark, names, state=state)
    return {n: np.maximum(resp[n] - base[n], 0).T.reshape(resp[n].shape[1], n_orient, -1).max(-1)
            for n in names}


def _layer_summary(t: ph.Tuning, rf: ph.ReceptiveField, centre, mass: np.ndarray,
                   fraction: float) -> dict:
    ok = t.responsive
    ratio = t.f1f0[ok]
    weights = mass / np.maximum(mass.sum((1, 2), keepdims=True), 1e-30)
    pooled = weights[ok].mean(0) if ok.any() else weights.mean(0)
    return {
        "units": int(len(ok)), "responsive": int(ok.sum()),
        "median_osi": _r(np.nanmedian(t.osi[ok])) if ok.any() else None,
        "fraction_f1f0_above_1": _r(np.mean(ratio > 1)) if ok.any() else None,
        "median_f1f0": _r(np.nanmedian(np.minimum(ratio, 1e6))) if ok.any() else None,
        "preferred_orientation": [float(v) for v in t.preferred_orientation],
        "preferred_wavelength": [_r(1 / v) for v in t.preferred_frequency],
        "osi": [_r(v) for v in t.osi], "f1f0": [_r(min(v, 1e6)) for v in t.f1f0],
        "theoretical_rf": int(rf.size[0]), "rf_centre": [float(c) for c in centre],
        "effective_rf": ph.effective_size(pooled, centre, fraction),
        "effective_rf_units": [ph.effective_size(m, centre, fraction) for m in mass],
    }


def _r(v) -> float | None:
    v = float(v)
    return round(v, 4) if np.isfinite(v) else None


def measure_network(model, params, names: dict[str, str], protocol: dict, images: np.ndarray,
                    *, state=()) -> tuple[dict, dict]:
    """(summary per layer label, arrays for the figures) of one network: tuning, bar tuning,
    theoretical and effective receptive fields of every channel at the centre of each layer."""
    gratings, bars, dark = stimuli(protocol)
    tuning = ph.measure(model, params, gratings, list(names.values()), state=state)
    bar = _bar_tuning(model, params, list(names.values()), bars, dark, len(gratings.orientations),
                      state=state)
    rfs = ph.theoretical_receptive_fields(model, params, (-1, *SIZE, 1), state=state)
    summary, arrays = {}, {}
    for label, name in names.items():
        out = jax.eval_shape(lambda x, name=name: ph.layer_output(model, params, x, name, state=state),
                             jax.ShapeDtypeStruct((1, *SIZE, 1), np.float32)).shape
        centre = rfs[name].centre(out[1] // 2, out[2] // 2)
        signed, mass = ph.effective_receptive_field(model, params, images, name, state=state)
        summary[label] = {"layer": name, **_layer_summary(tuning[name], rfs[name], centre, mass,
                                                           protocol["erf_fraction"])}
        arrays[label] = {"tuning": tuning[name], "bars": bar[name], "signed": signed, "mass": mass,
                         "box": rfs[name].box(out[1] // 2, out[2] // 2)}
    return summary, arrays


def measure_references(protocol: dict, images: np.ndarray) -> tuple[dict, dict]:
    """The hand-built simple and complex cell, measured like a layer of one unit."""
    ref = protocol["reference"]
    cells = ph.reference_cells(SIZE, ref["orientation"], 1.0 / ref["wavelength"], ref["sigma"])
    summary, arrays = {}, {}
    for label, (model, params) in cells.items():
        name = f"serial[1] {model.children[1].name}"
        s, a = measure_network(model, params, {label: name}, protocol, images)
        summary.update(s)
        arrays.update(a)
    return summary, arrays


def _networks(args, train: dict) -> list[tuple[str, Path]]:
    """[(variant, run folder)]: the given --lenet runs, or short runs trained here."""
    if args.lenet:
        return [(None, Path(d)) for d in args.lenet]
    runs = []
    for variant in LENET5_VARIANTS:
        run_dir = Path(args.out) / f"lenet-{variant}"
        if not (run_dir / "summary.json").exists():
            train_lenet.train_and_evaluate(train_lenet.Config(
                variant=variant, epochs=train["epochs"], out=str(run_dir), seed=args.seed,
                train_subset=train["train_subset"], test_subset=train["test_subset"],
                plots=False, progress=False))
        runs.append((variant, run_dir))
    return runs


def run(args) -> dict:
    protocol, train = (QUICK, TRAIN_QUICK) if args.quick else (PROTOCOL, TRAIN)
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images, _ = jdata.load("mnist", "test")
    images = jdata.add_channel_axis(jdata.normalize(images[:protocol["erf_images"]]))
    networks, arrays = {}, {}
    for _, run_dir in _networks(args, train):
        config, state = train_lenet.load_trained(run_dir)
        params, model_state = trained_params(state)
        key = config.variant if config.variant not in networks else f"{config.variant} ({run_dir.name})"
        model = lenet5(config.variant)
        networks[key], arrays[key] = measure_network(model, params, layer_names(config.variant),
                                                     protocol, images, state=model_state)
        networks[key] = {"run": str(run_dir), "layers": networks[key]}
    references, ref_arrays = measure_references(protocol, images)
    gratings, bars, _ = stimuli(protocol)
    vplots.plot_stimuli(gratings, bars, protocol, out / "stimuli.png")
    vplots.plot_tuning_curves(arrays, ref_arrays, protocol, out / "tuning_curves.png", seed=config.seed)
    vplots.plot_f1f0(arrays, ref_arrays, out / "f1f0_histograms.png", seed=config.seed)
    vplots.plot_orientation(arrays, out / "orientation.png", seed=config.seed)
    vplots.plot_receptive_fields(arrays, ref_arrays, out / "receptive_fields.png", seed=config.seed)
    vplots.plot_rf_sizes({k: v["layers"] for k, v in networks.items()}, out / "rf_sizes.png", seed=config.seed)
    summary = {"protocol": protocol, "quick": bool(args.quick), "networks": networks,
               "references": references, "seconds": round(time.perf_counter() - t0, 1)}
    write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def table(summary: dict) -> str:
    """One table: a row per network layer and per reference cell."""
    head = (f"{'network':<10} {'layer':<8} {'units':>5} {'resp':>4} {'med OSI':>7} "
            f"{'F1/F0>1':>7} {'med F1/F0':>9} {'RF theo':>7} {'RF eff':>6}")
    rows = [head, "-" * len(head)]
    groups = [(k, v["layers"]) for k, v in summary["networks"].items()]
    groups.append(("reference", summary["references"]))
    for network, layers in groups:
        for label, s in layers.items():
            cells = [_fmt(s["median_osi"]), _fmt(s["fraction_f1f0_above_1"]), _fmt(s["median_f1f0"])]
            rows.append(f"{network:<10} {label:<8} {s['units']:>5} {s['responsive']:>4} {cells[0]:>7} "
                        f"{cells[1]:>7} {cells[2]:>9} {s['theoretical_rf']:>7} {s['effective_rf']:>6}")
    return "\n".join(rows)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}" if v < 100 else ">100"


def parse_args(argv=None) -> argparse.Namespace:
    p = cli.parser("python -m experiments.vision.visual_hierarchy", __doc__)
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--lenet", action="append", default=None, metavar="RUN_DIR",
                   help="a run folder of experiments.train_lenet (repeatable); default: train "
                        "modern and classic briefly in OUT/lenet-<variant>")
    p.add_argument("--quick", action="store_true",
                   help="1 epoch on 5,000 training images, 3 spatial frequencies, 64 digits for "
                        "the effective receptive fields")
    p.add_argument("--seed", type=cli.seed, default=0, help="seed of the short training runs")
    args = p.parse_args(argv)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} exists and is not a directory")
    if args.seed < 0:
        raise UsageError(f"--seed must be ≥ 0, got {args.seed}")
    for d in args.lenet or ():
        if not (Path(d) / "config.json").is_file():
            raise UsageError(f"--lenet {d}: not a run folder of experiments.train_lenet "
                             f"(expected {Path(d) / 'config.json'})")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.claim_out(args.out)
    summary = run(args)
    print(table(summary))
    print(f"{summary['seconds']:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
