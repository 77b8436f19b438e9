"""Tests for jaxnn.data, on tiny IDX files written here, a local HTTP server, and (if present) real MNIST."""

import gzip
import hashlib
import http.server
import os
import re
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from jaxnn import data
from jaxnn.data import fetch

IMAGE_SHAPE = (4, 4)
COUNTS = {"train": 6, "test": 3}
SPLITS = {
    "train": data.Split("train-images-idx3-ubyte", "train-labels-idx1-ubyte", COUNTS["train"]),
    "test": data.Split("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", COUNTS["test"]),
}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of `array` (uint8, or a big-endian int16/float32)."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i2"): 0x0B, np.dtype(">f4"): 0x0D}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.tobytes()


def tiny_contents(seed: int = 0) -> dict[str, bytes]:
    """Decompressed IDX contents of a tiny dataset: file name -> bytes."""
    rng = np.random.default_rng(seed)
    contents = {}
    for split in SPLITS.values():
        images = rng.integers(0, 256, (split.count, *IMAGE_SHAPE), dtype=np.uint8)
        labels = rng.integers(0, 10, split.count, dtype=np.uint8)
        contents[split.images], contents[split.labels] = idx_bytes(images), idx_bytes(labels)
    return contents


def tiny_dataset(contents: dict[str, bytes], mirrors: tuple[str, ...] = ()) -> data.Dataset:
    return data.Dataset(
        name="tiny",
        splits=SPLITS,
        sha256={name: hashlib.sha256(raw).hexdigest() for name, raw in contents.items()},
        mirrors=mirrors,
        image_shape=IMAGE_SHAPE,
    )


