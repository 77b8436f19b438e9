"""Shared fixtures. Tests run with strict dtype and rank promotion, so the library never
relies on an implicit broadcast or an implicit dtype change."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def key():
    return jax.random.key(0)
