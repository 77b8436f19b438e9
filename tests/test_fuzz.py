"""Hostile files: the checkpoint and IDX readers, fed mutated real-looking files and crafted
headers (with a valid checksum: the checksum finds damage, not forgery), raise only their own
error naming the file (CheckpointError, DataError), never another exception; a small gzip file
that decompresses far past what its format allows is refused without decompressing it all."""

import gzip
import hashlib
import json
import struct
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxnn import data
from jaxnn.train import checkpoint
from jaxnn.train.checkpoint import CheckpointError

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

STATE = {"params": {"w": jnp.arange(6, dtype=jnp.float32).reshape(2, 3), "b": jnp.ones(3, jnp.bfloat16)},
         "step": jnp.asarray(4, jnp.int32)}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "step_00000004.ckpt"
    checkpoint.write_checkpoint(path, 4, STATE)
    return path.read_bytes()


def _same(a, b):
    return all(np.array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _mutations():
    """(kind, position fraction, byte or length) of one edit of a file."""
    return st.tuples(st.sampled_from(["flip", "cut", "insert", "delete", "zero-run"]),
                     st.floats(0, 1), st.integers(1, 255))


def _mutate(raw: bytes, edits) -> bytes:
    out = bytearray(raw)
    for kind, where, n in edits:
        i = min(int(where * len(out)), max(len(out) - 1, 0))
        if kind == "flip" and out:
            out[i] ^= n
        elif kind == "cut":
            del out[i:]
        elif kind == "insert":
            out[i:i] = bytes([n]) * (n % 7 + 1)
        elif kind == "delete":
            del out[i:i + n % 9 + 1]
        elif kind == "zero-run":
            out[i:i + n] = bytes(len(out[i:i + n]))
    return bytes(out)


@FUZZ
@given(st.lists(_mutations(), min_size=1, max_size=3))
def test_mutated_checkpoints_are_refused_by_name_or_read_exactly(good, tmp_path, edits):
    path = tmp_path / "step_00000004.ckpt"
    raw = _mutate(good, edits)
    path.write_bytes(raw)
    try:
        step, state = checkpoint.read_checkpoint(path, STATE, 4)
    except CheckpointError as err:
        assert str(path) in str(err) and "\n" not in str(err)
        return
    assert raw == good and step == 4 and _same(state, STATE)


def _file(header, payload: bytes) -> bytes:
    text = header if isinstance(header, (bytes, str)) else json.dumps(header)
    head = checkpoint.MAGIC + struct.pack("<Q", len(text.encode() if isinstance(text, str) else text))
    head += text.encode() if isinstance(text, str) else text
    return head + payload + hashlib.sha256(head + payload).digest()


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


def _valid_header():
    return {"step": 4, "leaves": [{"path": "['params']['b']", "shape": [3], "dtype": "bfloat16"},
                                  {"path": "['params']['w']", "shape": [2, 3], "dtype": "float32"},
                                  {"path": "['step']", "shape": [], "dtype": "int32"}]}


@st.composite
def _crafted_headers(draw):
    """The valid header with one field (or the whole header) replaced by arbitrary JSON."""
    header = _valid_header()
    where = draw(st.sampled_from(["whole", "step", "leaves", "leaf", "path", "shape", "dtype",
                                  "extra", "dim"]))
    value = draw(_json)
    leaf = header["leaves"][draw(st.integers(0, 2))]
    if where == "whole":
        return value
    if where in ("step", "leaves"):
        header[where] = value
    elif where == "leaf":
        header["leaves"][0] = value
    elif where in ("path", "shape", "dtype"):
        leaf[where] = value
    elif where == "extra":
        header[draw(st.text(max_size=5))] = value
    else:
        leaf["shape"] = [draw(st.integers(-2 ** 65, 2 ** 65)) for _ in range(draw(st.integers(0, 40)))]
    return header


@FUZZ
@given(_crafted_headers(), st.integers(0, 80))
def test_crafted_headers_with_a_valid_checksum_are_refused_by_name(good, tmp_path, header, size):
    path = tmp_path / "step_00000004.ckpt"
    payload = good[len(checkpoint.MAGIC) + 8 + struct.unpack("<Q", good[10:18])[0]:-32]
    path.write_bytes(_file(header, payload[:size] if size < len(payload) else payload))
    try:
        step, state = checkpoint.read_checkpoint(path, STATE, 4)
    except CheckpointError as err:
        assert str(path) in str(err)
        return
    assert header == _valid_header() and _same(state, STATE)


@pytest.mark.parametrize("header, reason", [
    ("[" * 100_000 + "]" * 100_000, "unreadable header: header nests deeper than 4 levels"),
    ('{"step": 4, "leaves": [[[[[[1]]]]]]}', "deeper than"),
    ({**_valid_header(), "step": 5}, "holds step 5, not the step 4 its name says"),
    ({**_valid_header(), "step": True}, "is not an integer"),
    ({**_valid_header(), "step": -1}, "is not an integer"),
    ({"step": 4, "leaves": [{"path": "['params']['b']", "shape": [2 ** 39, 2 ** 39], "dtype": "float32"}]},
     "is truncated"),
    ({"step": 4, "leaves": [{"path": "x", "shape": [3], "dtype": "object"}]}, "dtype 'object'"),
])
def test_each_malformed_header_says_what_is_wrong(good, tmp_path, header, reason):
    path = tmp_path / "step_00000004.ckpt"
    payload = good[len(checkpoint.MAGIC) + 8 + struct.unpack("<Q", good[10:18])[0]:-32]
    path.write_bytes(_file(header, payload))
    with pytest.raises(CheckpointError, match=reason) as info:
        checkpoint.read_checkpoint(path, STATE, 4)
    assert str(path) in str(info.value)


def test_a_header_length_past_the_limit_is_refused_before_reading_it(tmp_path):
    path = tmp_path / "step_00000001.ckpt"
    path.write_bytes(checkpoint.MAGIC + struct.pack("<Q", 2 ** 62) + b"{}")
    with pytest.raises(CheckpointError, match=r"header length \d+ exceeds"):
        checkpoint.read_checkpoint(path, STATE)


def test_a_renamed_checkpoint_is_refused_when_restored_by_its_step(good, tmp_path):
    ckpt = checkpoint.Checkpoints(tmp_path)
    ckpt.path(7).write_bytes(good)                               # holds step 4
    with pytest.raises(CheckpointError, match="holds step 4, not the step 7 its name says"):
        ckpt.restore(7, STATE)


# ------------------------------------------------------------------ IDX and gzip
def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes() + array.tobytes()


GOOD_IDX = _idx(np.arange(2 * 5 * 5, dtype=np.uint8).reshape(2, 5, 5))


@FUZZ
@given(st.lists(_mutations(), min_size=1, max_size=3), st.booleans())
def test_mutated_idx_files_are_refused_by_name_or_read(tmp_path, edits, gz):
    raw = gzip.compress(GOOD_IDX, mtime=0) if gz else GOOD_IDX
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    path.write_bytes(_mutate(raw, edits))
    try:
        array = data.read_idx(path)
    except data.DataError as err:
        assert str(path) in str(err)
        return
    assert isinstance(array, np.ndarray) and array.size * array.itemsize <= len(GOOD_IDX)


@FUZZ
@given(st.integers(0, 255), st.integers(0, 255), st.lists(st.integers(0, 2 ** 32 - 1), max_size=6),
       st.binary(max_size=64))
def test_crafted_idx_headers_are_refused_by_name_without_allocating(tmp_path, code, ndim, dims, tail):
    path = tmp_path / "x.idx.gz"
    raw = bytes([0, 0, code, ndim]) + np.asarray(dims, ">u4").tobytes() + tail
    path.write_bytes(gzip.compress(raw, mtime=0))
    tracemalloc.start()
    try:
        array = data.read_idx(path)
    except data.DataError as err:
        assert str(path) in str(err)
        array = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 4 << 20
    if array is not None:
        assert array.nbytes <= len(raw)


def test_a_gzip_bomb_is_refused_after_reading_what_the_format_allows(tmp_path):
    """A 20 MB label file (60 kB compressed) whose header claims 6 labels, and one whose header
    claims 2**31: the first is refused by its header's size, the second by the dataset's spec."""
    bomb = gzip.compress(bytes([0, 0, 8, 1]) + (6).to_bytes(4, "big") + bytes(20 << 20), mtime=0)
    path = tmp_path / "labels.gz"
    path.write_bytes(bomb)
    tracemalloc.start()
    with pytest.raises(data.DataError, match=r"holds more than \d+ bytes once decompressed"):
        data.read_idx(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20

    claims = gzip.compress(bytes([0, 0, 8, 1]) + (2 ** 31).to_bytes(4, "big") + bytes(20 << 20), mtime=0)
    path.write_bytes(claims)
    tracemalloc.start()
    with pytest.raises(data.DataError, match=r"holds more than 4104 bytes"):
        data.mnist.read_idx_bytes(path, limit=8)           # a 0-label split's spec: 8 bytes
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20
