"""C. elegans connectomes as named count matrices: load, check, restrict to a circuit.

No connectome file ships with jaxnn. The files are written on the user's machine by
``python -m experiments.connectome.regenerate [--out DIR]``, which reads the cached data of the
``cect`` package (C. elegans Connectome Toolbox) from its wheel; jaxnn does not depend on ``cect``.

Files, for a data set ``NAME`` (e.g. ``varshney2011``), in one folder:

* ``NAME.npz``: ``neurons`` (N,) str; ``chemical`` (N, N) and ``gap`` (N, N) non-negative integer
  counts; optionally ``types`` (N,) str in `NEURON_TYPES`, ``nmj`` (N,) neuromuscular-junction counts,
  and ``transmitter_<t>`` (N,) bool, one per transmitter t (e.g. ``transmitter_gaba``): the neuron
  releases t at its chemical synapses;
* ``NAME.json``: provenance (source, package version, original publication, licence, citation,
  SHA-256 of what was read, how the matrices were derived).

Conventions of a `Connectome`:

* ``chemical[i, j]`` = number of chemical synapses from presynaptic neuron i onto postsynaptic
  neuron j (row = pre, column = post). A recurrent network ``dx/dt = ... + W^T f(x)`` with
  ``W = chemical`` sends activity along the synapses. The weights are what the source counts, stated
  in ``provenance["weights"]``: synapses for varshney2011; for cook2019 the number of EM serial
  sections of contact (synapse number and size together), so its totals are not synapse counts.
* ``gap[i, j] = gap[j, i]`` = number of gap junctions between i and j; the diagonal holds
  junctions of a neuron with itself (the Varshney 2011 data have three: RIBL, RIBR, VA8). The
  total number of gap junctions is ``triu(gap, 1).sum() + trace(gap)`` (each pair once).
* ``neurons`` are in natural order: names compared with digit runs as numbers (AS2 before AS10).

Where the folder is looked for, first hit wins, file by file (the same scheme as
`jaxnn.data.fetch`, with a variable of its own placed before the shared one):

1. the ``data_dir`` argument;
2. ``$JAXNN_CONNECTOME_DIR``;
3. ``$JAXNN_DATA_DIR``;
4. the user cache, ``$XDG_CACHE_HOME/jaxnn/connectome`` (``~/.cache/jaxnn/connectome``).

A directory ``D`` from 1 to 3 is searched as ``D/connectome`` when that subdirectory exists, else as
``D`` itself; so ``JAXNN_DATA_DIR`` may name the parent of several data sets or a data set's own folder
(e.g. ``.../mnist``, where no connectome file is found and the search moves on).

`default_dir` is where the regeneration script writes when given no ``--out``: ``$JAXNN_CONNECTOME_DIR``
if set; else ``$JAXNN_DATA_DIR/connectome`` when ``JAXNN_DATA_DIR`` is a writable directory that is
a parent of data sets (it has ``connectome/`` already, or it holds folders only, no files of its own as a
data set's folder like ``.../mnist`` does); else the user cache.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxnn.data.fetch import ENV_VAR, cache_dir
from jaxnn.data.idx import DataError

__all__ = [
    "CONNECTOME_ENV_VAR", "DATASETS", "NEURON_TYPES", "REGENERATE_COMMAND", "SUBDIR", "Connectome",
    "default_dir", "load_connectome", "natural_key", "read_connectome", "search_dirs", "write_connectome",
]

CONNECTOME_ENV_VAR = "JAXNN_CONNECTOME_DIR"
SUBDIR = "connectome"
REGENERATE_COMMAND = "python -m experiments.connectome.regenerate --out DIR"
# varshney2011: Varshney et al. 2011, 279 somatic neurons, synapse counts, types, NMJs, transmitters.
# cook2019: Cook et al. 2019 adult hermaphrodite, all 302 neurons (pharynx included), EM-section weights,
# types, transmitters.
DATASETS: tuple[str, ...] = ("varshney2011", "cook2019")
# Cook et al. 2019's classes; "polymodal" (pharyngeal MI, NSM, MC) and "unknown" (CAN) occur only in
# data sets with pharyngeal neurons or CAN (cook2019), varshney2011 has only the first three.
NEURON_TYPES: tuple[str, ...] = ("sensory", "interneuron", "motor", "polymodal", "unknown")
_TRANSMITTER_PREFIX = "transmitter_"
_REQUIRED = ("neurons", "chemical", "gap")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key comparing digit runs as numbers: ``sorted(names, key=natural_key)`` puts AS2 before AS10."""
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.split(r"(\d+)", name) if part)


