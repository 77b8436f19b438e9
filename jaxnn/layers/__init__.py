"""jaxnn's layers; each module keeps a layer's forward and backward side by side."""

from jaxnn.layers.activations import Heaviside, Identity, LogSoftmax, Relu, Sigmoid, Softmax, Tanh
from jaxnn.layers.conv import Conv2D, ConvParams
from jaxnn.layers.conv_cpu import CPUConv2D
from jaxnn.layers.dense import Dense, DenseParams
from jaxnn.layers.dropout import Dropout
from jaxnn.layers.lecun1998 import (
    LENET5_C3_TABLE,
    RBF,
    Negate,
    PartialConv2D,
    ScaledTanh,
    Subsample,
    SubsampleParams,
)
from jaxnn.layers.lstm import LSTM, LSTMParams
from jaxnn.layers.norm import BatchNorm, BatchNormState, LayerNorm, NormParams
from jaxnn.layers.pool import AvgPool, MaxPool
from jaxnn.layers.recurrent import RNN, RateParams, RateRNN
from jaxnn.layers.reshape import Flatten, Reshape
from jaxnn.layers.scan import Scan

__all__ = [
    "AvgPool", "BatchNorm", "BatchNormState", "CPUConv2D", "Conv2D", "ConvParams", "Dense",
    "DenseParams",
    "Dropout", "Flatten", "Heaviside", "Identity", "LENET5_C3_TABLE", "LSTM", "LSTMParams",
    "LayerNorm", "LogSoftmax", "MaxPool", "Negate", "NormParams", "PartialConv2D", "RBF", "RNN",
    "RateParams", "RateRNN", "Relu", "Reshape", "Scan", "ScaledTanh", "Sigmoid", "Softmax",
    "Subsample", "SubsampleParams", "Tanh",
]
