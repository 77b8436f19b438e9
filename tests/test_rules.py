"""Learning rules on known answers: the perceptron's formula and Novikoff's bound, Oja's and
Sanger's principal components, competitive learning, the seam that runs them, and errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn as nn
from jaxnn import losses
from jaxnn.layers.dense import DenseParams
from jaxnn.neuro import rules


def _zeros(n, k):
    return DenseParams(jnp.zeros((n, k), jnp.float32), jnp.zeros((k,), jnp.float32))


def _linear(n, k):
    """serial(Dense(k)) with its params: the Hebbian rules' linear layer."""
    model = nn.serial(nn.Dense(k))
    return model, model.init(jax.random.key(1), (-1, n))[1]


# ----------------------------------------------------------------------------- perceptron
def test_perceptron_update_equals_formula_by_hand():
    # w = (0.5, -1), b = 0, η = 0.5.  x1 = (1, 2), d = 1: z = 0.5 - 2 = -1.5, f = 0, an error:
    #   w ← (0.5, -1) + 0.5 (1 - 0) (1, 2) = (1, 0),  b ← 0 + 0.5 = 0.5.
    # x2 = (-1, 0), d = 0: z = -1 + 0.5 = -0.5, f = 0, right: no change.
    # x3 = (1, 1), d = 0: z = 1 + 0.5 = 1.5, f = 1, an error: w ← (1, 0) - 0.5 (1, 1), b ← 0.
    p = DenseParams(jnp.array([[0.5], [-1.0]]), jnp.zeros((1,)))
    x = jnp.array([[1.0, 2.0], [-1.0, 0.0], [1.0, 1.0]])
    d = jnp.array([[1.0], [0.0], [0.0]])
    new, mistakes = jax.jit(rules.perceptron_epoch)(p, x, d, 0.5)
    np.testing.assert_array_equal(new.w, [[0.5], [-0.5]])
    np.testing.assert_array_equal(new.b, [0.0])
    np.testing.assert_array_equal(mistakes, [1, 0, 1])
    np.testing.assert_array_equal(rules.fires(p, x), [[0.0], [0.0], [0.0]])  # z = -1.5, -0.5, -0.5


def _separable(n=200, margin=0.1, seed=0):
    """2-D points labelled by the line u·x + c = 0, none closer to it than `margin`."""
    rng = np.random.default_rng(seed)
    u, c = np.array([0.6, -0.8]), 0.2
    x = rng.uniform(-1, 1, (4 * n, 2))
    keep = np.abs(x @ u + c) >= margin
    x = x[keep][:n]
    return jnp.asarray(x, jnp.float32), jnp.asarray(x @ u + c > 0), jnp.asarray(u, jnp.float32), c


def test_separable_set_is_separated_within_novikoff_bound():
    x, labels, u, c = _separable()
    radius, gamma = rules.novikoff_bound(x, labels, u, c)
    assert gamma > 0
    d = labels.astype(jnp.float32)[:, None]
    p, total = _zeros(2, 1), 0
    epoch = jax.jit(rules.perceptron_epoch)
    for _ in range(100):
        p, mistakes = epoch(p, x, d, 1.0)
        total += int(mistakes.sum())
        if int(mistakes.sum()) == 0:
            break
    assert int(mistakes.sum()) == 0
    np.testing.assert_array_equal(rules.fires(p, x)[:, 0], d[:, 0])
    assert 0 < total <= (radius / gamma) ** 2


