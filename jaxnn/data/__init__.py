"""Datasets for jaxnn: locate, download, verify and parse MNIST-style IDX files; batch them on the host;
load C. elegans connectomes (`load_connectome`, files written by ``python -m experiments.connectome.regenerate``).

Host-side numpy only: no module here uses jax.
"""

from jaxnn.data.batching import (
    add_channel_axis,
    batches,
    epoch_permutation,
    epoch_shifts,
    normalize,
    shift_images,
    train_val_split,
)
from jaxnn.data.connectome import Connectome, load_connectome
from jaxnn.data.fetch import ENV_VAR, cache_dir
from jaxnn.data.idx import DataError, decode_idx, read_idx
from jaxnn.data.mnist import (
    DATASETS,
    FASHION_MNIST,
    MNIST,
    Dataset,
    Split,
    load,
    load_fashion_mnist,
    load_mnist,
)

__all__ = [
    "Connectome",
    "DATASETS",
    "ENV_VAR",
    "FASHION_MNIST",
    "MNIST",
    "DataError",
    "Dataset",
    "Split",
    "add_channel_axis",
    "batches",
    "cache_dir",
    "decode_idx",
    "epoch_permutation",
    "epoch_shifts",
    "load",
    "load_connectome",
    "load_fashion_mnist",
    "load_mnist",
    "normalize",
    "read_idx",
    "shift_images",
    "train_val_split",
]
