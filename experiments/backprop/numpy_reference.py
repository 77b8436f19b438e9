"""An independent NumPy reference of backprop for LeNet-5.

Pure NumPy on purpose: nothing here imports jax or jaxnn, so agreeing with it
is evidence that the library is right, not that it agrees with itself.

Conventions (the same as jaxnn's):
  * images are NHWC; conv kernels are HWIO ``(kh, kw, in, out)``, bias ``(out,)``;
  * Dense weights are ``(in, out)``, bias ``(out,)``, and ``y = x @ w + b``;
  * conv is cross-correlation, as in ``lax.conv_general_dilated``;
  * padding is explicit non-negative pairs ``((lo_h, hi_h), (lo_w, hi_w))``;
    ``padding_pairs`` turns "SAME"/"VALID" into pairs the way XLA does;
  * pools use VALID padding; flatten is row-major over (H, W, C) per example.

Each layer is a ``*_forward`` returning ``(y, cache)`` next to a ``*_backward``
taking ``(cache, dy)`` and returning the gradients w.r.t. its inputs.
Everything is computed in the dtype of the input (float32 or float64).
"""
import numpy as np


# ---------------------------------------------------------------- dense
def dense_forward(x, w, b):
    """y = x @ w + b.  x: (N, in), w: (in, out), b: (out,) -> y: (N, out)."""
    return x @ w + b, (x, w)


def dense_backward(cache, dy):
    """dx = dy @ w.T (N, in);  dw = x.T @ dy (in, out);  db = sum_n dy (out,)."""
    x, w = cache
    return dy @ w.T, x.T @ dy, dy.sum(axis=0)