@dataclasses.dataclass(frozen=True, eq=False)
class Connectome:
    """A connectome: N named neurons, chemical-synapse and gap-junction counts.

    Attributes:
      name: the data set, e.g. ``"varshney2011"``.
      neurons: (N,) names.
      chemical: (N, N) float32, integer-valued; ``chemical[i, j]`` synapses from pre i onto post j.
      gap: (N, N) float32, integer-valued, symmetric; ``gap[i, j]`` junctions between i and j.
      types: (N,) each one of `NEURON_TYPES`, or None when the file has no classification.
      nmj: (N,) float32 neuromuscular-junction counts onto body-wall muscle, or None.
      provenance: the ``NAME.json`` contents (plus ``"file"``: the npz read), {} for an in-memory one.
      transmitters: {transmitter: (N,) bool}, e.g. ``transmitters["gaba"][i]``: neuron i is GABAergic;
        None when the data set has no transmitter identities. A neuron may release several or none of
        the listed transmitters (e.g. only a monoamine, or one not yet identified).
    """

    name: str
    neurons: tuple[str, ...]
    chemical: np.ndarray
    gap: np.ndarray
    types: tuple[str, ...] | None = None
    nmj: np.ndarray | None = None
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    transmitters: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        _validate(self.name, self.neurons, self.chemical, self.gap, self.types, self.nmj, self.transmitters)
        object.__setattr__(self, "neurons", tuple(str(n) for n in self.neurons))
        object.__setattr__(self, "chemical", _frozen(self.chemical))
        object.__setattr__(self, "gap", _frozen(self.gap))
        if self.types is not None:
            object.__setattr__(self, "types", tuple(str(t) for t in self.types))
        if self.nmj is not None:
            object.__setattr__(self, "nmj", _frozen(self.nmj))
        if self.transmitters is not None:
            frozen = {}
            for t, v in self.transmitters.items():
                frozen[str(t)] = np.array(v, dtype=bool, copy=True)
                frozen[str(t)].flags.writeable = False
            object.__setattr__(self, "transmitters", frozen)
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(self.neurons)})

    def __len__(self) -> int:
        return len(self.neurons)

    def __repr__(self) -> str:
        return (f"Connectome({self.name!r}, {len(self)} neurons, {int(self.chemical.sum())} chemical synapses, "
                f"{self.gap_junction_count()} gap junctions)")

    def index(self, name: str) -> int:
        """Row/column of neuron `name`; KeyError naming the data set when it is absent."""
        try:
            return self._index[name]  # type: ignore[attr-defined]
        except KeyError:
            raise KeyError(f"neuron {name!r} is not in connectome {self.name!r} ({len(self)} neurons)") from None

    def indices(self, names: Iterable[str]) -> np.ndarray:
        """(len(names),) int array of `index` for each name."""
        return np.array([self.index(n) for n in names], dtype=np.int64)

    def neuron_type(self, name: str) -> str:
        """``"sensory"``, ``"interneuron"`` or ``"motor"``; ValueError when the data set has no types."""
        if self.types is None:
            raise ValueError(f"connectome {self.name!r} has no neuron types")
        return self.types[self.index(name)]

    def of_type(self, neuron_type: str) -> tuple[str, ...]:
        """The neurons of one type, in this connectome's order."""
        if neuron_type not in NEURON_TYPES:
            raise ValueError(f"neuron_type must be one of {NEURON_TYPES}, got {neuron_type!r}")
        if self.types is None:
            raise ValueError(f"connectome {self.name!r} has no neuron types")
        return tuple(n for n, t in zip(self.neurons, self.types, strict=True) if t == neuron_type)

    def transmitters_of(self, name: str) -> tuple[str, ...]:
        """The transmitters neuron `name` releases (possibly none); ValueError when the data set has none."""
        if self.transmitters is None:
            raise ValueError(f"connectome {self.name!r} has no transmitter identities")
        i = self.index(name)
        return tuple(t for t, v in self.transmitters.items() if v[i])

    def subset(self, names: Sequence[str]) -> Connectome:
        """The connectome restricted to `names`, in the order of `names` (synapses among them only)."""
        if len(set(names)) != len(names):
            raise ValueError(f"subset of {self.name!r}: names must be distinct, got {list(names)}")
        idx = self.indices(names)
        return Connectome(
            name=self.name, neurons=tuple(names),
            chemical=self.chemical[np.ix_(idx, idx)], gap=self.gap[np.ix_(idx, idx)],
            types=None if self.types is None else tuple(self.types[i] for i in idx),
            nmj=None if self.nmj is None else self.nmj[idx],
            provenance={**self.provenance, "subset_of": len(self)},
            transmitters=None if self.transmitters is None else {t: v[idx] for t, v in self.transmitters.items()},
        )

    def gap_junction_count(self) -> int:
        """Gap junctions, each pair counted once: ``triu(gap, 1).sum() + trace(gap)``."""
        return int(np.triu(self.gap, 1).sum() + np.trace(self.gap))


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float32, copy=True)
    a.flags.writeable = False
    return a


