"""Shared fixtures. Tests run with strict dtype and rank promotion, so the library never
relies on an implicit broadcast or an implicit dtype change.

Most of the suite's time is XLA compiling small programs, and many tests (and the processes they
start) compile the same ones: one run shares a compilation cache, a fresh temporary folder that
the two pytest workers and their child processes inherit through JAX_COMPILATION_CACHE_DIR and
that the run removes at its end. A cache the caller names in the environment is used instead.
"""

import atexit
import os
import shutil
import tempfile

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the first process of the run: make it
    _cache = tempfile.mkdtemp(prefix="jaxnn-tests-compile-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

import jax  # noqa: E402  (after the cache settings: jax reads them when it starts)
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


# Tests that start processes or run a whole experiment: collected first, so that with two
# workers (pytest -n 2) they do not end up as one worker's tail while the other is idle.
SLOW_FIRST = ("test_faults.py", "test_sharding.py", "test_train_lenet.py", "test_rate_rnn.py",
              "test_filters.py", "test_reinforce_experiment.py", "test_compare_backprop.py",
              "test_benchmarks.py", "test_spikes_experiment.py", "test_own_layer.py",
              "test_lab_notebook.py", "test_connectome.py", "test_credit.py", "test_credit_experiment.py",
              "test_docs.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.nodeid.split("::")[0].rsplit("/", 1)[-1] not in SLOW_FIRST)


@pytest.fixture
def key():
    return jax.random.key(0)
