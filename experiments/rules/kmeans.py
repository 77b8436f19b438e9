"""k-means (Lloyd's algorithm) in JAX, and the labels its clusters give by majority vote.

Used by experiments.rules.hebbian to ask how well clusters of a layer's responses, found without
labels, line up with the classes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def in_chunks(fn, x, size: int = 5000) -> np.ndarray:
    """fn applied to x (N, ...) in chunks of `size` rows, concatenated on the host."""
    return np.concatenate([np.asarray(fn(jnp.asarray(x[i:i + size]))) for i in range(0, len(x), size)])


@functools.partial(jax.jit, static_argnames="iters")
def _lloyd(x, centres, iters: int):
    def assign(c):
        d2 = (c * c).sum(1)[None, :] - 2 * x @ c.T  # ‖x‖² is the same for every centre
        return jnp.argmin(d2, axis=1)

    def body(c, _):
        onehot = jax.nn.one_hot(assign(c), c.shape[0], dtype=x.dtype)
        counts = onehot.sum(0)
        means = onehot.T @ x / jnp.maximum(counts, 1)[:, None]
        return jnp.where(counts[:, None] > 0, means, c), None

    centres, _ = jax.lax.scan(body, centres, None, length=iters)
    return centres, assign(centres)


def kmeans(x, k: int, iters: int, seed: int):
    """Lloyd's algorithm from k distinct random rows of x (N, d); returns (centres, assignment)."""
    x = jnp.asarray(x)
    start = x[jax.random.choice(jax.random.key(seed), len(x), (k,), replace=False)]
    centres, assigned = _lloyd(x, start, iters)
    return centres, np.asarray(assigned)


def cluster_labels(feat_tr, ytr, feat_te, yte, k: int, seed: int) -> dict:
    """k-means (k clusters, 20 iterations) on feat_tr (N, d); each cluster is labelled with the
    majority class of its members (ytr (N,) ints in [0, 10)), each test row feat_te (M, d) with
    its nearest centre's label. Returns the accuracy of those labels on both sets."""
    centres, assigned = kmeans(feat_tr, k, 20, seed)
    majority = np.array([np.bincount(ytr[assigned == j], minlength=10).argmax() if (assigned == j).any()
                         else -1 for j in range(k)])
    nearest = jax.jit(lambda x, c: jnp.argmin((c * c).sum(1)[None, :] - 2 * x @ c.T, axis=1))
    test_assigned = in_chunks(lambda x: nearest(x, centres), feat_te)
    return {"train_label_acc": float((majority[assigned] == ytr).mean()),
            "test_label_acc": float((majority[test_assigned] == yte).mean())}


__all__ = ["cluster_labels", "in_chunks", "kmeans"]