# ---------------------------------------------------------------- padding
def padding_pairs(padding, in_hw, kernel_hw, strides):
    """Turn "SAME"/"VALID" (or explicit pairs) into ((lo_h, hi_h), (lo_w, hi_w)).

    SAME follows XLA: out = ceil(in / s), total = max((out - 1) * s + k - in, 0),
    lo = total // 2, hi = total - lo (the odd extra pixel goes at the end).
    """
    if not isinstance(padding, str):
        return tuple((int(lo), int(hi)) for lo, hi in padding)
    if padding.upper() == "VALID":
        return ((0, 0), (0, 0))
    if padding.upper() != "SAME":
        raise ValueError(f"unknown padding {padding!r}")
    pairs = []
    for n, k, s in zip(in_hw, kernel_hw, strides):
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        pairs.append((total // 2, total - total // 2))
    return tuple(pairs)


def _windows(shape_hw, window, strides):
    """Yield (a, b, slice_h, slice_w): for each window offset (a, b), the
    strided slices picking input pixel (i*sh + a, j*sw + b) for every output
    (i, j).  Looping over the kh*kw offsets (not over pixels) keeps every
    step a whole-array operation, which is im2col one column-block at a time."""
    (H, W), (kh, kw), (sh, sw) = shape_hw, window, strides
    Ho, Wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"window {window} larger than (padded) input {(H, W)}")
    for a in range(kh):
        for b in range(kw):
            yield a, b, slice(a, a + (Ho - 1) * sh + 1, sh), slice(b, b + (Wo - 1) * sw + 1, sw)


# ---------------------------------------------------------------- conv
def conv2d_forward(x, w, b, strides=(1, 1), padding="VALID"):
    """Cross-correlation: y[n,i,j,o] = sum_{a,b,c} xpad[n, i*sh+a, j*sw+b, c] w[a,b,c,o] + b[o].

    x: (N, H, W, C), w: (kh, kw, C, O), b: (O,), padding: pairs or "SAME"/"VALID".
    y: (N, Ho, Wo, O) with Ho = (H + lo_h + hi_h - kh) // sh + 1 (same for W).
    """
    kh, kw, C, _ = w.shape
    if x.shape[3] != C:
        raise ValueError(f"input has {x.shape[3]} channels, kernel expects {C}")
    pads = padding_pairs(padding, x.shape[1:3], (kh, kw), strides)
    if min(min(p) for p in pads) < 0:
        raise ValueError("negative padding is not supported")
    xpad = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    y = None
    for a, bb, si, sj in _windows(xpad.shape[1:3], (kh, kw), strides):
        # (N, Ho, Wo, C) . (C, O) -> (N, Ho, Wo, O): one kernel tap for all pixels.
        term = np.tensordot(xpad[:, si, sj, :], w[a, bb], axes=([3], [0]))
        y = term if y is None else y + term
    return y + b, (x.shape, xpad, w, tuple(strides), pads)


def conv2d_backward(cache, dy):
    """Gradients of conv2d_forward.  dy: (N, Ho, Wo, O).

    dw[a,b,c,o] = sum_{n,i,j} xpad[n, i*sh+a, j*sw+b, c] dy[n,i,j,o]
    dxpad[n, i*sh+a, j*sw+b, c] += sum_o dy[n,i,j,o] w[a,b,c,o]   (scatter-add)
    db[o] = sum_{n,i,j} dy[n,i,j,o];  dx = dxpad with the padding cropped off.
    Padded pixels and pixels no window reaches (stride not dividing) get 0.
    """
    x_shape, xpad, w, strides, pads = cache
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(w)
    for a, bb, si, sj in _windows(xpad.shape[1:3], w.shape[:2], strides):
        dw[a, bb] = np.tensordot(xpad[:, si, sj, :], dy, axes=([0, 1, 2], [0, 1, 2]))
        # Slices with a step never overlap within one offset, so += is a true scatter-add.
        dxpad[:, si, sj, :] += np.tensordot(dy, w[a, bb], axes=([3], [1]))
    (lh, _), (lw, _) = pads
    dx = dxpad[:, lh:lh + x_shape[1], lw:lw + x_shape[2], :]
    return dx, dw, dy.sum(axis=(0, 1, 2))


# ---------------------------------------------------------------- pools (VALID)
def avgpool_forward(x, window=(2, 2), strides=(2, 2)):
    """y[n,i,j,c] = mean_{a,b} x[n, i*sh+a, j*sw+b, c].  x: (N,H,W,C) -> (N,Ho,Wo,C)."""
    y = sum(x[:, si, sj, :] for _, _, si, sj in _windows(x.shape[1:3], window, strides))
    return y / (window[0] * window[1]), (x.shape, x.dtype, tuple(window), tuple(strides))


def avgpool_backward(cache, dy):
    """Each input in a window receives dy / (kh*kw); overlapping windows add up."""
    x_shape, dtype, window, strides = cache
    dx = np.zeros(x_shape, dtype)
    for _, _, si, sj in _windows(x_shape[1:3], window, strides):
        dx[:, si, sj, :] += dy / (window[0] * window[1])
    return dx


def maxpool_forward(x, window=(2, 2), strides=(2, 2)):
    """y[n,i,j,c] = max_{a,b} x[n, i*sh+a, j*sw+b, c].  x: (N,H,W,C) -> (N,Ho,Wo,C)."""
    y = None
    for _, _, si, sj in _windows(x.shape[1:3], window, strides):
        y = x[:, si, sj, :] if y is None else np.maximum(y, x[:, si, sj, :])
    return y, (x, y, tuple(window), tuple(strides))


def maxpool_backward(cache, dy):
    """Route dy[n,i,j,c] to the input that attained the max of its window.

    Ties: when k entries of one window equal the max, each receives dy / k
    (a valid subgradient, and symmetric, so it does not depend on scan order).
    Note that jax's own VJP of ``lax.reduce_window(max)`` picks a single
    entry instead, so the two only agree when there are no ties.
    """
    x, y, window, strides = cache
    wins = list(_windows(x.shape[1:3], window, strides))
    # Number of entries hitting the max in each window (>= 1).  Cast before
    # summing: bool + bool would be logical or, not a count.
    count = sum((x[:, si, sj, :] == y).astype(x.dtype) for _, _, si, sj in wins)
    share = dy / count
    dx = np.zeros_like(x)
    for _, _, si, sj in wins:
        dx[:, si, sj, :] += np.where(x[:, si, sj, :] == y, share, 0)
    return dx


# ---------------------------------------------------------------- flatten
def flatten_forward(x):
    """(N, H, W, C) -> (N, H*W*C), row-major over (H, W, C)."""
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(cache, dy):
    return dy.reshape(cache)


# ---------------------------------------------------------------- activations
def tanh_forward(x):
    y = np.tanh(x)
    return y, y


def tanh_backward(cache, dy):
    """d tanh(x)/dx = 1 - tanh(x)^2 (computed from the saved output)."""
    return dy * (1 - cache * cache)


def relu_forward(x):
    return np.maximum(x, 0), x


def relu_backward(cache, dy):
    """Gradient 1 where x > 0 and 0 elsewhere (0 at x == 0, as jax.nn.relu)."""
    return np.where(cache > 0, dy, 0).astype(dy.dtype)


def sigmoid_forward(x):
    # exp(-log(1 + e^-x)) avoids overflow of e^-x for very negative x.
    y = np.exp(-np.logaddexp(0, -x)).astype(x.dtype)
    return y, y


def sigmoid_backward(cache, dy):
    """d sigmoid(x)/dx = s (1 - s)."""
    return dy * cache * (1 - cache)


# ---------------------------------------------------------------- loss
def softmax_cross_entropy(logits, labels):
    """Mean over the batch of -log softmax(logits)[n, labels[n]].

    logits: (N, K) float, labels: (N,) int.  Returns (loss scalar, dlogits (N, K))
    with dlogits = (softmax(logits) - onehot(labels)) / N.
    """
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)  # shift: exp cannot overflow
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
    logp = z - lse
    rows = np.arange(n)
    loss = -logp[rows, labels].mean()
    dlogits = np.exp(logp)
    dlogits[rows, labels] -= 1
    return loss, dlogits / n


