"""jaxnn: pure-function layers whose backprop is written out by hand, beside autodiff.

    import jaxnn as nn

    model = nn.serial(nn.Dense(32), nn.Relu(), nn.Dense(10))
    _, params, state = model.init(key, (-1, 784))
    y = model(params, x)                                     # a model without state
    init, step = nn.train_step(model, loss, optax.adam(1e-3), method="manual")

The layout: the contract, layers and combinators here (`core`, `layers`, `combinators`,
`backprop`, `losses`, `initializers`, `models`); training machinery in `jaxnn.train`; the
neuroscience in `jaxnn.neuro`; checking tools in `jaxnn.check`; dataset files in `jaxnn.data`.
"""

from jaxnn import backprop, credit, initializers, losses, models
from jaxnn.backprop import as_custom_vjp, intermediates, layer_gradients, value_and_grad
from jaxnn.combinators import FanInConcat, FanInSum, FanOut, parallel, serial
from jaxnn.core import Layer, LayerError, LayerTypeError, fixed_state, make_layer, make_stateful_layer
from jaxnn.layers import (
    LENET5_C3_TABLE,
    LSTM,
    RBF,
    RNN,
    AvgPool,
    BatchNorm,
    BatchNormState,
    Conv2D,
    ConvParams,
    CPUConv2D,
    Dense,
    DenseParams,
    Dropout,
    Flatten,
    Heaviside,
    Identity,
    LayerNorm,
    LogSoftmax,
    LSTMParams,
    MaxPool,
    Negate,
    NormParams,
    PartialConv2D,
    RateParams,
    RateRNN,
    Relu,
    Reshape,
    ScaledTanh,
    Scan,
    Sigmoid,
    Softmax,
    Subsample,
    SubsampleParams,
    Tanh,
)
from jaxnn.train import Rule, TrainState, TrainStep, eval_step, gradient, make_rule, make_step, train_step

__version__ = "0.1.0"

__all__ = [
    "AvgPool", "BatchNorm", "BatchNormState", "CPUConv2D", "Conv2D", "ConvParams", "Dense", "DenseParams",
    "Dropout", "FanInConcat", "FanInSum", "FanOut", "Flatten", "Heaviside", "Identity",
    "LENET5_C3_TABLE", "LSTM", "LSTMParams", "Layer", "LayerError", "LayerNorm",
    "LayerTypeError", "LogSoftmax", "MaxPool", "Negate", "NormParams", "PartialConv2D", "RBF",
    "RNN", "RateParams", "RateRNN", "Relu", "Reshape", "Rule", "Scan", "ScaledTanh", "Sigmoid",
    "Softmax", "Subsample", "SubsampleParams", "Tanh", "TrainState", "TrainStep",
    "as_custom_vjp", "backprop", "credit", "eval_step", "fixed_state", "gradient", "initializers",
    "intermediates", "layer_gradients", "losses", "make_layer", "make_rule", "make_stateful_layer",
    "make_step", "models", "parallel", "serial", "train_step", "value_and_grad",
]
