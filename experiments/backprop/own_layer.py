"""Write your own layer: PReLU in twenty lines, checked four ways, trained with the shared loop.

    python -m experiments.backprop.own_layer --out runs/own_layer [--epochs 3] [--train-subset 10000]

1. `PReLU` below is a complete jaxnn layer: init, forward (keeping what backward needs) and
   the hand-written backward, side by side.
2. `jaxnn.check.compare.compare_layer` checks its backward against reverse mode, forward mode and
   finite differences (float64); the run stops if any pair disagrees.
3. An MLP with PReLU units trains on MNIST through experiments/common/loop.py with the layer's own
   chain rule (--grad manual) or autodiff.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

import jaxnn as nn
from experiments.common import cli
from experiments.common.loop import LoopConfig, UsageError, cli_main, run
from experiments.train_lenet import evaluate_in_batches
from jaxnn import data as jdata
from jaxnn.check import compare
from jaxnn.core import check_input, check_shape


class PReLUParams(NamedTuple):
    a: jax.Array  # (C,) the slope for negative inputs, one per feature


def PReLU(init_slope: float = 0.25) -> nn.Layer:
    """y = x if x > 0 else a ⊙ x, a learned per feature.  x, y: (..., C); a: (C,).

    Backward:  dC/dx = dy ⊙ (1 if x > 0 else a)      dC/da = Σ_{examples} dy ⊙ min(x, 0)
    """
    def init(key, input_shape):
        shape = check_shape("PReLU", input_shape)
        return shape, PReLUParams(jnp.full((shape[-1],), init_slope, jnp.float32))

    def forward(params, x):
        check_input("PReLU", x, trailing=params.a.shape, dtype=params.a.dtype)
        a = params.a.reshape((1,) * (x.ndim - 1) + (-1,))    # explicit broadcast over examples
        return jnp.where(x > 0, x, a * x), x                  # keep x for the backward

    def backward(params, x, dy):
        a = params.a.reshape((1,) * (x.ndim - 1) + (-1,))
        da = (dy * jnp.minimum(x, 0)).reshape(-1, x.shape[-1]).sum(axis=0)
        return PReLUParams(da), jnp.where(x > 0, dy, a * dy)

    return nn.make_layer("PReLU", init, forward, backward)


def check_layer(seed: int = 0) -> dict:
    """PReLU's backward against reverse, forward and finite differences, in float64."""
    with jax.enable_x64(True):
        layer = PReLU()
        _, params, _ = layer.init(jax.random.key(seed), (4, 5))
        params = PReLUParams(params.a.astype(jnp.float64) + jnp.arange(5.0) / 10)
        x = jax.random.normal(jax.random.key(seed + 1), (4, 5), jnp.float64)
        return compare.compare_layer(layer, params, x, key=jax.random.key(seed + 2))


def mlp() -> nn.Layer:
    return nn.serial(nn.Flatten(), nn.Dense(256), PReLU(), nn.Dense(128), PReLU(), nn.Dense(10))


@dataclasses.dataclass(frozen=True)
class Config:
    out: str = "runs/own_layer"
    grad: str = "manual"
    epochs: int = 3
    batch_size: int = 100
    learning_rate: float = 1e-3
    train_subset: int | None = None
    seed: int = 0
    resume: bool = False
    progress: bool = True


def train_and_evaluate(config: Config, data=None, report: dict | None = None) -> dict:
    """Check PReLU's backward (`check_layer`, unless its `report` is given), then train the MLP."""
    if config.grad not in nn.backprop.METHODS:
        raise UsageError(f"--grad must be one of {', '.join(nn.backprop.METHODS)}; got {config.grad!r}")
    for flag, value in (("--batch-size", config.batch_size), ("--train-subset", config.train_subset)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be positive, got {value}")
    if not config.learning_rate > 0:
        raise UsageError(f"--lr must be positive, got {config.learning_rate}")
    loop = LoopConfig(out=config.out, epochs=config.epochs, seed=config.seed, resume=config.resume,
                      progress=config.progress, plots=False).validate()
    report = check_layer(config.seed) if report is None else report
    if not report["agree"]:
        raise RuntimeError(f"PReLU's backward disagrees: {report['rows']}")
    if data is None:
        def prep(split, n=None):
            images, labels = jdata.load("mnist", split)
            return jdata.add_channel_axis(jdata.normalize(images[:n])), labels[:n].astype("int32")
        data = prep("train", config.train_subset), prep("test")
    (x_train, y_train), (x_test, y_test) = data
    model, loss = mlp(), nn.losses.softmax_cross_entropy()
    init_state, step = nn.train_step(model, loss, optax.adam(config.learning_rate), config.grad)
    evaluate = nn.eval_step(model, loss)

    def init():
        _, params, state = model.init(jax.random.key(config.seed), (-1, *x_train.shape[1:]))
        return init_state(params, state)

    def batches(epoch):
        order = jdata.epoch_permutation(len(x_train), config.seed, epoch)
        n = len(x_train) // config.batch_size
        return [(x_train[order[i * config.batch_size:(i + 1) * config.batch_size]],
                 y_train[order[i * config.batch_size:(i + 1) * config.batch_size]]) for i in range(n)]

    def test(state, epoch):
        test_loss, test_acc = evaluate_in_batches(evaluate, state, x_test, y_test, 125)
        return {"test_loss": test_loss, "test_acc": test_acc}

    return run(loop, init=init, step=step, batches=batches, evaluate=test,
               config_dict=dataclasses.asdict(config), name="prelu-mlp",
               summarize=lambda state: {"gradient_check": report["agree"],
                                        "learned_slopes_mean": float(state.params[2].a.mean())})


def main(argv=None) -> int:
    d = Config()
    p = cli.parser("python -m experiments.backprop.own_layer", __doc__)
    p.add_argument("--out", default=d.out)
    p.add_argument("--grad", default=d.grad, help="manual or autodiff")
    p.add_argument("--epochs", type=cli.positive_int, default=d.epochs)
    p.add_argument("--batch-size", type=cli.positive_int, default=d.batch_size)
    p.add_argument("--lr", dest="learning_rate", type=cli.positive_float, default=d.learning_rate)
    p.add_argument("--train-subset", type=cli.positive_int, default=None)
    p.add_argument("--seed", type=cli.seed, default=d.seed)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    config = Config(**vars(p.parse_args(argv)))
    if config.grad not in nn.backprop.METHODS:
        raise UsageError(f"--grad must be one of {', '.join(nn.backprop.METHODS)}; got {config.grad!r}")
    cli.claim_out(config.out, resume=config.resume)
    report = check_layer(config.seed)
    summary = train_and_evaluate(config, report=report)
    cli.print_table(f"PReLU gradient check ({report['dtype']}, {report['coords']} coordinates)",
                    [{"pair": r["pair"], "tensor": r["tensor"], "max abs err": f"{r['max_abs']:.2e}",
                      "max rel err": f"{r['max_rel']:.2e}", "agree": "yes" if r["agree"] else "NO"}
                     for r in report["rows"]])
    cli.print_table("own_layer: headline", [
        ("gradient check, every pair agrees", "yes" if summary["gradient_check"] else "NO"),
        (f"PReLU MLP test accuracy after epoch {summary['final']['epoch']} ({config.grad})",
         f"{100 * summary['final']['test_acc']:.2f} %"),
        ("mean learned slope a", f"{summary['learned_slopes_mean']:.3f}")])
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
