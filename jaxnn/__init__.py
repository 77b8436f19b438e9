"""jaxnn: pure-function layers whose backprop is written out by hand, beside autodiff."""

from jaxnn import backprop, compare, initializers, losses
from jaxnn.backprop import as_custom_vjp, value_and_grad
from jaxnn.core import (
    FanInConcat, FanInSum, FanOut, Layer, LayerError, LayerTypeError, make_layer, parallel, serial,
)
from jaxnn.layers import (
    LENET5_C3_TABLE, RBF, AvgPool, Conv2D, ConvParams, Dense, DenseParams, Flatten, Heaviside,
    Identity, LogSoftmax, MaxPool, Negate, PartialConv2D, Relu, Reshape, ScaledTanh, Sigmoid,
    Softmax, Subsample, SubsampleParams, Tanh,
)
from jaxnn.training import eval_step, train_step

__version__ = "0.1.0"

__all__ = [
    "AvgPool", "Conv2D", "ConvParams", "Dense", "DenseParams", "FanInConcat", "FanInSum",
    "FanOut", "Flatten", "Heaviside", "Identity", "LENET5_C3_TABLE", "Layer", "LayerError",
    "LayerTypeError", "LogSoftmax", "MaxPool", "Negate", "PartialConv2D", "RBF", "Relu", "Reshape",
    "ScaledTanh", "Sigmoid", "Softmax", "Subsample", "SubsampleParams", "Tanh", "as_custom_vjp",
    "backprop", "compare", "eval_step", "initializers", "losses", "make_layer", "parallel",
    "serial", "train_step", "value_and_grad",
]
