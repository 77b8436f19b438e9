"""The modern LeNet-5 written in each contender framework, with one train step each.

Every contender trains the same network on the same batches: conv 6@5×5 SAME, ReLU, 2×2 max-pool,
conv 16@5×5 VALID, ReLU, 2×2 max-pool, flatten, dense 120 ReLU, dense 84 ReLU, dense 10 logits;
softmax cross-entropy with integer labels (mean over the batch); Adam(1e-3).

A contender is built by `make_<name>(key_seed)` and returns a `Contender`: its state, and
`step(state, images, labels, order, i) -> (state, loss)`, which trains on batch `order[i]` of the
device-resident `images` (N, 28, 28, 1) float32 and `labels` (N,) int32. Picking the batch inside the
compiled step keeps the data on the device: nothing is copied from the host per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

LEARNING_RATE = 1e-3


class Contender(NamedTuple):
    name: str
    state: Any
    step: Callable  # (state, images, labels, order, i) -> (state, loss)
    sync: Callable  # (state) -> None, waits until the state is computed


def _jax_contender(name, params, apply_fn, optimizer):
    """A contender from a pure `apply_fn(params, x) -> logits`, differentiated by `jax.grad`."""
    import jax
    import optax

    def loss_fn(p, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(apply_fn(p, x), y).mean()

    def step(state, images, labels, order, i):
        p, opt_state = state
        idx = order[i]
        value, grads = jax.value_and_grad(loss_fn)(p, images[idx], labels[idx])
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), value

    return Contender(name, (params, optimizer.init(params)), jax.jit(step, donate_argnums=0),
                     lambda state: jax.block_until_ready(state))


def make_jaxnn(method: str, seed: int = 0, chunk: int | None = None) -> Contender:
    """jaxnn's own `train_step` (method "autodiff" or "manual", `chunk` examples per chunk or
    the whole batch), batch picked inside the compiled call."""
    return _jaxnn_contender(f"jaxnn {method}", "modern", method, seed, chunk)


def make_jaxnn_bn(method: str = "autodiff", seed: int = 0) -> Contender:
    """The "bn" LeNet-5 (BatchNorm after each conv/dense, Dropout before the output): a model
    with state, its running statistics carried in the TrainState and a key per step for Dropout."""
    return _jaxnn_contender(f"jaxnn bn {method}", "bn", method, seed, None)


def _jaxnn_contender(name, variant, method, seed, chunk):
    import jax
    import optax

    import jaxnn
    from jaxnn import losses
    from jaxnn.models import LENET5_INPUT_SHAPE, lenet5

    # The convolution the experiments pick on this backend (CPUConv2D on XLA:CPU).
    model = lenet5(variant, conv=jaxnn.layers.CPUConv2D if jax.default_backend() == "cpu" else None)
    _, params, model_state = model.init(jax.random.key(seed), LENET5_INPUT_SHAPE)
    init, inner = jaxnn.train_step(model, losses.softmax_cross_entropy(), optax.adam(LEARNING_RATE),
                                   method, chunk=chunk)
    base = jax.random.key(seed + 1)

    def step(ts, images, labels, order, i):
        idx = order[i]
        ts, metrics = inner(ts, (images[idx], labels[idx]), jax.random.fold_in(base, i))
        return ts, metrics["loss"]

    return Contender(name, init(params, model_state), jax.jit(step, donate_argnums=0),
                     lambda state: jax.block_until_ready(state))


def stax_lenet5(seed: int = 0):
    """(params, apply_fn) of the LeNet-5 in `jax.example_libraries.stax` (NHWC convolutions,
    reduce_window pooling); apply_fn(params, x (N, 28, 28, 1)) -> logits (N, 10)."""
    import jax
    from jax.example_libraries import stax

    init, apply_fn = stax.serial(
        stax.Conv(6, (5, 5), padding="SAME"), stax.Relu, stax.MaxPool((2, 2), strides=(2, 2)),
        stax.Conv(16, (5, 5), padding="VALID"), stax.Relu, stax.MaxPool((2, 2), strides=(2, 2)),
        stax.Flatten, stax.Dense(120), stax.Relu, stax.Dense(84), stax.Relu, stax.Dense(10))
    _, params = init(jax.random.key(seed), (-1, 28, 28, 1))
    return params, apply_fn


def make_stax(seed: int = 0) -> Contender:
    """`stax_lenet5` with optax Adam."""
    import optax

    params, apply_fn = stax_lenet5(seed)
    return _jax_contender("stax", params, apply_fn, optax.adam(LEARNING_RATE))


def make_flax_linen(seed: int = 0) -> Contender:
    """Flax linen modules (`nn.Conv`, `nn.max_pool`, `nn.Dense`) with optax Adam."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    class LeNet5(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.max_pool(nn.relu(nn.Conv(6, (5, 5), padding="SAME")(x)), (2, 2), (2, 2))
            x = nn.max_pool(nn.relu(nn.Conv(16, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
            x = x.reshape(x.shape[0], -1)
            x = nn.relu(nn.Dense(120)(x))
            x = nn.relu(nn.Dense(84)(x))
            return nn.Dense(10)(x)

    module = LeNet5()
    params = module.init(jax.random.key(seed), jnp.zeros((1, 28, 28, 1), jnp.float32))
    return _jax_contender("flax linen", params, module.apply, optax.adam(LEARNING_RATE))


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_lenet5(seed: int = 0):
    """The LeNet-5 as a `torch.nn.Sequential` (NCHW input (N, 1, 28, 28) -> logits (N, 10))."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def make_torch(seed: int = 0, threads: int | None = None) -> Contender:
    """PyTorch eager on the CPU, NCHW, `torch.optim.Adam`; the images are converted to NCHW once."""
    import torch
    from torch import nn

    if threads:
        torch.set_num_threads(threads)
    net = torch_lenet5(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    criterion = nn.CrossEntropyLoss()

    def step(state, images, labels, order, i):
        torch.set_num_threads(threads or torch.get_num_threads())  # the two torch rows alternate
        idx = order[i]
        optimizer.zero_grad(set_to_none=True)
        value = criterion(net(images[idx]), labels[idx])
        value.backward()
        optimizer.step()
        return state, value

    return Contender("pytorch 1 thread" if threads == 1 else "pytorch", None, step, lambda state: None)
