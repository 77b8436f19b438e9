"""The IDX file format: read a file (gzip or raw) into a numpy array.

An IDX file (http://yann.lecun.com/exdb/mnist/, bottom of the page) is a big-endian header followed by
the payload in C order:

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions, d
    then        d dimension sizes, each a big-endian uint32
    then        prod(sizes) elements, big-endian

so MNIST's image files start with the magic number 0x00000803 (uint8, 3 dims) and its label files with
0x00000801 (uint8, 1 dim).
"""

import gzip
import math
import os
import zlib

import numpy as np

__all__ = ["DataError", "decode_idx", "idx_size", "read_bytes", "read_idx", "read_idx_bytes"]

_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataError(ValueError):
    """A data file is unusable: corrupt, truncated, of the wrong kind, or failing its checksum.

    The message names the file, what was expected, and what to do about it.
    """


_CHUNK = 1 << 20
MARGIN = 4096  # bytes past a size a format allows that are still read, to name trailing bytes


def _gzip_error(path: str | os.PathLike, e: BaseException) -> DataError:
    # BadGzipFile is an OSError; a truncated stream is an EOFError; flipped bits are a zlib.error.
    return DataError(
        f"{os.fspath(path)}: not a readable gzip file ({type(e).__name__}: {e}); it is corrupt or "
        "was cut short."
    )


def _is_gz(path: str | os.PathLike, gz: bool | None) -> bool:
    return os.fspath(path).endswith(".gz") if gz is None else gz


def read_bytes(path: str | os.PathLike, *, gz: bool | None = None, limit: int | None = None) -> bytes:
    """The contents of `path`, decompressed when it is gzip, read in chunks of at most 1 MiB.

    Args:
      path: the file.
      gz: whether the file is gzip; by default, whether its name ends in ``.gz``.
      limit: the most bytes (decompressed) the file may hold; reading stops as soon as it holds
        more, so a small gzip file that decompresses to gigabytes costs at most `limit` + 1 MiB.

    Raises:
      DataError: the file claims to be gzip but is not, its gzip stream is corrupt or cut short,
        or it holds more than `limit` bytes.
      OSError: the file cannot be opened or read.
    """
    gz = _is_gz(path, gz)
    chunks, total = [], 0
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            while True:
                want = _CHUNK if limit is None else min(_CHUNK, limit + 1 - total)
                chunk = f.read(want)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if limit is not None and total > limit:
                    raise DataError(
                        f"{os.fspath(path)}: holds more than {limit} bytes"
                        f"{' once decompressed' if gz else ''}, more than its format allows; "
                        "reading stopped there (not the expected file, or a decompression bomb)."
                    )
    except DataError:
        raise
    except (EOFError, zlib.error) as e:
        raise _gzip_error(path, e) from e
    except OSError as e:
        if gz and isinstance(e, gzip.BadGzipFile) or (gz and e.errno is None):
            raise _gzip_error(path, e) from e
        raise
    return b"".join(chunks)


def idx_size(path: str | os.PathLike, *, gz: bool | None = None) -> int | None:
    """The length in bytes the IDX header of `path` says the whole (decompressed) file has, read
    from the first bytes only; None when there is no valid header (`decode_idx` names why)."""
    gz = _is_gz(path, gz)
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] or head[1] or head[2] not in _DTYPES:
                return None
            dims = f.read(4 * head[3])
    except (EOFError, zlib.error) as e:
        raise _gzip_error(path, e) from e
    except OSError as e:
        if gz and (isinstance(e, gzip.BadGzipFile) or e.errno is None):
            raise _gzip_error(path, e) from e
        raise
    if len(dims) < 4 * head[3]:
        return None
    shape = [int(d) for d in np.frombuffer(dims, ">u4")]
    return 4 + len(dims) + math.prod(shape) * _DTYPES[head[2]].itemsize


def read_idx_bytes(path: str | os.PathLike, *, limit: int | None = None) -> bytes:
    """The (decompressed) bytes of an IDX file, read no further than its header's size (and
    `limit`, the size a dataset's spec allows) plus `MARGIN`."""
    expected = idx_size(path)
    caps = [c for c in (expected, limit) if c is not None]
    return read_bytes(path, limit=min(caps) + MARGIN if caps else limit)


def decode_idx(raw: bytes, path: str | os.PathLike = "<bytes>", *, magic: int | None = None) -> np.ndarray:
    """Decode the bytes of an IDX file.

    Args:
      raw: the whole (decompressed) file.
      path: used only in error messages.
      magic: if given, the 4-byte header magic the file must have (e.g. 0x00000803 for MNIST images).

    Returns:
      An array of the shape in the header, in native byte order and writable (a copy of `raw`); for
      MNIST images uint8 (N, 28, 28), for labels uint8 (N,).

    Raises:
      DataError: wrong or unknown magic number, or a payload whose length disagrees with the header
        (truncated or with trailing bytes).
    """
    path = os.fspath(path)
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes is too short for an IDX header (at least 4 bytes).")
    found_magic = int.from_bytes(raw[:4], "big")
    if magic is not None and found_magic != magic:
        raise DataError(
            f"{path}: IDX magic number is 0x{found_magic:08X}, expected 0x{magic:08X}; this is not the "
            "expected file (wrong file, or not decompressed?)."
        )
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path}: 0x{found_magic:08X} is not an IDX magic number; not an IDX file.")
    dtype, ndim = _DTYPES[raw[2]], raw[3]
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{path}: truncated header: expected {header_len} bytes, got {len(raw)}.")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected_len = header_len + math.prod(shape) * dtype.itemsize
    if len(raw) != expected_len:
        problem = "truncated" if len(raw) < expected_len else "has trailing bytes"
        raise DataError(
            f"{path}: file {problem}: header says shape {shape}, so expected {expected_len} bytes, "
            f"got {len(raw)}."
        )
    payload = np.frombuffer(raw, dtype, count=math.prod(shape), offset=header_len)
    # astype copies, so the result is writable and no longer pins `raw`.
    return payload.astype(dtype.newbyteorder("=")).reshape(shape)


def read_idx(path: str | os.PathLike, *, magic: int | None = None, limit: int | None = None
             ) -> np.ndarray:
    """Read an IDX file, gzip (name ends in ``.gz``) or raw, decompressing no more than its
    header (and `limit`, when given) allows. See `decode_idx` for the result and errors."""
    return decode_idx(read_idx_bytes(path, limit=limit), path, magic=magic)