# ---------------------------------------------------------------- LeNet-5
_VARIANTS = {
    "classic": ((tanh_forward, tanh_backward), (avgpool_forward, avgpool_backward)),
    "modern": ((relu_forward, relu_backward), (maxpool_forward, maxpool_backward)),
}


def lenet5_forward(params, x, variant="classic"):
    """LeNet-5 on x: (N, 28, 28, 1) -> logits (N, 10), plus a tape for backward.

    params: [(w, b)] x 5 = conv1 (5,5,1,6), conv2 (5,5,6,16), fc1 (400,120),
    fc2 (120,84), fc3 (84,10).  "classic": tanh + avgpool, "modern": relu + maxpool:
      conv1 pad 2 -> act -> pool 2x2/2 -> conv2 VALID -> act -> pool 2x2/2
      -> flatten -> fc1 -> act -> fc2 -> act -> fc3.
    """
    (act_f, act_b), (pool_f, pool_b) = _VARIANTS[variant]
    tape = []  # (backward fn, cache, index of its params or None), in forward order

    def run(fwd, bwd, h, *args, param=None):
        h, cache = fwd(h, *args)
        tape.append((bwd, cache, param))
        return h

    h = run(conv2d_forward, conv2d_backward, x, *params[0], (1, 1), ((2, 2), (2, 2)), param=0)
    h = run(pool_f, pool_b, run(act_f, act_b, h))
    h = run(conv2d_forward, conv2d_backward, h, *params[1], (1, 1), "VALID", param=1)
    h = run(pool_f, pool_b, run(act_f, act_b, h))
    h = run(flatten_forward, flatten_backward, h)
    h = run(act_f, act_b, run(dense_forward, dense_backward, h, *params[2], param=2))
    h = run(act_f, act_b, run(dense_forward, dense_backward, h, *params[3], param=3))
    h = run(dense_forward, dense_backward, h, *params[4], param=4)
    return h, tape


def lenet5_backward(tape, dlogits):
    """Walk the tape backwards (the chain rule); returns [(dw, db)] x 5 and dx."""
    grads = [None] * 5
    d = dlogits
    for bwd, cache, param in reversed(tape):
        out = bwd(cache, d)
        if param is None:
            d = out
        else:
            d, dw, db = out
            grads[param] = (dw, db)
    return grads, d


def lenet5_loss_and_grads(params, x, labels, variant="classic"):
    """Mean softmax cross-entropy of LeNet-5 and its gradient w.r.t. every param.

    Returns (loss, [(dw, db)] x 5), in the same order and shapes as params.
    """
    logits, tape = lenet5_forward(params, x, variant)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    grads, _ = lenet5_backward(tape, dlogits)
    return loss, grads
