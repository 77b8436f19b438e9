"""jaxnn: pure-function layers whose backprop is written out by hand, beside autodiff."""

from jaxnn import backprop, cases, compare, initializers, losses, spikes
from jaxnn import microbatch, precision, reinforce, rules, sharding, tasks
from jaxnn.backprop import as_custom_vjp, intermediates, layer_gradients, value_and_grad
from jaxnn.combinators import FanInConcat, FanInSum, FanOut, parallel, serial
from jaxnn.core import (
    Layer, LayerError, LayerTypeError, StatefulLayer, fixed_state, is_stateful, make_layer,
    make_stateful_layer, stateful,
)
from jaxnn.layers import (
    LENET5_C3_TABLE, LSTM, RBF, RNN, AvgPool, BatchNorm, BatchNormState, Conv2D, ConvParams,
    Dense, DenseParams, Dropout, Flatten, Heaviside, Identity, LayerNorm, LogSoftmax, MaxPool,
    Negate, LSTMParams, NormParams, PartialConv2D, RateParams, RateRNN, Relu, Reshape, Scan,
    ScaledTanh, Sigmoid, Softmax, Subsample, SubsampleParams, Tanh,
)
from jaxnn.training import eval_step, train_step

__version__ = "0.1.0"

__all__ = [
    "AvgPool", "BatchNorm", "BatchNormState", "Conv2D", "ConvParams", "Dense", "DenseParams",
    "Dropout", "FanInConcat", "FanInSum", "FanOut", "Flatten", "Heaviside", "Identity",
    "LENET5_C3_TABLE", "LSTM", "LSTMParams", "Layer", "LayerError", "LayerNorm",
    "LayerTypeError", "LogSoftmax", "MaxPool", "Negate", "NormParams", "PartialConv2D", "RBF",
    "RNN", "RateParams", "RateRNN", "Relu", "Reshape", "Scan", "ScaledTanh", "Sigmoid",
    "Softmax", "StatefulLayer", "Subsample", "SubsampleParams", "Tanh", "as_custom_vjp",
    "backprop", "cases", "compare", "microbatch", "precision", "reinforce", "rules", "sharding",
    "tasks", "eval_step", "fixed_state", "initializers", "intermediates", "is_stateful",
    "layer_gradients", "losses", "make_layer", "make_stateful_layer", "parallel", "serial",
    "spikes", "stateful", "train_step", "value_and_grad",
]
