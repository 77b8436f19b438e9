"""Models built only from jaxnn layers; each has manual and autodiff gradients like any layer."""

from __future__ import annotations

from jaxnn import initializers
from jaxnn.core import Layer, serial
from jaxnn.layers import AvgPool, Conv2D, Dense, Flatten, MaxPool, Relu, Tanh

LENET5_VARIANTS = ("modern", "classic")
LENET5_INPUT_SHAPE = (-1, 28, 28, 1)


def lenet5(variant: str = "modern", num_classes: int = 10) -> Layer:
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

    How "classic" differs from the 1998 paper: the paper squashes with 1.7159·tanh(2x/3);
    its subsampling layers have a trainable coefficient and bias per map; C3 connects each
    of its 16 maps to only a subset of S2's maps (Table I); C5 is a 5×5 convolution (the
    same as Dense on the 5×5×16 S4 output used here); and the output layer is a set of
    Euclidean RBF units trained with a different criterion rather than logits with softmax
    cross-entropy.
    """
    return serial(*(layer for _, layer in lenet5_stages(variant, num_classes)))


def lenet5_stages(variant: str = "modern", num_classes: int = 10) -> list[tuple[str, Layer]]:
    """The layers of `lenet5(variant)` with their names, in order (its params line up)."""
    if variant not in LENET5_VARIANTS:
        raise ValueError(f"lenet5: variant must be one of {LENET5_VARIANTS}, got {variant!r}")
    if variant == "modern":
        act, pool, w_init = Relu, MaxPool, initializers.he_normal
    else:
        act, pool, w_init = Tanh, AvgPool, initializers.lecun_normal
    return [
        ("C1", Conv2D(6, 5, padding="SAME", w_init=w_init)), ("C1 act", act()), ("S2", pool(2)),
        ("C3", Conv2D(16, 5, padding="VALID", w_init=w_init)), ("C3 act", act()), ("S4", pool(2)),
        ("flatten", Flatten()),
        ("C5", Dense(120, w_init=w_init)), ("C5 act", act()),
        ("F6", Dense(84, w_init=w_init)), ("F6 act", act()),
        ("output", Dense(num_classes, w_init=initializers.lecun_normal)),
    ]


__all__ = ["LENET5_INPUT_SHAPE", "LENET5_VARIANTS", "lenet5", "lenet5_stages"]
