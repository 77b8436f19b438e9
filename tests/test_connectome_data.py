"""jaxnn.data.connectome: file checks on small hand-made files, and the published counts on the real data.

The real-data tests need the files written by ``python -m experiments.connectome.regenerate --out DIR``
(found through $JAXNN_CONNECTOME_DIR, $JAXNN_DATA_DIR or the user cache) and skip without them.
"""

import json

import numpy as np
import pytest

from jaxnn.data import DataError
from jaxnn.data import connectome as cn
from jaxnn.data.connectome import Connectome, load_connectome, read_connectome, write_connectome

NAMES = ("AS10", "AS2", "AVAL", "PLML")


def _small(**over) -> dict:
    chem = np.array([[0, 2, 0, 1], [0, 0, 3, 0], [1, 0, 0, 0], [0, 0, 4, 0]])
    gap = np.array([[0, 1, 0, 0], [1, 0, 0, 2], [0, 0, 1, 0], [0, 2, 0, 0]])
    arrays = {"neurons": np.array(NAMES), "chemical": chem, "gap": gap,
              "types": np.array(["motor", "motor", "interneuron", "sensory"]), "nmj": np.array([5, 1, 0, 0]),
              "transmitter_gaba": np.array([True, False, False, False]),
              "transmitter_glutamate": np.array([False, False, True, True])}
    arrays.update(over)
    return {k: v for k, v in arrays.items() if v is not None}


