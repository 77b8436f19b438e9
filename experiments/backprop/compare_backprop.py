"""Every jaxnn gradient computed five ways, and how far apart they are.

    python -m experiments.backprop.compare_backprop [--out runs/compare_backprop] [--quick]
                                           [--cases dense,conv_same] [--repeats 20]

For each layer case of jaxnn.check.cases, the table the test suite runs (a VJP with a random
cotangent dy; a row with state, a key or a train/eval switch through its fixed-state view,
`jaxnn.fixed_state`), each loss (dJ/dpred) and LeNet-5 ("classic"
and "modern", batch 4, softmax cross-entropy on integer labels; dJ/dparams), in float32 and in
float64, the gradient is computed by

    manual       the layers' hand-written backward (jaxnn.backprop's chain rule)
    reverse      jax.vjp / jax.grad                                    (the reference)
    forward      jax.jvp, one column per coordinate (LeNet-5: 32 random coordinates per tensor)
    finite_diff  central differences in float64, ε = 1e-6 (LeNet-5: the same coordinates)
    numpy        experiments/backprop/numpy_reference.py, which shares no code with jaxnn (Dense, Conv2D,
                 pools, Flatten, tanh, sigmoid, ReLU, softmax cross-entropy, LeNet-5); the
                 adapters below map it onto the table's rows by case id

and each is compared with reverse mode (errors and tolerances: jaxnn.check.compare's docstring). Then
manual and reverse gradients of LeNet-5 at batch 128 are timed (jitted, after a warm-up, median
of --repeats interleaved calls), and all four methods on a small MLP (forward mode and finite
differences over every coordinate are n or 2n forward passes: too slow for LeNet-5's 61,706).

Writes compare.md, compare.json and compare.png to --out and prints the summary; the last line
says whether every pair agreed. Exit status: 0 when every pair agreed (or differed by design),
1 when any pair disagreed, 2 for an unknown --cases id (one line on stderr).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn as nn
from experiments.backprop import numpy_reference as ref
from experiments.common import cli as command_line
from experiments.common import plots
from experiments.common.loop import UsageError, cli_main, save_figure, write_atomic
from jaxnn import losses, models
from jaxnn.check import compare
from jaxnn.check.cases import LAYER_CASES, Case, select, setup

DTYPES = ("float32", "float64")
PAIRS = ("manual", "forward", "finite_diff", "numpy")  # each compared with "reverse"


# ------------------------------------------------------------------ NumPy reference adapters
# Keyed by jaxnn.check.cases id. Each maps (params, x) as NumPy arrays to (y, vjp), like jax.vjp:
# the reference's forward value, and vjp(dy) -> (dparams, dx) in jaxnn's pytree layout.
def _ref_dense(params, x):
    """Dense acts on the last axis: the leading axes are flattened into the batch."""
    y, cache = ref.dense_forward(x.reshape(-1, x.shape[-1]), params.w, params.b)

    def vjp(dy):
        dx, dw, db = ref.dense_backward(cache, dy.reshape(-1, dy.shape[-1]))
        return nn.DenseParams(dw, db), dx.reshape(x.shape)
    return y.reshape(*x.shape[:-1], -1), vjp


def _ref_conv(strides, padding):
    def run(params, x):
        y, cache = ref.conv2d_forward(x, params.w, params.b, strides, padding)

        def vjp(dy):
            dx, dw, db = ref.conv2d_backward(cache, dy)
            return nn.ConvParams(dw, db), dx
        return y, vjp
    return run


_POOLS = {"avg": (ref.avgpool_forward, ref.avgpool_backward, 0.0),
          "max": (ref.maxpool_forward, ref.maxpool_backward, -np.inf)}


def _ref_pool(kind, window, strides, padding):
    """The reference pools VALID: pad x first (zeros count towards the mean, -inf never wins
    the max, as in jaxnn), then crop the padding off dx."""
    forward, backward, fill = _POOLS[kind]

    def run(params, x):
        (lh, hh), (lw, hw) = ref.padding_pairs(padding, x.shape[1:3], window, strides)
        xpad = np.pad(x, ((0, 0), (lh, hh), (lw, hw), (0, 0)), constant_values=fill)
        y, cache = forward(xpad, window, strides)
        return y, lambda dy: ((), backward(cache, dy)[:, lh:lh + x.shape[1], lw:lw + x.shape[2]])
    return run


def _ref_unary(forward, backward):
    def run(params, x):
        y, cache = forward(x)
        return y, lambda dy: ((), backward(cache, dy))
    return run


# id -> (strides, padding) of the table's Conv2D rows; lax.conv_general_dilated takes them too.
CONV_GEOMETRY = {
    "conv_valid": ((1, 1), "VALID"),
    "conv_same": ((1, 1), "SAME"),
    "conv_1_channel_rect": ((1, 1), ((1, 0), (0, 2))),
    "conv_stride2_same": ((2, 2), "SAME"),
    "conv_stride3_valid_ragged": ((3, 2), "VALID"),
    "conv_explicit_asym": ((2, 1), ((1, 3), (0, 2))),
    "conv_1x1": ((1, 1), "VALID"),
    "conv_he": ((1, 1), ((1, 1), (1, 1))),
}
# id -> (kind, window, strides, padding) of the table's pooling rows.
POOL_GEOMETRY = {
    "avgpool_2": ("avg", (2, 2), (2, 2), "VALID"),
    "avgpool_ragged": ("avg", (2, 2), (2, 2), "VALID"),
    "avgpool_overlap_same": ("avg", (3, 3), (2, 2), "SAME"),
    "avgpool_rect": ("avg", (3, 2), (1, 2), "VALID"),
    "maxpool_2": ("max", (2, 2), (2, 2), "VALID"),
    "maxpool_ragged": ("max", (2, 2), (2, 2), "VALID"),
    "maxpool_overlap_same": ("max", (3, 3), (2, 2), "SAME"),
    "maxpool_explicit": ("max", (2, 3), (2, 1), ((1, 0), (1, 1))),
}
NUMPY_REFERENCES = {
    "dense": _ref_dense, "dense_3d_input": _ref_dense, "dense_glorot": _ref_dense,
    **{case: _ref_conv(*g) for case, g in CONV_GEOMETRY.items()},
    **{case: _ref_pool(*g) for case, g in POOL_GEOMETRY.items()},
    "flatten": _ref_unary(ref.flatten_forward, ref.flatten_backward),
    "tanh": _ref_unary(ref.tanh_forward, ref.tanh_backward),
    "sigmoid": _ref_unary(ref.sigmoid_forward, ref.sigmoid_backward),
    "relu": _ref_unary(ref.relu_forward, ref.relu_backward),
}


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

# Rows whose backward differs from finite differences by design (a straight-through estimator).
EXPECTED_TO_DIFFER = {(case.id, "finite_diff") for case in LAYER_CASES if not case.numeric}

QUICK_LAYERS = ("dense", "heaviside_straight_through")
QUICK_LOSSES = ("softmax_ce_int_labels",)


@dataclasses.dataclass(frozen=True)
class Config:
    out: str = "runs/compare_backprop"
    quick: bool = False          # a few cases, no LeNet-5 (for tests)
    cases: tuple[str, ...] | None = None  # layer case ids to run (default: all, or the quick ones)
    repeats: int = 20            # timed calls per method (median reported)
    seed: int = 0
    lenet_batch: int = 4         # batch for the gradient comparison
    lenet_subset: int = 32       # coordinates per tensor for forward mode / finite differences
    timing_batch: int = 128      # batch for the LeNet-5 timings


def _x64(dtype):
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def _np(tree):
    return jax.tree.map(np.asarray, tree)


def _setup_layer(case, dtype, key):
    """(view, params, x, dy): the row's fixed-state view, params and x as `cases.setup` makes
    them in dtype, dy ~ N(0, 1) like the output."""
    k_setup, k_dy = jax.random.split(key)
    s = setup(case, jnp.dtype(dtype), k_setup)
    out = jax.eval_shape(lambda p, v: s.view(p, v), s.params, s.x)
    dys = [jax.random.normal(k, o.shape, o.dtype)
           for k, o in zip(jax.random.split(k_dy, len(jax.tree.leaves(out))), jax.tree.leaves(out))]
    return s.view, s.params, s.x, jax.tree.unflatten(jax.tree.structure(out), dys)


def layer_cases(config: Config) -> list[Case]:
    """The rows of jaxnn.check.cases to run; an unknown id in config.cases raises ValueError."""
    if config.cases is not None:
        return select(config.cases, LAYER_CASES)
    return select(QUICK_LAYERS, LAYER_CASES) if config.quick else list(LAYER_CASES)


def run_layers(config: Config, dtype: str, key) -> list[dict]:
    results = []
    for case in layer_cases(config):
        i = [c.id for c in LAYER_CASES].index(case.id)  # the row's key does not depend on the selection
        layer, params, x, dy = _setup_layer(case, dtype, jax.random.fold_in(key, i))
        extra = None
        if case.id in NUMPY_REFERENCES:
            params_np, x_np, dy_np = _np((params, x, dy))
            extra = {"numpy": NUMPY_REFERENCES[case.id](params_np, x_np)[1](dy_np)}
        results.append(compare.compare_layer(layer, params, x, dy, key=key, extra=extra, name=case.id))
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
    _, params, _ = model.init(k_init, models.LENET5_INPUT_SHAPE)
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
                compare.time_fns(fns, params, (), x, labels, repeats=config.repeats)
    (case,) = select(["serial_mlp"], LAYER_CASES)
    with jax.enable_x64(True):
        layer, params, x, dy = _setup_layer(case, "float64", key)
        n = sum(a.size for a in jax.tree.leaves((params, x)))
        timings[f"SMALL CASE {case.id} {case.input_shape}, float64, full VJP over all {n} coordinates"] = \
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
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores, load avg {load:.1f}, "
            f"jax {jax.__version__}, backend {jax.default_backend()}")


def train_and_evaluate(config: Config) -> dict:
    """Run every comparison and the timings; write compare.{md,json,png} under config.out."""
    start = time.perf_counter()
    layer_cases(config)
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
    header = (f"# Gradient comparison\n\n`python -m experiments.backprop.compare_backprop"
              f"{' --quick' if config.quick else ''} --repeats {config.repeats}`, "
              f"{datetime.datetime.now().isoformat(timespec='seconds')}, {_machine()}, "
              f"{elapsed:.0f} s.\n\nCells: worst max relative error over the case's gradient "
              "tensors, vs reverse mode. Timings: median of interleaved jitted calls after a "
              "warm-up; memory: XLA's buffer assignment for the compiled call. LeNet-5: forward "
              f"mode and finite differences on {config.lenet_subset} random coordinates per "
              "tensor (every coordinate of smaller tensors); the per-tensor table gives the counts.\n\n")
    notes = "".join(f"- expected difference: {e}\n" for e in expected)
    write_atomic(out / "compare.md", header + summary + "\n" + notes + "\n## Every tensor\n\n"
                 + compare.format_markdown(results) + "\n" + verdict + "\n")
    report = {"config": dataclasses.asdict(config), "machine": _machine(), "seconds": elapsed,
              "tolerances": {**{d: t._asdict() for d, t in compare.TOLERANCES.items()},
                             "finite_diff": compare.FINITE_DIFF_TOLERANCE._asdict(), "eps": compare.EPS},
              "results": results, "timings": timings, "failed": failed, "expected": expected,
              "all_agree": not failed, "verdict": verdict}
    write_atomic(out / "compare.json", json.dumps(report, indent=1))
    plots.plot_gradient_agreement(
        results, out / "compare.png", pairs=PAIRS, dtypes=DTYPES, verdict=_verdict, seed=config.seed,
        tolerance=lambda d, m: (compare.FINITE_DIFF_TOLERANCE if m == "finite_diff" and d == "float64"
                                else compare.TOLERANCES[d]).rel)
    print(summary + notes + f"\nwrote {out}/compare.md, compare.json, compare.png in {elapsed:.0f} s")
    print(verdict)
    return report


def main(argv=None) -> dict:
    """Parse argv and run; returns the report. An unknown --cases id raises UsageError."""
    parser = command_line.parser("python -m experiments.backprop.compare_backprop", __doc__)
    parser.add_argument("--out", default=Config.out, help="output folder (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a few cases, no LeNet-5 (for tests)")
    parser.add_argument("--cases", help="comma-separated jaxnn.check.cases ids: only these layer cases")
    parser.add_argument("--repeats", type=command_line.positive_int, default=Config.repeats,
                        help="timed calls per method")
    args = parser.parse_args(argv)
    config = Config(out=args.out, quick=args.quick, repeats=args.repeats,
                    cases=None if args.cases is None else tuple(filter(None, args.cases.split(","))))
    try:
        layer_cases(config)
    except ValueError as err:
        raise UsageError(f"--cases: {err}") from None
    command_line.claim_out(config.out)
    return train_and_evaluate(config)


def cli(argv=None) -> int:
    """The exit status: 0 when every pair agreed (or differed by design), 1 when one disagreed."""
    return 0 if main(argv)["all_agree"] else 1


if __name__ == "__main__":
    sys.exit(cli_main(cli))
