"""Write the connectome files that `jaxnn.data.connectome` loads, from the cached data of the ``cect`` wheel.

    python -m experiments.connectome.regenerate [--out DIR] [--wheel PATH]

Downloads the wheel of ``cect`` (C. elegans Connectome Toolbox, MIT licence) from the package index with
``pip download --no-deps`` into a temporary folder (or uses ``--wheel``), and reads from inside the zip,
with the standard library and numpy only (``cect`` and its dependencies are never installed):

* ``cect/cache/VarshneyDataReader.json``: the Varshney et al. 2011 matrices as cect assembles them from
  the authors' ``NeuronConnect.xls`` (chemical synapses = rows of type S and Sp, gap junctions = EJ;
  neuromuscular junctions go to one body-wall-muscle node ``BWM``);
* ``cect/data/NeuronConnectFormatted.xlsx``: the same table, re-read here to cross-check the cache
  entry by entry (the run fails if they differ);
* ``cect/Cells.py``: the sensory / interneuron / motor classification of Cook et al. 2019, read as
  literals with ``ast`` (never imported or executed);
* ``cect/cache/Cook2019HermReader.json``: Cook et al. 2019 adult hermaphrodite counts (``cook2019``);
* ``cect/cache/OpenWormUnifiedReader.json``: the same chemical synapses, each presynaptic neuron's row
  filed under the fast transmitters it releases according to Wang et al. 2024 (acetylcholine, glutamate,
  GABA, betaine); read back here as one flag per neuron and transmitter, for both data sets. The run
  checks that every filed row equals the neuron's row in the Cook 2019 matrix.

Writes ``DIR/varshney2011.{npz,json}`` and ``DIR/cook2019.{npz,json}`` (see jaxnn/data/connectome.py for
the format and for DIR's default) and prints one line per file.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxnn.data.connectome import Connectome, default_dir, natural_key, write_connectome

CECT_VERSION = "0.3.5"
CECT_LICENCE = "MIT (cect package, OpenWorm contributors)"
CECT_URL = "https://github.com/openworm/ConnectomeToolbox"
CECT_CITATION = ("Gleeson P, et al. C. elegans Connectome Toolbox (cect), https://github.com/openworm/"
                 "ConnectomeToolbox; see also https://openworm.org/ConnectomeToolbox")
VARSHNEY_CITATION = ("Varshney LR, Chen BL, Paniagua E, Hall DH, Chklovskii DB (2011) Structural properties "
                     "of the Caenorhabditis elegans neuronal network. PLoS Comput Biol 7(2): e1001066. "
                     "https://doi.org/10.1371/journal.pcbi.1001066")
COOK_CITATION = ("Cook SJ, Jarrell TA, Brittin CA, Wang Y, Bloniarz AE, Yakovlev MA, Nguyen KCQ, Tang LT-H, "
                 "Bayer EA, Duerr JS, Buelow HE, Hobert O, Hall DH, Emmons SW (2019) Whole-animal connectomes "
                 "of both Caenorhabditis elegans sexes. Nature 571: 63-71. https://doi.org/10.1038/s41586-019-1352-7")
WANG_CITATION = ("Wang C, Vidal B, Sural S, et al. (2024) A neurotransmitter atlas of C. elegans males and "
                 "hermaphrodites. eLife 13: RP95402. https://doi.org/10.7554/eLife.95402")

_VARSHNEY_CACHE = "cect/cache/VarshneyDataReader.json"
_VARSHNEY_XLSX = "cect/data/NeuronConnectFormatted.xlsx"
_CELLS = "cect/Cells.py"
_UNIFIED_CACHE = "cect/cache/OpenWormUnifiedReader.json"
_COOK_CACHE = "cect/cache/Cook2019HermReader.json"
_MUSCLE = "BWM"
# cect's names for the chemical-synapse classes of the unified (Cook 2019 + transmitter) matrices
_TRANSMITTERS = ("Acetylcholine", "Glutamate", "GABA", "Betaine")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Wheel:
    """Members of the cect wheel, read once each, with the SHA-256 of everything read."""

    def __init__(self, path: Path):
        self.path = path
        self.sha256 = sha256(path.read_bytes())
        self._zip = zipfile.ZipFile(path)
        self.read_sha: dict[str, str] = {}

    def read(self, member: str) -> bytes:
        data = self._zip.read(member)
        self.read_sha[member] = sha256(data)
        return data

    def metadata(self) -> dict[str, str]:
        name = next(n for n in self._zip.namelist() if n.endswith(".dist-info/METADATA"))
        out: dict[str, str] = {}
        for line in self.read(name).decode().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(": ")
            out.setdefault(key, value)
        return out

    def provenance(self, members: Sequence[str]) -> dict[str, Any]:
        return {"wheel": self.path.name, "wheel_sha256": self.sha256,
                "files_read": {m: self.read_sha[m] for m in members}}


def download_wheel(dest: Path) -> Path:
    """``pip download cect==VERSION --no-deps`` into `dest`; the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", f"cect=={CECT_VERSION}", "--no-deps", "--only-binary",
           ":all:", "-d", str(dest), "--quiet", "--disable-pip-version-check"]
    try:
        subprocess.run(cmd, check=True)
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"regenerate: `{' '.join(cmd)}` failed ({e}); with no index, download the wheel "
                         f"elsewhere and pass --wheel PATH") from e
    wheels = sorted(dest.glob(f"cect-{CECT_VERSION}-*.whl"))
    if not wheels:
        raise SystemExit(f"regenerate: pip left no cect-{CECT_VERSION} wheel in {dest}")
    return wheels[0]


