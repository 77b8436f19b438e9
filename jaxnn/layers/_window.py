"""Shared arithmetic for sliding-window layers (convolution and pooling), NHWC."""

from __future__ import annotations

from typing import Any

from jaxnn.core import fail

Pads = tuple[tuple[int, int], ...]  # one (lo, hi) pair per spatial axis


def check_padding(layer: str, padding: Any) -> Any:
    """Accept "SAME", "VALID", an int, or ((lo_h, hi_h), (lo_w, hi_w)) of non-negative ints."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            fail(layer, f"padding must be 'SAME', 'VALID' or explicit pairs, got {padding!r}")
        return padding.upper()
    if isinstance(padding, int) and not isinstance(padding, bool):
        padding = ((padding, padding), (padding, padding))
    try:
        pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    except (TypeError, ValueError):
        fail(layer, f"padding must be 'SAME', 'VALID', an int or ((lo, hi), (lo, hi)), got {padding!r}")
    if len(pads) != 2 or any(p < 0 for pair in pads for p in pair):
        fail(layer, f"explicit padding must be two non-negative (lo, hi) pairs, got {padding!r}")
    return pads


def pad_pairs(padding: Any, spatial: tuple[int, ...], window: tuple[int, ...],
              strides: tuple[int, ...]) -> Pads:
    """Explicit (lo, hi) padding per spatial axis, as XLA computes SAME/VALID."""
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if padding == "SAME":
        pads = []
        for n, k, s in zip(spatial, window, strides):
            out = -(-n // s)
            total = max((out - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    return padding


def out_size(n: int, k: int, s: int, pad: tuple[int, int]) -> int:
    """Output length of a window of size k at stride s over n padded by pad."""
    return (n + pad[0] + pad[1] - k) // s + 1


def output_spatial(layer: str, spatial: tuple[int, ...], window: tuple[int, ...],
                   strides: tuple[int, ...], pads: Pads) -> tuple[int, ...]:
    """(H_out, W_out); a window larger than the padded input is an error naming the layer."""
    out = tuple(out_size(n, k, s, p) for n, k, s, p in zip(spatial, window, strides, pads))
    if any(o <= 0 for o in out):
        fail(layer, f"window {window} with padding {pads} does not fit spatial size {spatial}")
    return out


def transpose_pads(spatial: tuple[int, ...], window: tuple[int, ...], strides: tuple[int, ...],
                   pads: Pads, out: tuple[int, ...]) -> Pads:
    """Padding that turns a stride-dilated output gradient back into an input gradient.

    Input position h receives from outputs i with h + lo = i·s + a (0 ≤ a < k). Dilating
    dy by s and correlating it with the flipped window needs k-1-lo zeros before it and
    n + lo - 1 - (out-1)·s after it (negative values crop).
    """
    return tuple(
        (k - 1 - p[0], n + p[0] - 1 - (o - 1) * s)
        for n, k, s, p, o in zip(spatial, window, strides, pads, out)
    )
