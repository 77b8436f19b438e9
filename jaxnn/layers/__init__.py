"""jaxnn's layers; each module keeps a layer's forward and backward side by side."""

from jaxnn.layers.activations import (
    Heaviside, Identity, LogSoftmax, Relu, Sigmoid, Softmax, Tanh,
)
from jaxnn.layers.conv import Conv2D, ConvParams
from jaxnn.layers.dense import Dense, DenseParams
from jaxnn.layers.pool import AvgPool, MaxPool
from jaxnn.layers.reshape import Flatten, Reshape

__all__ = [
    "AvgPool", "Conv2D", "ConvParams", "Dense", "DenseParams", "Flatten", "Heaviside",
    "Identity", "LogSoftmax", "MaxPool", "Relu", "Reshape", "Sigmoid", "Softmax", "Tanh",
]
