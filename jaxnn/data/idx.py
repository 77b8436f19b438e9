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

__all__ = ["DataError", "decode_idx", "read_bytes", "read_idx"]

_DTYPES = {
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


def read_bytes(path: str | os.PathLike, *, gz: bool | None = None) -> bytes:
    """The contents of `path`, decompressed when it is gzip.

    Args:
      path: the file.
      gz: whether the file is gzip; by default, whether its name ends in ``.gz``.

    Raises:
      DataError: the file claims to be gzip but is not, or its gzip stream is corrupt or cut short.
    """
    if gz is None:
        gz = os.fspath(path).endswith(".gz")
    if not gz:
        with open(path, "rb") as f:
            return f.read()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:
        # BadGzipFile is an OSError; a truncated stream is an EOFError; flipped bits are a zlib.error.
        raise DataError(
            f"{os.fspath(path)}: not a readable gzip file ({type(e).__name__}: {e}); it is corrupt or "
            "was cut short."
        ) from e


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


def read_idx(path: str | os.PathLike, *, magic: int | None = None) -> np.ndarray:
    """Read an IDX file, gzip (name ends in ``.gz``) or raw. See `decode_idx` for the result and errors."""
    return decode_idx(read_bytes(path), path, magic=magic)
