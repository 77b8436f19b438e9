"""Find data files on disk, or download them into the user cache, verified before they are kept.

Where a dataset's files are looked for, first hit wins, file by file:

1. the ``data_dir`` argument;
2. the directory in the ``JAXNN_DATA_DIR`` environment variable;
3. the user cache, ``$XDG_CACHE_HOME/jaxnn/<dataset>`` (``~/.cache/jaxnn/<dataset>`` by default);
4. the dataset's system directories (e.g. where a Debian package installs it).

A directory ``D`` from 1 or 2 is searched as ``D/<dataset>`` when that subdirectory exists, else as ``D``
itself, so one variable can serve several datasets (``D/mnist``, ``D/fashion-mnist``) or point straight
at one dataset's files. In each directory ``NAME.gz`` and the decompressed ``NAME`` are both accepted.

Only the cache is ever written to: directories 1, 2 and 4 are read, never written. A download goes to a
temporary file beside its destination and is renamed into place only once its checksum holds, so an
interrupted or corrupt download is never found by a later lookup.
"""

import hashlib
import http.client
import os
import tempfile
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

from jaxnn.data.idx import DataError

__all__ = ["ENV_VAR", "cache_dir", "download", "find_file", "search_dirs", "sha256_hex"]

ENV_VAR = "JAXNN_DATA_DIR"
TIMEOUT_S = 30.0
_CHUNK = 1 << 20


def cache_dir(dataset: str) -> Path:
    """``$XDG_CACHE_HOME/jaxnn/<dataset>``, or ``~/.cache/jaxnn/<dataset>`` when XDG_CACHE_HOME is unset."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "jaxnn" / dataset


def _dataset_subdir(directory: str | os.PathLike, dataset: str, origin: str) -> Path:
    directory = Path(directory).expanduser()
    # A misspelt directory would otherwise pass unnoticed and the files be downloaded again.
    if not directory.is_dir():
        raise FileNotFoundError(f"{origin} {directory} is not a directory")
    return directory / dataset if (directory / dataset).is_dir() else directory


def search_dirs(dataset: str, data_dir: str | os.PathLike | None = None,
                system_dirs: Sequence[str] = ()) -> list[Path]:
    """The directories searched for `dataset`'s files, in order (see the module docstring).

    Raises:
      FileNotFoundError: `data_dir` or $JAXNN_DATA_DIR is given but is not a directory.
    """
    dirs = []
    if data_dir is not None:
        dirs.append(_dataset_subdir(data_dir, dataset, "data_dir"))
    if os.environ.get(ENV_VAR):
        dirs.append(_dataset_subdir(os.environ[ENV_VAR], dataset, f"${ENV_VAR}"))
    dirs.append(cache_dir(dataset))
    dirs.extend(Path(d) for d in system_dirs)
    return dirs


def find_file(name: str, dirs: Iterable[Path]) -> Path | None:
    """The first of ``dir/name`` or ``dir/name.gz`` that exists, over `dirs` in order; None if none does.

    The decompressed file wins within one directory because it loads without a gunzip.
    """
    for directory in dirs:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _progress_bar(total: int | None, desc: str):
    """A tqdm bar when tqdm is installed, else a stand-in that prints one line at the start."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        print(f"Downloading {desc} ({total or '?'} bytes)", flush=True)
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def compressed_limit(max_bytes: int) -> int:
    """The most bytes a gzip file of at most `max_bytes` decompressed bytes can take (stored
    blocks: 5 bytes per 64 KiB, plus header and trailer), with room to spare."""
    return max_bytes + max_bytes // 1024 + 4096


def _fetch_to(url: str, out, max_bytes: int | None = None) -> int:
    """Stream `url` into the open binary file `out`; return the bytes written. `max_bytes`: the
    most bytes the body may have; a longer one (announced or sent) is refused.

    Raises:
      OSError: network failures (``urllib.error.URLError`` is one), and a body shorter than the
        server's Content-Length, which urllib does not report by itself.
      http.client.HTTPException: a malformed response, e.g. a chunked body cut short.
      DataError: a body longer than `max_bytes`.
    """
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length is not None and length.isdigit() else None
        if max_bytes is not None and total is not None and total > max_bytes:
            raise DataError(f"the server announces {total} bytes, more than the {max_bytes} this "
                            "file can take")
        bar = _progress_bar(total, url.rsplit("/", 1)[-1])
        written = 0
        try:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
                if max_bytes is not None and written > max_bytes:
                    raise DataError(f"the server sent more than the {max_bytes} bytes this file "
                                    "can take")
        finally:
            bar.close()
    if total is not None and written != total:
        raise OSError(f"connection closed after {written} of {total} bytes")
    return written


def _verify_download(path: Path, sha256: str, max_bytes: int | None = None) -> None:
    """Raise DataError unless the gunzipped contents of `path` have SHA-256 `sha256`; the
    contents are streamed through the hash in chunks, and more than `max_bytes` of them is a
    DataError (decompression stops there)."""
    import gzip
    import zlib

    digest, total = hashlib.sha256(), 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                total += len(chunk)
                if max_bytes is not None and total > max_bytes:
                    raise DataError(f"decompresses to more than the {max_bytes} bytes this file can "
                                    "hold (decompression stopped there)")
                digest.update(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"not a readable gzip file ({type(e).__name__}: {e})") from e
    if digest.hexdigest() != sha256:
        raise DataError(f"checksum of the decompressed contents is {digest.hexdigest()}, expected {sha256}")


def download(name: str, mirrors: Sequence[str], dest_dir: Path, sha256: str,
             max_bytes: int | None = None) -> Path:
    """Download ``NAME.gz`` into `dest_dir`, trying each mirror in turn until one gives a verified copy.

    Args:
      name: the decompressed file name, e.g. ``"train-labels-idx1-ubyte"``.
      mirrors: base URLs; ``<mirror>/<name>.gz`` is fetched.
      dest_dir: where the file is kept (created if missing).
      sha256: SHA-256 of the decompressed contents, checked before the file is renamed into place.
      max_bytes: the most bytes the decompressed file may have (its format's size); a longer body
        or one that decompresses to more is refused as soon as it is seen.

    Returns:
      ``dest_dir / (name + ".gz")``.

    Raises:
      DataError: no mirror gave a good copy; the message lists each mirror's failure. Nothing is left
        in `dest_dir` then.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{name}.gz"
    failures = []
    for mirror in mirrors:
        url = f"{mirror.rstrip('/')}/{name}.gz"
        # Same directory as dest, so the final os.replace is an atomic rename, never a copy.
        fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                _fetch_to(url, out, None if max_bytes is None else compressed_limit(max_bytes))
            if max_bytes is None:
                _verify_download(tmp, sha256)
            else:
                _verify_download(tmp, sha256, max_bytes)
            os.replace(tmp, dest)
            return dest
        except (OSError, http.client.HTTPException, DataError) as e:
            failures.append(f"  {url}: {type(e).__name__}: {e}")
        finally:
            tmp.unlink(missing_ok=True)
    tried = "\n".join(failures) or "  (no mirrors given)"
    raise DataError(
        f"could not download {name}.gz into {dest_dir}; every mirror failed:\n{tried}\n"
        f"Check the network, or put the file (gzip or decompressed) into a directory and pass it as "
        f"data_dir= or set {ENV_VAR}."
    )
