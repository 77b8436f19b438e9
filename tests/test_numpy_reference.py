"""Check the NumPy reference backprop against jax.vjp and finite differences.

The jax side is written directly here from lax / jax.nn primitives (not from
jaxnn), so both sides are independent of the library under test.
"""
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from experiments.backprop import numpy_reference as ref

ROOT = pathlib.Path(__file__).resolve().parents[1]

TOL = 1e-10


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def assert_close(actual, expected, tol=TOL):
    """Max abs error <= tol * max(1, max |expected|), and shapes/dtype agree."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    assert actual.dtype == np.float64 and expected.dtype == np.float64
    err = np.max(np.abs(actual - expected), initial=0.0)
    assert err <= tol * max(1.0, np.max(np.abs(expected), initial=0.0)), err


def add_bias(y, b):
    # Explicit broadcast: the suite runs with jax_numpy_rank_promotion="raise".
    return y + b.reshape((1,) * (y.ndim - 1) + (-1,))


def jax_vjp(f, args, dy):
    out, vjp = jax.vjp(f, *[jnp.asarray(a) for a in args])
    return np.asarray(out), [np.asarray(g) for g in vjp(jnp.asarray(dy))]


# ---------------------------------------------------------------- dense
@pytest.mark.parametrize("n, din, dout", [(1, 1, 1), (4, 7, 3), (5, 400, 120)])
def test_dense_matches_jax(n, din, dout):
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(n, din)), rng.normal(size=(din, dout)), rng.normal(size=dout)
    y, cache = ref.dense_forward(x, w, b)
    dy = rng.normal(size=y.shape)
    y_j, grads_j = jax_vjp(lambda x, w, b: add_bias(x @ w, b), (x, w, b), dy)
    assert_close(y, y_j)
    for g, g_j in zip(ref.dense_backward(cache, dy), grads_j):
        assert_close(g, g_j)


# ---------------------------------------------------------------- conv
CONV_CASES = [
    # (N, H, W, C, O), (kh, kw), strides, padding
    ((2, 7, 7, 3, 4), (3, 3), (1, 1), "VALID"),
    ((2, 8, 8, 2, 3), (5, 5), (2, 2), "SAME"),
    ((1, 9, 7, 3, 2), (1, 1), (3, 3), "VALID"),
    ((2, 10, 9, 2, 3), (3, 5), (2, 3), ((1, 2), (0, 3))),  # asymmetric; strides don't divide
    ((2, 11, 6, 1, 2), (2, 3), (3, 1), ((0, 1), (2, 0))),
    ((1, 5, 5, 2, 2), (5, 5), (1, 1), "SAME"),
    ((2, 6, 7, 3, 2), (4, 2), (3, 2), "SAME"),  # even kernel: SAME pads more at the end
    ((2, 9, 8, 2, 3), (3, 1), (1, 2), ((3, 0), (1, 1))),
    ((3, 28, 28, 1, 6), (5, 5), (1, 1), ((2, 2), (2, 2))),  # LeNet conv1
]


@pytest.mark.parametrize("shape, kernel, strides, padding", CONV_CASES)
def test_conv2d_matches_jax(shape, kernel, strides, padding):
    n, h, w_, c, o = shape
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, h, w_, c))
    w, b = rng.normal(size=(*kernel, c, o)), rng.normal(size=o)
    pads = ref.padding_pairs(padding, (h, w_), kernel, strides)
    y, cache = ref.conv2d_forward(x, w, b, strides, padding)
    dy = rng.normal(size=y.shape)

    def conv(x, w, b):
        return add_bias(lax.conv_general_dilated(x, w, strides, pads,
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC")), b)

    y_j, grads_j = jax_vjp(conv, (x, w, b), dy)
    assert_close(y, y_j)
    for g, g_j in zip(ref.conv2d_backward(cache, dy), grads_j):
        assert_close(g, g_j)
    if isinstance(padding, str):  # our SAME/VALID pairs give what lax's strings give
        y_s = add_bias(lax.conv_general_dilated(jnp.asarray(x), jnp.asarray(w), strides, padding,
                                                dimension_numbers=("NHWC", "HWIO", "NHWC")), b)
        assert_close(y, y_s)


@pytest.mark.parametrize("n, k, s",
                         [(28, 5, 1), (8, 3, 2), (7, 2, 2), (10, 4, 3), (5, 1, 3), (3, 5, 1)])
def test_padding_pairs_same_matches_lax(n, k, s):
    expected = lax.padtype_to_pads((n, n), (k, k), (s, s), "SAME")
    assert ref.padding_pairs("SAME", (n, n), (k, k), (s, s)) == tuple(map(tuple, expected))
    assert ref.padding_pairs("VALID", (n, n), (k, k), (s, s)) == ((0, 0), (0, 0))


# ---------------------------------------------------------------- pools
POOL_CASES = [
    ((2, 28, 28, 6), (2, 2), (2, 2)),
    ((2, 7, 7, 3), (2, 2), (2, 2)),  # stride does not divide: last row/col unused
    ((1, 9, 8, 2), (3, 3), (2, 2)),  # overlapping windows
    ((2, 10, 11, 1), (3, 2), (3, 1)),
    ((1, 5, 5, 2), (1, 1), (2, 3)),
]


def jax_pool(kind, window, strides):
    dims, strd = (1, *window, 1), (1, *strides, 1)
    if kind == "avg":
        size = window[0] * window[1]
        return lambda x: lax.reduce_window(x, 0.0, lax.add, dims, strd, "VALID") / size
    return lambda x: lax.reduce_window(x, -jnp.inf, lax.max, dims, strd, "VALID")


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("shape, window, strides", POOL_CASES)
def test_pool_matches_jax(kind, shape, window, strides):
    rng = np.random.default_rng(2)
    x = rng.normal(size=shape)  # continuous values: no ties in max pool
    fwd, bwd = {"avg": (ref.avgpool_forward, ref.avgpool_backward),
                "max": (ref.maxpool_forward, ref.maxpool_backward)}[kind]
    y, cache = fwd(x, window, strides)
    dy = rng.normal(size=y.shape)
    y_j, (dx_j,) = jax_vjp(jax_pool(kind, window, strides), (x,), dy)
    assert_close(y, y_j)
    assert_close(bwd(cache, dy), dx_j)


def test_maxpool_splits_ties_equally():
    # One 2x2 window with three tied maxima, one with a single max, one with two.
    x = np.array([[1.0, 1.0, 0.0, 5.0, 2.0, 2.0],
                  [0.0, 1.0, 3.0, 4.0, 0.5, -1.0]]).reshape(1, 2, 6, 1)
    y, cache = ref.maxpool_forward(x, (2, 2), (2, 2))
    np.testing.assert_array_equal(y.ravel(), [1.0, 5.0, 2.0])
    dx = ref.maxpool_backward(cache, np.array([3.0, 7.0, 4.0]).reshape(1, 1, 3, 1))
    expected = np.array([[1.0, 1.0, 0.0, 7.0, 2.0, 2.0],
                         [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(dx[0, :, :, 0], expected)


# ---------------------------------------------------------------- activations, loss
@pytest.mark.parametrize("name, f_j", [("tanh", jnp.tanh), ("relu", jax.nn.relu),
                                       ("sigmoid", jax.nn.sigmoid)])
def test_activations_match_jax(name, f_j):
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(scale=3, size=50), [0.0, -40.0, 40.0, -800.0]])
    y, cache = getattr(ref, f"{name}_forward")(x)
    dy = rng.normal(size=x.shape)
    y_j, (dx_j,) = jax_vjp(f_j, (x,), dy)
    assert_close(y, y_j)
    assert_close(getattr(ref, f"{name}_backward")(cache, dy), dx_j)


@pytest.mark.parametrize("n, k, scale", [(1, 10, 1.0), (6, 10, 1.0), (5, 3, 50.0)])
def test_softmax_cross_entropy_matches_jax(n, k, scale):
    rng = np.random.default_rng(4)
    logits, labels = rng.normal(scale=scale, size=(n, k)), rng.integers(0, k, size=n)

    def loss_j(z):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), labels[:, None], axis=1))

    loss, dlogits = ref.softmax_cross_entropy(logits, labels)
    loss_jv, dlogits_j = jax.value_and_grad(loss_j)(jnp.asarray(logits))
    assert_close(loss, loss_jv)
    assert_close(dlogits, dlogits_j)


# ---------------------------------------------------------------- LeNet-5
SHAPES = [((5, 5, 1, 6), 6), ((5, 5, 6, 16), 16),
          ((400, 120), 120), ((120, 84), 84), ((84, 10), 10)]


def init_params(rng, dtype=np.float64):
    params = []
    for wshape, bsize in SHAPES:
        fan_in = int(np.prod(wshape[:-1]))
        w = rng.normal(scale=1.5 / np.sqrt(fan_in), size=wshape).astype(dtype)
        params.append((w, rng.normal(scale=0.1, size=bsize).astype(dtype)))
    return params


def lenet5_loss_jax(params, x, labels, variant):
    act = jnp.tanh if variant == "classic" else jax.nn.relu
    pool = jax_pool("avg" if variant == "classic" else "max", (2, 2), (2, 2))
    (w1, b1), (w2, b2), (w3, b3), (w4, b4), (w5, b5) = params

    def conv(h, w, b, padding):
        dn = ("NHWC", "HWIO", "NHWC")
        return add_bias(lax.conv_general_dilated(h, w, (1, 1), padding, dimension_numbers=dn), b)

    h = pool(act(conv(x, w1, b1, ((2, 2), (2, 2)))))
    h = pool(act(conv(h, w2, b2, "VALID")))
    h = h.reshape(h.shape[0], -1)
    h = act(add_bias(h @ w3, b3))
    h = act(add_bias(h @ w4, b4))
    h = add_bias(h @ w5, b5)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(h), labels[:, None], axis=1))


@pytest.mark.parametrize("variant", ["classic", "modern"])
def test_lenet5_matches_jax(variant):
    rng = np.random.default_rng(5)
    params, x, labels = init_params(rng), rng.normal(size=(3, 28, 28, 1)), np.array([0, 3, 9])
    loss, grads = ref.lenet5_loss_and_grads(params, x, labels, variant)
    loss_j, grads_j = jax.jit(jax.value_and_grad(lenet5_loss_jax), static_argnums=3)(
        jax.tree.map(jnp.asarray, params), jnp.asarray(x), jnp.asarray(labels), variant)
    assert_close(loss, loss_j)
    for (dw, db), (dw_j, db_j) in zip(grads, grads_j):
        assert_close(dw, dw_j)
        assert_close(db, db_j)


@pytest.mark.parametrize("variant", ["classic", "modern"])
def test_lenet5_finite_differences(variant):
    rng = np.random.default_rng(6)
    params, x, labels = init_params(rng), rng.normal(size=(2, 28, 28, 1)), np.array([2, 7])
    _, grads = ref.lenet5_loss_and_grads(params, x, labels, variant)
    eps = 1e-6
    for i in range(5):
        for j in range(2):  # 0: weight, 1: bias
            arr = params[i][j]
            for _ in range(2):
                idx = tuple(int(rng.integers(0, s)) for s in arr.shape)
                orig = arr[idx]
                arr[idx] = orig + eps
                up, _ = ref.lenet5_loss_and_grads(params, x, labels, variant)
                arr[idx] = orig - eps
                down, _ = ref.lenet5_loss_and_grads(params, x, labels, variant)
                arr[idx] = orig
                fd, g = (up - down) / (2 * eps), grads[i][j][idx]
                assert abs(fd - g) <= 1e-6 * max(1.0, abs(g)), (i, j, idx, fd, g)


@pytest.mark.parametrize("variant", ["classic", "modern"])
def test_lenet5_float32_stays_float32(variant):
    rng = np.random.default_rng(7)
    p64, x64_, labels = init_params(rng), rng.normal(size=(2, 28, 28, 1)), np.array([1, 4])
    p32 = [(w.astype(np.float32), b.astype(np.float32)) for w, b in p64]
    loss32, g32 = ref.lenet5_loss_and_grads(p32, x64_.astype(np.float32), labels, variant)
    loss64, g64 = ref.lenet5_loss_and_grads(p64, x64_, labels, variant)
    assert np.asarray(loss32).dtype == np.float32
    assert abs(loss32 - loss64) <= 1e-5 * max(1.0, abs(loss64))
    for (dw32, db32), (dw64, db64) in zip(g32, g64):
        for a32, a64 in ((dw32, dw64), (db32, db64)):
            assert a32.dtype == np.float32
            assert np.max(np.abs(a32 - a64)) <= 1e-4 * max(1.0, np.max(np.abs(a64)))


def test_reference_imports_neither_jax_nor_jaxnn():
    import subprocess

    code = ("import sys; import experiments.backprop.numpy_reference; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', 'jaxnn')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
