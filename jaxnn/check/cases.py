"""The one table of layer cases that every agreement check runs: a new layer is a new row.

Each `Case` names a layer constructor and an input shape. The test suite (tests/test_layers.py)
checks on every row that init's output shape is apply's, that the hand-written backward equals
`jax.vjp` (float32 and float64) and, where `numeric` is true, that `jax.test_util.check_grads`
passes; `python -m experiments.backprop.compare_backprop` runs the same rows through manual, reverse,
forward mode, finite differences and, where it has one, the NumPy reference.

    Case(id, make, input_shape, numeric=True)
        id           unique name, used as the test id and as the key of per-case extras
        make         () -> Layer, a fresh layer (constructors are cheap and pure)
        input_shape  the full input shape, batch axis included
        numeric      False where finite differences of `apply` differ from the backward by
                     design (a straight-through estimator: the step's derivative is 0 almost
                     everywhere, which finite differences see)
"""

from __future__ import annotations

from typing import Callable, Iterable, NamedTuple

import jaxnn as nn
from jaxnn.core import Layer


class Case(NamedTuple):
    """One row of the table (see the module docstring)."""

    id: str
    make: Callable[[], Layer]
    input_shape: tuple[int, ...]
    numeric: bool = True


LAYER_CASES: list[Case] = [
    Case("dense", lambda: nn.Dense(5), (3, 4)),
    Case("dense_3d_input", lambda: nn.Dense(2), (2, 3, 4)),
    Case("dense_glorot", lambda: nn.Dense(3, w_init=nn.initializers.glorot_uniform), (4, 6)),
    Case("conv_valid", lambda: nn.Conv2D(3, 3), (2, 7, 6, 2)),
    Case("conv_same", lambda: nn.Conv2D(4, 5, padding="SAME"), (2, 8, 8, 1)),
    Case("conv_1_channel_rect", lambda: nn.Conv2D(3, (3, 2), padding=((1, 0), (0, 2))), (2, 6, 5, 1)),
    Case("conv_stride2_same", lambda: nn.Conv2D(3, 3, strides=2, padding="SAME"), (2, 9, 8, 2)),
    Case("conv_stride3_valid_ragged", lambda: nn.Conv2D(2, (3, 2), strides=(3, 2), padding="VALID"),
         (1, 11, 9, 3)),
    Case("conv_explicit_asym", lambda: nn.Conv2D(2, (2, 3), strides=(2, 1), padding=((1, 3), (0, 2))),
         (2, 7, 5, 2)),
    Case("conv_1x1", lambda: nn.Conv2D(3, 1), (2, 4, 4, 5)),
    Case("conv_he", lambda: nn.Conv2D(2, 3, padding=1, w_init=nn.initializers.he_uniform), (1, 5, 5, 2)),
    Case("avgpool_2", lambda: nn.AvgPool(2), (2, 8, 6, 3)),
    Case("avgpool_ragged", lambda: nn.AvgPool(2), (2, 7, 5, 3)),
    Case("avgpool_overlap_same", lambda: nn.AvgPool(3, strides=2, padding="SAME"), (2, 9, 8, 2)),
    Case("avgpool_rect", lambda: nn.AvgPool((3, 2), strides=(1, 2)), (1, 6, 6, 2)),
    Case("maxpool_2", lambda: nn.MaxPool(2), (2, 8, 6, 3)),
    Case("maxpool_ragged", lambda: nn.MaxPool(2), (2, 7, 5, 3)),
    Case("maxpool_overlap_same", lambda: nn.MaxPool(3, strides=2, padding="SAME"), (2, 9, 8, 2)),
    Case("maxpool_explicit", lambda: nn.MaxPool((2, 3), strides=(2, 1), padding=((1, 0), (1, 1))),
         (1, 6, 5, 2)),
    Case("flatten", lambda: nn.Flatten(), (2, 3, 4, 5)),
    Case("reshape", lambda: nn.Reshape((4, -1)), (3, 2, 6)),
    Case("identity", lambda: nn.Identity(), (3, 4)),
    Case("tanh", lambda: nn.Tanh(), (3, 4, 2)),
    Case("sigmoid", lambda: nn.Sigmoid(), (3, 5)),
    Case("relu", lambda: nn.Relu(), (3, 5)),
    Case("softmax", lambda: nn.Softmax(), (3, 6)),
    Case("softmax_axis1", lambda: nn.Softmax(axis=1), (2, 4, 3)),
    Case("logsoftmax", lambda: nn.LogSoftmax(), (3, 6)),
    Case("heaviside", lambda: nn.Heaviside(), (3, 5)),
    Case("heaviside_straight_through", lambda: nn.Heaviside(straight_through=True), (3, 5),
         numeric=False),
    Case("scaled_tanh", lambda: nn.ScaledTanh(), (3, 4, 2)),
    Case("scaled_tanh_custom", lambda: nn.ScaledTanh(a=2.0, s=0.5), (3, 5)),
    Case("negate", lambda: nn.Negate(), (3, 4)),
    Case("subsample_2", lambda: nn.Subsample(2), (2, 8, 6, 3)),
    Case("subsample_ragged", lambda: nn.Subsample(2), (2, 7, 5, 3)),
    Case("subsample_rect_uniform_init", lambda: nn.Subsample((3, 2), coef_init=nn.initializers.uniform(1.0),
                                                              b_init=nn.initializers.normal(1.0)),
         (1, 7, 4, 2)),
    Case("partial_conv_lenet5_c3", lambda: nn.PartialConv2D(16, 5, nn.LENET5_C3_TABLE), (2, 8, 7, 6)),
    Case("partial_conv_same_stride2", lambda: nn.PartialConv2D(3, 3, [[1, 0, 1], [0, 1, 1]], strides=2,
                                                                padding="SAME"), (2, 7, 6, 2)),
    Case("partial_conv_one_input", lambda: nn.PartialConv2D(2, 3, [[True, False]], padding=1),
         (2, 5, 5, 1)),
    Case("layernorm", lambda: nn.LayerNorm(), (3, 5)),
    Case("scan_dense", lambda: nn.Scan(nn.Dense(3)), (2, 4, 5)),
    Case("rbf_codes", lambda: nn.RBF(4), (3, 6)),
    Case("rbf_given_centers", lambda: nn.RBF(2, [[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]]), (4, 3)),
    Case("serial_lecun1998_head", lambda: nn.serial(nn.Dense(6), nn.ScaledTanh(), nn.RBF(3), nn.Negate()),
         (4, 5)),
    Case("serial_mlp", lambda: nn.serial(nn.Dense(6), nn.Tanh(), nn.Dense(3), nn.LogSoftmax()), (4, 5)),
    Case("serial_convnet", lambda: nn.serial(nn.Conv2D(3, 3, padding="SAME"), nn.Tanh(), nn.MaxPool(2),
                                             nn.Flatten(), nn.Dense(4)), (2, 6, 6, 1)),
    Case("serial_relu_avgpool", lambda: nn.serial(nn.Conv2D(2, 3, strides=2), nn.Relu(), nn.AvgPool(2),
                                                  nn.Flatten(), nn.Dense(3)), (2, 9, 9, 2)),
    Case("residual_branch", lambda: nn.serial(nn.FanOut(2), nn.parallel(nn.Dense(4), nn.Identity()),
                                              nn.FanInSum(), nn.Tanh()), (3, 4)),
    Case("concat_branch", lambda: nn.serial(nn.FanOut(2), nn.parallel(nn.Dense(2), nn.Sigmoid()),
                                            nn.FanInConcat()), (3, 4)),
]


def select(ids: Iterable[str], cases: Iterable[Case] | None = None) -> list[Case]:
    """The cases with the given ids, in table order; an unknown id raises ValueError naming it."""
    cases = list(LAYER_CASES if cases is None else cases)
    wanted = list(ids)
    unknown = sorted(set(wanted) - {c.id for c in cases})
    if unknown:
        raise ValueError(f"unknown case ids {unknown}; known ids: {', '.join(c.id for c in cases)}")
    return [c for c in cases if c.id in set(wanted)]


__all__ = ["Case", "LAYER_CASES", "select"]
