"""Every jaxnn gradient computed five ways, and how far apart they are.

    python -m experiments.compare_backprop [--out runs/compare_backprop] [--quick] [--repeats 20]

For each layer (a VJP with a random cotangent dy), each loss (dJ/dpred) and LeNet-5 ("classic"
and "modern", batch 4, softmax cross-entropy on integer labels; dJ/dparams), in float32 and in
float64, the gradient is computed by

    manual       the layers' hand-written backward (jaxnn.backprop's chain rule)
    reverse      jax.vjp / jax.grad                                    (the reference)
    forward      jax.jvp, one column per coordinate (LeNet-5: 32 random coordinates per tensor)
    finite_diff  central differences in float64, ε = 1e-6 (LeNet-5: the same coordinates)
    numpy        experiments/numpy_reference.py, which shares no code with jaxnn (Dense, Conv2D,
                 VALID pools, Flatten, tanh, sigmoid, ReLU, softmax cross-entropy, LeNet-5)

and each is compared with reverse mode (errors and tolerances: jaxnn.compare's docstring). Then
manual and reverse gradients of LeNet-5 at batch 128 are timed (jitted, after a warm-up, median
of --repeats interleaved calls), and all four methods on a small MLP (forward mode and finite
differences over every coordinate are n or 2n forward passes: too slow for LeNet-5's 61,706).

Writes compare.md, compare.json and compare.png to --out and prints the summary; the last line
says whether every pair agreed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn as nn
from experiments import numpy_reference as ref
from jaxnn import compare, losses, models

DTYPES = ("float32", "float64")
PAIRS = ("manual", "forward", "finite_diff", "numpy")  # each compared with "reverse"


# ------------------------------------------------------------------ NumPy reference adapters
# Each maps (params, x, dy) as NumPy arrays to (dparams, dx) in jaxnn's pytree layout.
def _ref_dense(params, x, dy):
    dx, dw, db = ref.dense_backward(ref.dense_forward(x, params.w, params.b)[1], dy)
    return nn.DenseParams(dw, db), dx


def _ref_conv(strides, padding):
    def grads(params, x, dy):
        _, cache = ref.conv2d_forward(x, params.w, params.b, strides, padding)
        dx, dw, db = ref.conv2d_backward(cache, dy)
        return nn.ConvParams(dw, db), dx
    return grads


def _ref_pool(forward, backward, window, strides):
    return lambda params, x, dy: ((), backward(forward(x, window, strides)[1], dy))


def _ref_unary(forward, backward):
    return lambda params, x, dy: ((), backward(forward(x)[1], dy))


# ------------------------------------------------------------------ the cases
# (id, layer constructor, input shape, NumPy reference or None)
LAYER_CASES = [
    ("dense", lambda: nn.Dense(5), (3, 4), _ref_dense),
    ("dense_3d_input", lambda: nn.Dense(2), (2, 3, 4), None),
    ("conv_valid", lambda: nn.Conv2D(3, 3), (2, 7, 6, 2), _ref_conv((1, 1), "VALID")),
    ("conv_same_1_channel", lambda: nn.Conv2D(4, 5, padding="SAME"), (2, 8, 8, 1),
     _ref_conv((1, 1), "SAME")),
    ("conv_stride2_same", lambda: nn.Conv2D(3, 3, strides=2, padding="SAME"), (2, 9, 8, 2),
     _ref_conv((2, 2), "SAME")),
    ("conv_explicit_asym", lambda: nn.Conv2D(2, (2, 3), strides=(2, 1), padding=((1, 3), (0, 2))),
     (2, 7, 5, 2), _ref_conv((2, 1), ((1, 3), (0, 2)))),
    ("conv_1x1", lambda: nn.Conv2D(3, 1), (2, 4, 4, 5), _ref_conv((1, 1), "VALID")),
    ("avgpool_2", lambda: nn.AvgPool(2), (2, 8, 6, 3),
     _ref_pool(ref.avgpool_forward, ref.avgpool_backward, (2, 2), (2, 2))),
    ("avgpool_ragged", lambda: nn.AvgPool(2), (2, 7, 5, 3),
     _ref_pool(ref.avgpool_forward, ref.avgpool_backward, (2, 2), (2, 2))),
    ("avgpool_rect", lambda: nn.AvgPool((3, 2), strides=(1, 2)), (1, 6, 6, 2),
     _ref_pool(ref.avgpool_forward, ref.avgpool_backward, (3, 2), (1, 2))),
    ("avgpool_overlap_same", lambda: nn.AvgPool(3, strides=2, padding="SAME"), (2, 9, 8, 2), None),
    ("maxpool_2", lambda: nn.MaxPool(2), (2, 8, 6, 3),
     _ref_pool(ref.maxpool_forward, ref.maxpool_backward, (2, 2), (2, 2))),
    ("maxpool_ragged", lambda: nn.MaxPool(2), (2, 7, 5, 3),
     _ref_pool(ref.maxpool_forward, ref.maxpool_backward, (2, 2), (2, 2))),
    ("maxpool_overlap_same", lambda: nn.MaxPool(3, strides=2, padding="SAME"), (2, 9, 8, 2), None),
    ("maxpool_explicit", lambda: nn.MaxPool((2, 3), strides=(2, 1), padding=((1, 0), (1, 1))),
     (1, 6, 5, 2), None),
    ("flatten", lambda: nn.Flatten(), (2, 3, 4, 5), _ref_unary(ref.flatten_forward, ref.flatten_backward)),
    ("reshape", lambda: nn.Reshape((4, -1)), (3, 2, 6), None),
    ("identity", lambda: nn.Identity(), (3, 4), None),
    ("tanh", lambda: nn.Tanh(), (3, 4, 2), _ref_unary(ref.tanh_forward, ref.tanh_backward)),
    ("sigmoid", lambda: nn.Sigmoid(), (3, 5), _ref_unary(ref.sigmoid_forward, ref.sigmoid_backward)),
    ("relu", lambda: nn.Relu(), (3, 5), _ref_unary(ref.relu_forward, ref.relu_backward)),
    ("softmax", lambda: nn.Softmax(), (3, 6), None),
    ("softmax_axis1", lambda: nn.Softmax(axis=1), (2, 4, 3), None),
    ("logsoftmax", lambda: nn.LogSoftmax(), (3, 6), None),
    ("heaviside", lambda: nn.Heaviside(), (3, 5), None),
    ("heaviside_straight_through", lambda: nn.Heaviside(straight_through=True), (3, 5), None),
    ("serial_mlp", lambda: nn.serial(nn.Dense(6), nn.Tanh(), nn.Dense(3), nn.LogSoftmax()), (4, 5), None),
    ("serial_convnet", lambda: nn.serial(nn.Conv2D(3, 3, padding="SAME"), nn.Tanh(), nn.MaxPool(2),
                                         nn.Flatten(), nn.Dense(4)), (2, 6, 6, 1), None),
    ("residual_fanout_sum", lambda: nn.serial(nn.FanOut(2), nn.parallel(nn.Dense(4), nn.Identity()),
                                              nn.FanInSum(), nn.Tanh()), (3, 4), None),
    ("fanout_concat", lambda: nn.serial(nn.FanOut(2), nn.parallel(nn.Dense(2), nn.Sigmoid()),
                                        nn.FanInConcat()), (3, 4), None),
]


def _normal(key, dtype, shape=(4, 3)):
    return jax.random.normal(key, shape, dtype)


def _signs(key, dtype, shape=(4, 3)):
    return jnp.where(jax.random.bernoulli(key, 0.5, shape), 1.0, -1.0).astype(dtype)


def _bits(key, dtype, shape=(4, 3)):
    return jax.random.bernoulli(key, 0.5, shape).astype(dtype)


def _labels(key, dtype):
    return jax.random.randint(key, (4,), 0, 5)


# (id, loss, pred(key, dtype), target(key, dtype), NumPy reference (pred, target) -> dpred or None)
LOSS_CASES = [
    ("sum_of_squares", losses.sum_of_squares(), _normal, _normal, None),
    ("mse_mean", losses.mse(), _normal, _normal, None),
    ("mse_sum", losses.mse("sum"), _normal, _normal, None),
    ("softmax_ce_int_labels", losses.softmax_cross_entropy(), lambda k, d: _normal(k, d, (4, 5)),
     _labels, lambda pred, target: ref.softmax_cross_entropy(pred, target)[1]),
    ("softmax_ce_one_hot", losses.softmax_cross_entropy(), lambda k, d: _normal(k, d, (4, 5)),
     lambda k, d: jax.nn.one_hot(_labels(k, d), 5, dtype=d), None),
    ("softmax_ce_soft_targets_sum", losses.softmax_cross_entropy("sum"),
     lambda k, d: _normal(k, d, (4, 5)), lambda k, d: jax.nn.softmax(_normal(k, d, (4, 5))), None),
    ("bce_from_logits", losses.binary_cross_entropy(), _normal, _bits, None),
    ("bce_from_probabilities", losses.binary_cross_entropy(from_logits=False),
     lambda k, d: jax.random.uniform(k, (4, 3), d, 0.05, 0.95), _bits, None),
    ("hinge", losses.hinge(), _normal, _signs, None),
    ("perceptron", losses.perceptron(), _normal, _signs, None),
]

# The step's true derivative is 0 almost everywhere, which finite differences see; the
# straight-through estimator passes dy through on purpose, so that pair differs by design.
EXPECTED_TO_DIFFER = {("heaviside_straight_through", "finite_diff")}

QUICK_LAYERS = ("dense", "heaviside_straight_through")
QUICK_LOSSES = ("softmax_ce_int_labels",)


@dataclasses.dataclass(frozen=True)
class Config:
    out: str = "runs/compare_backprop"
    quick: bool = False          # a few cases, no LeNet-5 (for tests)
    repeats: int = 20            # timed calls per method (median reported)
    seed: int = 0
    lenet_batch: int = 4         # batch for the gradient comparison
    lenet_subset: int = 32       # coordinates per tensor for forward mode / finite differences
    timing_batch: int = 128      # batch for the LeNet-5 timings


def _x64(dtype):
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def _np(tree):
    return jax.tree.map(np.asarray, tree)


def _setup_layer(make, shape, dtype, key):
    """(layer, params, x, dy): params and x ~ init / N(0, 1) in dtype, dy ~ N(0, 1) like the output."""
    k_init, k_x, k_dy = jax.random.split(key, 3)
    layer = make()
    _, params = layer.init(k_init, shape)
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    x = jax.random.normal(k_x, shape, dtype)
    out = jax.eval_shape(layer.apply, params, x)
    dys = [jax.random.normal(k, o.shape, o.dtype)
           for k, o in zip(jax.random.split(k_dy, len(jax.tree.leaves(out))), jax.tree.leaves(out))]
    return layer, params, x, jax.tree.unflatten(jax.tree.structure(out), dys)


def run_layers(config: Config, dtype: str, key) -> list[dict]:
    results = []
    for i, (case, make, shape, numpy_ref) in enumerate(LAYER_CASES):
        if config.quick and case not in QUICK_LAYERS:
            continue
        layer, params, x, dy = _setup_layer(make, shape, dtype, jax.random.fold_in(key, i))
        extra = {"numpy": numpy_ref(*_np((params, x, dy)))} if numpy_ref else None
        results.append(compare.compare_layer(layer, params, x, dy, key=key, extra=extra, name=case))
    return results


def run_losses(config: Config, dtype: str, key) -> list[dict]:
    results = []
    for i, (case, loss, make_pred, make_target, numpy_ref) in enumerate(LOSS_CASES):
        if config.quick and case not in QUICK_LOSSES:
            continue
        k_pred, k_target = jax.random.split(jax.random.fold_in(key, i))
        pred, target = make_pred(k_pred, jnp.dtype(dtype)), make_target(k_target, jnp.dtype(dtype))
        extra = {"numpy": numpy_ref(*_np((pred, target)))} if numpy_ref else None
        results.append(compare.compare_loss(loss, pred, target, extra=extra, name=case))
    return results


LENET_WEIGHTS = (0, 3, 7, 9, 11)  # entries of lenet5's params that hold (w, b); the rest are ()


def _numpy_lenet_grads(params, x, labels, variant):
    """dJ/dparams from the NumPy reference, in jaxnn's 12-entry layout."""
    _, grads = ref.lenet5_loss_and_grads([(params[i].w, params[i].b) for i in LENET_WEIGHTS],
                                         x, labels, variant)
    out = [()] * len(params)
    for i, (dw, db) in zip(LENET_WEIGHTS, grads):
        out[i] = type(params[i])(dw, db)
    return tuple(out)