def _validate(where: str, neurons: Sequence[str], chemical: Any, gap: Any, types: Sequence[str] | None,
              nmj: Any, transmitters: dict[str, Any] | None = None) -> None:
    """Raise DataError naming `where` unless the fields form a consistent connectome."""
    if np.asarray(neurons).ndim != 1:
        raise DataError(f"{where}: 'neurons' must be a 1-d list of names, got shape {np.shape(neurons)}")
    names = [str(n) for n in neurons]
    n = len(names)
    if n == 0:
        raise DataError(f"{where}: 'neurons' is empty")
    if len(set(names)) != n:
        dup = sorted({x for x in names if names.count(x) > 1})
        raise DataError(f"{where}: neuron names must be unique, repeated: {dup}")
    for key, m in (("chemical", chemical), ("gap", gap)):
        m = np.asarray(m)
        if m.shape != (n, n):
            raise DataError(f"{where}: '{key}' must have shape ({n}, {n}) for {n} neurons, got {m.shape}")
        _check_counts(where, key, m)
    g = np.asarray(gap)
    if not np.array_equal(g, g.T):
        i, j = np.argwhere(g != g.T)[0]
        raise DataError(f"{where}: 'gap' must be symmetric; gap[{names[i]}, {names[j]}] = {g[i, j]} but "
                        f"gap[{names[j]}, {names[i]}] = {g[j, i]}")
    if types is not None:
        kinds = [str(x) for x in types]
        if len(kinds) != n:
            raise DataError(f"{where}: 'types' must have {n} entries, got {len(kinds)}")
        bad = sorted(set(kinds) - set(NEURON_TYPES))
        if bad:
            raise DataError(f"{where}: 'types' must be in {NEURON_TYPES}, got {bad}")
    if nmj is not None:
        v = np.asarray(nmj)
        if v.shape != (n,):
            raise DataError(f"{where}: 'nmj' must have shape ({n},), got {v.shape}")
        _check_counts(where, "nmj", v)
    for t, given in (transmitters or {}).items():
        flags = np.asarray(given)
        if flags.shape != (n,) or not (flags.dtype == bool or np.all((flags == 0) | (flags == 1))):
            raise DataError(f"{where}: '{_TRANSMITTER_PREFIX}{t}' must be ({n},) booleans, "
                            f"got {flags.dtype} {flags.shape}")


def _check_counts(where: str, key: str, m: np.ndarray) -> None:
    if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
        raise DataError(f"{where}: '{key}' must hold numbers, got dtype {m.dtype}")
    if not np.all(np.isfinite(m)):
        raise DataError(f"{where}: '{key}' has non-finite entries")
    if np.any(m < 0):
        raise DataError(f"{where}: '{key}' holds counts and must be >= 0; min is {m.min()}")
    if np.any(m != np.round(m)):
        raise DataError(f"{where}: '{key}' holds counts and must be integer-valued")


# ---------------------------------------------------------------------------------------------- files

def _subdir(directory: str | os.PathLike, origin: str) -> Path:
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"{origin} {directory} is not a directory")
    return directory / SUBDIR if (directory / SUBDIR).is_dir() else directory


