"""jaxnn's layers; each module keeps a layer's forward and backward side by side."""

from jaxnn.layers.activations import (
    Heaviside, Identity, LogSoftmax, Relu, Sigmoid, Softmax, Tanh,
)
from jaxnn.layers.conv import Conv2D, ConvParams
from jaxnn.layers.dense import Dense, DenseParams
from jaxnn.layers.lecun1998 import (
    LENET5_C3_TABLE, RBF, Negate, PartialConv2D, ScaledTanh, Subsample, SubsampleParams,
)
from jaxnn.layers.pool import AvgPool, MaxPool
from jaxnn.layers.reshape import Flatten, Reshape

__all__ = [
    "AvgPool", "Conv2D", "ConvParams", "Dense", "DenseParams", "Flatten", "Heaviside",
    "Identity", "LENET5_C3_TABLE", "LogSoftmax", "MaxPool", "Negate", "PartialConv2D", "RBF",
    "Relu", "Reshape", "ScaledTanh", "Sigmoid", "Softmax", "Subsample", "SubsampleParams", "Tanh",
]
