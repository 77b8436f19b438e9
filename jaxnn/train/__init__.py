"""Training machinery: the one step signature, chunks, sharding, precision, checkpoints."""

from jaxnn.train import chunks
from jaxnn.train.step import (
    Rule,
    TrainState,
    TrainStep,
    eval_step,
    gradient,
    make_rule,
    make_step,
    train_step,
)

__all__ = ["Rule", "TrainState", "TrainStep", "chunks", "eval_step", "gradient", "make_rule",
           "make_step", "train_step"]