def test_averaged_perceptron_is_the_mean_of_every_step():
    x, labels, *_ = _separable(n=30, margin=0.0, seed=3)
    d = labels.astype(jnp.float32)[:, None]
    p, avg, mistakes = rules.averaged_epoch(_zeros(2, 1), rules.averaged_start(_zeros(2, 1)), x, d)
    steps, q, epoch = [], _zeros(2, 1), jax.jit(rules.perceptron_epoch)
    for i in range(x.shape[0]):
        q, _ = epoch(q, x[i:i + 1], d[i:i + 1], 1.0)
        steps.append(q)
    mean = jax.tree.map(lambda *a: jnp.mean(jnp.stack(a), 0), *steps)
    chex.assert_trees_all_close(rules.averaged_params(p, avg), mean, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(p, q)


@pytest.mark.parametrize("averaged", [False, True])
def test_perceptron_rule_through_make_step_equals_the_scan(averaged):
    x, labels, *_ = _separable(n=64, margin=0.0, seed=1)
    d = rules.one_vs_rest(labels.astype(jnp.int32), 2)
    model = nn.serial(nn.Dense(2))
    params = (_zeros(2, 2),)
    init, step = rules.make_step(model, rules.perceptron(0.5, averaged=averaged), 1.0)
    ts = init(params)
    for i in range(0, 64, 16):
        ts, metrics = step(ts, (x[i:i + 16], d[i:i + 16]), jax.random.key(0))
    want, mistakes = rules.perceptron_epoch(params[0], x, d, 0.5)
    chex.assert_trees_all_close(ts.params[0], want, atol=1e-6)
    assert int(ts.step) == 4 and set(metrics) == {"loss", "mistakes", "update_norm"}
    if averaged:
        assert float(ts.rule_state.count) == 64


def test_gradient_rule_is_a_plain_sgd_step():
    model = nn.serial(nn.Dense(3))
    params = model.init(jax.random.key(0), (-1, 4))[1]
    x = jax.random.normal(jax.random.key(1), (5, 4))
    y = jnp.array([0, 1, 2, 1, 0])
    loss = losses.softmax_cross_entropy()
    init, step = rules.make_step(model, rules.gradient(loss, "manual"), 0.1)
    ts, metrics = step(init(params), (x, y), jax.random.key(0))
    (value, _), grads = nn.value_and_grad(model, loss, "manual")(params, (), x, y)
    want = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
    chex.assert_trees_all_close(ts.params, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(metrics["loss"], value, rtol=1e-6)


# ------------------------------------------------------------------------------- Hebbian
def _gaussian(n, eigenvalues, count, seed):
    """Zero-mean samples whose covariance has the given eigenvalues along a random basis."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(n, n)))
    x = rng.normal(size=(count, n)) * np.sqrt(eigenvalues) @ basis.T
    return jnp.asarray(x, jnp.float32), basis


def _train(model, params, rule, x, lr, batch=50, epochs=1):
    """`epochs` passes of make_step's step over x in batches, scanned (one compile)."""
    init, step = rules.make_step(model, rule, lr)
    xs = jnp.tile(x.reshape(-1, batch, x.shape[1]), (epochs, 1, 1))
    ts, metrics = jax.lax.scan(lambda ts, xb: step(ts, (xb, None), jax.random.key(0)),
                               init(params), xs)
    return ts, jax.tree.map(lambda m: m[-1], metrics)


def test_oja_converges_to_the_principal_component():
    x, basis = _gaussian(5, np.array([5.0, 2.0, 1.0, 0.5, 0.2]), 4000, seed=0)
    model, params = _linear(5, 1)
    ts, _ = _train(model, params, rules.oja(), x, 0.02, epochs=2)
    w = ts.params[0].w[:, 0]
    assert float(rules.cosine_to(w, jnp.asarray(basis[:, 0], jnp.float32))) > 0.999
    np.testing.assert_allclose(jnp.linalg.norm(w), 1.0, atol=0.02)


def test_plain_hebb_grows_without_bound():
    x, _ = _gaussian(3, np.array([3.0, 1.0, 0.5]), 1000, seed=1)
    model, params = _linear(3, 1)
    ts, metrics = _train(model, params, rules.hebb(), x, 0.1, epochs=3)
    assert float(jnp.linalg.norm(ts.params[0].w)) > 1e3 * float(jnp.linalg.norm(params[0].w))
    assert float(metrics["weight_norm"]) > 1e3  # the norm the last step started from


def test_sanger_weights_are_orthonormal_principal_components():
    x, basis = _gaussian(8, np.array([8.0, 5.0, 3.0, 2.0, 0.5, 0.3, 0.2, 0.1]), 6000, seed=2)
    model, params = _linear(8, 4)
    lr = optax.linear_schedule(0.03, 0.001, 3 * 6000 // 50)
    ts, _ = _train(model, params, rules.sanger(), x, lr, epochs=3)
    w = ts.params[0].w
    assert float(rules.orthogonality_error(w)) < 0.03
    assert float(rules.principal_angles(w, jnp.asarray(basis[:, :4], jnp.float32)).max()) < 2.0
    cos = [float(rules.cosine_to(w[:, j], jnp.asarray(basis[:, j], jnp.float32))) for j in range(4)]
    assert min(cos) > 0.99


def test_local_rule_reads_the_layer_input_through_the_model_state():
    # serial(BatchNorm, Dense): Oja on layer 1 sees BatchNorm's eval-mode output, normalised
    # with the running statistics held in the model's state, not the raw x.
    model = nn.serial(nn.BatchNorm(), nn.Dense(1))
    _, params, state = model.init(jax.random.key(0), (-1, 3))
    state = (state[0]._replace(mean=jnp.full((3,), 2.0), var=jnp.full((3,), 4.0)), ())
    x = jax.random.normal(jax.random.key(1), (6, 3)) + 2.0
    x_in, y_out = rules.layer_io(model, params, x, 1, state=state)
    chex.assert_trees_all_close(x_in, model.children[0](params[0], x, state=state[0]))
    init, step = rules.make_step(model, rules.oja(layer=1), 0.5)
    ts, _ = step(init(params, state), (x, None), jax.random.key(0))
    want = params[1].w + 0.5 * rules.oja_update(params[1].w, x_in, y_out)
    chex.assert_trees_all_close(ts.params[1].w, want, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(ts.params[0], params[0])
    chex.assert_trees_all_close(ts.model_state, state)


def test_hebbian_update_formulas_by_hand():
    w = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    x = jnp.array([[1.0, 2.0]])
    y = x @ w  # (1, 2)
    np.testing.assert_allclose(rules.hebb_update(w, x, y), [[1.0, 2.0], [2.0, 4.0]])
    # Oja: column j gets y_j (x - y_j w_j): y = (1, 2) -> (1·(1-1), 1·(2-0)), (2·(1-0), 2·(2-2))
    np.testing.assert_allclose(rules.oja_update(w, x, y), [[0.0, 2.0], [2.0, 0.0]])
    # Sanger: column 2 also subtracts y_1 w_1: 2·((1, 2) - 1·(1, 0) - 2·(0, 1)) = (0, 0)
    np.testing.assert_allclose(rules.sanger_update(w, x, y), [[0.0, 0.0], [2.0, 0.0]])


# --------------------------------------------------------------------------- competitive
def test_competitive_winner_moves_to_the_input_and_the_runner_up_away():
    w = rules.unit_length(jnp.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])).T  # (2, 3)
    x = jnp.array([[0.6, 0.8]])
    y = x @ w  # (0.6, 0.96, 0.8): unit 1 wins, unit 2 ranks second
    np.testing.assert_allclose(rules.competition(y, k=2, delta=0.4), [[0.0, 1.0, -0.4]])
    dw = rules.competitive_update(w, x, y, k=2, delta=0.4)
    new = w + 0.1 * dw
    assert float(x[0] @ new[:, 1]) > float(x[0] @ w[:, 1])
    assert float(x[0] @ new[:, 2]) < float(x[0] @ w[:, 2])
    np.testing.assert_array_equal(dw[:, 0], [0.0, 0.0])


def test_winner_take_all_finds_the_clusters():
    centres = rules.unit_length(jnp.array([[1.0, 0.2, 0.0], [0.0, 1.0, 0.3], [0.2, 0.0, 1.0]]))
    idx = jax.random.randint(jax.random.key(4), (600,), 0, 3)
    x = rules.unit_length(centres[idx] + 0.05 * jax.random.normal(jax.random.key(5), (600, 3)))
    model = nn.serial(nn.Dense(3))
    params = (DenseParams(rules.unit_length(centres[jnp.array([1, 2, 0])] + 0.3).T, jnp.zeros(3)),)
    ts, metrics = _train(model, params, rules.winner_take_all(), x, 0.05, batch=20, epochs=3)
    match = rules.unit_length(ts.params[0].w.T) @ centres.T  # (unit, centre) cosines
    assert float(match.max(axis=0).min()) > 0.99
    assert int(metrics["winners"]) == 3


# ------------------------------------------------------------------------------- errors
def test_bad_arguments_raise_clear_errors():
    model, params = _linear(2, 1)
    with pytest.raises(ValueError, match="learning rate η must be > 0"):
        rules.perceptron(0.0)
    with pytest.raises(ValueError, match=r"expected x of shape \(N, 2\)"):
        rules.perceptron_epoch(_zeros(2, 1), jnp.zeros((3, 4)), jnp.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"desired outputs d of shape \(3, 1\)"):
        rules.perceptron_epoch(_zeros(2, 1), jnp.zeros((3, 2)), jnp.zeros((3,)))
    with pytest.raises(TypeError, match="must take \\(model, params, batch"):
        rules.make_rule("r", lambda params, batch: None, ascend=True)
    with pytest.raises(TypeError, match="ascend must be True or False"):
        rules.make_rule("r", lambda model, params, batch: None, ascend="yes")
    with pytest.raises(TypeError, match="optimizer must be an optax"):
        rules.make_step(model, rules.oja(), "sgd")
    with pytest.raises(ValueError, match="plain learning rate must be > 0"):
        rules.make_step(model, rules.oja(), -1.0)
    with pytest.raises(TypeError, match="rule must be a jaxnn Rule"):
        rules.make_step(model, optax.sgd(0.1), 0.1)
    with pytest.raises(ValueError, match="k \\(the rank pushed away\\) must be an int >= 1"):
        rules.competitive(k=0)
    with pytest.raises(ValueError, match="method must be one of"):
        rules.gradient(losses.softmax_cross_entropy(), "numerical")
    silent = rules.make_rule("silent", lambda model, params, batch: (params, {}), ascend=True)
    init, step = rules.make_step(model, silent, 0.1)
    with pytest.raises(ValueError, match="rule 'silent': its metrics must include a 'loss'"):
        step(init(params), (jnp.zeros((4, 2)), None), jax.random.key(0))
    init, step = rules.make_step(model, rules.oja(layer=3), 0.1)
    with pytest.raises(ValueError, match="oja: layer 3 is out of range for a model of 1 layers"):
        step(init(params), (jnp.zeros((4, 2)), None), jax.random.key(0))
