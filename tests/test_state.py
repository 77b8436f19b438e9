"""The state channel: stateful layers (Dropout, BatchNorm), lifting in serial/parallel, keys,
train vs eval, and stateful models through value_and_grad, train_step and eval_step.

Every stateful layer passes the agreement table the plain layers pass: the hand-written
backward equals jax.vjp of `apply` (params and x; state and key held fixed), in float32
and float64, in training and in eval, and check_grads passes in float64.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import jaxnn as nn
from jaxnn import losses

TOL = {jnp.float32: 1e-5, jnp.float64: 1e-10}

STATEFUL_CASES = [
    ("batchnorm_dense", lambda: nn.BatchNorm(), (6, 4)),
    ("batchnorm_nhwc", lambda: nn.BatchNorm(momentum=0.5), (3, 4, 5, 2)),
    ("dropout", lambda: nn.Dropout(0.3), (4, 5)),
    ("serial_bn_dropout_mlp", lambda: nn.serial(nn.Dense(6), nn.BatchNorm(), nn.Relu(),
                                                nn.Dropout(0.5), nn.Dense(3)), (5, 4)),
    ("serial_conv_bn", lambda: nn.serial(nn.Conv2D(3, 3, padding="SAME"), nn.BatchNorm(), nn.Tanh(),
                                         nn.MaxPool(2), nn.Flatten(), nn.Dense(2)), (2, 6, 6, 1)),
    ("parallel_branch_bn", lambda: nn.serial(nn.FanOut(2), nn.parallel(nn.BatchNorm(), nn.Dense(4)),
                                             nn.FanInSum()), (5, 4)),
]


def _setup(make, shape, dtype):
    """Random params and state away from init's constants (γ = 1, β = 0, running stats 0
    and 1), where a backward that forgets γ, or the running mean, would still agree."""
    layer = make()
    _, params, state = layer.init(jax.random.key(1), shape)
    params = jax.tree.map(lambda a, k: (a + 0.5 * jax.random.normal(k, a.shape, a.dtype)).astype(dtype),
                          params, _keys_like(jax.random.key(5), params))
    state = jax.tree.map(lambda a, k: (a + 0.5 * jax.random.uniform(k, a.shape, a.dtype)).astype(dtype),
                         state, _keys_like(jax.random.key(6), state))
    x = jax.random.normal(jax.random.key(2), shape, dtype) * 2 + 0.5
    return layer, params, state, x


def _keys_like(key, tree):
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(treedef, list(jax.random.split(key, max(len(leaves), 1))[:len(leaves)]))


def _random_like(key, tree):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, max(len(leaves), 1))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, a.shape, a.dtype)
                                        for k, a in zip(keys, leaves)])


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case_id,make,shape", STATEFUL_CASES, ids=[c[0] for c in STATEFUL_CASES])
def test_backward_matches_vjp(case_id, make, shape, dtype, train):
    with jax.enable_x64(dtype == jnp.float64):
        layer, params, state, x = _setup(make, shape, dtype)
        key = jax.random.key(3)
        y, vjp = jax.vjp(lambda p, x: layer.apply(p, state, x, key=key, train=train)[0], params, x)
        dy = _random_like(jax.random.key(4), y)
        want_dparams, want_dx = vjp(dy)

        @jax.jit
        def manual(params, x, dy):
            y, residuals, new_state = layer.forward(params, state, x, key=key, train=train)
            return y, layer.backward(params, residuals, dy)

        y_manual, (dparams, dx) = manual(params, x, dy)
        chex.assert_trees_all_close(y_manual, y, rtol=TOL[dtype], atol=TOL[dtype])
        chex.assert_trees_all_equal_shapes_and_dtypes(dparams, params)
        chex.assert_trees_all_close(dparams, want_dparams, rtol=TOL[dtype], atol=TOL[dtype])
        chex.assert_trees_all_close(dx, want_dx, rtol=TOL[dtype], atol=TOL[dtype])
        assert float(jnp.abs(dx).max()) > 0


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case_id,make,shape", STATEFUL_CASES, ids=[c[0] for c in STATEFUL_CASES])
def test_hand_written_backward_against_finite_differences(case_id, make, shape, train):
    """check_grads through as_custom_vjp: jax.grad runs the layer's own backward, which is
    then compared with float64 finite differences of the forward."""
    with jax.enable_x64(True):
        layer, params, state, x = _setup(make, shape, jnp.float64)
        fixed = nn.as_custom_vjp(nn.fixed_state(layer, state, key=jax.random.key(3), train=train))
        check_grads(fixed.apply, (params, x), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def test_batchnorm_statistics_and_running_averages():
    bn = nn.BatchNorm(momentum=0.75)
    _, params, state = bn.init(jax.random.key(0), (-1, 3))
    x = jnp.array([[1.0, 2.0, -1.0], [3.0, 2.0, 1.0], [5.0, 2.0, 3.0], [7.0, 2.0, 5.0]])
    y, new_state = bn.apply(params, state, x, train=True)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(y[:, 0].var(), 5.0 / (5.0 + 1e-5), rtol=1e-5)  # var 5, eps 1e-5
    np.testing.assert_allclose(y[:, 1], 0, atol=1e-6)  # a constant feature normalises to 0
    np.testing.assert_allclose(new_state.mean, 0.25 * np.array([4.0, 2.0, 2.0]), rtol=1e-6)
    np.testing.assert_allclose(new_state.var, 0.75 + 0.25 * np.array([5.0, 0.0, 5.0]), rtol=1e-6)
    y_eval, same = bn.apply(params, new_state, x, train=False)
    chex.assert_trees_all_equal(same, new_state)
    want = (np.asarray(x) - np.asarray(new_state.mean)) / np.sqrt(np.asarray(new_state.var) + 1e-5)
    np.testing.assert_allclose(y_eval, want, rtol=1e-5)


def test_batchnorm_eval_output_of_one_example_ignores_the_rest():
    layer, params, state, x = _setup(STATEFUL_CASES[1][1], STATEFUL_CASES[1][2], jnp.float32)
    _, state = layer.apply(params, state, x, train=True)  # non-trivial running statistics
    alone = layer.apply(params, state, x[:1], train=False)[0]
    other_batch = jnp.concatenate([x[:1], 10 * x[1:] - 3])
    together = layer.apply(params, state, other_batch, train=False)[0][:1]
    np.testing.assert_allclose(alone, together, rtol=1e-6, atol=1e-6)
    in_train = layer.apply(params, state, other_batch, train=True)[0][:1]
    assert not np.allclose(in_train, alone, atol=1e-3)  # training uses the batch's statistics


def test_dropout_rate_is_the_drop_probability_and_eval_needs_no_key():
    drop = nn.Dropout(0.75)
    x = jnp.ones((200, 100))
    y, _ = drop.apply((), (), x, key=jax.random.key(0), train=True)
    kept = float((y != 0).mean())
    assert abs(kept - 0.25) < 0.02, kept
    np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 4.0])  # inverted scaling 1/(1-p)
    np.testing.assert_array_equal(drop.apply((), (), x, train=False)[0], x)
    with pytest.raises(nn.LayerTypeError, match="Dropout: train=True .* needs a key"):
        drop.apply((), (), x, train=True)
    with pytest.raises(nn.LayerTypeError, match=r"serial\[1\] Dropout: train=True"):
        model = nn.serial(nn.Dense(3), nn.Dropout(0.5))
        _, p, s = model.init(jax.random.key(0), (2, 4))
        model.apply(p, s, jnp.ones((2, 4)), train=True)
    with pytest.raises(nn.LayerError, match="Dropout: rate .* must be in"):
        nn.Dropout(1.0)


def test_serial_keys_differ_by_position_and_train_is_required():
    model = nn.serial(nn.Dropout(0.5), nn.Dropout(0.5))
    _, p, s = model.init(jax.random.key(0), (1, 64))
    y, _ = model.apply(p, s, jnp.ones((1, 64)), key=jax.random.key(7), train=True)
    first, _ = nn.Dropout(0.5).apply((), (), jnp.ones((1, 64)), key=jax.random.fold_in(
        jax.random.key(7), 0), train=True)
    second, _ = nn.Dropout(0.5).apply((), (), first, key=jax.random.fold_in(jax.random.key(7), 1),
                                      train=True)
    np.testing.assert_array_equal(y, second)
    with pytest.raises(TypeError, match="train"):
        model.apply(p, s, jnp.ones((1, 64)))


def test_train_must_be_a_python_bool():
    bn = nn.BatchNorm()
    _, p, s = bn.init(jax.random.key(0), (4, 3))
    with pytest.raises(nn.LayerTypeError, match="BatchNorm: train must be a Python bool.*static_argnames"):
        jax.jit(bn.apply)(p, s, jnp.ones((4, 3)), train=True)
    y, _ = jax.jit(bn.apply, static_argnames="train")(p, s, jnp.ones((4, 3)), train=True)
    assert y.shape == (4, 3)


def test_intermediates_of_a_stateful_model_need_its_state():
    model = nn.serial(nn.Dense(3), nn.BatchNorm(), nn.Relu())
    _, p, s = model.init(jax.random.key(0), (4, 2))
    with pytest.raises(nn.LayerError, match="this model has state .* pass state="):
        nn.intermediates(model, p, jnp.ones((4, 2)))
    with pytest.raises(nn.LayerError, match="expected params for 3 layers, got 2"):
        nn.intermediates(model, p[:2], jnp.ones((4, 2)), state=s)
    outs = nn.intermediates(model, p, jnp.ones((4, 2)), state=s)
    np.testing.assert_allclose(outs[-1][1], model.apply(p, s, jnp.ones((4, 2)), train=False)[0])


def test_stateless_models_stay_plain_layers():
    model = nn.serial(nn.Dense(3), nn.Relu(), nn.Tanh())
    assert isinstance(model, nn.Layer) and not nn.is_stateful(model)
    assert nn.is_stateful(nn.serial(nn.Dense(3), nn.BatchNorm()))
    assert nn.is_stateful(nn.parallel(nn.Dense(3), nn.Dropout(0.1)))
    out_shape, params = model.init(jax.random.key(0), (2, 4))  # today's two-value init
    assert out_shape == (2, 3)


def test_wrong_state_is_located():
    model = nn.serial(nn.Dense(3), nn.BatchNorm())
    _, p, s = model.init(jax.random.key(0), (2, 4))
    with pytest.raises(nn.LayerError, match="serial: expected state for 2 layers, got 1"):
        model.apply(p, s[:1], jnp.ones((2, 4)), train=False)


@pytest.mark.parametrize("method", ["autodiff", "manual"])
def test_stateful_train_and_eval_steps(method):
    model = nn.serial(nn.Dense(8), nn.BatchNorm(), nn.Relu(), nn.Dropout(0.2), nn.Dense(3))
    _, params, state = model.init(jax.random.key(0), (-1, 5))
    x = jax.random.normal(jax.random.key(1), (16, 5))
    y = jnp.arange(16) % 3
    loss = losses.softmax_cross_entropy()
    (j_a, s_a), g_a = nn.value_and_grad(model, loss, "autodiff")(params, state, x, y, jax.random.key(2))
    (j_m, s_m), g_m = nn.value_and_grad(model, loss, "manual")(params, state, x, y, jax.random.key(2))
    chex.assert_trees_all_close(j_m, j_a, rtol=1e-6)
    chex.assert_trees_all_close(s_m, s_a, rtol=1e-6)
    chex.assert_trees_all_close(g_m, g_a, rtol=1e-5, atol=1e-6)
    assert not np.allclose(s_a[1].mean, state[1].mean)  # the running mean moved

    with jax.numpy_dtype_promotion("standard"):  # optax's step count is an int
        opt = optax.sgd(0.1)
        step = nn.train_step(model, loss, opt, method, donate=False)
        opt_state = opt.init(params)
        evaluate = nn.eval_step(model, loss)
        before = evaluate(params, state, x, y)
        p, s, o = params, state, opt_state
        for i in range(30):
            p, s, o, metrics = step(p, s, o, x, y, jax.random.key(10 + i))
        after = evaluate(p, s, x, y)
    assert float(after["loss"]) < float(before["loss"])
    assert int(after["correct"]) > int(before["correct"])


def test_intermediates_and_layer_gradients_agree():
    model = nn.serial(nn.Conv2D(2, 3, padding="SAME"), nn.Tanh(), nn.AvgPool(2), nn.Flatten(),
                      nn.Dense(3))
    _, params = model.init(jax.random.key(0), (4, 6, 6, 1))
    x = jax.random.normal(jax.random.key(1), (4, 6, 6, 1))
    y = jnp.array([0, 1, 2, 1])
    outs = nn.intermediates(model, params, x)
    assert [name for name, _ in outs] == ["serial[0] Conv2D", "serial[1] Tanh", "serial[2] AvgPool",
                                          "serial[3] Flatten", "serial[4] Dense"]
    np.testing.assert_allclose(outs[-1][1], model.apply(params, x), rtol=1e-6)
    loss = losses.softmax_cross_entropy()
    manual = nn.layer_gradients(model, loss, params, x, y, "manual")
    auto = nn.layer_gradients(model, loss, params, x, y, "autodiff")
    for m, a in zip(manual, auto):
        chex.assert_trees_all_close(m["dx"], a["dx"], rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_close(m["dparams"], a["dparams"], rtol=1e-5, atol=1e-6)
    grads = nn.value_and_grad(model, loss)(params, x, y)[1]
    chex.assert_trees_all_close(tuple(m["dparams"] for m in manual), grads, rtol=1e-5, atol=1e-6)
    # dC/dX of the last layer is dJ/dlogits = (softmax - onehot) / N
    want = (jax.nn.softmax(outs[-1][1]) - jax.nn.one_hot(y, 3)) / 4
    np.testing.assert_allclose(manual[-1]["dx"], want, rtol=1e-5, atol=1e-7)


def test_scan_applies_the_layer_at_every_step():
    inner = nn.serial(nn.Dense(4), nn.Tanh(), nn.Reshape((2, 2)), nn.Flatten())
    layer = nn.Scan(inner)
    out_shape, params = layer.init(jax.random.key(0), (3, 5, 6))
    assert out_shape == (3, 5, 4)
    x = jax.random.normal(jax.random.key(1), (3, 5, 6))
    y = layer.apply(params, x)
    for t in range(5):
        np.testing.assert_allclose(y[:, t], inner.apply(params, x[:, t]), rtol=1e-6)
    y2, vjp = jax.vjp(layer.apply, params, x)
    dy = jax.random.normal(jax.random.key(2), y2.shape)
    want = vjp(dy)
    y3, residuals = layer.forward(params, x)
    got = layer.backward(params, residuals, dy)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(nn.LayerTypeError, match="Scan: expected a plain"):
        nn.Scan(nn.BatchNorm())


def test_norm_forward_values_against_numpy():
    """Forward values against an independent NumPy formula (not only backward vs jax.vjp)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 5)).astype(np.float32) * 3 + 1
    ln = nn.LayerNorm(eps=1e-3)
    _, params = ln.init(jax.random.key(0), x.shape)
    params = nn.NormParams(jnp.asarray(rng.normal(size=5), jnp.float32),
                           jnp.asarray(rng.normal(size=5), jnp.float32))
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    want = (x - mu) / np.sqrt(var + 1e-3) * np.asarray(params.scale) + np.asarray(params.offset)
    np.testing.assert_allclose(ln.apply(params, jnp.asarray(x)), want, rtol=1e-5, atol=1e-5)

    bn = nn.BatchNorm(eps=1e-3)
    _, _, state = bn.init(jax.random.key(0), x.shape)
    mu, var = x.mean((0, 1)), x.var((0, 1))
    want = (x - mu) / np.sqrt(var + 1e-3) * np.asarray(params.scale) + np.asarray(params.offset)
    np.testing.assert_allclose(bn.apply(params, state, jnp.asarray(x), train=True)[0], want,
                               rtol=1e-5, atol=1e-5)


def test_stateful_eval_splits_like_a_plain_model():
    model = nn.serial(nn.Conv2D(4, 3, padding="SAME"), nn.BatchNorm(), nn.Relu(), nn.Flatten(),
                      nn.Dropout(0.5), nn.Dense(3))
    layer, params, state, x = _setup(lambda: model, (10, 6, 6, 1), jnp.float32)
    y = jnp.arange(10) % 3
    loss = losses.softmax_cross_entropy()
    whole = nn.eval_step(model, loss, microbatch=None)(params, state, x, y)
    chunked = nn.eval_step(model, loss, microbatch=4)(params, state, x, y)
    assert int(whole["correct"]) == int(chunked["correct"])
    np.testing.assert_allclose(float(chunked["loss"]), float(whole["loss"]), rtol=1e-5)