def _write(directory, name="toy", **over):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.npz"
    np.savez(path, **_small(**over))
    return path


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No connectome variable, and a user cache inside tmp_path."""
    monkeypatch.delenv(cn.CONNECTOME_ENV_VAR, raising=False)
    monkeypatch.delenv("JAXNN_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_round_trip_keeps_names_counts_types_and_provenance(isolated):
    a = _small()
    c = Connectome("toy", tuple(a["neurons"]), a["chemical"], a["gap"], tuple(a["types"]), a["nmj"],
                   transmitters={"gaba": a["transmitter_gaba"], "glutamate": a["transmitter_glutamate"]})
    npz, js = write_connectome(isolated / "d", c, {"source": "hand-made"})
    assert npz.name == "toy.npz" and js.name == "toy.json"
    back = load_connectome("toy", data_dir=isolated / "d")
    assert back.neurons == NAMES
    np.testing.assert_array_equal(back.chemical, a["chemical"])
    np.testing.assert_array_equal(back.gap, a["gap"])
    np.testing.assert_array_equal(back.nmj, a["nmj"])
    assert back.chemical.dtype == np.float32 and not back.chemical.flags.writeable
    assert back.types == ("motor", "motor", "interneuron", "sensory")
    assert back.transmitters_of("AS10") == ("gaba",) and back.transmitters_of("AS2") == ()
    np.testing.assert_array_equal(back.transmitters["glutamate"], [False, False, True, True])
    assert back.provenance["source"] == "hand-made" and back.provenance["file"] == str(npz)
    assert back.gap_junction_count() == 1 + 2 + 1  # pairs once, the self-junction of AVAL once


def test_index_subset_and_types(isolated):
    c = read_connectome(_write(isolated))
    assert c.index("AVAL") == 2
    with pytest.raises(KeyError, match="'AVB' is not in connectome 'toy'"):
        c.index("AVB")
    s = c.subset(["PLML", "AVAL", "AS10"])
    assert s.neurons == ("PLML", "AVAL", "AS10")
    # chemical[pre, post] follows the names: PLML -> AVAL 4, AVAL -> AS10 1, AS10 -> PLML 1
    np.testing.assert_array_equal(s.chemical, [[0, 4, 0], [0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(s.gap, [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    assert s.types == ("sensory", "interneuron", "motor") and list(s.nmj) == [0, 0, 5]
    assert s.transmitters_of("AS10") == ("gaba",) and s.transmitters_of("PLML") == ("glutamate",)
    assert c.neuron_type("PLML") == "sensory" and c.of_type("motor") == ("AS10", "AS2")
    with pytest.raises(ValueError, match="distinct"):
        c.subset(["AVAL", "AVAL"])
    untyped = read_connectome(_write(isolated / "u", types=None))
    with pytest.raises(ValueError, match="no neuron types"):
        untyped.neuron_type("AVAL")


def test_natural_order():
    assert sorted(["VA10", "AS2", "VA9", "AS10", "AVAL"], key=cn.natural_key) == ["AS2", "AS10", "AVAL", "VA9", "VA10"]


@pytest.mark.parametrize("over, message", [
    ({"chemical": np.zeros((4, 3))}, r"'chemical' must have shape \(4, 4\) for 4 neurons, got \(4, 3\)"),
    ({"gap": np.triu(np.ones((4, 4)), 1)}, r"'gap' must be symmetric; gap\[AS10, AS2\] = 1"),
    ({"chemical": -np.eye(4)}, r"'chemical' holds counts and must be >= 0"),
    ({"gap": np.full((4, 4), 0.5)}, r"'gap' holds counts and must be integer-valued"),
    ({"chemical": None}, r"missing array\(s\) \['chemical'\]"),
    ({"neurons": np.array(["A", "B", "A", "C"])}, r"neuron names must be unique, repeated: \['A'\]"),
    ({"types": np.array(["sensory", "motor", "glia", "motor"])}, r"'types' must be in .* got \['glia'\]"),
    ({"nmj": np.array([1, 2])}, r"'nmj' must have shape \(4,\)"),
    ({"transmitter_gaba": np.array([0, 2, 0, 0])}, r"'transmitter_gaba' must be \(4,\) booleans"),
])
def test_bad_files_raise_naming_the_file(isolated, over, message):
    path = _write(isolated, **over)
    with pytest.raises(DataError, match=message) as e:
        load_connectome("toy", data_dir=isolated)
    assert str(path) in str(e.value)


def test_unreadable_file_and_bad_provenance(isolated):
    (isolated / "toy.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"toy\.npz: not a readable \.npz file.*experiments\.connectome\.regenerate"):
        load_connectome("toy", data_dir=isolated)
    _write(isolated)
    (isolated / "toy.json").write_text("{broken")
    with pytest.raises(DataError, match=r"toy\.json: provenance is not valid JSON"):
        load_connectome("toy", data_dir=isolated)


def test_missing_names_the_folders_and_the_command(isolated):
    (isolated / "empty").mkdir()
    with pytest.raises(FileNotFoundError) as e:
        load_connectome("varshney2011", data_dir=isolated / "empty")
    msg = str(e.value)
    assert str(isolated / "empty") in msg and str(isolated / "cache" / "jaxnn" / "connectome") in msg
    assert "python -m experiments.connectome.regenerate --out DIR" in msg
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_connectome("varshney2011", data_dir=isolated / "nope")


def test_search_order_and_default_dir(isolated, monkeypatch):
    data, mnist, own = isolated / "data", isolated / "data" / "mnist", isolated / "own"
    mnist.mkdir(parents=True)
    (mnist / "train-images-idx3-ubyte.gz").write_bytes(b"")
    # JAXNN_DATA_DIR at a data set's own folder: not written into; the user cache is the default
    monkeypatch.setenv("JAXNN_DATA_DIR", str(mnist))
    assert cn.default_dir() == isolated / "cache" / "jaxnn" / "connectome"
    # ... at the parent of data sets: <parent>/connectome, found there by the loader too
    monkeypatch.setenv("JAXNN_DATA_DIR", str(data))
    assert cn.default_dir() == data / "connectome"
    _write(data / "connectome", name="a")
    assert load_connectome("a").provenance["file"] == str(data / "connectome" / "a.npz")
    # JAXNN_CONNECTOME_DIR is searched before JAXNN_DATA_DIR, and is where the script writes
    monkeypatch.setenv(cn.CONNECTOME_ENV_VAR, str(own))
    assert cn.default_dir() == own
    _write(own, name="a", nmj=np.array([9, 9, 9, 9]))
    assert list(load_connectome("a").nmj) == [9, 9, 9, 9]
    # the data_dir argument comes first
    assert list(load_connectome("a", data_dir=data).nmj) == [5, 1, 0, 0]
    assert cn.search_dirs(data)[:3] == [data / "connectome", own, data / "connectome"]


# ------------------------------------------------------------------------------------ real data

@pytest.fixture(scope="module")
def varshney():
    try:
        return load_connectome("varshney2011")
    except FileNotFoundError as e:
        searched = ", ".join(str(d) for d in cn.search_dirs())
        pytest.skip(f"no varshney2011.npz in {searched} ({type(e).__name__}); write it with "
                    f"`python -m experiments.connectome.regenerate --out DIR` and set {cn.CONNECTOME_ENV_VAR}=DIR")


# Varshney et al. 2011 (and the WormAtlas release of NeuronConnect.xls): 279 connected somatic neurons
# (280 non-pharyngeal neurons in the table; VC6's only synapse is one neuromuscular junction), 6393
# chemical synapses, 890 gap junctions, 1410 neuromuscular junctions. Synapses, not connections:
# each row of the table is a connection (pair) with a count Nbr, and the totals are sums of Nbr.
PUBLISHED_NEURONS = 279
PUBLISHED_CHEMICAL = 6393
PUBLISHED_GAP = 890


def test_varshney_neurons(varshney):
    assert len(varshney) == PUBLISHED_NEURONS
    assert list(varshney.neurons) == sorted(varshney.neurons, key=cn.natural_key)
    touch = ["ALML", "ALMR", "AVM", "PLML", "PLMR", "PVDL", "PVDR",
             "AVAL", "AVAR", "AVBL", "AVBR", "AVDL", "AVDR", "PVCL", "PVCR", "DVA"]
    assert [n for n in touch if n not in varshney.neurons] == []
    assert {varshney.neuron_type(n) for n in ["ALML", "AVM", "PLMR", "PVDL"]} == {"sensory"}
    assert {varshney.neuron_type(n) for n in ["AVAL", "AVBR", "AVDL", "PVCR"]} == {"interneuron"}
    assert {varshney.neuron_type(n) for n in ["VA1", "DB7", "VD13", "AS11"]} == {"motor"}


def test_varshney_chemical_synapses(varshney):
    c = varshney.chemical
    assert np.all(np.diag(c) == 0)  # no chemical autapses in this data set
    # 2194 directed connections (pre -> post pairs with at least one synapse).
    assert int((c > 0).sum()) == 2194
    # The table's synapse counts sum to 6394 -- on the sending side (rows S + Sp, what `chemical`
    # holds) and, independently, on the receiving side (R + Rp): one more than the 6393 the paper and
    # the WormAtlas release state. The regeneration script checks the two sides agree entry by entry;
    # the one-synapse difference is in the published table itself, not introduced here.
    assert int(c.sum()) == PUBLISHED_CHEMICAL + 1


def test_varshney_gap_junctions(varshney):
    g = varshney.gap
    np.testing.assert_array_equal(g, g.T)
    # The table lists each gap junction from both partners (A B EJ n and B A EJ n), so the published
    # 890 counts each pair once: the strict upper triangle (887) plus the 3 junctions a neuron makes with
    # itself (RIBL, RIBR, VA8; listed once each). Summing the whole matrix would give 1777.
    assert varshney.gap_junction_count() == int(np.triu(g, 1).sum() + np.trace(g)) == PUBLISHED_GAP
    assert int(g.sum()) == 2 * PUBLISHED_GAP - 3
    assert [varshney.neurons[i] for i in np.flatnonzero(np.diag(g))] == ["RIBL", "RIBR", "VA8"]
    assert int((np.triu(g, 1) > 0).sum()) == 514  # gap-junction connections between distinct neurons
    assert int(((g > 0).sum(1) > 0).sum()) == 253  # neurons with at least one gap junction
    assert int(varshney.nmj.sum()) == 1410 - 1  # VC6's one NMJ left with VC6


def test_varshney_transmitters(varshney):
    gaba = {n for n in varshney.neurons if varshney.transmitters["gaba"][varshney.index(n)]}
    # the 26 GABAergic neurons of McIntire et al. 1993 (DD, VD, RME, RIS, AVL, DVB) are all flagged
    classic = {f"DD{i}" for i in range(1, 7)} | {f"VD{i}" for i in range(1, 14)} | {
        "RMED", "RMEV", "RMEL", "RMER", "RIS", "AVL", "DVB"}
    assert classic <= gaba
    assert {varshney.transmitters_of(n) for n in ["ALML", "ALMR", "AVM", "PLML", "PLMR"]} == {("glutamate",)}
    assert {varshney.transmitters_of(n) for n in ["AVAL", "AVBR", "AVDL", "PVCR"]} == {("acetylcholine",)}


def test_cook2019_whole_animal():
    try:
        c = load_connectome("cook2019")
    except FileNotFoundError:
        pytest.skip("no cook2019 connectome files; write them with "
                    "`python -m experiments.connectome.regenerate --out DIR`")
    assert len(c) == 302  # all hermaphrodite neurons, pharynx included
    np.testing.assert_array_equal(c.gap, c.gap.T)
    assert "EM serial sections" in c.provenance["weights"]  # not synapse counts
    assert c.neuron_type("NSML") == "polymodal" and c.neuron_type("I1L") == "interneuron"


def test_varshney_provenance(varshney):
    p = varshney.provenance
    assert p["source"]["package"] == "cect" and p["source"]["version"] == "0.3.5"
    assert "10.1371/journal.pcbi.1001066" in json.dumps(p["citation"])
    assert all(len(h) == 64 for h in p["source"]["files_read"].values())


def test_regenerate_reads_cell_classes_without_running_the_file():
    from experiments.connectome.regenerate import cook_classes
    source = b"""
import sys
sys.exit(3)
SENSORY_NEURONS_COOK = ["ALML"] + ["PLML"]
A = ["AVAL"]
INTERNEURONS_NONPHARYNGEAL_COOK = (A + ["AVBL"])
PHARYNGEAL_INTERNEURONS = ["I1L"]
MOTORNEURONS_NONPHARYNGEAL_COOK = ["DA1"]
PHARYNGEAL_MOTORNEURONS = []
PHARYNGEAL_POLYMODAL_NEURONS = ["NSML"]
UNKNOWN_FUNCTION_NEURONS = ["CANL"]
NOT_A_LITERAL = sorted(A)
"""
    assert cook_classes(source) == {"ALML": "sensory", "PLML": "sensory", "AVAL": "interneuron",
                                    "AVBL": "interneuron", "I1L": "interneuron", "DA1": "motor",
                                    "NSML": "polymodal", "CANL": "unknown"}
    with pytest.raises(SystemExit, match="both sensory and motor"):
        cook_classes(source.replace(b'["DA1"]', b'["ALML"]'))
