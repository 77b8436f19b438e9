"""Host-side preprocessing and mini-batching, in numpy.

The order of examples in an epoch depends only on ``(seed, epoch)``, never on how many batches were
drawn before, so a run resumed from a checkpoint at epoch ``e`` sees exactly the batches it would have
seen without the interruption.
"""

from collections.abc import Iterator

import numpy as np

__all__ = ["add_channel_axis", "batches", "epoch_permutation", "epoch_shifts", "normalize", "shift_images",
           "train_val_split"]

MNIST_MEAN = 0.1307  # of the training images' pixels, scaled to [0, 1]
MNIST_STD = 0.3081


def normalize(images: np.ndarray, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> np.ndarray:
    """``(images / 255 - mean) / std`` as float32, any shape.

    The uint8 pixels 0..255 are scaled to [0, 1] first, so `mean` and `std` are in [0, 1] units; the
    defaults are MNIST's training-set values, which give those pixels mean ≈ 0 and std ≈ 1.
    """
    images = np.asarray(images)
    if images.dtype == bool or not np.issubdtype(images.dtype, np.number) or \
            np.issubdtype(images.dtype, np.complexfloating):
        raise TypeError(f"normalize: expected pixels as numbers 0..255 (raw uint8 images), "
                        f"got {images.dtype}")
    if images.dtype != np.uint8 and images.size:
        lo, hi = float(images.min()), float(images.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"normalize: expected pixel values in [0, 255] (raw images), got "
                             f"{images.dtype} values in [{lo:.3g}, {hi:.3g}]: already normalised?")
    scaled = images.astype(np.float32) / np.float32(255)
    return (scaled - np.float32(mean)) / np.float32(std)


def add_channel_axis(images: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, H, W, 1), the NHWC layout the convolution layers take; a view, not a copy."""
    if np.ndim(images) != 3:
        raise ValueError(f"add_channel_axis: expected images (N, H, W), got shape {np.shape(images)}")
    return images[..., np.newaxis]


def train_val_split(images: np.ndarray, labels: np.ndarray, n_val: int, seed: int
                    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Hold out `n_val` random examples for validation.

    Args:
      images: (N, ...) any dtype.
      labels: (N,).
      n_val: validation examples, 0 <= n_val <= N.
      seed: picks the held-out examples; the same seed always holds out the same ones.

    Returns:
      ``((train_images, train_labels), (val_images, val_labels))`` with N - n_val and n_val examples,
      each part in the original record order.
    """
    n = len(images)
    if len(labels) != n:
        raise ValueError(f"images has {n} examples but labels has {len(labels)}")
    if not 0 <= n_val <= n:
        raise ValueError(f"n_val must be in [0, {n}], got {n_val}")
    is_val = np.zeros(n, bool)
    is_val[np.random.default_rng(seed).choice(n, n_val, replace=False)] = True
    return (images[~is_val], labels[~is_val]), (images[is_val], labels[is_val])


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of examples in `epoch`: a permutation of ``range(n)`` (int64, shape (n,)).

    A function of ``(seed, epoch)`` alone (both non-negative ints), so it can be recomputed on resume.
    """
    return np.random.default_rng((seed, epoch)).permutation(n)


def batches(images: np.ndarray, labels: np.ndarray, batch_size: int, *, seed: int | None, epoch: int = 0,
            drop_remainder: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of mini-batches, shuffled by `epoch_permutation(N, seed, epoch)`.

    Args:
      images: (N, ...) any dtype.
      labels: (N,).
      batch_size: examples per batch.
      seed: shuffling seed; None keeps the record order (for evaluation).
      epoch: which epoch's order to use.
      drop_remainder: leave out the last N % batch_size examples, so every batch has the same shape and
        a jitted step compiles once. With False the last batch is smaller.

    Yields:
      ``(images[idx], labels[idx])``: (batch_size, ...) and (batch_size,) numpy arrays, copies.
    """
    n = len(images)
    if len(labels) != n:
        raise ValueError(f"images has {n} examples but labels has {len(labels)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = np.arange(n) if seed is None else epoch_permutation(n, seed, epoch)
    stop = n - n % batch_size if drop_remainder else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield images[idx], labels[idx]


def epoch_shifts(n: int, seed: int, epoch: int, max_shift: int) -> np.ndarray:
    """Random (dy, dx) translations in [-max_shift, max_shift] for the n examples drawn in `epoch`.

    int64 (n, 2); like `epoch_permutation`, a function of ``(seed, epoch)`` alone.
    """
    return np.random.default_rng((seed, epoch, 1)).integers(-max_shift, max_shift + 1, (n, 2))


def shift_images(images: np.ndarray, shifts: np.ndarray, fill: float) -> np.ndarray:
    """Translate each image by its own (dy, dx), filling uncovered pixels with `fill`.

    images: (B, H, W) or (B, H, W, C); shifts: (B, 2) ints with |dy|, |dx| <= m. Returns the same
    shape and dtype: out[b, i, j] = images[b, i - dy, j - dx] where that lies inside the image.
    Vectorised: every shifted image is a window of the padded batch.
    """
    if images.ndim not in (3, 4):
        raise ValueError(f"shift_images: expected images (B, H, W) or (B, H, W, C), got shape "
                         f"{images.shape}")
    h, w = images.shape[1:3]
    if np.shape(shifts) != (len(images), 2) or not np.issubdtype(np.asarray(shifts).dtype, np.integer):
        raise ValueError(f"shift_images: expected shifts ({len(images)}, 2) of ints, got "
                         f"{np.asarray(shifts).dtype} {np.shape(shifts)}")
    m = int(np.abs(shifts).max(initial=0))
    pad = [(0, 0), (m, m), (m, m)] + [(0, 0)] * (images.ndim - 3)
    padded = np.pad(images, pad, constant_values=fill)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(1, 2))
    # windows[b, r, c] is padded[b, r:r+h, c:c+w] (channels before the window axes).
    picked = windows[np.arange(len(images)), m - shifts[:, 0], m - shifts[:, 1]]
    return np.moveaxis(picked, (-2, -1), (1, 2)) if images.ndim == 4 else picked
