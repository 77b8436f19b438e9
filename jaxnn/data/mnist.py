"""MNIST and Fashion-MNIST: where their files come from, what they must contain, and how to load them.

Every load verifies each file, wherever it was found: IDX header and length, SHA-256 of the decompressed
contents (so re-gzipped copies are accepted), and the expected counts, image size and label range. A file
that fails raises `DataError`; it is never replaced or deleted behind the user's back.

Checksums. MNIST's are those of the canonical files. Fashion-MNIST's upstream (zalandoresearch/fashion-mnist)
publishes only MD5s of its ``.gz`` files; the SHA-256s below are of the decompressed files of Debian's
``dataset-fashion-mnist`` 0.0~git20200523.55506a9-1 package, and agree with the decompressed SHA-256s
published independently by other open-source loaders that download from the upstream repository.
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxnn.data import fetch
from jaxnn.data.idx import MARGIN, DataError, decode_idx, read_idx_bytes

__all__ = [
    "DATASETS", "FASHION_MNIST", "MNIST", "Dataset", "Split", "load", "load_fashion_mnist", "load_mnist",
]

IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions
LABELS_MAGIC = 0x00000801  # uint8, 1 dimension


class Split(NamedTuple):
    """One split's two files (decompressed names) and its number of examples."""
    images: str
    labels: str
    # A field named like tuple.count, which it shadows; renaming it would change the public API.
    count: int  # type: ignore[assignment]


class Dataset(NamedTuple):
    """Everything the loader needs to know about a dataset; build one to load a dataset of the same form.

    Attributes:
      name: subdirectory name in the cache and in a shared data directory, e.g. ``"mnist"``.
      splits: split name -> `Split`.
      sha256: decompressed file name -> SHA-256 hex digest of its decompressed contents.
      mirrors: base URLs, tried in order; a file ``NAME`` is fetched as ``<mirror>/NAME.gz``. Override with
        ``MNIST._replace(mirrors=(...))``.
      system_dirs: read-only directories searched after the cache (see `jaxnn.data.fetch`).
      image_shape: (height, width) of each image.
      num_classes: labels lie in ``[0, num_classes)``.
    """
    name: str
    splits: Mapping[str, Split]
    sha256: Mapping[str, str]
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()
    image_shape: tuple[int, int] = (28, 28)
    num_classes: int = 10


