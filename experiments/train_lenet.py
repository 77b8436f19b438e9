"""Train LeNet-5 on the real MNIST database, by autodiff or by the hand-written chain rule.

    python -m experiments.train_lenet                      # modern LeNet-5, defaults below
    python -m experiments.train_lenet --variant classic --grad manual --seed 1
    python -m experiments.train_lenet --variant bn         # BatchNorm + Dropout (stateful)
    python -m experiments.train_lenet --out runs/x --resume  # continue an interrupted run
    python -m experiments.train_lenet --devices 2 --precision bf16   # 2 devices, bf16 compute
    python -m experiments.train_lenet --chunk none --conv plain      # the speed options off
    python -m experiments.common.launch -n 2 -- python -m experiments.train_lenet --out runs/mp

Runs on the shared loop (experiments/common/loop.py), which writes to --out: metrics.csv (one row per
epoch, including each layer's gradient norms ‖dC/dX_i‖ and ‖dC/dW_i‖ on a fixed batch),
summary.json, checkpoints/ (one per epoch, atomic), plots/*.png. A resumed run continues bit
for bit: the data order of epoch e and each image's random shift (the only augmentation,
--max-shift) depend only on (seed, e), and the training state comes back from the newest
intact checkpoint.

The step is `jaxnn.train_step(model, loss, optimizer, --grad, chunk=--chunk)`, its state a
`jaxnn.TrainState` (params, BatchNorm's statistics, optimiser state, step count). Two speed
options change how a step is computed, not what: --chunk cuts each batch into chunks inside the
compiled step (`jaxnn.train.chunks`) and --conv cpu builds C1 and C3 as `jaxnn.layers.CPUConv2D`
(the same function and params as `Conv2D`). Their defaults depend on the backend (32 and cpu on
XLA:CPU, none and plain on a GPU or TPU; benchmarks/README.md has the measurements) and the
values chosen are recorded in config.json. Evaluation runs in chunks of --chunk when given,
else of the backend's evaluation default (250 on XLA:CPU, none elsewhere); config.json records
it as eval_chunk.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn
from experiments.common import cli, scaling
from experiments.common.loop import LoopConfig, UsageError, cli_main, run
from jaxnn import data as jdata
from jaxnn.core import no_state
from jaxnn.models import LENET5_ALL_VARIANTS, LENET5_INPUT_SHAPE, lenet5, lenet5_stages
from jaxnn.train import chunks

OPTIMIZERS = ("adam", "adamw", "sgd", "momentum")
SCHEDULES = ("cosine", "constant")
CONVS = ("plain", "cpu")  # C1 and C3 as jaxnn.layers.Conv2D, or as jaxnn.layers.CPUConv2D
BACKEND = "backend"  # the default of --chunk and --conv: chosen for jax.default_backend()


@dataclasses.dataclass(frozen=True)
class Config:
    variant: str = "modern"
    grad: str = "autodiff"
    epochs: int = 12
    batch_size: int = 128
    optimizer: str = "adamw"
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    schedule: str = "cosine"
    max_shift: int = 2
    seed: int = 0
    dataset: str = "mnist"
    data_dir: str | None = None
    out: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    eval_batch_size: int = 1000
    eval_train: bool = True
    chunk: int | None | str = BACKEND  # examples per chunk of a step (None: whole batches)
    conv: str = BACKEND                # one of CONVS
    devices: int | None = None         # the scaling options: see experiments/common/scaling.py
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    precision: str = "f32"
    plots: bool = True
    progress: bool = True
    resume: bool = False
    on_nan: str = "stop"

    def out_dir(self) -> Path:
        return Path(self.out or f"runs/lenet5-{self.variant}-{self.grad}-seed{self.seed}")

    def loop(self) -> LoopConfig:
        return LoopConfig(out=str(self.out_dir()), epochs=self.epochs, seed=self.seed,
                          resume=self.resume, progress=self.progress, plots=self.plots,
                          on_nan=self.on_nan)

    def resolved(self, backend: str | None = None) -> Config:
        """The config with --chunk and --conv chosen for the backend where left to it: chunks of
        `default_chunk(backend)` (none for a model with state, whose batch
        statistics chunks would change) and conv "cpu" on XLA:CPU, "plain" elsewhere. Touches
        the backend: call it after `scaling.setup`."""
        backend = backend or jax.default_backend()
        chunk, conv = self.chunk, self.conv
        if conv == BACKEND:
            conv = "cpu" if backend == "cpu" else "plain"
        if chunk == BACKEND:
            chunk = default_chunk(backend) if _stateless(self.variant) else None
        return dataclasses.replace(self, chunk=chunk, conv=conv)

    def eval_chunk(self, backend: str | None = None) -> int | None:
        """Examples per chunk of an evaluation call (eval mode holds the state fixed, so any
        model may be chunked): --chunk when given, else the backend's default for evaluation
        (`default_chunk(backend, evaluation=True)`). Call it on the config as given:
        `resolved()` fills in --chunk's training default."""
        if self.chunk in (BACKEND, None):
            return default_chunk(backend or jax.default_backend(), evaluation=True)
        return self.chunk

    def validate(self) -> Config:
        """Every argument checked before any data is read or directory made (UsageError)."""
        choices = {"variant": LENET5_ALL_VARIANTS, "grad": jaxnn.backprop.METHODS,
                   "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "dataset": tuple(jdata.DATASETS),
                   "conv": (*CONVS, BACKEND)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UsageError(f"--{name} must be one of {', '.join(allowed)}; got "
                                 f"{getattr(self, name)!r}")
        for name in ("batch_size", "eval_batch_size", "train_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.chunk != BACKEND:
            try:
                chunks.check_chunk(self.chunk)
            except ValueError:
                raise UsageError(f"--chunk must be a positive integer or none, got {self.chunk!r}") from None
            if self.chunk is not None and not _stateless(self.variant):
                raise UsageError(f"--chunk {self.chunk}: --variant {self.variant} has state (BatchNorm's "
                                 f"batch statistics), which chunks would change; use --chunk none")
        if self.max_shift < 0:
            raise UsageError(f"--max-shift must be >= 0, got {self.max_shift}")
        if not (self.learning_rate > 0 and np.isfinite(self.learning_rate)):
            raise UsageError(f"--lr must be a positive number, got {self.learning_rate}")
        scaling.validate(self)
        self.loop().validate()
        return self


def default_chunk(backend: str | None = None, *, evaluation: bool = False) -> int | None:
    """This experiment's chunk sizes where --chunk is left to the backend: on XLA:CPU 32 images
    per training chunk and 250 per evaluation chunk (the fastest of the sizes timed by
    `python -m benchmarks.chunk_sizes`, benchmarks/README.md); None (whole batches) on a GPU or
    TPU."""
    if (backend or jax.default_backend()) != "cpu":
        return None
    return 250 if evaluation else 32


def _stateless(variant: str) -> bool:
    """Whether the variant's model has no state (shapes only: nothing is computed)."""
    _, _, state = jax.eval_shape(lambda: lenet5(variant).init(jax.random.key(0), LENET5_INPUT_SHAPE))
    return no_state(state)


def build_model(config: Config) -> jaxnn.Layer:
    """LeNet-5 of config.variant, its C1 and C3 built by the --conv choice (resolved)."""
    return lenet5(config.variant, conv=jaxnn.layers.CPUConv2D if config.conv == "cpu" else None)


def make_optimizer(config: Config, steps_per_epoch: int) -> optax.GradientTransformation:
    """optax optimiser; "cosine" decays the learning rate to 0 over the whole run."""
    total = max(config.epochs * steps_per_epoch, 1)
    lr = (optax.cosine_decay_schedule(config.learning_rate, total) if config.schedule == "cosine"
          else config.learning_rate)
    makers = {"adam": optax.adam, "sgd": optax.sgd,
              "adamw": lambda lr: optax.adamw(lr, weight_decay=config.weight_decay),
              "momentum": lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True)}
    return makers[config.optimizer](lr)


def load_data(config: Config):
    """((x_train, y_train), (x_test, y_test)): float32 (N, 28, 28, 1) normalised, int32 labels."""
    def prep(split, subset):
        images, labels = jdata.load(config.dataset, split, data_dir=config.data_dir)
        if subset is not None:
            images, labels = images[:subset], labels[:subset]
        return jdata.add_channel_axis(jdata.normalize(images)), labels.astype(np.int32)
    return prep("train", config.train_subset), prep("test", config.test_subset)


class EpochBatches:
    """The batches of one epoch: a permutation and per-image shifts that depend only on
    (seed, epoch); the ragged last batch is dropped so the step compiles once."""

    def __init__(self, config: Config, images, labels, epoch: int, scale=None):
        self.config, self.images, self.labels, self.scale = config, images, labels, scale
        self.order = jdata.epoch_permutation(len(images), config.seed, epoch)
        self.shifts = jdata.epoch_shifts(len(images), config.seed, epoch, config.max_shift)
        self.background = float(jdata.normalize(np.zeros(1, np.uint8))[0])

    def __len__(self):
        return len(self.images) // self.config.batch_size

    def __iter__(self):
        b = self.config.batch_size
        for i in range(len(self)):
            rows = np.arange(i * b, (i + 1) * b)
            if self.scale is not None:  # this process's rows only, then the global batch
                rows = self.scale.local(rows)
            idx = self.order[rows]
            x = self.images[idx]
            if self.config.max_shift:
                x = jdata.shift_images(x, self.shifts[rows], self.background)
            yield (x, self.labels[idx]) if self.scale is None else self.scale.batch(x, self.labels[idx])


def evaluate_in_batches(eval_fn, state: jaxnn.TrainState, images, labels, batch_size):
    """(mean loss, accuracy) over a whole set, in batches (the last one may be smaller);
    eval_fn is a `jaxnn.eval_step` (params, model state, x, labels) -> sums."""
    correct, total_loss = 0, 0.0
    for i in range(0, len(images), batch_size):
        m = eval_fn(state.params, state.model_state, images[i:i + batch_size],
                    labels[i:i + batch_size])
        correct += int(m["correct"])
        total_loss += float(m["loss"])
    return total_loss / len(images), correct / len(images)


def make_evaluate(config, model, loss, stage_names, train_set, test_set, eval_chunk=None):
    """(state, epoch) -> accuracies, losses, and ‖dC/dX_i‖, ‖dC/dW_i‖ per layer on a fixed batch;
    the evaluation calls in chunks of `eval_chunk` examples (None: whole batches)."""
    eval_fn = jaxnn.eval_step(model, loss, chunk=eval_chunk)
    probe = (train_set[0][:config.batch_size], train_set[1][:config.batch_size])

    @jax.jit
    def norms(state, probe):  # the probe is an argument: closed over, XLA would constant-fold it
        layers = jaxnn.layer_gradients(model, loss, state.params, *probe, config.grad,
                                       state=state.model_state, key=jax.random.key(config.seed))
        out = {}
        for name, layer in zip(stage_names, layers):
            out[f"dx_norm:{name}"] = jnp.sqrt(sum(jnp.vdot(d, d) for d in jax.tree.leaves(layer["dx"])))
            if jax.tree.leaves(layer["dparams"]):
                out[f"dw_norm:{name}"] = jnp.sqrt(sum(jnp.vdot(d, d)
                                                      for d in jax.tree.leaves(layer["dparams"])))
        return out

    def evaluate(state, epoch):
        out = {}
        if config.eval_train:
            out["train_acc"] = evaluate_in_batches(eval_fn, state, *train_set, config.eval_batch_size)[1]
        out["test_loss"], out["test_acc"] = evaluate_in_batches(eval_fn, state, *test_set,
                                                                config.eval_batch_size)
        computed = norms(state, probe)  # a dict out of jit comes back with sorted keys: restore layer order
        return {**out, **{k: float(computed[k]) for name in stage_names
                          for k in (f"dx_norm:{name}", f"dw_norm:{name}") if k in computed}}

    return evaluate


def train_and_evaluate(config: Config, data=None) -> dict:
    """Run the experiment; returns the summary (also written to summary.json).

    data: optional ((x_train, y_train), (x_test, y_test)) arrays, as `load_data` returns;
    read from the IDX files when omitted.
    """
    config.validate()
    scale = scaling.setup(config) if scaling.wanted(config) else None
    eval_chunk = config.eval_chunk()  # from the --chunk given, before it is resolved
    config = config.resolved()
    if scale is not None:
        scale.check_batch("--batch-size", config.batch_size)
    (x_train, y_train), (x_test, y_test) = data if data is not None else load_data(config)
    steps_per_epoch = len(x_train) // config.batch_size
    if steps_per_epoch == 0:
        raise UsageError(f"--batch-size {config.batch_size} exceeds the {len(x_train)} training images")

    stages = lenet5_stages(config.variant)
    model = build_model(config)
    loss = jaxnn.losses.softmax_cross_entropy()
    optimizer = make_optimizer(config, steps_per_epoch)
    if scale is not None:
        train = scale.train_step(model, loss, optimizer, config.grad, chunk=config.chunk)
    else:
        train = jaxnn.train_step(model, loss, optimizer, config.grad, chunk=config.chunk)

    @jax.jit  # the initial weights in one compiled program, not op by op
    def init_model():
        return model.init(jax.random.key(config.seed), (-1, *x_train.shape[1:]))[1:]

    def init() -> jaxnn.TrainState:
        return train.init(*init_model())

    def plots(state, rows, out):
        _plot(config, model, stages, scaling.local_copy(state), rows, x_test, y_test, out)

    evaluate = make_evaluate(config, model, loss, [n for n, _ in stages], (x_train, y_train),
                             (x_test, y_test), eval_chunk)
    loop_config = config.loop()
    if scale is not None:  # every process evaluates its local copy; only process 0 writes
        loop_config = dataclasses.replace(loop_config, write=scale.is_main,
                                          progress=config.progress and scale.is_main)
    return run(loop_config, init=init, step=train.step,
               batches=lambda epoch: EpochBatches(config, x_train, y_train, epoch, scale),
               evaluate=lambda state, epoch: evaluate(scaling.local_copy(state), epoch),
               plots=plots, config_dict={**dataclasses.asdict(config), "eval_chunk": eval_chunk},
               name=f"lenet5-{config.variant}",
               summarize=lambda state: {"num_params": int(sum(
                   p.size for p in jax.tree.leaves(state.params)))})


def load_trained(run_dir: str | Path) -> tuple[Config, jaxnn.TrainState]:
    """(config, the `jaxnn.TrainState`) from the newest intact checkpoint of a run this
    experiment wrote."""
    import json

    from experiments.common.loop import restore

    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.exists():
        raise UsageError(f"{run_dir}: no config.json; not a run of experiments.train_lenet")
    saved = json.loads(path.read_text())
    config = Config(**{k: v for k, v in saved.items() if k in Config.__dataclass_fields__})
    config = config.resolved()
    model = build_model(config)
    _, params, model_state = model.init(jax.random.key(config.seed), LENET5_INPUT_SHAPE)
    steps = max((config.train_subset or 60000) // config.batch_size, 1)
    loss = jaxnn.losses.softmax_cross_entropy()
    template = jaxnn.train_step(model, loss, make_optimizer(config, steps),
                                config.grad).init(params, model_state)
    _, state = restore(run_dir, template)
    return config, state


def _plot(config, model, stages, state, rows, x_test, y_test, out: Path) -> None:
    from experiments.common import plots

    params, model_state = state.params, state.model_state
    predict = jax.jit(lambda x: model.apply(params, model_state, x, train=False)[0])
    logits = np.concatenate([np.asarray(predict(x_test[i:i + config.eval_batch_size]))
                             for i in range(0, len(x_test), config.eval_batch_size)])
    preds = logits.argmax(-1)
    probs = 1.0 / np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)  # the largest softmax entry
    wrong = np.flatnonzero(preds != y_test)
    title = plots.run_title(f"LeNet-5 {config.variant}, {config.grad} gradients", config.seed)
    plots.plot_curves(rows, out / "curves.png", title=title)
    plots.plot_filters(np.asarray(params[0].w), out / "filters_conv1.png",
                       title=f"{title}: learned conv1 5×5 filters")
    # Jitted: one compile instead of an eager compile per layer.
    outputs = jax.jit(lambda p, s, x: [y for _, y in jaxnn.intermediates(model, p, x, state=s)])(
        params, model_state, x_test[:1])
    shown = [(name, np.asarray(y[0])) for (name, _), y in zip(stages, outputs)
             if name.endswith("act") or name in ("S2", "S4", "output")]
    plots.plot_activations(x_test[0, ..., 0], shown, out / "activations.png", title=f"{title}: test digit 0")
    plots.plot_confusion(plots.confusion_matrix(y_test, preds), out / "confusion.png", title=title)
    plots.plot_misclassified(x_test[wrong, ..., 0], y_test[wrong], preds[wrong],
                             out / "misclassified.png", probs=probs[wrong], title=title)
    plots.plot_layer_gradients(rows, out / "layer_gradients.png",
                               title=title)


def _chunk_arg(text: str):
    if text.lower() == "none":
        return None
    if text == BACKEND:
        return BACKEND
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or none, got {text!r}") from None


def parse_args(argv=None) -> Config:
    defaults = Config()
    p = cli.parser("python -m experiments.train_lenet", __doc__,
                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--variant", default=defaults.variant, help=", ".join(LENET5_ALL_VARIANTS))
    p.add_argument("--grad", default=defaults.grad, help="how gradients are computed: "
                   + ", ".join(jaxnn.backprop.METHODS))
    p.add_argument("--epochs", type=cli.positive_int, default=defaults.epochs)
    p.add_argument("--batch-size", type=cli.positive_int, default=defaults.batch_size)
    p.add_argument("--optimizer", default=defaults.optimizer, help=", ".join(OPTIMIZERS))
    p.add_argument("--lr", dest="learning_rate", type=cli.positive_float, default=defaults.learning_rate)
    p.add_argument("--weight-decay", type=cli.nonnegative_float, default=defaults.weight_decay,
                   help="decoupled weight decay (adamw only)")
    p.add_argument("--schedule", default=defaults.schedule, help=", ".join(SCHEDULES))
    p.add_argument("--max-shift", type=cli.nonnegative_int, default=defaults.max_shift,
                   help="augment: translate each training image by up to this many pixels (0: off)")
    p.add_argument("--seed", type=cli.seed, default=defaults.seed)
    p.add_argument("--dataset", default=defaults.dataset, help=", ".join(sorted(jdata.DATASETS)))
    p.add_argument("--data-dir", default=None, help="default: $JAXNN_DATA_DIR, then the cache")
    p.add_argument("--out", default=None, help="default: runs/lenet5-VARIANT-GRAD-seedSEED")
    p.add_argument("--train-subset", type=cli.positive_int, default=None, help="use the first N training images")
    p.add_argument("--test-subset", type=cli.positive_int, default=None)
    scaling.add_arguments(p)
    p.add_argument("--eval-batch-size", type=cli.positive_int, default=defaults.eval_batch_size)
    speed = p.add_argument_group("speed (how a step is computed, not what)")
    speed.add_argument("--chunk", type=_chunk_arg, default=BACKEND,
                       help="examples per chunk of a training step, or none (whole batches); "
                            "default: 32 on the CPU backend, none on a GPU or TPU and for --variant bn; "
                            "evaluation uses it when given, else 250 on the CPU backend, none elsewhere")
    speed.add_argument("--conv", default=BACKEND, help="C1 and C3 as Conv2D (plain) or CPUConv2D "
                       "(cpu); default: cpu on the CPU backend, plain elsewhere")
    p.add_argument("--no-eval-train", dest="eval_train", action="store_false",
                   help="skip the training-set accuracy after each epoch")
    p.add_argument("--no-plots", dest="plots", action="store_false")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--on-nan", default=defaults.on_nan, help="a NaN or Inf loss or parameter: "
                   "stop (keeping the last good checkpoint) or skip the batch (counted in metrics)")
    return Config(**vars(p.parse_args(argv)))


def main(argv=None) -> int:
    config = parse_args(argv).validate()
    train_count = jdata.DATASETS[config.dataset].splits["train"].count
    if config.batch_size > min(config.train_subset or train_count, train_count):
        raise UsageError(f"--batch-size {config.batch_size} exceeds the "
                         f"{min(config.train_subset or train_count, train_count)} training images")
    settings = scaling.validate(config)
    if settings is None or settings.process_id == 0:   # the one process that writes --out
        cli.claim_out(config.out_dir(), resume=config.resume)
    summary = train_and_evaluate(config)
    final = summary["final"]
    print(f"final test accuracy {100 * final['test_acc']:.2f}% after {final['epoch']} epochs; "
          f"results in {config.out_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
