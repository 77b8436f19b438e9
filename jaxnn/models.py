"""Models built only from jaxnn layers; each has manual and autodiff gradients like any layer."""

from __future__ import annotations

from collections.abc import Callable

from jaxnn import initializers
from jaxnn.combinators import serial
from jaxnn.core import Layer
from jaxnn.layers import (
    LENET5_C3_TABLE,
    RBF,
    AvgPool,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool,
    Negate,
    PartialConv2D,
    Relu,
    ScaledTanh,
    Subsample,
    Tanh,
)

LENET5_VARIANTS = ("modern", "classic")  # models without state, in every comparison
LENET5_ALL_VARIANTS = LENET5_VARIANTS + ("lecun1998", "bn")
LENET5_INPUT_SHAPE = (-1, 28, 28, 1)


def lenet5(variant: str = "modern", num_classes: int = 10, *, conv: Callable | None = None) -> Layer:
    """LeNet-5 on 28×28×1 NHWC input (LeCun et al. 1998), returning logits (N, num_classes).

    Layers (shapes for a batch of N):
        C1  Conv2D 6@5×5, SAME (pads 28×28 by 2, as the paper's 32×32 input)   (N, 28, 28, 6)
        S2  2×2 pool, stride 2                                                (N, 14, 14, 6)
        C3  Conv2D 16@5×5, VALID, every C3 map sees all six S2 maps             (N, 10, 10, 16)
        S4  2×2 pool, stride 2                                                (N, 5, 5, 16)
            Flatten (H, W, C order)                                           (N, 400)
        C5  Dense 120 · F6 Dense 84 · output Dense num_classes (logits)
    variant="classic": tanh units and average pooling (no trainable coefficients),
        LeCun-normal weights.
    variant="modern": ReLU units and max pooling, He-normal weights.
    Kernels are HWIO, Dense weights (in, out).

    conv: the constructor of C1 and C3 (of C1 alone in "lecun1998"), with `Conv2D`'s signature
    and params; None means `Conv2D`. `jaxnn.layers.CPUConv2D` computes the same layer in
    forms XLA:CPU runs faster.

    How "classic" differs from the 1998 paper: the paper squashes with 1.7159·tanh(2x/3);
    its subsampling layers have a trainable coefficient and bias per map; C3 connects each
    of its 16 maps to only a subset of S2's maps (Table I); C5 is a 5×5 convolution (the
    same as Dense on the 5×5×16 S4 output used here); and the output layer is a set of
    Euclidean RBF units trained with a different criterion rather than logits with softmax
    cross-entropy.

    variant="lecun1998" follows the paper's architecture (15 stages, see `lenet5_stages`):
    ScaledTanh, 1.7159·tanh(2x/3), after each of C1, S2, C3, S4, C5 and F6; S2 and S4 are
    `Subsample(2)` (window sum × a trainable coefficient + a bias per map, the coefficient
    starting at 1/4); C3 is `PartialConv2D` with `LENET5_C3_TABLE` (60 of the 96 map pairs:
    1,516 trainable parameters); the output is `RBF(num_classes)` on F6's 84 units,
    y_k = Σ_i (x_i - c_k,i)², a penalty with no trainable weights, followed by `Negate`, so
    the model returns the scores -y_k (N, num_classes) that softmax cross-entropy expects.
    What still differs from the paper: the RBF centers are fixed random ±1 codes, not its
    7×12 character bitmaps; training minimises softmax cross-entropy on -y, which is the
    paper's MAP criterion (eq. 9, y_D + log(e^{-j} + Σ_k e^{-y_k})) without the rubbish-class
    term e^{-j}; weights start LeCun-normal, not U(-2.4/F, 2.4/F); C5 is Dense (equivalent,
    as above); the input is the 28×28 image SAME-padded, not the paper's 32×32 with
    background -0.1 and ink 1.175; and the paper trained with stochastic diagonal
    Levenberg-Marquardt. It is in LENET5_ALL_VARIANTS, not in LENET5_VARIANTS (the variants
    the accuracy table trains).

    variant="bn" is "modern" with `BatchNorm` between each of C1, C3, C5, F6 and its ReLU
    (statistics over N, H, W per channel for the convolutions) and `Dropout(0.25)` before the
    output layer: a `Layer` with state (running statistics; a key in training).
    """
    return serial(*(layer for _, layer in lenet5_stages(variant, num_classes, conv=conv)))


def lenet5_stages(variant: str = "modern", num_classes: int = 10, *,
                  conv: Callable | None = None) -> list[tuple[str, Layer]]:
    """The layers of `lenet5(variant, conv=conv)` with their names, in order (its params line
    up)."""
    if variant not in LENET5_ALL_VARIANTS:
        raise ValueError(f"lenet5: variant must be one of {LENET5_ALL_VARIANTS}, got {variant!r}")
    Conv = Conv2D if conv is None else conv
    if variant == "lecun1998":
        return _lecun1998_stages(num_classes, Conv)
    if variant == "bn":
        return _bn_stages(num_classes, Conv)
    if variant == "modern":
        act, pool, w_init = Relu, MaxPool, initializers.he_normal
    else:
        act, pool, w_init = Tanh, AvgPool, initializers.lecun_normal
    return [
        ("C1", Conv(6, 5, padding="SAME", w_init=w_init)), ("C1 act", act()), ("S2", pool(2)),
        ("C3", Conv(16, 5, padding="VALID", w_init=w_init)), ("C3 act", act()), ("S4", pool(2)),
        ("flatten", Flatten()),
        ("C5", Dense(120, w_init=w_init)), ("C5 act", act()),
        ("F6", Dense(84, w_init=w_init)), ("F6 act", act()),
        ("output", Dense(num_classes, w_init=initializers.lecun_normal)),
    ]


def _bn_stages(num_classes: int, Conv: Callable) -> list[tuple[str, Layer]]:
    he = initializers.he_normal
    return [
        ("C1", Conv(6, 5, padding="SAME", w_init=he)), ("C1 bn", BatchNorm()), ("C1 act", Relu()),
        ("S2", MaxPool(2)),
        ("C3", Conv(16, 5, padding="VALID", w_init=he)), ("C3 bn", BatchNorm()), ("C3 act", Relu()),
        ("S4", MaxPool(2)), ("flatten", Flatten()),
        ("C5", Dense(120, w_init=he)), ("C5 bn", BatchNorm()), ("C5 act", Relu()),
        ("F6", Dense(84, w_init=he)), ("F6 bn", BatchNorm()), ("F6 act", Relu()),
        ("dropout", Dropout(0.25)),
        ("output", Dense(num_classes, w_init=initializers.lecun_normal)),
    ]


def _lecun1998_stages(num_classes: int, Conv: Callable) -> list[tuple[str, Layer]]:
    return [
        ("C1", Conv(6, 5, padding="SAME")), ("C1 act", ScaledTanh()),
        ("S2", Subsample(2)), ("S2 act", ScaledTanh()),
        ("C3", PartialConv2D(16, 5, LENET5_C3_TABLE, padding="VALID")), ("C3 act", ScaledTanh()),
        ("S4", Subsample(2)), ("S4 act", ScaledTanh()),
        ("flatten", Flatten()),
        ("C5", Dense(120)), ("C5 act", ScaledTanh()),
        ("F6", Dense(84)), ("F6 act", ScaledTanh()),
        ("output", RBF(num_classes)), ("scores", Negate()),
    ]


__all__ = ["LENET5_ALL_VARIANTS", "LENET5_INPUT_SHAPE", "LENET5_VARIANTS", "lenet5",
           "lenet5_stages"]