def _lenet_inputs(variant, batch, dtype, key):
    k_init, k_x, k_y = jax.random.split(key, 3)
    model = models.lenet5(variant)
    _, params = model.init(k_init, models.LENET5_INPUT_SHAPE)
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    x = jax.random.uniform(k_x, (batch, 28, 28, 1), dtype)
    return model, params, x, jax.random.randint(k_y, (batch,), 0, 10)


def run_lenet(config: Config, dtype: str, key) -> list[dict]:
    results = []
    for i, variant in enumerate(models.LENET5_VARIANTS):
        model, params, x, labels = _lenet_inputs(variant, config.lenet_batch, dtype,
                                                 jax.random.fold_in(key, i))
        extra = {"numpy": _numpy_lenet_grads(*_np((params, x, labels)), variant)}
        results.append(compare.compare_model(
            model, losses.softmax_cross_entropy(), params, x, labels, key=key, extra=extra,
            subset=config.lenet_subset, name=f"lenet5_{variant} (batch {config.lenet_batch})"))
    return results


def run_timings(config: Config, key) -> dict:
    """LeNet-5 manual vs reverse (float32, batch 128); all methods on a small MLP (float64)."""
    timings = {}
    if not config.quick:
        for variant in models.LENET5_VARIANTS:
            model, params, x, labels = _lenet_inputs(variant, config.timing_batch, jnp.float32, key)
            fns = {m: nn.backprop.grad(model, losses.softmax_cross_entropy(), a, jit=False)
                   for m, a in (("manual", "manual"), ("reverse", "autodiff"))}
            timings[f"lenet5_{variant}, batch {config.timing_batch}, float32, dJ/dparams"] = \
                compare.time_fns(fns, params, x, labels, repeats=config.repeats)
    case = "serial_mlp"
    _, make, shape, _ = next(c for c in LAYER_CASES if c[0] == case)
    with jax.enable_x64(True):
        layer, params, x, dy = _setup_layer(make, shape, "float64", key)
        n = sum(a.size for a in jax.tree.leaves((params, x)))
        timings[f"SMALL CASE {case} {shape}, float64, full VJP over all {n} coordinates"] = \
            compare.time_fns(compare.vjp_fns(layer), params, x, dy, repeats=config.repeats)
    return timings


