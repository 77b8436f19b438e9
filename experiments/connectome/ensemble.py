"""Ensembles of networks trained at once: one `jaxnn.train_step` step, `jax.vmap`-ed over the
models' parameters, optimiser states and keys, with one batch shared by every model.

    init, step = ensemble_step(layer, loss, optax.adam(1e-2))
    ts = init_ensemble(layer, init, seeds, input_shape)    # every leaf has a leading (M,) axis
    ts, metrics = step(ts, batch, key)                     # metrics["loss"]: (M,)

The step has the one step signature (state, batch, key) -> (state, metrics) and is a jitted
function, so the shared loop (`experiments.common.loop.run`) runs it under its NaN guard.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

import jaxnn as nn
from jaxnn.core import Layer
from jaxnn.losses import Loss


def ensemble_step(layer: Layer, loss: Loss, optimizer: Any, method: str = "manual"
                  ) -> tuple[Callable, Callable]:
    """(init, step): `init` as `jaxnn.train_step`'s; `step(ts, batch, key)` updates all M models
    (M read off the leading axis of ts.step) with keys split from `key`."""
    init, single = nn.train_step(layer, loss, optimizer, method)

    def step(ts, batch, key):
        keys = jax.random.split(key, ts.step.shape[0])
        return jax.vmap(single, in_axes=(0, None, 0))(ts, batch, keys)

    return init, jax.jit(step, donate_argnums=0)


def init_ensemble(layer: Layer, init: Callable, seeds: Sequence[int], input_shape: tuple
                  ) -> Any:
    """The stacked TrainState of one model per seed (params from layer.init(key(seed)))."""
    keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in seeds])

    def one(kd):
        _, params, state = layer.init(jax.random.wrap_key_data(kd), input_shape)
        return init(params, state)

    return jax.jit(jax.vmap(one))(keys)


def unstack(tree: Any, i: int) -> Any:
    """Model i of a stacked pytree."""
    return jax.tree.map(lambda a: a[i], tree)


__all__ = ["ensemble_step", "init_ensemble", "unstack"]