# ------------------------------------------------------------------------------------------ parsing

def read_cect_matrices(wheel: Wheel, member: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """A cect cache file: (node names, {synapse class: (n, n) array, [pre, post]})."""
    d = json.loads(wheel.read(member))
    nodes = [str(n) for n in d["nodes"]]
    mats = {k: np.asarray(v, dtype=np.float64) for k, v in d["connections"].items()}
    for k, m in mats.items():
        if m.shape != (len(nodes), len(nodes)):
            raise SystemExit(f"regenerate: {member}: class {k} has shape {m.shape}, expected "
                             f"({len(nodes)}, {len(nodes)})")
        if np.any(m < 0) or np.any(m != np.round(m)):
            raise SystemExit(f"regenerate: {member}: class {k} is not a matrix of counts")
    return nodes, mats


def read_xlsx_rows(data: bytes) -> list[list[str]]:
    """The first worksheet of an .xlsx file as rows of cell strings (standard library only)."""
    ns = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    z = zipfile.ZipFile(io.BytesIO(data))
    shared = [''.join(t.text or '' for t in si.iter(f"{ns}t"))
              for si in ET.fromstring(z.read("xl/sharedStrings.xml")).findall(f"{ns}si")]
    rows = []
    for r in ET.fromstring(z.read("xl/worksheets/sheet1.xml")).iter(f"{ns}row"):
        row = []
        for c in r.findall(f"{ns}c"):
            v = c.find(f"{ns}v")
            if v is None or v.text is None:
                row.append("")
            else:
                row.append(shared[int(v.text)] if c.get("t") == "s" else v.text)
        rows.append(row)
    return rows


def _strip_zero(cell: str) -> str:
    """VB01 -> VB1, as cect does for the ventral-cord classes."""
    if cell[:2] in ("VA", "VB", "VC", "VD", "DA", "DB", "DD", "AS") and cell[-2:].startswith("0"):
        return cell[:-2] + cell[-1:]
    return cell


def varshney_from_xlsx(rows: list[list[str]], nodes: list[str]) -> dict[str, np.ndarray]:
    """Counts by type from the Varshney table (Neuron 1, Neuron 2, Type, Nbr), in `nodes` order."""
    header = [h.strip().lower() for h in rows[0][:4]]
    if header != ["neuron 1", "neuron 2", "type", "nbr"]:
        raise SystemExit(f"regenerate: {_VARSHNEY_XLSX}: unexpected header {rows[0]}")
    idx = {n: i for i, n in enumerate(nodes)}
    n = len(nodes)
    out: dict[str, np.ndarray] = {t: np.zeros((n, n)) for t in ("S", "Sp", "R", "Rp", "EJ")}
    nmj = np.zeros(n)
    for row in rows[1:]:
        pre, post, kind, num = _strip_zero(row[0]), _strip_zero(row[1]), row[2], int(float(row[3]))
        if kind == "NMJ":
            nmj[idx[pre]] += num
        else:
            out[kind][idx[pre], idx[post]] += num
    out["NMJ"] = nmj
    return out


def cook_classes(source: bytes) -> dict[str, str]:
    """Neuron -> sensory / interneuron / motor, from cect/Cells.py's module-level list literals.

    Only assignments whose right side is a list/tuple of strings, a name already read, or a sum of
    these are evaluated (by walking the syntax tree; the file is never executed).
    """
    env: dict[str, list[str]] = {}

    def value(node: ast.expr) -> list[str] | None:
        if isinstance(node, (ast.List, ast.Tuple)):
            if all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                return [str(e.value) for e in node.elts if isinstance(e, ast.Constant)]
            return None
        if isinstance(node, ast.Name):
            return env.get(node.id)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            a, b = value(node.left), value(node.right)
            return None if a is None or b is None else a + b
        return None

    for stmt in ast.parse(source).body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            v = value(stmt.value)
            if v is not None:
                env[stmt.targets[0].id] = v
    groups = {
        "sensory": ("SENSORY_NEURONS_COOK",),
        "interneuron": ("INTERNEURONS_NONPHARYNGEAL_COOK", "PHARYNGEAL_INTERNEURONS"),
        "motor": ("MOTORNEURONS_NONPHARYNGEAL_COOK", "PHARYNGEAL_MOTORNEURONS"),
        "polymodal": ("PHARYNGEAL_POLYMODAL_NEURONS",),
        "unknown": ("UNKNOWN_FUNCTION_NEURONS",),
    }
    out: dict[str, str] = {}
    for kind, names in groups.items():
        for var in names:
            if var not in env:
                raise SystemExit(f"regenerate: {_CELLS}: list {var} not found; cect's layout changed")
            for cell in env[var]:
                if out.get(cell, kind) != kind:
                    raise SystemExit(f"regenerate: {_CELLS}: {cell} is both {out[cell]} and {kind}")
                out[cell] = kind
    return out


def read_transmitters(wheel: Wheel) -> dict[str, set[str]]:
    """Neuron -> the fast transmitters (lower-case) it releases, as cect files Cook 2019's synapses.

    cect's unified matrices copy a presynaptic neuron's whole Cook 2019 row into the class of each
    transmitter Wang et al. 2024 found in it; a neuron is flagged for t when its row under t is non-zero,
    after checking that row equals the neuron's Cook 2019 row (so a flag means exactly that filing).
    """
    cook_nodes, cook = read_cect_matrices(wheel, _COOK_CACHE)
    uni_nodes, uni = read_cect_matrices(wheel, _UNIFIED_CACHE)
    if sorted(cook_nodes) != sorted(uni_nodes):
        raise SystemExit(f"regenerate: {_COOK_CACHE} and {_UNIFIED_CACHE} list different cells")
    missing = [t for t in _TRANSMITTERS if t not in uni]
    if missing:
        raise SystemExit(f"regenerate: {_UNIFIED_CACHE} lacks classes {missing}; it has {sorted(uni)}")
    perm = [uni_nodes.index(n) for n in cook_nodes]
    out: dict[str, set[str]] = {n: set() for n in cook_nodes}
    for t in _TRANSMITTERS:
        m = uni[t][np.ix_(perm, perm)]
        for i in np.flatnonzero(m.sum(1)):
            if not np.array_equal(m[i], cook["Generic_CS"][i]):
                raise SystemExit(f"regenerate: {_UNIFIED_CACHE}: {cook_nodes[i]}'s {t} row is not its "
                                 f"Cook 2019 row; cect's filing changed")
            out[cook_nodes[i]].add(t.lower())
    return out


def _transmitter_flags(names: Sequence[str], table: dict[str, set[str]]) -> dict[str, np.ndarray]:
    return {t.lower(): np.array([t.lower() in table.get(n, set()) for n in names]) for t in _TRANSMITTERS}


_TRANSMITTER_NOTE = (
    "transmitter_<t>[i]: neuron i releases t at its chemical synapses, for the fast transmitters "
    "acetylcholine, glutamate, gaba, betaine, according to Wang et al. 2024 as cect 0.3.5 encodes it "
    "(OpenWormUnifiedReader, from eLife 95402 supplementary file 2). A neuron can have several flags "
    "(e.g. AFD, AUA, RIM, SMD, DVA) or none: dopamine-only CEP and ADE, and the cells Wang et al. list as "
    "'unknown (orphan)' (e.g. PVM, PVQ, RMG, AVH, AVK, RID); the flags are read from neurons "
    "with chemical synapses in Cook 2019, so a neuron without any is never flagged. Inhibitory action is "
    "a property of the receptor, not only of the transmitter (e.g. glutamate and acetylcholine also gate "
    "inhibitory chloride channels in C. elegans)."
)


# ------------------------------------------------------------------------------------------ data sets

Built = tuple[Connectome, dict[str, Any]]


def build_varshney(wheel: Wheel, classes: dict[str, str], table: dict[str, set[str]]) -> Built:
    nodes, mats = read_cect_matrices(wheel, _VARSHNEY_CACHE)
    chem, gap = mats["Generic_CS"], mats["Generic_GJ"]
    xl = varshney_from_xlsx(read_xlsx_rows(wheel.read(_VARSHNEY_XLSX)), nodes)
    m = nodes.index(_MUSCLE)
    keep_all = [i for i in range(len(nodes)) if i != m]
    # cross-check: cache == spreadsheet (S + Sp for chemical synapses, EJ for gap junctions, NMJ column)
    checks = {
        "chemical": np.array_equal(chem[np.ix_(keep_all, keep_all)], (xl["S"] + xl["Sp"])[np.ix_(keep_all, keep_all)]),
        "gap": np.array_equal(gap, xl["EJ"]),
        "nmj": np.array_equal(chem[keep_all, m], xl["NMJ"][keep_all]),
        # the receiving side (R + Rp) of the same table lists every chemical synapse again, transposed
        "send_equals_receive": np.array_equal(xl["S"] + xl["Sp"], (xl["R"] + xl["Rp"]).T),
    }
    failed = [k for k, ok in checks.items() if not ok]
    if failed:
        raise SystemExit(f"regenerate: {_VARSHNEY_CACHE} and {_VARSHNEY_XLSX} disagree on {failed}")
    # The network: neurons with at least one neuron-to-neuron synapse or gap junction (Varshney's
    # 279). VC6 has a single neuromuscular junction and nothing else, so it is left out.
    sub_c, sub_g = chem[np.ix_(keep_all, keep_all)], gap[np.ix_(keep_all, keep_all)]
    linked = (sub_c.sum(0) + sub_c.sum(1) + sub_g.sum(0)) > 0
    dropped = [nodes[keep_all[i]] for i in np.flatnonzero(~linked)]
    keep = [keep_all[i] for i in np.flatnonzero(linked)]
    keep.sort(key=lambda i: natural_key(nodes[i]))
    names = [nodes[i] for i in keep]
    missing = [n for n in names if n not in classes]
    if missing:
        raise SystemExit(f"regenerate: no sensory/interneuron/motor class in {_CELLS} for {missing}")
    c = Connectome(
        name="varshney2011", neurons=tuple(names), chemical=chem[np.ix_(keep, keep)], gap=gap[np.ix_(keep, keep)],
        types=tuple(classes[n] for n in names), nmj=chem[keep, m],
        transmitters=_transmitter_flags(names, table),
    )
    members = [_VARSHNEY_CACHE, _VARSHNEY_XLSX, _CELLS, _COOK_CACHE, _UNIFIED_CACHE]
    prov = {
        "dataset": "varshney2011",
        "description": ("C. elegans hermaphrodite somatic nervous system (no pharyngeal neurons): chemical "
                        "synapses and gap junctions among the 279 connected neurons, and neuromuscular "
                        "junctions onto body-wall muscle (all muscles pooled)."),
        "original_publication": VARSHNEY_CITATION,
        "original_data": "NeuronConnect.xls (WormAtlas, Chen, Hall & Chklovskii), as shipped in cect/data",
        "weights": "number of synapses (contacts), each counted once whatever its size",
        "licence": ("Varshney et al. 2011 is published under CC-BY 2.5 (PLoS); the cect package that "
                    f"carries the table is {CECT_LICENCE}."),
        "citation": [VARSHNEY_CITATION, CECT_CITATION],
        "source": {"package": "cect", "version": CECT_VERSION, "url": CECT_URL, **wheel.provenance(members)},
        "neuron_types": {
            "source": ("Cook et al. 2019 classification as listed in cect/Cells.py (SENSORY_NEURONS_COOK, "
                       "INTERNEURONS_NONPHARYNGEAL_COOK, MOTORNEURONS_NONPHARYNGEAL_COOK)"),
            "citation": COOK_CITATION,
            "note": ("Cook et al. 2019 differ from White et al. 1986 for some cells: RIML/RIMR are "
                     "interneurons here (motor in White 1986); SAB, SIA, SIB are motor neurons here "
                     "(interneurons in White 1986); DVA, PVD are sensory."),
        },
        "transmitters": {"note": _TRANSMITTER_NOTE, "citation": WANG_CITATION,
                         "neurons_per_transmitter": {t: int(v.sum()) for t, v in (c.transmitters or {}).items()}},
        "derivation": {
            "chemical": "rows of type S and Sp (sending side), chemical[pre, post] = sum of Nbr",
            "gap": ("rows of type EJ; the table lists each junction from both sides, so gap is symmetric; "
                    "3 junctions of a neuron with itself (RIBL, RIBR, VA8) sit on the diagonal"),
            "nmj": "rows of type NMJ, summed per neuron",
            "neurons": (f"all cells except the pooled muscle node {_MUSCLE!r} and neurons with no "
                        f"neuron-to-neuron connection, dropped: {dropped}; natural order (AS2 before AS10)"),
            "cross_check": {k: bool(v) for k, v in checks.items()},
        },
        "counts": _counts(c),
    }
    return c, prov


def build_cook(wheel: Wheel, classes: dict[str, str], table: dict[str, set[str]]) -> Built:
    nodes, mats = read_cect_matrices(wheel, _COOK_CACHE)
    chem, gap = mats["Generic_CS"], mats["Generic_GJ"]
    neurons = [i for i, n in enumerate(nodes) if n in classes]
    sub_c, sub_g = chem[np.ix_(neurons, neurons)], gap[np.ix_(neurons, neurons)]
    linked = (sub_c.sum(0) + sub_c.sum(1) + sub_g.sum(0)) > 0
    dropped = [nodes[neurons[i]] for i in np.flatnonzero(~linked)]
    keep = sorted((neurons[i] for i in np.flatnonzero(linked)), key=lambda i: natural_key(nodes[i]))
    names = [nodes[i] for i in keep]
    ix = np.ix_(keep, keep)
    c = Connectome(name="cook2019", neurons=tuple(names), chemical=chem[ix], gap=gap[ix],
                   types=tuple(classes[n] for n in names), transmitters=_transmitter_flags(names, table))
    members = [_COOK_CACHE, _UNIFIED_CACHE, _CELLS]
    return c, {
        "dataset": "cook2019",
        "description": ("C. elegans adult hermaphrodite, whole animal including the pharynx (Cook et al. 2019): "
                        "chemical synapses and gap junctions among neurons; muscles and other cells left out."),
        "original_publication": COOK_CITATION,
        "weights": ("NOT synapse counts: the total number of EM serial sections in which the two cells are "
                    "connected, summed over their synapses (number and size of synapses together)"),
        "licence": (f"cect package: {CECT_LICENCE}. Cook et al. 2019 connectivity: Nature supplementary data, "
                    "no explicit licence stated; transmitter identities from Wang et al. 2024 (eLife, CC-BY "
                    "4.0). Regenerated locally from the package, not redistributed."),
        "citation": [COOK_CITATION, WANG_CITATION, CECT_CITATION],
        "source": {"package": "cect", "version": CECT_VERSION, "url": CECT_URL, "reader": "Cook2019HermReader",
                   **wheel.provenance(members)},
        "neuron_types": {"source": "Cook et al. 2019 classification as listed in cect/Cells.py",
                         "citation": COOK_CITATION},
        "transmitters": {"note": _TRANSMITTER_NOTE, "citation": WANG_CITATION,
                         "neurons_per_transmitter": {t: int(v.sum()) for t, v in (c.transmitters or {}).items()}},
        "derivation": {
            "chemical": "cect class Generic_CS (Cook et al. 2019 SI 5, corrected July 2020)",
            "gap": "cect class Generic_GJ (symmetric)",
            "neurons": (f"cells classified by Cook et al. 2019 with at least one connection to another neuron; "
                        f"dropped: {dropped}; natural order"),
        },
        "counts": _counts(c),
    }


def _counts(c: Connectome) -> dict[str, int]:
    """Totals are sums of weights (see "weights"); gap_total counts each pair once, self-junctions once."""
    return {"neurons": len(c), "chemical_total": int(c.chemical.sum()),
            "chemical_connections": int((c.chemical > 0).sum()),
            "gap_total": c.gap_junction_count(),
            "gap_junction_pairs": int((np.triu(c.gap) > 0).sum()),
            "neurons_with_gap_junctions": int(((c.gap > 0).sum(1) > 0).sum()),
            **({"neuromuscular_junctions": int(c.nmj.sum())} if c.nmj is not None else {})}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.connectome.regenerate",
                                description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help=f"folder to write into (default: {default_dir()})")
    p.add_argument("--wheel", type=Path, default=None, help=f"a cect-{CECT_VERSION} wheel already on disk")
    args = p.parse_args(argv)
    out = args.out if args.out is not None else default_dir()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jaxnn-cect-") as tmp:
        path = args.wheel if args.wheel is not None else download_wheel(Path(tmp))
        wheel = Wheel(path)
        meta = wheel.metadata()
        if meta.get("Name") != "cect" or meta.get("Version") != CECT_VERSION:
            raise SystemExit(f"regenerate: {path} is {meta.get('Name')} {meta.get('Version')}, expected cect "
                             f"{CECT_VERSION}")
        classes = cook_classes(wheel.read(_CELLS))
        table = read_transmitters(wheel)
        written = []
        for build in (build_varshney, build_cook):
            c, prov = build(wheel, classes, table)
            prov["source"]["licence"] = meta.get("License", "")
            prov["generated_by"] = "python -m experiments.connectome.regenerate"
            npz, js = write_connectome(out, c, prov)
            written.append((npz, c, prov))
            written.append((js, c, prov))
    for path, c, prov in written:
        k = prov["counts"]
        unit, gap_unit = ("synapses", "junctions") if c.name == "varshney2011" else ("EM sections",) * 2
        print(f"{path}  {path.stat().st_size} B  sha256 {sha256(path.read_bytes())[:16]}  {c.name}: "
              f"{k['neurons']} neurons, chemical {k['chemical_total']} {unit} in {k['chemical_connections']} "
              f"connections, gap junctions {k['gap_total']} {gap_unit} in {k['gap_junction_pairs']} pairs")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