_SPLITS = {
    "train": Split("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "test": Split("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}

MNIST = Dataset(
    name="mnist",
    splits=_SPLITS,
    sha256={
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
)

FASHION_MNIST = Dataset(
    name="fashion-mnist",
    splits=_SPLITS,
    sha256={
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    # HTTPS only: the upstream bucket's website endpoint serves plain HTTP, so it is not used.
    mirrors=(
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),  # Debian's dataset-fashion-mnist
)

DATASETS = {d.name: d for d in (MNIST, FASHION_MNIST)}


def _advice(path: Path, dataset: Dataset) -> str:
    if path.parent == fetch.cache_dir(dataset.name):
        return "It is in the download cache: delete it and it will be downloaded again."
    return (
        f"This copy is not in the download cache, so it is left alone: replace it with a good copy, point "
        f"data_dir= or ${fetch.ENV_VAR} at a directory with good copies, or remove it to have it "
        f"downloaded into {fetch.cache_dir(dataset.name)}."
    )


def _file_error(path: Path, dataset: Dataset, problem: str) -> DataError:
    return DataError(f"{path} ({dataset.name}): {problem} {_advice(path, dataset)}")


def file_size(dataset: Dataset, name: str) -> int:
    """The bytes the decompressed file `name` has by the dataset's spec: a 16-byte header and
    count × height × width pixels for images, an 8-byte header and count labels."""
    for split in dataset.splits.values():
        if name == split.images:
            return 16 + split.count * dataset.image_shape[0] * dataset.image_shape[1]
        if name == split.labels:
            return 8 + split.count
    raise ValueError(f"{name} is not a file of {dataset.name}")


def _locate(dataset: Dataset, name: str, data_dir, download: bool) -> Path:
    dirs = fetch.search_dirs(dataset.name, data_dir, dataset.system_dirs)
    path = fetch.find_file(name, dirs)
    if path is not None:
        return path
    if not download:
        searched = "\n".join(f"  {d}" for d in dirs)
        raise FileNotFoundError(
            f"{dataset.name}: {name}[.gz] is in none of:\n{searched}\n"
            f"Pass download=True, or put the file into data_dir= or ${fetch.ENV_VAR}."
        )
    return fetch.download(name, dataset.mirrors, fetch.cache_dir(dataset.name), dataset.sha256[name],
                          file_size(dataset, name) + MARGIN)


def _read_verified(dataset: Dataset, name: str, path: Path, magic: int) -> np.ndarray:
    """Decode `path` (header and length checked first: their errors say more than a checksum's), then
    check its checksum. No more than the spec's size (plus a margin) is ever decompressed."""
    try:
        raw = read_idx_bytes(path, limit=file_size(dataset, name))
        array = decode_idx(raw, path, magic=magic)
    except DataError as e:
        raise _file_error(path, dataset, str(e).removeprefix(f"{path}: ")) from e
    digest = fetch.sha256_hex(raw)
    expected = dataset.sha256[name]
    if digest != expected:
        owners = [f"{d.name}'s {n}" for d in DATASETS.values() for n, h in d.sha256.items() if h == digest]
        which = f" It is {owners[0]}: keep each dataset in its own directory." if owners else ""
        raise _file_error(
            path, dataset, f"SHA-256 of the decompressed contents is {digest}, expected {expected} for "
            f"{name}.{which}"
        )
    return array


def _check_split(dataset: Dataset, split: Split, images: np.ndarray, labels: np.ndarray,
                 paths: tuple[Path, Path]) -> None:
    """Raise DataError unless images is (count, *image_shape) and labels is (count,) in range."""
    expected = (split.count, *dataset.image_shape)
    if images.shape != expected:
        raise _file_error(paths[0], dataset, f"images have shape {images.shape}, expected {expected}.")
    if labels.shape != (split.count,):
        raise _file_error(paths[1], dataset, f"labels have shape {labels.shape}, expected ({split.count},).")
    if labels.size and labels.max() >= dataset.num_classes:
        raise _file_error(
            paths[1], dataset, f"label {labels.max()} is out of range [0, {dataset.num_classes})."
        )


def load(dataset: Dataset | str, split: str, data_dir: str | os.PathLike | None = None,
         download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of a dataset, downloading missing files into the cache when `download`.

    Args:
      dataset: a `Dataset`, or the name of one in `DATASETS` (``"mnist"``, ``"fashion-mnist"``).
      split: a key of ``dataset.splits`` (``"train"`` or ``"test"``).
      data_dir: searched first; see `jaxnn.data.fetch` for the whole search order.
      download: fetch files found nowhere; if False, a missing file raises FileNotFoundError.

    Returns:
      ``(images, labels)``: uint8 ``(N, H, W)`` with pixel values 0..255 and uint8 ``(N,)`` class indices,
      N = ``dataset.splits[split].count`` (60000 train, 10000 test for MNIST), H, W = 28, 28.

    Raises:
      DataError: a file is corrupt, truncated, of the wrong kind or fails its checksum, or no mirror
        gave a good copy. The message names the file and what to do.
      FileNotFoundError: a file is missing and `download` is False.
    """
    if isinstance(dataset, str):
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(DATASETS)}")
        dataset = DATASETS[dataset]
    if split not in dataset.splits:
        raise ValueError(f"split must be one of {sorted(dataset.splits)}, got {split!r}")
    spec = dataset.splits[split]
    paths = (_locate(dataset, spec.images, data_dir, download), _locate(dataset, spec.labels, data_dir, download))
    images = _read_verified(dataset, spec.images, paths[0], IMAGES_MAGIC)
    labels = _read_verified(dataset, spec.labels, paths[1], LABELS_MAGIC)
    _check_split(dataset, spec, images, labels, paths)
    return images, labels


def load_mnist(split: str = "train", data_dir: str | os.PathLike | None = None,
               download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MNIST digits: uint8 images (N, 28, 28) and uint8 labels (N,), N = 60000 train / 10000 test.

    See `load` for the arguments and errors.
    """
    return load(MNIST, split, data_dir, download)


def load_fashion_mnist(split: str = "train", data_dir: str | os.PathLike | None = None,
                       download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST clothing: uint8 images (N, 28, 28) and uint8 labels (N,), N = 60000 / 10000.

    Also found where Debian's ``dataset-fashion-mnist`` package installs it. See `load` for the rest.
    """
    return load(FASHION_MNIST, split, data_dir, download)