def search_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for connectome files, in order (see the module docstring).

    Raises:
      FileNotFoundError: `data_dir`, $JAXNN_CONNECTOME_DIR or $JAXNN_DATA_DIR is set but not a directory.
    """
    dirs = []
    if data_dir is not None:
        dirs.append(_subdir(data_dir, "data_dir"))
    for var in (CONNECTOME_ENV_VAR, ENV_VAR):
        if os.environ.get(var):
            dirs.append(_subdir(os.environ[var], f"${var}"))
    dirs.append(cache_dir(SUBDIR))
    return dirs


def _is_dataset_folder(directory: Path) -> bool:
    """True when `directory` holds a data set's own files (e.g. MNIST's IDX files), not data-set folders."""
    return any(p.is_file() and not p.name.startswith(".") for p in directory.iterdir())


def default_dir() -> Path:
    """Where the regeneration script writes by default (see the module docstring); not created here."""
    if os.environ.get(CONNECTOME_ENV_VAR):
        return Path(os.environ[CONNECTOME_ENV_VAR]).expanduser()
    if os.environ.get(ENV_VAR):
        parent = Path(os.environ[ENV_VAR]).expanduser()
        if parent.name == SUBDIR and parent.is_dir() and os.access(parent, os.W_OK):
            return parent
        if (parent / SUBDIR).is_dir() and os.access(parent / SUBDIR, os.W_OK):
            return parent / SUBDIR
        if parent.is_dir() and os.access(parent, os.W_OK) and not _is_dataset_folder(parent):
            return parent / SUBDIR
    return cache_dir(SUBDIR)


def write_connectome(directory: str | os.PathLike, c: Connectome, provenance: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``<directory>/<c.name>.npz`` and ``.json`` (each via a temporary file renamed into place).

    Counts are stored as int32. Returns the two paths.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    npz, js = directory / f"{c.name}.npz", directory / f"{c.name}.json"
    arrays: dict[str, Any] = {
        "neurons": np.array(c.neurons, dtype=str),
        "chemical": c.chemical.astype(np.int32), "gap": c.gap.astype(np.int32),
    }
    if c.types is not None:
        arrays["types"] = np.array(c.types, dtype=str)
    if c.nmj is not None:
        arrays["nmj"] = c.nmj.astype(np.int32)
    for t, v in (c.transmitters or {}).items():
        arrays[_TRANSMITTER_PREFIX + t] = v.astype(bool)
    tmp = directory / f".{c.name}.npz.part"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, npz)
    tmp = directory / f".{c.name}.json.part"
    tmp.write_text(json.dumps(provenance, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, js)
    return npz, js


def read_connectome(npz_path: str | os.PathLike, name: str | None = None) -> Connectome:
    """Read and check one ``NAME.npz`` (and its ``NAME.json`` beside it, if present).

    Raises:
      DataError: the file is unreadable, lacks ``neurons``/``chemical``/``gap``, or fails a check
        (shapes, symmetric gap junctions, non-negative integer counts, known types); the message names it.
    """
    path = Path(npz_path)
    name = name or path.stem
    where = str(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{where}: not a readable .npz file ({type(e).__name__}: {e}); regenerate it with "
                        f"{REGENERATE_COMMAND}") from e
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise DataError(f"{where}: missing array(s) {missing}; it has {sorted(arrays)}, expected at least "
                        f"{list(_REQUIRED)}")
    provenance: dict[str, Any] = {}
    js = path.with_suffix(".json")
    if js.is_file():
        try:
            provenance = json.loads(js.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{js}: provenance is not valid JSON ({e})") from e
        if not isinstance(provenance, dict):
            raise DataError(f"{js}: provenance must be a JSON object, got {type(provenance).__name__}")
    provenance = {**provenance, "file": str(path)}
    if arrays["neurons"].dtype.kind not in "US":
        raise DataError(f"{where}: 'neurons' must be strings, got dtype {arrays['neurons'].dtype}")
    types = arrays.get("types")
    transmitters = {k[len(_TRANSMITTER_PREFIX):]: v for k, v in arrays.items() if k.startswith(_TRANSMITTER_PREFIX)}
    _validate(where, arrays["neurons"], arrays["chemical"], arrays["gap"], None if types is None else list(types),
              arrays.get("nmj"), transmitters)
    return Connectome(
        name=name, neurons=tuple(str(n) for n in arrays["neurons"]), chemical=arrays["chemical"],
        gap=arrays["gap"], types=None if types is None else tuple(str(t) for t in types),
        nmj=arrays.get("nmj"), provenance=provenance, transmitters=transmitters or None,
    )


def load_connectome(name: str = "varshney2011", data_dir: str | os.PathLike | None = None) -> Connectome:
    """Load data set `name` (one of `DATASETS`, or any ``NAME.npz`` in a searched folder).

    Raises:
      FileNotFoundError: no folder holds ``NAME.npz``; the message lists the folders searched and the
        command that writes the files.
      DataError: the file is there but fails its checks (see `read_connectome`).
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"load_connectome: name must be a data-set name like 'varshney2011', got {name!r}")
    dirs = search_dirs(data_dir)
    for d in dirs:
        if (d / f"{name}.npz").is_file():
            return read_connectome(d / f"{name}.npz", name)
    searched = "\n".join(f"  {d}" for d in dirs)
    known = "" if name in DATASETS else f" (known data sets: {', '.join(DATASETS)})"
    raise FileNotFoundError(
        f"connectome {name!r}{known}: no {name}.npz in any of\n{searched}\n"
        f"No connectome data ships with jaxnn; write it with `{REGENERATE_COMMAND}` (DIR defaults to "
        f"{default_dir()}), then pass data_dir=DIR or set ${CONNECTOME_ENV_VAR}=DIR."
    )
