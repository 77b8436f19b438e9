"""Check a gradient several ways: the hand-written rule, reverse mode, forward mode, finite differences.

For a function F of primals θ (a pytree: a layer's (params, x), a loss's pred, a model's params)
and a cotangent dy shaped like F(θ), every method computes the same vector-Jacobian product

    g = dyᵀ · ∂F/∂θ = ∇_θ s(θ),        s(θ) = <dy, F(θ)> = Σ_k dy_k · F_k(θ)

    "manual"       the hand-written chain rule: forward, then backward (never autodiff)
    "reverse"      jax.grad of s, i.e. jax.vjp(F, θ)(dy)                     one backward pass
    "forward"      g_i = <dy, J e_i> = jvp(s, θ, e_i), one column per coordinate   n forward passes
    "finite_diff"  g_i ≈ (s(θ + ε e_i) - s(θ - ε e_i)) / 2ε, always in float64      2n forward passes

Central differences have truncation error ε²/6 · ∂³s/∂θ_i³ ≈ 2e-13 · |∂³s/∂θ_i³| and round-off
error about u·|s|/ε ≈ 1e-10 · |s| (u = 2⁻⁵³ ≈ 1.1e-16 in float64, ε = 1e-6): far below float32's
rounding (2⁻²⁴ ≈ 6e-8) but far above float64's, hence their own tolerance of 1e-6.

"forward" and "finite_diff" cost one or two evaluations of F per coordinate: they run on every
coordinate when θ has at most `max_size` elements, else on `subset` random coordinates per
tensor, else they are skipped with the reason.

Errors, for each pair (a, b) of methods (b the reference) and each gradient tensor, over the
coordinates both computed:

    max_abs = max_i |a_i - b_i|        max_rel = max_abs / max(max_i |b_i|, tiny)

The pair agrees when max_abs <= tol.abs or max_rel <= tol.rel, where tol is the looser of the
two methods' tolerances (`TOLERANCES` by dtype, `FINITE_DIFF_TOLERANCE` for finite differences).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from jaxnn.backprop import manual_value_and_grad, manual_vjp
from jaxnn.core import Layer, PRNGKey
from jaxnn.losses import Loss

METHODS = ("manual", "reverse", "forward", "finite_diff")
COORDINATE_METHODS = ("forward", "finite_diff")
EPS = 1e-6
_CHUNK = 512  # coordinates evaluated together (vmapped) in forward mode and finite differences
_TINY = float(np.finfo(np.float64).tiny)


class Tolerance(NamedTuple):
    """A pair agrees when max_abs <= abs or max_rel <= rel."""

    rel: float
    abs: float


TOLERANCES = {"float32": Tolerance(1e-4, 1e-5), "float64": Tolerance(1e-10, 1e-12)}
FINITE_DIFF_TOLERANCE = Tolerance(1e-6, 1e-8)


# ------------------------------------------------------------------ the four methods
def _inner(dy: Any, y: Any) -> jax.typing.ArrayLike:
    """<dy, y> = Σ over leaves and elements of dy · y (dy cast to y's dtype)."""
    # PyTreeDef comes from jaxlib without type information: Any says so
    dy_tree: Any = jax.tree.structure(dy)
    if dy_tree != jax.tree.structure(y):
        raise ValueError(f"dy has structure {dy_tree}, output {jax.tree.structure(y)}")
    return sum(jnp.vdot(d.astype(v.dtype), v) for d, v in zip(jax.tree.leaves(dy), jax.tree.leaves(y)))


def _coordinates(objective: Callable, method: str, eps: float = EPS) -> Callable:
    """(primals, consts, idx) -> g[idx] (len(idx),) for objective(primals, consts) -> scalar.

    method "forward": g_i = jvp of the objective along e_i; "finite_diff": central difference
    with step eps in the primals' dtype. Coordinates index `ravel_pytree(primals)`.
    """
    def run(primals, consts, idx):
        theta, unravel = ravel_pytree(primals)

        def s(th):
            return objective(unravel(th), consts)

        if method == "forward":
            def column(i):
                return jax.jvp(s, (theta,), (jnp.zeros_like(theta).at[i].set(1),))[1]
        else:
            def column(i):
                step = jnp.zeros_like(theta).at[i].set(eps)
                return (s(theta + step) - s(theta - step)) / (2 * eps)
        if idx.shape[0] <= _CHUNK:  # one vmapped batch compiles faster than a scan over batches
            return jax.vmap(column)(idx)
        return lax.map(column, idx, batch_size=_CHUNK)
    return run


def vjp_fns(layer: Layer, *, eps: float = EPS) -> dict[str, Callable]:
    """Each method as a function (params, x, dy) -> (dparams, dx), not jitted, for a layer
    without state of its own (`jaxnn.fixed_state` gives that view of any layer).

    "forward" and "finite_diff" evaluate every coordinate (n jvps / 2n applies); finite
    differences run in the inputs' dtype, so give them float64 inputs under `jax.enable_x64`.
    """
    objective = lambda primals, dy: _inner(dy, layer(*primals))  # noqa: E731

    def manual(params, x, dy):
        return manual_vjp(layer, params, x, dy)[1:]

    def reverse(params, x, dy):
        return jax.grad(objective)((params, x), dy)

    def every_coordinate(method):
        run = _coordinates(objective, method, eps)

        def fn(params, x, dy):
            theta, unravel = ravel_pytree((params, x))
            return unravel(run((params, x), dy, jnp.arange(theta.size)))
        return fn

    return {"manual": manual, "reverse": reverse, "forward": every_coordinate("forward"),
            "finite_diff": every_coordinate("finite_diff")}


# ------------------------------------------------------------------ the comparison
def _cast(tree, dtype):
    """Floating leaves cast to dtype; integer leaves (labels) kept."""
    return jax.tree.map(lambda a: jnp.asarray(a).astype(dtype)
                        if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) else jnp.asarray(a), tree)


