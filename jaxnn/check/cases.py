"""The one table of layer cases that every agreement check runs: a new layer is a new row.

Each `Case` names a layer constructor, an input shape and the mode to run it in. The test suite
(tests/test_layers.py) checks on every row that init's output shape is apply's, that the
hand-written backward equals `jax.vjp` (float32 and float64) and, where `numeric` is true, that
`jax.test_util.check_grads` passes on the hand-written backward (float64 finite differences);
`python -m experiments.backprop.compare_backprop` runs the same rows through manual, reverse,
forward mode, finite differences and, where it has one, the NumPy reference.

A row with state, a key or a train/eval switch (BatchNorm, Dropout, a noisy RateRNN, a model
holding one) is checked through `fixed_state(layer, state, key=..., train=...)`: the plain
(params, x) function with its state, key and mode held fixed (`setup` builds it).

    Case(id, make, input_shape, numeric=True, train=False, key=False, perturb=False)
        id           unique name, used as the test id and as the key of per-case extras
        make         () -> Layer, a fresh layer (constructors are cheap and pure)
        input_shape  the full input shape, batch axis included
        numeric      False where finite differences of `apply` differ from the backward by
                     design (a straight-through estimator: the step's derivative is 0 almost
                     everywhere, which finite differences see)
        train        the mode the row runs in (BatchNorm's batch statistics, Dropout's mask)
        key          True where the layer draws random numbers (then from `ROW_KEY`)
        perturb      True where init's constants would hide a bug (γ = 1, β = 0, running
                     statistics 0 and 1: a backward that forgets γ would still agree), so
                     params and state are moved away from them
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import initializers
from jaxnn.combinators import FanInConcat, FanInSum, FanOut, parallel, serial
from jaxnn.core import Layer, fixed_state
from jaxnn.layers import (
    LENET5_C3_TABLE,
    LSTM,
    RBF,
    RNN,
    AvgPool,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Heaviside,
    Identity,
    LayerNorm,
    LogSoftmax,
    MaxPool,
    Negate,
    PartialConv2D,
    RateRNN,
    Relu,
    Reshape,
    ScaledTanh,
    Scan,
    Sigmoid,
    Softmax,
    Subsample,
    Tanh,
)
from jaxnn.neuro.connectome import ConnectomeRNN, Wiring

ROW_KEY = 3  # rows with key=True draw their random numbers from jax.random.key(ROW_KEY)


class Case(NamedTuple):
    """One row of the table (see the module docstring)."""

    id: str
    make: Callable[[], Layer]
    input_shape: tuple[int, ...]
    numeric: bool = True
    train: bool = False
    key: bool = False
    perturb: bool = False


_ADJACENCY = (np.arange(25).reshape(5, 5) % 3 != 0).astype(np.int32)
# A 5-neuron wiring for ConnectomeRNN: chemical counts (pre row, post column), symmetric gap junctions.
_WIRING = Wiring(("S1", "S2", "RIS", "I1", "M1"),
                 np.array([[0, 2, 0, 1, 0], [0, 0, 3, 0, 1], [1, 0, 0, 2, 0], [0, 1, 0, 0, 4],
                           [2, 0, 1, 0, 0]], np.float64),
                 np.array([[0, 1, 0, 0, 0], [1, 0, 0, 2, 0], [0, 0, 0, 0, 1], [0, 2, 0, 0, 0],
                           [0, 0, 1, 0, 0]], np.float64))

LAYER_CASES: list[Case] = [
    Case("dense", lambda: Dense(5), (3, 4)),
    Case("dense_3d_input", lambda: Dense(2), (2, 3, 4)),
    Case("dense_glorot", lambda: Dense(3, w_init=initializers.glorot_uniform), (4, 6)),
    Case("conv_valid", lambda: Conv2D(3, 3), (2, 7, 6, 2)),
    Case("conv_same", lambda: Conv2D(4, 5, padding="SAME"), (2, 8, 8, 1)),
    Case("conv_1_channel_rect", lambda: Conv2D(3, (3, 2), padding=((1, 0), (0, 2))), (2, 6, 5, 1)),
    Case("conv_stride2_same", lambda: Conv2D(3, 3, strides=2, padding="SAME"), (2, 9, 8, 2)),
    Case("conv_stride3_valid_ragged", lambda: Conv2D(2, (3, 2), strides=(3, 2), padding="VALID"),
         (1, 11, 9, 3)),
    Case("conv_explicit_asym", lambda: Conv2D(2, (2, 3), strides=(2, 1), padding=((1, 3), (0, 2))),
         (2, 7, 5, 2)),
    Case("conv_1x1", lambda: Conv2D(3, 1), (2, 4, 4, 5)),
    Case("conv_he", lambda: Conv2D(2, 3, padding=1, w_init=initializers.he_uniform), (1, 5, 5, 2)),
    Case("avgpool_2", lambda: AvgPool(2), (2, 8, 6, 3)),
    Case("avgpool_ragged", lambda: AvgPool(2), (2, 7, 5, 3)),
    Case("avgpool_overlap_same", lambda: AvgPool(3, strides=2, padding="SAME"), (2, 9, 8, 2)),
    Case("avgpool_rect", lambda: AvgPool((3, 2), strides=(1, 2)), (1, 6, 6, 2)),
    Case("maxpool_2", lambda: MaxPool(2), (2, 8, 6, 3)),
    Case("maxpool_ragged", lambda: MaxPool(2), (2, 7, 5, 3)),
    Case("maxpool_overlap_same", lambda: MaxPool(3, strides=2, padding="SAME"), (2, 9, 8, 2)),
    Case("maxpool_explicit", lambda: MaxPool((2, 3), strides=(2, 1), padding=((1, 0), (1, 1))),
         (1, 6, 5, 2)),
    Case("flatten", lambda: Flatten(), (2, 3, 4, 5)),
    Case("reshape", lambda: Reshape((4, -1)), (3, 2, 6)),
    Case("identity", lambda: Identity(), (3, 4)),
    Case("tanh", lambda: Tanh(), (3, 4, 2)),
    Case("sigmoid", lambda: Sigmoid(), (3, 5)),
    Case("relu", lambda: Relu(), (3, 5)),
    Case("softmax", lambda: Softmax(), (3, 6)),
    Case("softmax_axis1", lambda: Softmax(axis=1), (2, 4, 3)),
    Case("logsoftmax", lambda: LogSoftmax(), (3, 6)),
    Case("heaviside", lambda: Heaviside(), (3, 5)),
    Case("heaviside_straight_through", lambda: Heaviside(straight_through=True), (3, 5),
         numeric=False),
    Case("scaled_tanh", lambda: ScaledTanh(), (3, 4, 2)),
    Case("scaled_tanh_custom", lambda: ScaledTanh(a=2.0, s=0.5), (3, 5)),
    Case("negate", lambda: Negate(), (3, 4)),
    Case("subsample_2", lambda: Subsample(2), (2, 8, 6, 3)),
    Case("subsample_ragged", lambda: Subsample(2), (2, 7, 5, 3)),
    Case("subsample_rect_uniform_init", lambda: Subsample((3, 2), coef_init=initializers.uniform(1.0),
                                                          b_init=initializers.normal(1.0)),
         (1, 7, 4, 2)),
    Case("partial_conv_lenet5_c3", lambda: PartialConv2D(16, 5, LENET5_C3_TABLE), (2, 8, 7, 6)),
    Case("partial_conv_same_stride2", lambda: PartialConv2D(3, 3, [[1, 0, 1], [0, 1, 1]], strides=2,
                                                            padding="SAME"), (2, 7, 6, 2)),
    Case("partial_conv_one_input", lambda: PartialConv2D(2, 3, [[True, False]], padding=1),
         (2, 5, 5, 1)),
    Case("layernorm", lambda: LayerNorm(), (3, 5), perturb=True),
    Case("rbf_codes", lambda: RBF(4), (3, 6)),
    Case("rbf_given_centers", lambda: RBF(2, [[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]]), (4, 3)),
    # ---- state, key, train/eval: checked through fixed_state
    Case("batchnorm_train", lambda: BatchNorm(), (6, 4), train=True, perturb=True),
    Case("batchnorm_nhwc_eval", lambda: BatchNorm(momentum=0.5), (3, 4, 5, 2), perturb=True),
    Case("dropout_train", lambda: Dropout(0.3), (4, 5), train=True, key=True),
    # ---- recurrent: backprop through time
    Case("scan_dense", lambda: Scan(Dense(3)), (2, 4, 5)),
    Case("scan_dropout_train", lambda: Scan(Dropout(0.5)), (2, 4, 3), train=True, key=True),
    Case("rnn", lambda: RNN(5), (2, 6, 3)),
    Case("lstm", lambda: LSTM(4), (2, 6, 3)),
    Case("rate_rates", lambda: RateRNN(5, tau=100.0, dt=20.0), (2, 6, 3)),
    Case("rate_dale_sparse", lambda: RateRNN(10, 3, dale=True, connectivity=0.5, rec_gain=1.5),
         (2, 6, 3)),
    Case("rate_adjacency_noise_train", lambda: RateRNN(5, 2, dt=10.0, noise=0.1,
                                                       connectivity=_ADJACENCY),
         (2, 6, 3), train=True, key=True),
    Case("connectome_learned_signs_noise_train",
         lambda: ConnectomeRNN(_WIRING, ("S1", "S2"), ("M1",), signs="neuron", noise=0.1,
                               readout_scale=3.0), (2, 5, 2), train=True, key=True, perturb=True),
    Case("connectome_synapse_signs", lambda: ConnectomeRNN(_WIRING, (("S1", "S2"),), ("I1", "M1"),
                                                           signs="synapse", dt=20.0),
         (2, 5, 1), perturb=True),
    # ---- combinators
    Case("serial_lecun1998_head", lambda: serial(Dense(6), ScaledTanh(), RBF(3), Negate()), (4, 5)),
    Case("serial_mlp", lambda: serial(Dense(6), Tanh(), Dense(3), LogSoftmax()), (4, 5)),
    Case("serial_convnet", lambda: serial(Conv2D(3, 3, padding="SAME"), Tanh(), MaxPool(2),
                                          Flatten(), Dense(4)), (2, 6, 6, 1)),
    Case("serial_relu_avgpool", lambda: serial(Conv2D(2, 3, strides=2), Relu(), AvgPool(2),
                                               Flatten(), Dense(3)), (2, 9, 9, 2)),
    Case("residual_branch", lambda: serial(FanOut(2), parallel(Dense(4), Identity()), FanInSum(),
                                           Tanh()), (3, 4)),
    Case("concat_branch", lambda: serial(FanOut(2), parallel(Dense(2), Sigmoid()), FanInConcat()),
         (3, 4)),
    Case("serial_bn_dropout_mlp_train", lambda: serial(Dense(6), BatchNorm(), Relu(), Dropout(0.5),
                                                       Dense(3)),
         (5, 4), train=True, key=True, perturb=True),
    Case("serial_conv_bn_eval", lambda: serial(Conv2D(3, 3, padding="SAME"), BatchNorm(), Tanh(),
                                               MaxPool(2), Flatten(), Dense(2)),
         (2, 6, 6, 1), perturb=True),
    Case("parallel_branch_bn_train", lambda: serial(FanOut(2), parallel(BatchNorm(), Dense(4)),
                                                    FanInSum()),
         (5, 4), train=True, perturb=True),
]


class Setup(NamedTuple):
    """A row made concrete: `view` is the (params, x) layer the checks differentiate."""

    layer: Layer  # the row's layer
    view: Layer  # fixed_state(layer, state, key=..., train=case.train)
    out_shape: Any  # what init returned
    params: Any
    state: Any
    x: jax.Array


def _cast(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a,
                        tree)


def _moved(tree, key, draw):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, max(len(leaves), 1))
    return jax.tree.unflatten(treedef, [a + 0.5 * draw(k, a.shape, a.dtype)
                                        for k, a in zip(keys, leaves)])


def build(case: Case, layer: Layer, dtype, key: jax.Array) -> tuple[Any, Any, Any, jax.Array]:
    """(out_shape, params, state, x) of a row, traceable (`setup` compiles it): params and state
    from init (moved off init's constants where `case.perturb`) cast to `dtype`, x ~ N(0, 1)."""
    k_init, k_x, k_p, k_s = jax.random.split(key, 4)
    out_shape, params, state = layer.init(k_init, case.input_shape)
    params, state = _cast(params, dtype), _cast(state, dtype)
    if case.perturb:
        params = _moved(params, k_p, jax.random.normal)
        state = _moved(state, k_s, jax.random.uniform)  # variances stay positive
    return out_shape, params, state, jax.random.normal(k_x, case.input_shape, dtype)


def view(case: Case, layer: Layer, state) -> Layer:
    """The row's layer as the checks differentiate it: `fixed_state` with the row's mode and,
    where it draws random numbers, the key `jax.random.key(ROW_KEY)`."""
    return fixed_state(layer, state, key=jax.random.key(ROW_KEY) if case.key else None,
                       train=case.train)


def setup(case: Case, dtype=jnp.float32, key: jax.Array | None = None) -> Setup:
    """A row made concrete (`build`, in one compiled call: op by op, each new shape would
    compile a kernel of its own) with its fixed-state view."""
    layer = case.make()
    static = {}

    def run(key):
        static["out_shape"], *arrays = build(case, layer, dtype, key)
        return arrays

    params, state, x = jax.jit(run)(jax.random.key(0) if key is None else key)
    return Setup(layer, view(case, layer, state), static["out_shape"], params, state, x)


def select(ids: Iterable[str], cases: Iterable[Case] | None = None) -> list[Case]:
    """The cases with the given ids, in table order; an unknown id raises ValueError naming it."""
    cases = list(LAYER_CASES if cases is None else cases)
    wanted = list(ids)
    unknown = sorted(set(wanted) - {c.id for c in cases})
    if unknown:
        raise ValueError(f"unknown case ids {unknown}; known ids: {', '.join(c.id for c in cases)}")
    return [c for c in cases if c.id in set(wanted)]


__all__ = ["Case", "LAYER_CASES", "ROW_KEY", "Setup", "build", "select", "setup", "view"]