def write_files(directory: Path, contents: dict[str, bytes], gz: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, raw in contents.items():
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return directory


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """name -> (size, mtime_ns) of everything in `directory`, and the directory's own mtime."""
    entries = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir()}
    return {**entries, ".": (0, directory.stat().st_mtime_ns)}


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    """An empty user cache under tmp_path, and no JAXNN_DATA_DIR (CI sets one)."""
    monkeypatch.delenv(fetch.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "jaxnn" / "tiny"


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.routes[path] = (body, bytes_to_send); bytes_to_send < len(body) cuts the body short."""

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path not in self.server.routes:
            self.send_error(404)
            return
        body, sent = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:sent])

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    """A local HTTP server on an ephemeral port: serve(path, body, sent=None) adds a route."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.requests = {}, []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"

    def serve(path: str, body: bytes, sent: int | None = None) -> None:
        httpd.routes[path] = (body, len(body) if sent is None else sent)

    httpd.serve = serve
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def serve_dataset(server, prefix: str, contents: dict[str, bytes]) -> str:
    for name, raw in contents.items():
        server.serve(f"/{prefix}/{name}.gz", gzip.compress(raw))
    return f"{server.url}/{prefix}/"


# --- IDX parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("dtype", [np.uint8, ">i2", ">f4"])
def test_read_idx_round_trip(tmp_path, gz, dtype):
    array = np.arange(2 * 3 * 5).reshape(2, 3, 5).astype(dtype)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    path.write_bytes(gzip.compress(idx_bytes(array)) if gz else idx_bytes(array))
    result = data.read_idx(path)
    np.testing.assert_array_equal(result, array)
    assert result.dtype == np.dtype(dtype).newbyteorder("=") and result.flags.writeable


def test_wrong_magic_names_file_and_both_magics(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(data.DataError, match=r"labels: IDX magic number is 0x00000801, expected 0x00000803"):
        data.read_idx(path, magic=0x00000803)
    path.write_bytes(b"PK\x03\x04" + bytes(10))
    with pytest.raises(data.DataError, match="not an IDX file"):
        data.read_idx(path)


@pytest.mark.parametrize("cut", [1, 100, 20 * 16])
def test_truncated_file_reports_expected_and_actual_bytes(tmp_path, cut):
    raw = idx_bytes(np.zeros((20, 4, 4), np.uint8))  # 16-byte header + 320 bytes
    path = tmp_path / "images"
    path.write_bytes(raw[:-cut])
    with pytest.raises(data.DataError) as info:
        data.read_idx(path)
    message = str(info.value)
    assert str(path) in message and f"expected {len(raw)} bytes, got {len(raw) - cut}" in message


def test_trailing_bytes_are_an_error(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.zeros(3, np.uint8)) + b"\x00")
    with pytest.raises(data.DataError, match="trailing bytes"):
        data.read_idx(path)


@pytest.mark.parametrize("damage", ["not_gzip", "cut_short", "flipped_crc"])
def test_bad_gzip_names_file(tmp_path, damage):
    packed = gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8)))
    bad = {
        "not_gzip": b"this is not gzip at all",
        "cut_short": packed[: len(packed) // 2],
        "flipped_crc": packed[:-8] + bytes([packed[-8] ^ 0xFF]) + packed[-7:],
    }[damage]
    path = tmp_path / "labels.gz"
    path.write_bytes(bad)
    with pytest.raises(data.DataError, match=rf"{path}: not a readable gzip file"):
        data.read_idx(path)


# --- lookup and verification -----------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_load_from_data_dir(tmp_path, cache, gz):
    contents = tiny_contents()
    dataset = tiny_dataset(contents)
    directory = write_files(tmp_path / "mine", contents, gz=gz)
    images, labels = data.load(dataset, "train", data_dir=directory, download=False)
    assert images.shape == (COUNTS["train"], *IMAGE_SHAPE) and images.dtype == np.uint8
    assert labels.shape == (COUNTS["train"],) and labels.dtype == np.uint8
    np.testing.assert_array_equal(images, data.decode_idx(contents[SPLITS["train"].images]))


def test_search_order_is_argument_then_env_then_cache(tmp_path, cache, monkeypatch):
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    monkeypatch.setenv(fetch.ENV_VAR, str(env))
    for directory in (explicit, env, cache):
        write_files(directory, {"f": b""})
    dirs = fetch.search_dirs("tiny", explicit)
    assert dirs == [explicit, env, cache]
    for expected in (explicit, env, cache):
        assert fetch.find_file("f", dirs) == expected / "f.gz"
        (expected / "f.gz").unlink()
    assert fetch.find_file("f", dirs) is None


def test_data_dir_with_a_subdirectory_per_dataset(tmp_path, cache, monkeypatch):
    monkeypatch.setenv(fetch.ENV_VAR, str(tmp_path))
    (tmp_path / "tiny").mkdir()
    assert fetch.search_dirs("tiny") == [tmp_path / "tiny", cache]
    assert fetch.search_dirs("other") == [tmp_path, cache.parent / "other"]


def test_earlier_location_wins_and_later_ones_are_not_read(tmp_path, cache, monkeypatch):
    contents = tiny_contents()
    dataset = tiny_dataset(contents)
    good = write_files(tmp_path / "good", contents)
    env = write_files(tmp_path / "env", tiny_contents(seed=1))
    write_files(cache, tiny_contents(seed=2))
    monkeypatch.setenv(fetch.ENV_VAR, str(env))
    data.load(dataset, "train", data_dir=good, download=False)
    with pytest.raises(data.DataError, match=f"^{env}/train-images"):
        data.load(dataset, "train", download=False)
    monkeypatch.delenv(fetch.ENV_VAR)
    with pytest.raises(data.DataError, match=f"^{cache}/train-images"):
        data.load(dataset, "train", download=False)


def test_checksum_mismatch_in_user_dir_raises_and_keeps_file(tmp_path, cache):
    contents = tiny_contents()
    dataset = tiny_dataset(tiny_contents(seed=1))  # expects other contents, same structure
    directory = write_files(tmp_path / "mine", contents)
    before = snapshot(directory)
    with pytest.raises(data.DataError) as info:
        data.load(dataset, "test", data_dir=directory)
    message = str(info.value)
    assert str(directory / "t10k-images-idx3-ubyte.gz") in message
    assert dataset.sha256["t10k-images-idx3-ubyte"] in message and "not in the download cache" in message
    assert snapshot(directory) == before


def test_corrupt_cached_file_raises_and_is_kept(cache):
    contents = tiny_contents()
    write_files(cache, contents, gz=False)
    path = cache / "t10k-labels-idx1-ubyte"
    path.write_bytes(contents["t10k-labels-idx1-ubyte"][:-1])
    with pytest.raises(data.DataError, match=r"truncated.*download cache: delete it") as info:
        data.load(tiny_dataset(contents), "test")
    assert str(path) in str(info.value) and path.exists()


def test_structure_is_checked_after_checksum(tmp_path, cache):
    contents = tiny_contents()
    contents["t10k-labels-idx1-ubyte"] = idx_bytes(np.array([1, 2, 10], np.uint8))
    directory = write_files(tmp_path / "mine", contents)
    with pytest.raises(data.DataError, match=r"label 10 is out of range \[0, 10\)"):
        data.load(tiny_dataset(contents), "test", data_dir=directory)


def test_checksum_error_names_the_dataset_a_file_belongs_to(tmp_path, cache, monkeypatch):
    other = tiny_contents(seed=1)
    monkeypatch.setitem(data.DATASETS, "other", tiny_dataset(other)._replace(name="other"))
    directory = write_files(tmp_path / "mixed", other)
    with pytest.raises(data.DataError, match="It is other's t10k-images-idx3-ubyte: keep each dataset"):
        data.load(tiny_dataset(tiny_contents()), "test", data_dir=directory)


def test_data_dir_that_does_not_exist_is_an_error(tmp_path, cache, monkeypatch):
    with pytest.raises(FileNotFoundError, match="data_dir .*/typo is not a directory"):
        data.load(tiny_dataset(tiny_contents()), "test", data_dir=tmp_path / "typo")
    monkeypatch.setenv(fetch.ENV_VAR, str(tmp_path / "typo"))
    with pytest.raises(FileNotFoundError, match=r"\$JAXNN_DATA_DIR .*/typo is not a directory"):
        data.load(tiny_dataset(tiny_contents()), "test")


def test_missing_file_without_download(tmp_path, cache):
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte\[\.gz\] is in none of") as info:
        data.load(tiny_dataset(tiny_contents()), "test", data_dir=tmp_path, download=False)
    assert str(cache) in str(info.value)


def test_unknown_split_and_dataset():
    with pytest.raises(ValueError, match="split must be one of"):
        data.load(data.MNIST, "validation")
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load("cifar10", "train")


# --- downloads -------------------------------------------------------------------------------------


def test_download_tries_mirrors_in_turn_and_keeps_only_verified_files(cache, server, monkeypatch):
    contents = tiny_contents()
    good = serve_dataset(server, "good", contents)
    dataset = tiny_dataset(contents, mirrors=(closed_port_url(), f"{server.url}/missing/", good))
    seen_at_verification = []

    def verify_and_record(path, sha256, *limit):
        seen_at_verification.append((path.parent, sorted(p.name for p in path.parent.iterdir() if p != path)))
        assert re.fullmatch(r"\.t10k-(images|labels)-idx[13]-ubyte\..+\.part", path.name)
        verify(path, sha256, *limit)

    verify = fetch._verify_download
    monkeypatch.setattr(fetch, "_verify_download", verify_and_record)
    images, labels = data.load(dataset, "test")

    np.testing.assert_array_equal(labels, data.decode_idx(contents["t10k-labels-idx1-ubyte"]))
    # Each file was verified as a temporary beside its destination, before being renamed into place.
    assert seen_at_verification == [(cache, []), (cache, ["t10k-images-idx3-ubyte.gz"])]
    assert sorted(p.name for p in cache.iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert server.requests == ["/missing/t10k-images-idx3-ubyte.gz", "/good/t10k-images-idx3-ubyte.gz",
                               "/missing/t10k-labels-idx1-ubyte.gz", "/good/t10k-labels-idx1-ubyte.gz"]
    data.load(dataset, "test")  # now from the cache, without the network
    assert len(server.requests) == 4


def test_download_with_bad_checksum_leaves_nothing(cache, server):
    contents = tiny_contents()
    mirror = serve_dataset(server, "wrong", tiny_contents(seed=1))
    with pytest.raises(data.DataError, match=r"every mirror failed:\n.*/wrong/t10k-images-idx3-ubyte.gz.*checksum"):
        data.load(tiny_dataset(contents, mirrors=(mirror,)), "test")
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("sent", [0, 10, -1])
def test_interrupted_download_leaves_nothing(cache, server, sent):
    contents = tiny_contents()
    body = gzip.compress(contents["t10k-images-idx3-ubyte"])
    server.serve("/cut/t10k-images-idx3-ubyte.gz", body, sent=sent % len(body))
    dataset = tiny_dataset(contents, mirrors=(f"{server.url}/cut/",))
    with pytest.raises(data.DataError, match=rf"connection closed after {sent % len(body)} of {len(body)} bytes"):
        data.load(dataset, "test")
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("size", ["decompressed", "compressed"])
def test_a_download_larger_than_its_format_allows_is_refused_early(cache, server, size):
    """A body that decompresses to 8 MB where the spec allows 3 × 4 × 4 + 16 bytes (plus a small
    margin): decompression stops there; a body longer than any gzip of that size is cut off."""
    contents = tiny_contents()
    bomb = gzip.compress(contents["t10k-images-idx3-ubyte"] + bytes(8 << 20), mtime=0)
    if size == "compressed":
        bomb = os.urandom(1 << 16)
    server.serve("/bomb/t10k-images-idx3-ubyte.gz", bomb)
    dataset = tiny_dataset(contents, mirrors=(f"{server.url}/bomb/",))
    reason = ("decompresses to more than the 4160 bytes" if size == "decompressed"
              else "announces 65536 bytes, more than the 8260 this file can take")
    with pytest.raises(data.DataError, match=reason):
        data.load(dataset, "test")
    assert list(cache.iterdir()) == []


def test_a_local_gzip_bomb_is_refused_by_the_datasets_spec(tmp_path, cache):
    contents = tiny_contents()
    write_files(tmp_path, contents)
    labels = contents["t10k-labels-idx1-ubyte"]
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(labels[:4] + (10 ** 9).to_bytes(4, "big") + bytes(8 << 20), mtime=0))
    with pytest.raises(data.DataError, match=r"t10k-labels-idx1-ubyte.gz \(tiny\): holds more than "
                                             r"4107 bytes once decompressed"):
        data.load(tiny_dataset(contents), "test", data_dir=tmp_path)


def test_read_only_data_dir_is_never_written(tmp_path, cache, server):
    contents = tiny_contents()
    dataset = tiny_dataset(contents, mirrors=(serve_dataset(server, "good", contents),))
    train_only = {k: v for k, v in contents.items() if k.startswith("train")}
    directory = write_files(tmp_path / "readonly", train_only)
    directory.chmod(0o555)
    try:
        before = snapshot(directory)
        data.load(dataset, "train", data_dir=directory)
        data.load(dataset, "test", data_dir=directory)  # missing there: downloaded into the cache instead
        assert snapshot(directory) == before
        assert len(list(cache.iterdir())) == 2
        assert all("train" not in path for path in server.requests)
    finally:
        directory.chmod(0o755)


def test_corrupt_file_in_read_only_dir_is_not_replaced_by_a_download(tmp_path, cache, server):
    contents = tiny_contents()
    dataset = tiny_dataset(contents, mirrors=(serve_dataset(server, "good", contents),))
    directory = write_files(tmp_path / "readonly", {**contents, "train-labels-idx1-ubyte": b"\x00\x00\x08"})
    directory.chmod(0o555)
    try:
        before = snapshot(directory)
        with pytest.raises(data.DataError, match="too short for an IDX header"):
            data.load(dataset, "train", data_dir=directory)
        assert snapshot(directory) == before and server.requests == [] and not cache.exists()
    finally:
        directory.chmod(0o755)


# --- preprocessing and batching --------------------------------------------------------------------


def test_normalize_and_channel_axis():
    images = np.array([[[0, 255]]], np.uint8)
    out = data.normalize(images, mean=0.5, std=0.5)
    assert out.dtype == np.float32 and out.shape == (1, 1, 2)
    np.testing.assert_allclose(out, [[[-1.0, 1.0]]])
    assert data.add_channel_axis(np.zeros((3, 28, 28), np.uint8)).shape == (3, 28, 28, 1)


def test_train_val_split_is_a_seeded_partition():
    images, labels = np.arange(20).reshape(10, 2), np.arange(10)
    (tx, ty), (vx, vy) = data.train_val_split(images, labels, n_val=3, seed=0)
    assert tx.shape == (7, 2) and vx.shape == (3, 2)
    assert sorted([*ty, *vy]) == list(range(10)) and np.array_equal(tx[:, 0] // 2, ty)
    (_, ty2), (_, vy2) = data.train_val_split(images, labels, n_val=3, seed=0)
    assert np.array_equal(vy, vy2) and np.array_equal(ty, ty2)


def epoch_labels(labels, batch_size, **kwargs):
    return [y for _, y in data.batches(np.zeros((len(labels), 2)), labels, batch_size, **kwargs)]


def test_batches_depend_only_on_seed_and_epoch():
    labels = np.arange(100)
    first = epoch_labels(labels, 10, seed=3, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip(first, epoch_labels(labels, 10, seed=3, epoch=1)))
    assert not np.array_equal(np.concatenate(first), np.concatenate(epoch_labels(labels, 10, seed=3, epoch=2)))
    assert not np.array_equal(np.concatenate(first), np.concatenate(epoch_labels(labels, 10, seed=4, epoch=1)))
    assert np.array_equal(np.concatenate(first), data.epoch_permutation(100, seed=3, epoch=1))


def test_batches_drop_remainder():
    labels = np.arange(10)
    dropped = epoch_labels(labels, 4, seed=0, epoch=0)
    assert [len(y) for y in dropped] == [4, 4]
    kept = epoch_labels(labels, 4, seed=0, epoch=0, drop_remainder=False)
    assert [len(y) for y in kept] == [4, 4, 2]
    assert sorted(np.concatenate(kept)) == list(range(10))
    assert np.array_equal(np.concatenate(epoch_labels(labels, 4, seed=None, drop_remainder=False)), labels)


def test_batches_pairs_images_with_their_labels():
    labels = np.arange(12)
    images = labels[:, None, None] * np.ones((1, 2, 2), int)
    for x, y in data.batches(images, labels, 5, seed=1, epoch=0):
        assert x.shape == (5, 2, 2) and np.array_equal(x[:, 0, 0], y)


# --- real data (JAXNN_DATA_DIR) --------------------------------------------------------------------

MNIST_CLASS_COUNTS = {
    "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}


def real_mnist_dir() -> Path:
    """JAXNN_DATA_DIR's MNIST directory, or skip the test."""
    names = [name for split in data.MNIST.splits.values() for name in (split.images, split.labels)]
    dirs = fetch.search_dirs("mnist")[:1] if os.path.isdir(os.environ.get(fetch.ENV_VAR, "")) else []
    if not all(fetch.find_file(name, dirs) for name in names):
        pytest.skip(f"set {fetch.ENV_VAR} to a directory with the MNIST IDX files")
    return dirs[0]


@pytest.mark.realdata
@pytest.mark.parametrize("split", ["train", "test"])
def test_real_mnist(split):
    real_mnist_dir()
    images, labels = data.load_mnist(split, download=False)
    n = sum(MNIST_CLASS_COUNTS[split])
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == MNIST_CLASS_COUNTS[split]


@pytest.mark.realdata
def test_real_mnist_files_are_not_taken_for_fashion_mnist(monkeypatch, tmp_path):
    directory = real_mnist_dir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(data.DataError, match="It is mnist's t10k-images-idx3-ubyte"):
        data.load_fashion_mnist("test", data_dir=directory, download=False)


@pytest.mark.realdata
@pytest.mark.parametrize("split", ["train", "test"])
def test_real_fashion_mnist_from_debian_package(split):
    directory = data.FASHION_MNIST.system_dirs[0]
    if not os.path.isdir(directory):
        pytest.skip(f"{directory} is absent (Debian package dataset-fashion-mnist)")
    images, labels = data.load_fashion_mnist(split, data_dir=directory, download=False)
    per_class = 6000 if split == "train" else 1000
    assert images.shape == (10 * per_class, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == [per_class] * 10


def test_shift_images_translates_each_image_and_fills_the_rest():
    from jaxnn.data import epoch_shifts, shift_images

    x = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    out = shift_images(x, np.array([[1, 0], [-1, 2]]), fill=-1.0)
    np.testing.assert_array_equal(out[0, 1:], x[0, :3])
    np.testing.assert_array_equal(out[0, 0], -1.0)
    np.testing.assert_array_equal(out[1, :3, 2:], x[1, 1:, :3])
    np.testing.assert_array_equal(out[1, 3], -1.0)
    np.testing.assert_array_equal(out[1, :, :2], -1.0)
    np.testing.assert_array_equal(shift_images(x[..., None], np.array([[1, 0], [-1, 2]]), -1.0)[..., 0], out)
    np.testing.assert_array_equal(shift_images(x, np.zeros((2, 2), int), -1.0), x)
    s = epoch_shifts(1000, seed=3, epoch=2, max_shift=2)
    assert s.shape == (1000, 2) and s.min() == -2 and s.max() == 2
    np.testing.assert_array_equal(s, epoch_shifts(1000, seed=3, epoch=2, max_shift=2))
    assert not np.array_equal(s, epoch_shifts(1000, seed=3, epoch=3, max_shift=2))
