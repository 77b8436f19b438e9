"""Credit assignment without weight transport (jaxnn.credit): FA, DFA and sign symmetry beside
backprop, checked against backprop, hand-worked numbers and the weight-gradient formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn import credit
from jaxnn.layers.conv import ConvParams
from jaxnn.layers.dense import DenseParams
from jaxnn.train import checkpoint, sharding

LOSS = jaxnn.losses.softmax_cross_entropy()
SHAPE = (-1, 6, 6, 1)


def _model():
    return jaxnn.serial(jaxnn.Conv2D(3, 3, padding="SAME"), jaxnn.Relu(), jaxnn.MaxPool(2),
                        jaxnn.Flatten(), jaxnn.Dense(8), jaxnn.Relu(), jaxnn.Dense(4))


@pytest.fixture(scope="module")
def setup():
    model = _model()
    _, params, _ = model.init(jax.random.key(0), SHAPE)
    x = jax.random.normal(jax.random.key(1), (5, 6, 6, 1))
    y = jnp.array([0, 1, 2, 3, 1])
    manual = jaxnn.backprop.value_and_grad(model, LOSS, "manual", jit=False)  # eager, as _update
    ((_, _), grads) = manual(params, (), x, y)
    return model, params, (x, y), grads


def _update(model, method, params, batch, state, key=None, **kw):
    r = credit.rule(LOSS, method, model=model, input_shape=SHAPE, **kw)
    key = jax.random.key(7) if key is None else key
    return r.update(model, params, (), batch, state, key)[0]


def _weights(tree):
    return [node for _, node in credit.weight_layers(tree)]


def _equal(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_weight_layers_are_found_by_params_type(setup):
    model, params, _, _ = setup
    found = credit.weight_layers(params)
    assert [p for p, _ in found] == ["[0]", "[4]", "[6]"]
    assert isinstance(found[0][1], ConvParams) and isinstance(found[1][1], DenseParams)


def test_fa_with_feedback_equal_to_the_weights_is_backprop_layer_by_layer(setup):
    model, params, batch, grads = setup
    feedback = tuple(node.w for node in _weights(params))
    fa = _update(model, "fa", params, batch, feedback)
    _equal(fa, grads)  # the hand-written chain rule, exactly, every layer and leaf
    autodiff = jax.grad(lambda p: LOSS.apply(model(p, batch[0]), batch[1]))(params)
    for u, v in zip(jax.tree.leaves(fa), jax.tree.leaves(autodiff)):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    assert all(float(a) < 0.1 for a in credit.angles(fa, grads))
    _equal(_update(model, "backprop", params, batch, ()), grads)


def test_usf_with_equal_magnitude_weights_is_backprop(setup):
    model, params, batch, _ = setup
    c = 0.25  # a power of two: mean|W| = c exactly
    equal = credit.replace_weights(params, [c * jnp.sign(n.w) for n in _weights(params)])
    ((_, _), grads) = jaxnn.backprop.value_and_grad(model, LOSS, "manual", jit=False)(
        equal, (), *batch)
    _equal(_update(model, "usf", equal, batch, ()), grads)
    # and unequal magnitudes do not: the hidden layers' updates move away from backprop's
    usf = _update(model, "usf", params, batch, ())
    ((_, _), bp) = jaxnn.backprop.value_and_grad(model, LOSS, "manual")(params, (), *batch)
    assert float(credit.angles(usf, bp)[0]) > 1.0


def test_fa_with_random_feedback_differs_in_hidden_layers_not_the_last(setup):
    model, params, batch, grads = setup
    r = credit.rule(LOSS, "fa", seed=3)
    fa = _update(model, "fa", params, batch, r.init(params))
    angles = [float(a) for a in credit.angles(fa, grads)]
    assert angles[0] > 5 and angles[1] > 5, angles
    _equal(fa[6], grads[6])  # the output layer's gradient needs no feedback


def test_weight_gradients_keep_their_formulas(setup):
    """dW of each weight layer = its formula applied to the method's δ: δ built here by hand
    from the feedback matrices (FA) and autodiff through the layers without weights."""
    model, params, (x, y), _ = setup
    feedback = credit.rule(LOSS, "fa", seed=5).init(params)
    fa = _update(model, "fa", params, (x, y), feedback)
    conv, relu, pool, flat, d1, relu2, d2 = model.children
    p = params
    a0 = conv(p[0], x)
    h0 = flat((), pool((), relu((), a0)))
    a1 = d1(p[4], h0)
    h1 = relu2((), a1)
    out = d2(p[6], h1)
    e = jax.grad(lambda o: LOSS.apply(o, y))(out)
    delta1 = (e @ feedback[2].T) * (a1 > 0).astype(a1.dtype)                   # FA: Bᵀ in place of Wᵀ
    np.testing.assert_allclose(fa[6].w, h1.T @ e, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fa[4].w, h0.T @ delta1, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fa[4].b, delta1.sum(0), rtol=1e-5, atol=1e-7)
    g = delta1 @ feedback[1].T                                    # at the flatten output
    _, pull = jax.vjp(lambda a: flat((), pool((), relu((), a))), a0)
    delta0 = pull(g)[0]
    _, pull_w = jax.vjp(lambda w: conv(p[0]._replace(w=w), x), p[0].w)
    np.testing.assert_allclose(fa[0].w, pull_w(delta0)[0], rtol=1e-4, atol=1e-6)


def test_dfa_on_one_hidden_layer_equals_the_hand_worked_example():
    model = jaxnn.serial(jaxnn.Dense(2), jaxnn.Relu(), jaxnn.Dense(2))
    loss = jaxnn.losses.sum_of_squares()            # J = Σ (y - t)², e = 2 (y - t)
    params = (DenseParams(jnp.array([[1.0, 0.0], [1.0, -1.0]]), jnp.zeros(2)), (),
              DenseParams(jnp.eye(2), jnp.zeros(2)))
    x, t = jnp.array([[1.0, 2.0]]), jnp.array([[1.0, 1.0]])
    B = jnp.array([[1.0, 2.0], [3.0, -1.0]])        # (classes, hidden)
    r = credit.rule(loss, "dfa", model=model, input_shape=(-1, 2))
    assert [b.shape for b in r.init(params)] == [(2, 2)]
    g, *_ = r.update(model, params, (), (x, t), (B,), jax.random.key(0))
    # a1 = x W1 = [3, -2], h = [3, 0], y = [3, 0], e = 2 (y - t) = [4, -2]
    # δ1 = (e B) ⊙ relu'(a1) = [4·1 - 2·3, 4·2 + 2·1] ⊙ [1, 0] = [-2, 0]
    np.testing.assert_array_equal(g[0].w, [[-2.0, 0.0], [-4.0, 0.0]])   # xᵀ δ1
    np.testing.assert_array_equal(g[0].b, [-2.0, 0.0])
    np.testing.assert_array_equal(g[2].w, [[12.0, -6.0], [0.0, 0.0]])   # hᵀ e, as backprop
    np.testing.assert_array_equal(g[2].b, [4.0, -2.0])
    bp = jaxnn.backprop.grad(model, loss, "manual")(params, (), x, t)
    np.testing.assert_array_equal(bp[0].w, [[4.0, 0.0], [8.0, 0.0]])    # δ1 = e W2ᵀ ⊙ relu'


def test_dfa_refuses_models_it_does_not_support(setup):
    model, params, _, _ = setup
    nested = jaxnn.serial(jaxnn.serial(jaxnn.Dense(3), jaxnn.Relu()), jaxnn.Dense(2))
    with pytest.raises(jaxnn.LayerError, match="'dfa'.*serial\\[0\\] serial.*nested"):
        credit.rule(LOSS, "dfa", model=nested, input_shape=(-1, 4))
    with pytest.raises(jaxnn.LayerError, match="'dfa'.*serial model"):
        credit.rule(LOSS, "dfa", model=jaxnn.Dense(2), input_shape=(-1, 4))
    with pytest.raises(ValueError, match="'dfa'.*input_shape"):
        credit.rule(LOSS, "dfa")
    with pytest.raises(ValueError, match="method must be one of"):
        credit.rule(LOSS, "hebb")


def test_every_method_through_make_step_and_sharding_its_feedback_held_fixed(setup):
    model, params, batch, _ = setup
    for method in credit.METHODS:
        r = credit.rule(LOSS, method, model=model, input_shape=SHAPE, seed=1)
        init, step = jaxnn.make_step(model, r, 0.1)
        ts = init(params)
        new, metrics = step(ts, batch, jax.random.key(2))
        assert np.isfinite(float(metrics["loss"])), method
        assert not np.array_equal(new.params[4].w, ts.params[4].w), method
        if method == "fa":  # the same step on a one-device mesh (jaxnn.train.sharding)
            sharded = sharding.shard_step(jaxnn.TrainStep(init, step), mesh=sharding.make_mesh(1))
            got, _ = sharded.step(sharded.init(params), batch, jax.random.key(2))
            for u, v in zip(jax.tree.leaves(got.params), jax.tree.leaves(new.params)):
                np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6, atol=1e-7)
        if method in ("fa", "dfa", "frsf"):
            assert len(ts.rule_state) == {"fa": 3, "frsf": 3, "dfa": 2}[method]
            _equal(new.rule_state, ts.rule_state)
        else:
            assert new.rule_state == ()


def test_brsf_redraws_its_magnitudes_each_batch_and_keeps_the_sign(setup):
    model, params, batch, _ = setup
    f1 = credit.feedback_params("brsf", params, (), jax.random.key(1))
    f2 = credit.feedback_params("brsf", params, (), jax.random.key(2))
    for w, b1, b2 in zip(_weights(params), _weights(f1), _weights(f2)):
        np.testing.assert_array_equal(jnp.sign(b1.w), jnp.sign(w.w))
        assert not np.array_equal(b1.w, b2.w)
    _equal(credit.feedback_params("brsf", params, (), jax.random.key(1)), f1)


def test_feedback_is_seeded_and_resumed_bit_exactly(setup, tmp_path):
    model, params, batch, _ = setup
    r = credit.rule(LOSS, "fa", seed=4)
    _equal(r.init(params), credit.rule(LOSS, "fa", seed=4).init(params))
    assert not np.array_equal(r.init(params)[0], credit.rule(LOSS, "fa", seed=5).init(params)[0])
    init, step = jaxnn.make_step(model, r, 0.1)
    ts, _ = step(init(params), batch, jax.random.key(0))
    ckpt = checkpoint.Checkpoints(tmp_path / "ckpt")
    ckpt.save(1, ts)
    _, back = ckpt.restore_latest(init(jax.tree.map(jnp.zeros_like, params)))
    _equal(back.rule_state, ts.rule_state)
    _equal(back.params, ts.params)


def test_chunked_updates_match_the_whole_batch(setup):
    model, params, batch, _ = setup
    for method in ("fa", "dfa"):
        plain = _update(model, method, params, batch,
                        credit.rule(LOSS, method, model=model, input_shape=SHAPE).init(params))
        r = credit.rule(LOSS, method, model=model, input_shape=SHAPE, chunk=2)
        chunked = _update(model, method, params, batch, r.init(params), chunk=2)
        for u, v in zip(jax.tree.leaves(chunked), jax.tree.leaves(plain)):
            np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7)