# ------------------------------------------------------------------ reporting
def _verdict(res, row):
    expected = (res["case"], row["a"]) in EXPECTED_TO_DIFFER
    return "expected" if expected and not row["agree"] else ("ok" if row["agree"] else "FAIL")


def _cell(res, method):
    if method in res["skipped"]:
        return "skipped"
    rows = [r for r in res["rows"] if r["a"] == method]
    if not rows:
        return "—"
    verdicts = {_verdict(res, r) for r in rows}
    mark = "**FAIL**" if "FAIL" in verdicts else ("differs (expected)" if "expected" in verdicts else "")
    return f"{max(r['max_rel'] for r in rows):.1e} {mark}".strip()


def summary_table(results: list[dict]) -> str:
    """case × (method, dtype): the worst max relative error vs reverse over the case's tensors."""
    by_case = {}
    for res in results:
        by_case.setdefault(res["case"], {})[res["dtype"]] = res
    head = [f"{m} vs reverse f{d[-2:]}" for m in PAIRS for d in DTYPES]
    lines = ["| case | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for case, per_dtype in by_case.items():
        cells = [_cell(per_dtype[d], m) if d in per_dtype else "—" for m in PAIRS for d in DTYPES]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _mib(n):
    return "n/a" if n is None else f"{n / 2**20:.2f}"


def timings_table(timings: dict) -> str:
    lines = ["| case | method | median ms | min ms | compile s | XLA temp MiB | XLA output MiB "
             "| peak ≈ temp + output MiB |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for case, per_method in timings.items():
        for m, t in per_method.items():
            temp, output = t["temp_bytes"], t["output_bytes"]
            peak = None if temp is None else temp + output
            lines.append(f"| {case} | {m} | {t['median_s'] * 1e3:.3f} | {t['min_s'] * 1e3:.3f} | "
                         f"{t['compile_s']:.2f} | {_mib(temp)} | {_mib(output)} | {_mib(peak)} |")
    return "\n".join(lines) + "\n"


def tolerance_table() -> str:
    t32, t64, fd = compare.TOLERANCES["float32"], compare.TOLERANCES["float64"], compare.FINITE_DIFF_TOLERANCE
    return ("| pair | float32 run | float64 run |\n|---|---|---|\n"
            f"| manual, forward, numpy vs reverse | rel {t32.rel:.0e} or abs {t32.abs:.0e} | "
            f"rel {t64.rel:.0e} or abs {t64.abs:.0e} |\n"
            f"| finite_diff (always float64, ε = {compare.EPS:.0e}) vs reverse | rel {t32.rel:.0e} or "
            f"abs {t32.abs:.0e} | rel {fd.rel:.0e} or abs {fd.abs:.0e} |\n")


def plot(results: list[dict], path: pathlib.Path) -> None:
    """log10 of the worst max relative error per case, one marker per pair, float32 | float64."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys(r["case"] for r in results))
    fig, axes = plt.subplots(2, 1, figsize=(max(10, 0.38 * len(cases)), 9), sharex=True)
    floor = -17.0
    for ax, dtype in zip(axes, DTYPES):
        for method, marker in zip(PAIRS, "o^sD"):
            xs, ys = [], []
            for res in (r for r in results if r["dtype"] == dtype):
                rows = [r for r in res["rows"] if r["a"] == method]
                if rows:
                    xs.append(cases.index(res["case"]))
                    ys.append(max(floor, np.log10(max(max(r["max_rel"] for r in rows), 1e-300))))
            ax.scatter(xs, ys, marker=marker, label=f"{method} vs reverse", alpha=0.75)
        for res in (r for r in results if r["dtype"] == dtype):
            for row in (r for r in res["rows"] if _verdict(res, r) == "expected"):
                ax.annotate("differs by design", (cases.index(res["case"]), np.log10(row["max_rel"])),
                            xytext=(6, -3), textcoords="offset points", fontsize=7)
        tol = compare.TOLERANCES[dtype].rel
        ax.axhline(np.log10(tol), color="k", ls="--", lw=0.8, label=f"tolerance rel {tol:.0e}")
        if dtype == "float64":
            ax.axhline(np.log10(compare.FINITE_DIFF_TOLERANCE.rel), color="grey", ls=":", lw=0.8,
                       label="finite-difference tolerance")
        ax.set_ylabel(f"{dtype}: log10 max rel error")
        ax.set_ylim(floor - 0.5, max(1.0, ax.get_ylim()[1]))
        ax.legend(fontsize=7, loc="upper left", ncol=3)
        ax.grid(alpha=0.3)
    axes[-1].set_xticks(range(len(cases)), cases, rotation=75, ha="right", fontsize=7)
    axes[0].set_title(f"Gradient agreement with reverse mode (exact zero plotted at {floor:.0f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores, load avg {load:.1f}, "
            f"jax {jax.__version__}, backend {jax.default_backend()}")


def train_and_evaluate(config: Config) -> dict:
    """Run every comparison and the timings; write compare.{md,json,png} under config.out."""
    start = time.perf_counter()
    out = pathlib.Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(config.seed)
    results = []
    for dtype in DTYPES:
        with _x64(dtype):
            results += run_layers(config, dtype, jax.random.fold_in(key, 1))
            results += run_losses(config, dtype, jax.random.fold_in(key, 2))
            if not config.quick:
                results += run_lenet(config, dtype, jax.random.fold_in(key, 3))
    timings = run_timings(config, jax.random.fold_in(key, 4))
    rows = [(res, r) for res in results for r in res["rows"]]
    failed = [f"{res['case']} {res['dtype']} {r['pair']} {r['tensor']}"
              for res, r in rows if _verdict(res, r) == "FAIL"]
    expected = sorted({f"{res['case']} ({res['dtype']}): {r['pair']}"
                       for res, r in rows if _verdict(res, r) == "expected"})
    elapsed = time.perf_counter() - start
    verdict = (f"{'ALL PAIRS AGREED' if not failed else 'SOME PAIRS DISAGREED'}: "
               f"{len(rows) - len(failed) - len(expected)}/{len(rows)} (pair, tensor) checks within "
               f"tolerance, {len(failed)} failed, {len(expected)} differed as expected by design")
    summary = tolerance_table() + "\n" + summary_table(results) + "\n" + timings_table(timings)
    header = (f"# Gradient comparison\n\n`python -m experiments.compare_backprop"
              f"{' --quick' if config.quick else ''} --repeats {config.repeats}`, "
              f"{datetime.datetime.now().isoformat(timespec='seconds')}, {_machine()}, "
              f"{elapsed:.0f} s.\n\nCells: worst max relative error over the case's gradient "
              "tensors, vs reverse mode. Timings: median of interleaved jitted calls after a "
              "warm-up; memory: XLA's buffer assignment for the compiled call. LeNet-5: forward "
              f"mode and finite differences on {config.lenet_subset} random coordinates per "
              "tensor (every coordinate of smaller tensors); the per-tensor table gives the counts.\n\n")
    notes = "".join(f"- expected difference: {e}\n" for e in expected)
    (out / "compare.md").write_text(header + summary + "\n" + notes + "\n## Every tensor\n\n"
                                    + compare.format_markdown(results) + "\n" + verdict + "\n")
    report = {"config": dataclasses.asdict(config), "machine": _machine(), "seconds": elapsed,
              "tolerances": {**{d: t._asdict() for d, t in compare.TOLERANCES.items()},
                             "finite_diff": compare.FINITE_DIFF_TOLERANCE._asdict(), "eps": compare.EPS},
              "results": results, "timings": timings, "failed": failed, "expected": expected,
              "all_agree": not failed, "verdict": verdict}
    (out / "compare.json").write_text(json.dumps(report, indent=1))
    plot(results, out / "compare.png")
    print(summary + notes + f"\nwrote {out}/compare.md, compare.json, compare.png in {elapsed:.0f} s")
    print(verdict)
    return report


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=Config.out, help="output folder (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a few cases, no LeNet-5 (for tests)")
    parser.add_argument("--repeats", type=int, default=Config.repeats, help="timed calls per method")
    args = parser.parse_args(argv)
    return train_and_evaluate(Config(out=args.out, quick=args.quick, repeats=args.repeats))


if __name__ == "__main__":
    main()
