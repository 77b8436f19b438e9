"""Shared fixtures. Tests run with strict dtype and rank promotion, so the library never
relies on an implicit broadcast or an implicit dtype change."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


# Tests that start processes or run a whole experiment: collected first, so that with two
# workers (pytest -n 2) they do not end up as one worker's tail while the other is idle.
SLOW_FIRST = ("test_faults.py", "test_sharding.py", "test_train_lenet.py", "test_rate_rnn.py",
              "test_filters.py", "test_reinforce_experiment.py", "test_compare_backprop.py",
              "test_benchmarks.py", "test_spikes_experiment.py", "test_own_layer.py",
              "test_lab_notebook.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.nodeid.split("::")[0].rsplit("/", 1)[-1] not in SLOW_FIRST)


@pytest.fixture
def key():
    return jax.random.key(0)
