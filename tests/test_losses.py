"""Every loss: the hand-written backward equals jax.grad of apply; values match formulas."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxnn import losses

K1, K2 = jax.random.split(jax.random.key(3))


def _signs(shape):
    return jnp.where(jax.random.bernoulli(K2, 0.5, shape), 1.0, -1.0)


def _probs(shape):
    return jax.random.uniform(K2, shape, minval=0.05, maxval=0.95)


CASES = [
    ("sum_of_squares", losses.sum_of_squares(), (4, 3), lambda s: jax.random.normal(K2, s)),
    ("mse_mean", losses.mse(), (4, 3), lambda s: jax.random.normal(K2, s)),
    ("mse_sum", losses.mse("sum"), (2, 3, 2), lambda s: jax.random.normal(K2, s)),
    ("xent_labels_mean", losses.softmax_cross_entropy(), (5, 4),
     lambda s: jax.random.randint(K2, s[:-1], 0, s[-1])),
    ("xent_labels_sum_3d", losses.softmax_cross_entropy("sum"), (2, 3, 4),
     lambda s: jax.random.randint(K2, s[:-1], 0, s[-1])),
    ("xent_onehot", losses.softmax_cross_entropy(), (5, 4),
     lambda s: jax.nn.one_hot(jax.random.randint(K2, s[:-1], 0, s[-1]), s[-1])),
    ("xent_soft_targets", losses.softmax_cross_entropy(), (5, 4),
     lambda s: jax.nn.softmax(jax.random.normal(K2, s))),
    ("bce_logits", losses.binary_cross_entropy(), (6, 2), _probs),
    ("bce_probs", losses.binary_cross_entropy("sum", from_logits=False), (6, 2), _probs),
    ("hinge", losses.hinge(), (8,), _signs),
    ("perceptron", losses.perceptron("sum"), (8,), _signs),
]


def _pred(name, shape, dtype):
    x = jax.random.normal(K1, shape, dtype)
    return jax.nn.sigmoid(x) if name == "bce_probs" else x


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.float64, 1e-10)])
@pytest.mark.parametrize("name,loss,shape,make_target", CASES, ids=[c[0] for c in CASES])
def test_backward_matches_autodiff(name, loss, shape, make_target, dtype, tol):
    with jax.enable_x64(dtype == jnp.float64):
        pred = _pred(name, shape, dtype)
        target = make_target(shape)
        if jnp.issubdtype(target.dtype, jnp.floating):
            target = target.astype(dtype)
        value, residuals = jax.jit(loss.forward)(pred, target)
        dpred = loss.backward(residuals, jnp.asarray(1.5, dtype))
        want_value, want_dpred = jax.value_and_grad(loss.apply)(pred, target)
        chex.assert_trees_all_close(value, want_value, rtol=tol, atol=tol)
        chex.assert_trees_all_close(dpred, 1.5 * want_dpred, rtol=tol, atol=tol)
        chex.assert_shape(value, ())
        assert float(jnp.abs(dpred).max()) > 0
        if dtype == jnp.float64:
            check_grads(lambda p: loss.apply(p, target), (pred,), order=1, modes=["rev"],
                        atol=1e-6, rtol=1e-6)


def test_values_follow_their_formulas():
    y = jnp.array([[1.0, 2.0], [0.0, -1.0]])
    d = jnp.array([[0.0, 2.0], [1.0, 1.0]])
    assert float(losses.sum_of_squares().apply(y, d)) == pytest.approx(1 + 0 + 1 + 4)
    assert float(losses.mse().apply(y, d)) == pytest.approx(6 / 4)
    logits = jnp.array([[0.0, jnp.log(3.0)]])
    assert float(losses.softmax_cross_entropy().apply(logits, jnp.array([1]))) == \
        pytest.approx(-np.log(0.75), rel=1e-6)
    t = jnp.array([1.0, -1.0, 1.0])
    s = jnp.array([0.5, 0.5, 2.0])
    assert float(losses.hinge(reduction="sum").apply(s, t)) == pytest.approx(0.5 + 1.5 + 0.0)
    assert float(losses.perceptron("sum").apply(s, t)) == pytest.approx(0.5)


def test_integer_and_onehot_targets_agree():
    logits = jax.random.normal(K1, (6, 5))
    labels = jax.random.randint(K2, (6,), 0, 5)
    loss = losses.softmax_cross_entropy()
    a, ra = loss.forward(logits, labels)
    b, rb = loss.forward(logits, jax.nn.one_hot(labels, 5))
    chex.assert_trees_all_close(a, b)
    chex.assert_trees_all_close(loss.backward(ra, jnp.ones(())), loss.backward(rb, jnp.ones(())))


@pytest.mark.parametrize("make,pred_shape,target,match", [
    (losses.mse, (4, 3), jnp.zeros((4,)), r"mse: expected target of shape \(4, 3\).*got \(4,\)"),
    (losses.softmax_cross_entropy, (4, 3), jnp.zeros((3,), jnp.int32),
     r"softmax_cross_entropy: integer labels must have shape \(4,\).*got \(3,\)"),
    (losses.softmax_cross_entropy, (4, 3), jnp.zeros((4, 2)),
     r"softmax_cross_entropy: expected target of shape \(4, 3\)"),
    (losses.hinge, (5,), jnp.ones((5, 1)), r"hinge: expected target of shape \(5,\)"),
])
def test_shape_mismatch_is_an_error_naming_the_loss(make, pred_shape, target, match):
    with pytest.raises(ValueError, match=match):
        make().apply(jnp.zeros(pred_shape), target)


def test_bad_reduction_and_dtype():
    with pytest.raises(ValueError, match="mse: reduction must be 'sum' or 'mean'"):
        losses.mse("average")
    with pytest.raises(TypeError, match="mse: expected floating-point predictions"):
        losses.mse().apply(jnp.zeros((2,), jnp.int32), jnp.zeros((2,)))


@pytest.mark.parametrize("labels,match", [
    ([0, 4, 2], r"softmax_cross_entropy: label 4 at index \(1,\) is outside \[0, 4\) \(4 classes"),
    ([0, -1, 2], r"softmax_cross_entropy: label -1 at index \(1,\) is outside \[0, 4\)"),
    ([[0, 1, 2], [3, 9, -2]], r"label 9 at index \(1, 1\) .*2 bad label\(s\)"),
])
def test_out_of_range_labels_are_an_error_naming_the_loss(labels, match):
    labels = jnp.asarray(labels, jnp.int32)
    logits = jnp.zeros((*labels.shape, 4))
    for reduction in ("sum", "mean"):
        loss = losses.softmax_cross_entropy(reduction)
        with pytest.raises(ValueError, match=match):
            loss.apply(logits, labels)
        with pytest.raises(ValueError, match=match):  # labels stay concrete under jax.grad
            jax.grad(loss.apply)(logits, labels)


def test_under_jit_an_out_of_range_label_drops_out_as_documented():
    """Traced labels cannot be checked: the bad example's target row is all zero."""
    logits = jax.random.normal(K1, (3, 4))
    labels = jnp.array([0, 4, 2], jnp.int32)
    loss = losses.softmax_cross_entropy()
    log_p = jax.nn.log_softmax(logits)
    want = -(log_p[0, 0] + log_p[2, 2]) / 3
    np.testing.assert_allclose(jax.jit(loss.apply)(logits, labels), want, rtol=1e-6)
    value, residuals = jax.jit(loss.forward)(logits, labels)
    assert not np.asarray(loss.backward(residuals, jnp.ones(()))[1]).any()


@pytest.mark.parametrize("margin", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_hyperparameters_are_refused(margin):
    with pytest.raises(ValueError, match="hinge: margin must be finite"):
        losses.hinge(margin)
    with pytest.raises(TypeError, match="hinge: margin must be a real number"):
        losses.hinge("1.0")
