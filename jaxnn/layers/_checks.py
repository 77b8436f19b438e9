"""Argument checks for the layer constructors' float hyperparameters (rates, momentum, eps,
time constants, noise, gains, scales).

A hyperparameter is checked once, when the layer is built: a value that is not a real number
is a `LayerTypeError`, a NaN or an infinity a `LayerError`, each naming the layer and the
argument. The constructors then check their own ranges on the finite value.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from jaxnn.core import fail


def finite_real(layer: str, what: str, value: Any) -> float:
    """`value` as a float; refuse non-numbers (bool included), NaN and ±inf."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        fail(layer, f"{what} must be a real number, got {value!r}", exc=TypeError)
    value = float(value)
    if not math.isfinite(value):
        fail(layer, f"{what} must be finite, got {value!r}")
    return value
