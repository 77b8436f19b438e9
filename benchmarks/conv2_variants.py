"""LeNet-5's C3 (6 -> 16 channels, 5×5 VALID on 14×14, stride 1) in other formulations, in the whole step.

    python -m benchmarks.conv2_variants                       # check against jax.vjp, then time
    python -m benchmarks.conv2_variants --repeats 9 --calls 10

Each variant is a jaxnn `Layer` (forward + hand-written backward using only jnp/lax) that replaces
C3 in a LeNet-5 built with `jaxnn.serial`; the rest of the network is the stock `lenet5_stages`.
Every variant is first checked against `jax.vjp` of its own `apply` and of the stock `Conv2D`
(float32 tolerance). Then whole train steps (`jaxnn.train_step`, batch 128, Adam 1e-3, both methods)
are timed side by side: contenders alternate inside each repeat; medians of wall and CPU time
(time.process_time) per step, ratio against the stock autodiff step.

Variants (x (N, H, W, C), w (kh, kw, C, O), y (N, Ho, Wo, O)):
  rowunfold      U = the kw shifted column copies of x, U[n, h, j, (b, c)] = x[n, h, j+b, c]
                 (N, H, Wo, kw·C); y = Σ_a U[:, a:a+Ho] @ w[a] (kh matmuls of (N·Ho·Wo, kw·C)
                 by (kw·C, O)).  dw[a] = U[:, a:a+Ho]ᵀ dy;  dU = Σ_a pad_a(dy @ w[a]ᵀ);
                 dx = Σ_b pad_b(dU[..., b, :]).
  rowunfold_laxdx  forward and dw as rowunfold, dx as the stock transposed convolution.
  lax_dwdot      the stock forward and dx; dw as kh matmuls against the row-unfolded x.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

BATCH = 128


def conv_variant(features, window, kind):
    """A VALID, stride-1 Conv2D layer (HWIO kernel, same params as jaxnn's Conv2D) of the given kind."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from jaxnn import initializers
    from jaxnn.core import make_layer
    from jaxnn.layers.conv import ConvParams

    kh, kw = window

    def init(key, input_shape):
        n, h, w, c = input_shape
        k_w, k_b = jax.random.split(key)
        return ((n, h - kh + 1, w - kw + 1, features),
                ConvParams(initializers.he_normal(k_w, (kh, kw, c, features), jnp.float32),
                           jnp.zeros((features,), jnp.float32)))

    def unfold(x):
        """(N, H, W, C) -> (N, H, Wo, kw·C), column b·C + c = x[n, h, j + b, c]."""
        wo = x.shape[2] - kw + 1
        return jnp.concatenate([x[:, :, b:b + wo, :] for b in range(kw)], axis=-1)

    def rows_matmul(u, w):
        ho = u.shape[1] - kh + 1
        wr = w.reshape(kh, kw * w.shape[2], features)
        return sum(jnp.einsum("nhjk,ko->nhjo", u[:, a:a + ho], wr[a]) for a in range(kh))

    def lax_conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def forward(params, x):
        if kind == "lax_dwdot":
            y = lax_conv(x, params.w)
        else:
            y = rows_matmul(unfold(x), params.w)
        return y + params.b, x

    def backward(params, x, dy):
        n, h, wd, c = x.shape
        ho, wo = h - kh + 1, wd - kw + 1
        db = dy.sum(axis=(0, 1, 2))
        u = unfold(x)
        wr = params.w.reshape(kh, kw * c, features)
        dw = jnp.stack([jnp.einsum("nhjk,nhjo->ko", u[:, a:a + ho], dy) for a in range(kh)])
        dw = dw.reshape(params.w.shape)
        if kind == "rowunfold":
            du = sum(jnp.pad(jnp.einsum("nhjo,ko->nhjk", dy, wr[a]),
                             ((0, 0), (a, h - a - ho), (0, 0), (0, 0))) for a in range(kh))
            du = du.reshape(n, h, wo, kw, c)
            dx = sum(jnp.pad(du[:, :, :, b], ((0, 0), (0, 0), (b, wd - b - wo), (0, 0)))
                     for b in range(kw))
        else:
            dx = lax.conv_general_dilated(dy, params.w[::-1, ::-1], (1, 1),
                                          ((kh - 1, kh - 1), (kw - 1, kw - 1)),
                                          dimension_numbers=("NHWC", "HWOI", "NHWC"))
        return ConvParams(dw, db), dx

    def apply(params, x):
        return forward(params, x)[0]

    return make_layer(f"Conv2D[{kind}]", init, forward, backward, apply)


VARIANTS = ("rowunfold", "rowunfold_laxdx", "lax_dwdot")


def lenet_with(c3):
    from jaxnn.combinators import serial
    from jaxnn.models import lenet5_stages

    return serial(*(c3 if name == "C3" else layer for name, layer in lenet5_stages("modern")))


def check(kind):
    """Max relative difference of (y, dw, db, dx) against jax.vjp of the stock Conv2D."""
    import jax
    import jax.numpy as jnp

    from jaxnn.layers import Conv2D

    layer, stock = conv_variant(16, (5, 5), kind), Conv2D(16, 5, padding="VALID")
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    _, params, state = layer.init(k1, (BATCH, 14, 14, 6))
    x = jax.random.normal(k2, (BATCH, 14, 14, 6))
    dy = jax.random.normal(k3, (BATCH, 10, 10, 16))
    y, r, _ = jax.jit(lambda p, x: layer.forward(p, state, x, train=True))(params, x)
    dp, dx = jax.jit(layer.backward)(params, r, dy)
    errs = {}
    for ref_name, fn in (("stock", stock), ("own apply", layer)):
        y_ref, vjp = jax.vjp(fn, params, x)
        dp_ref, dx_ref = vjp(dy)
        errs[ref_name] = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
                             for a, b in ((y, y_ref), (dp.w, dp_ref.w), (dp.b, dp_ref.b), (dx, dx_ref)))
    return errs


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.conv2_variants")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args(argv)
    import jax
    import optax

    import jaxnn
    from jaxnn import losses
    from jaxnn.models import LENET5_INPUT_SHAPE, lenet5

    kinds = [v for v in args.variants.split(",") if v]
    print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}")
    for kind in kinds:
        errs = check(kind)
        print(f"{kind}: max rel. diff vs jax.vjp(stock Conv2D) {errs['stock']:.1e}, "
              f"vs jax.vjp(own apply) {errs['own apply']:.1e}")
        assert max(errs.values()) < 1e-5, errs

    loss, opt = losses.softmax_cross_entropy(), optax.adam(1e-3)
    x = jax.random.normal(jax.random.key(1), (BATCH, 28, 28, 1))
    y = jax.random.randint(jax.random.key(2), (BATCH,), 0, 10)
    models = {"stock": lenet5("modern")}
    models.update({kind: lenet_with(conv_variant(16, (5, 5), kind)) for kind in kinds})
    contenders = {}
    for mname, model in models.items():
        _, params, state = model.init(jax.random.key(0), LENET5_INPUT_SHAPE)
        for method in ("autodiff", "manual"):
            init, step = jaxnn.train_step(model, loss, opt, method)
            a = (init(params, state), (x, y), jax.random.key(3))
            t = time.perf_counter()
            jax.block_until_ready(step(*a))
            contenders[f"{mname} {method}"] = (step, a, time.perf_counter() - t)
    wall = {k: [] for k in contenders}
    cpu = {k: [] for k in contenders}
    for _ in range(args.repeats):
        for k, (step, a, _) in contenders.items():
            t, c = time.perf_counter(), time.process_time()
            for _ in range(args.calls):
                jax.block_until_ready(step(*a))
            wall[k].append((time.perf_counter() - t) / args.calls * 1e3)
            cpu[k].append((time.process_time() - c) / args.calls * 1e3)
    bw = statistics.median(wall["stock autodiff"])
    bc = statistics.median(cpu["stock autodiff"])
    print(f"\n{args.repeats} repeats × {args.calls} calls, alternating; "
          f"load average after {Path('/proc/loadavg').read_text().split()[:3]}")
    print("| step | wall ms median | min | max | × stock autodiff (wall) | CPU ms median "
          "| × stock autodiff (CPU) | first call s |")
    print("|---|---|---|---|---|---|---|---|")
    for k, (_, _, first) in contenders.items():
        mw, mc = statistics.median(wall[k]), statistics.median(cpu[k])
        print(f"| {k} | {mw:.2f} | {min(wall[k]):.2f} | {max(wall[k]):.2f} | {mw / bw:.2f} | "
              f"{mc:.2f} | {mc / bc:.2f} | {first:.2f} |")


if __name__ == "__main__":
    main()