def _flat(tree, sizes: Sequence[int], what: str) -> np.ndarray:
    leaves = [np.asarray(leaf, np.float64).ravel() for leaf in jax.tree.leaves(tree)]
    if [leaf.size for leaf in leaves] != list(sizes):
        raise ValueError(f"{what}: gradient leaves have sizes {[leaf.size for leaf in leaves]}, "
                         f"expected {list(sizes)} (the primals')")
    return np.concatenate(leaves) if leaves else np.zeros(0)


def _pick(sizes, max_size, subset, key):
    """(flat indices to evaluate, None) or (None, reason to skip)."""
    n = sum(sizes)
    if n <= max_size:
        return np.arange(n), None
    if subset is None or key is None:
        return None, f"{n} coordinates > max_size={max_size} (pass subset= and key= to sample)"
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)))  # no compile per size
    picks = [off + np.sort(rng.choice(size, min(subset, size), replace=False))
             for off, size in zip(np.cumsum([0, *sizes]), sizes)]
    return np.concatenate(picks), None


def _compare(case, objective, manual, primals, consts, names, extra, *, methods, key, reference,
             tolerance, fd_tolerance, eps, max_size, subset) -> dict:
    """The engine behind compare_*: objective(primals, consts) -> s, manual(primals, consts) -> ∇s."""
    if set(methods) - set(METHODS):
        raise ValueError(f"unknown methods {sorted(set(methods) - set(METHODS))}; choose from {METHODS}")
    leaves = jax.tree.leaves(primals)
    dtype, sizes = str(leaves[0].dtype), [leaf.size for leaf in leaves]
    if tolerance is None and dtype not in TOLERANCES:
        raise ValueError(f"{case}: no default tolerance for dtype {dtype}; pass tolerance=")
    tolerance = tolerance or TOLERANCES[dtype]
    exact = {m: jax.jit(fn)(primals, consts) for m, fn in
             (("manual", manual), ("reverse", jax.grad(objective))) if m in methods}
    n = sum(sizes)
    got = {m: (_flat(g, sizes, m), np.ones(n, bool)) for m, g in {**exact, **(extra or {})}.items()}
    skipped = {}
    for method in (m for m in methods if m in COORDINATE_METHODS):
        idx, why = _pick(sizes, max_size, subset, key)
        if idx is None:
            skipped[method] = why
            continue
        fd = method == "finite_diff"
        with jax.enable_x64(True) if fd else nullcontext():
            p, c = (_cast(primals, jnp.float64), _cast(consts, jnp.float64)) if fd else (primals, consts)
            values, mask = np.full(n, np.nan), np.zeros(n, bool)
            run = jax.jit(_coordinates(objective, method, eps))
            values[idx], mask[idx] = np.asarray(run(p, c, jnp.asarray(idx, jnp.int32)), np.float64), True
        got[method] = (values, mask)
    if reference not in got:
        raise ValueError(f"{case}: reference method {reference!r} was not computed")

    def tol_of(m):
        return fd_tolerance if m == "finite_diff" else tolerance

    rows, offsets = [], np.cumsum([0, *sizes])
    for a in (m for m in got if m != reference):
        tol = Tolerance(*(max(u, v) for u, v in zip(tol_of(a), tol_of(reference))))
        for name, lo, hi in zip(names, offsets[:-1], offsets[1:]):
            (va, ma), (vb, mb) = got[a], got[reference]
            both = ma[lo:hi] & mb[lo:hi]
            if both.any():
                diff = np.abs(va[lo:hi][both] - vb[lo:hi][both]).max()
                rel = diff / max(np.abs(vb[lo:hi][both]).max(), _TINY)
                rows.append({"pair": f"{a} vs {reference}", "a": a, "b": reference, "tensor": name,
                             "coords": int(both.sum()), "max_abs": float(diff), "max_rel": float(rel),
                             "tol_rel": tol.rel, "tol_abs": tol.abs,
                             "agree": bool(diff <= tol.abs or rel <= tol.rel)})
    return {"case": case, "dtype": dtype, "coords": n, "methods": list(got), "skipped": skipped,
            "rows": rows, "agree": all(r["agree"] for r in rows)}


