"""The check every model-level test makes: manual and autodiff gradients are the same pytree."""

import chex

import jaxnn as nn
from jaxnn import losses


def assert_manual_equals_autodiff(model, params, x, targets, *, rtol, atol=1e-6, state=(), key=None):
    """Compare value_and_grad by both methods (softmax cross-entropy); returns both grads."""
    loss = losses.softmax_cross_entropy()
    (value_a, _), grads_a = nn.value_and_grad(model, loss, "autodiff")(params, state, x, targets, key)
    (value_m, _), grads_m = nn.value_and_grad(model, loss, "manual")(params, state, x, targets, key)
    chex.assert_trees_all_equal_structs(grads_m, grads_a)
    chex.assert_trees_all_close(value_m, value_a, rtol=1e-6)
    chex.assert_trees_all_close(grads_m, grads_a, rtol=rtol, atol=atol)
    return grads_a, grads_m
