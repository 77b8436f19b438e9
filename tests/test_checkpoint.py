"""Checkpoints: bit-exact round trip; corrupt, truncated or foreign files are named and skipped;
a failed save (full disk, read-only directory) raises and keeps the last good checkpoint."""

import errno
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.train import checkpoint
from jaxnn.train.checkpoint import CheckpointError, Checkpoints
from tests._files import FileWrapper


def _state(seed=0):
    k = jax.random.split(jax.random.key(seed), 3)
    return {"params": (jax.random.normal(k[0], (5, 5, 1, 6)), jax.random.normal(k[1], (6,))),
            "count": jnp.asarray(7, jnp.int32), "half": jnp.ones(3, jnp.bfloat16),
            "key": k[2]}


def _assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _saved(tmp_path, steps=(1, 2, 3), keep=3):
    ckpt = Checkpoints(tmp_path / "ckpt", max_to_keep=keep)
    for s in steps:
        ckpt.save(s, _state(s))
    return ckpt


def test_round_trip_is_bit_exact_and_keeps_the_newest(tmp_path):
    ckpt = _saved(tmp_path, steps=(1, 2, 3, 4), keep=2)
    assert ckpt.steps() == [3, 4]
    step, state = ckpt.restore_latest(_state())
    assert step == 4
    _assert_same(state, _state(4))
    assert sorted(os.listdir(ckpt.directory)) == ["step_00000003.ckpt", "step_00000004.ckpt"]


def test_nothing_is_created_before_the_first_save(tmp_path):
    ckpt = Checkpoints(tmp_path / "none")
    assert ckpt.latest() is None and ckpt.restore_latest(_state()) is None
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("damage, reason", [
    (lambda b: b[:len(b) - 100], "is truncated"),
    (lambda b: b[:len(b) // 2] + bytes([b[len(b) // 2] ^ 1]) + b[len(b) // 2 + 1:], "checksum mismatch"),
    (lambda b: b[:6], "is truncated (6 bytes)"),
    (lambda b: b"PK\x03\x04" + b[4:], "is not a jaxnn checkpoint"),
])
def test_a_damaged_newest_checkpoint_is_named_and_the_previous_one_used(tmp_path, damage, reason):
    ckpt = _saved(tmp_path)
    path = ckpt.path(3)
    path.write_bytes(damage(path.read_bytes()))
    lines = []
    step, state = ckpt.restore_latest(_state(), report=lines.append)
    assert step == 2
    _assert_same(state, _state(2))
    assert len(lines) == 1 and str(path) in lines[0] and reason in lines[0]
    assert ckpt.steps() == [1, 2, 3]                        # the bad file is left for inspection


def test_no_good_checkpoint_raises_one_clear_error_and_deletes_nothing(tmp_path):
    ckpt = _saved(tmp_path, steps=(1, 2))
    for s in (1, 2):
        ckpt.path(s).write_bytes(ckpt.path(s).read_bytes()[:-1])
    before = sorted(os.listdir(ckpt.directory))
    with pytest.raises(CheckpointError, match=r"no usable checkpoint in .*step_00000002.ckpt is "
                                              r"truncated.*step_00000001.ckpt is truncated"):
        ckpt.restore_latest(_state(), report=lambda line: None)
    assert sorted(os.listdir(ckpt.directory)) == before


def test_a_checkpoint_of_another_state_structure_is_refused_by_name(tmp_path):
    ckpt = _saved(tmp_path, steps=(1,))
    other = {**_state(), "params": (jnp.zeros((5, 5, 1, 8)), jnp.zeros(8))}
    with pytest.raises(CheckpointError, match=r"leaf \['params'\]\[0\] as float32\[5, 5, 1, 6\], "
                                              r"the run expects float32\[5, 5, 1, 8\]"):
        ckpt.restore(1, other)
    with pytest.raises(CheckpointError, match="different state structure"):
        ckpt.restore(1, {"params": other["params"]})


def test_a_directory_of_foreign_files_is_not_taken_for_empty(tmp_path):
    (tmp_path / "ckpt" / "1").mkdir(parents=True)             # what orbax used to write
    with pytest.raises(CheckpointError, match="holds no jaxnn checkpoint files"):
        Checkpoints(tmp_path / "ckpt").restore_latest(_state())


class _FullDisk(FileWrapper):
    """A file whose writes fail with ENOSPC after `room` bytes."""

    def __init__(self, f, room):
        super().__init__(f)
        self.room = room

    def write(self, data):
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.f.write(data)


@pytest.mark.parametrize("fault", ["full disk", "read-only"])
def test_a_failed_save_raises_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, fault):
    ckpt = _saved(tmp_path, steps=(1, 2), keep=2)
    if fault == "full disk":
        monkeypatch.setattr(checkpoint, "open", lambda p, mode: _FullDisk(open(p, mode), 1000),
                            raising=False)
        want = "No space left on device"
    else:
        def read_only(p, mode):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(p))
        monkeypatch.setattr(checkpoint, "open", read_only, raising=False)
        want = "Read-only file system"
    with pytest.raises(CheckpointError, match=rf"cannot write checkpoint .*step_00000003.ckpt: {want}; "
                                              rf"kept checkpoint .*step_00000002.ckpt"):
        ckpt.save(3, _state(3))
    monkeypatch.undo()
    assert sorted(os.listdir(ckpt.directory)) == ["step_00000001.ckpt", "step_00000002.ckpt"]
    step, state = ckpt.restore_latest(_state())
    assert step == 2
    _assert_same(state, _state(2))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
def test_a_real_read_only_directory(tmp_path):
    ckpt = _saved(tmp_path, steps=(1,))
    os.chmod(ckpt.directory, 0o555)
    try:
        with pytest.raises(CheckpointError, match="Permission denied; kept checkpoint"):
            ckpt.save(2, _state(2))
    finally:
        os.chmod(ckpt.directory, 0o755)
    assert ckpt.steps() == [1]