def _names(prefix, tree):
    return [prefix + jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def compare_layer(layer: Layer, params, x, dy=None, *, key: PRNGKey, methods=METHODS,
                  reference: str = "reverse", extra: Mapping[str, Any] | None = None,
                  tolerance: Tolerance | None = None, fd_tolerance=FINITE_DIFF_TOLERANCE,
                  eps: float = EPS, max_size: int = 4096, subset: int | None = None,
                  name: str | None = None) -> dict:
    """Compare the VJP (dparams, dx) of `layer(params, x)` with cotangent dy.

    layer: a layer without state of its own (for one with state, a key or a train/eval
    switch, pass `jaxnn.fixed_state(layer, state, key=..., train=...)`).
    dy: shaped like layer(params, x); None draws a standard normal one from `key`.
    extra: more methods' results, {name: (dparams, dx)} (e.g. an independent NumPy
    reference), compared against `reference` with the dtype's tolerance.
    Returns {"case", "dtype", "coords", "methods", "skipped", "rows", "agree"}; each row is
    one (pair, tensor) with max_abs, max_rel, tol_rel, tol_abs and agree (module docstring).
    """
    if dy is None:
        out = jax.eval_shape(lambda p, v: layer(p, v), params, x)
        keys = jax.random.split(key, len(jax.tree.leaves(out)))
        dy = jax.tree.unflatten(jax.tree.structure(out), [
            jax.random.normal(k, o.shape, o.dtype) for k, o in zip(keys, jax.tree.leaves(out))])
    manual = vjp_fns(layer)["manual"]
    return _compare(name or layer.name, lambda primals, d: _inner(d, layer(*primals)),
                    lambda primals, d: manual(*primals, d), (params, x), dy,
                    _names("dparams", params) + _names("dx", x), extra, methods=methods, key=key,
                    reference=reference, tolerance=tolerance, fd_tolerance=fd_tolerance, eps=eps,
                    max_size=max_size, subset=subset)


def compare_loss(loss: Loss, pred, target, dloss: float = 1.0, *, methods=METHODS,
                 reference: str = "reverse", extra: Mapping[str, Any] | None = None,
                 tolerance: Tolerance | None = None, fd_tolerance=FINITE_DIFF_TOLERANCE,
                 eps: float = EPS, max_size: int = 4096, name: str | None = None) -> dict:
    """Compare dloss · dJ/dpred for J = loss.apply(pred, target) (the target is held fixed).

    "manual" is loss.backward(residuals, dloss) after loss.forward. extra: {name: dpred}.
    Returns the same dict as `compare_layer`, with one tensor, "dpred".
    """
    def objective(p, consts):
        return consts[1] * loss.apply(p, consts[0])

    def manual(p, consts):
        return loss.backward(loss.forward(p, consts[0])[1], consts[1])

    return _compare(name or loss.name, objective, manual, pred, (target, jnp.asarray(dloss, pred.dtype)),
                    ["dpred"], extra, methods=methods, key=None, reference=reference,
                    tolerance=tolerance, fd_tolerance=fd_tolerance, eps=eps, max_size=max_size,
                    subset=None)


def compare_model(model: Layer, loss: Loss, params, x, targets, *, key: PRNGKey, methods=METHODS,
                  reference: str = "reverse", extra: Mapping[str, Any] | None = None,
                  tolerance: Tolerance | None = None, fd_tolerance=FINITE_DIFF_TOLERANCE,
                  eps: float = EPS, max_size: int = 4096, subset: int | None = 32,
                  name: str | None = None) -> dict:
    """Compare dJ/dparams for J = loss.apply(model(params, x), targets), the model in eval
    mode (train=False) and without state of its own (`jaxnn.fixed_state` gives that view).

    "manual" is `jaxnn.backprop.manual_value_and_grad`. Above max_size parameters, forward
    mode and finite differences check `subset` coordinates per tensor, drawn from `key`.
    extra: {name: dparams}. Returns the same dict as `compare_layer`.
    """
    def objective(p, consts):
        return loss.apply(model(p, consts[0]), consts[1])

    def manual(p, consts):
        return manual_value_and_grad(model, loss, train=False)(p, (), *consts)[1]

    return _compare(name or model.name, objective, manual, params, (x, targets),
                    _names("dparams", params), extra, methods=methods, key=key, reference=reference,
                    tolerance=tolerance, fd_tolerance=fd_tolerance, eps=eps, max_size=max_size,
                    subset=subset)


# ------------------------------------------------------------------ reporting
def format_markdown(results: dict | Sequence[dict]) -> str:
    """One Markdown row per (case, dtype, pair, tensor), then the skipped methods with reasons."""
    results = [results] if isinstance(results, dict) else list(results)
    lines = ["| case | dtype | pair | tensor | coords | max abs err | max rel err | tol rel / abs | agree |",
             "|---|---|---|---|---:|---:|---:|---|---|"]
    for res in results:
        for r in res["rows"]:
            lines.append(f"| {res['case']} | {res['dtype']} | {r['pair']} | `{r['tensor']}` | "
                         f"{r['coords']} | {r['max_abs']:.2e} | {r['max_rel']:.2e} | "
                         f"{r['tol_rel']:.0e} / {r['tol_abs']:.0e} | {'yes' if r['agree'] else '**NO**'} |")
    skipped = [f"- {res['case']} ({res['dtype']}): {m} skipped: {why}"
               for res in results for m, why in res["skipped"].items()]
    return "\n".join(lines + ([""] + skipped if skipped else [])) + "\n"


def time_fns(fns: Mapping[str, Callable], *args, repeats: int = 10) -> dict[str, dict]:
    """Jit and time each fn(*args): median and min seconds per call after one warm-up call.

    Calls are interleaved (fn 1, fn 2, ..., fn 1, ...) so load from other processes hits all
    alike. Memory is XLA's buffer assignment for the compiled call (`memory_analysis()`):
    temp_bytes (intermediates, e.g. saved residuals) and output_bytes; None where the
    backend does not report it.
    """
    compiled: dict[str, Any] = {}
    out: dict[str, dict] = {}
    temp: int | None
    output: int | None
    for name, fn in fns.items():
        start = time.perf_counter()
        compiled[name] = jax.jit(fn).lower(*args).compile()
        jax.block_until_ready(compiled[name](*args))
        try:
            mem = compiled[name].memory_analysis()
            temp, output = int(mem.temp_size_in_bytes), int(mem.output_size_in_bytes)
        except (AttributeError, NotImplementedError, RuntimeError):
            temp = output = None
        out[name] = {"compile_s": time.perf_counter() - start, "temp_bytes": temp,
                     "output_bytes": output, "times_s": []}
    for _ in range(repeats):
        for name, call in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(call(*args))
            out[name]["times_s"].append(time.perf_counter() - start)
    for stats in out.values():
        times = stats.pop("times_s")
        stats.update(median_s=float(np.median(times)), min_s=float(np.min(times)), repeats=repeats)
    return out


__all__ = ["COORDINATE_METHODS", "EPS", "FINITE_DIFF_TOLERANCE", "METHODS", "TOLERANCES",
           "Tolerance", "compare_layer", "compare_loss", "compare_model", "format_markdown",
           "time_fns", "vjp_fns"]
