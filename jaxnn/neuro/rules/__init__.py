"""Learning rules beside gradients: each is a `jaxnn.Rule`, and `jaxnn.make_step` drives them all.

    from jaxnn.neuro import rules
    init, step = rules.make_step(model, rules.oja(), optax.sgd(1e-2))
    ts, metrics = step(init(params), (x, targets), key)

`base` holds the layer-local rules (`local`, `layer_io`); `perceptron`, `hebbian` and
`competitive` hold the classic rules. The contract (`Rule`, `make_rule`, `gradient`,
`make_step`, `TrainState`) is `jaxnn.train.step`, re-exported here for convenience.
"""

from jaxnn.neuro.rules.base import check_layer_index, layer_io, local, zero_except
from jaxnn.neuro.rules.competitive import (
    competition,
    competitive,
    competitive_update,
    krotov_hopfield,
    responses,
    unit_length,
    winner_take_all,
)
from jaxnn.neuro.rules.hebbian import (
    cosine_to,
    hebb,
    hebb_update,
    oja,
    oja_update,
    orthogonality_error,
    output_power,
    principal_angles,
    reconstruction_error,
    sanger,
    sanger_update,
)
from jaxnn.neuro.rules.perceptron import (
    Averaged,
    averaged_epoch,
    averaged_params,
    averaged_start,
    classify,
    fires,
    net_input,
    novikoff_bound,
    one_vs_rest,
    perceptron,
    perceptron_epoch,
)
from jaxnn.train.step import Rule, TrainState, TrainStep, gradient, make_rule, make_step

__all__ = [
    "Averaged", "Rule", "TrainState", "TrainStep", "averaged_epoch", "averaged_params",
    "averaged_start", "check_layer_index", "classify", "competition", "competitive",
    "competitive_update", "cosine_to", "fires", "gradient", "hebb", "hebb_update",
    "krotov_hopfield", "layer_io", "local", "make_rule", "make_step", "net_input",
    "novikoff_bound", "oja", "oja_update", "one_vs_rest", "orthogonality_error", "output_power",
    "perceptron", "perceptron_epoch", "principal_angles", "reconstruction_error", "responses",
    "sanger", "sanger_update", "unit_length", "winner_take_all", "zero_except",
]
