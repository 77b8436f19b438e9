"""The lab notebook runs end to end (on a subset of MNIST), so it never rots."""

import os
from pathlib import Path

import pytest

from jaxnn import data as jdata

NOTEBOOK = Path(__file__).resolve().parents[1] / "experiments" / "rules" / "lab_perceptron.ipynb"


@pytest.mark.realdata
def test_lab_notebook_runs_end_to_end(monkeypatch):
    if not os.environ.get(jdata.ENV_VAR):
        pytest.skip(f"{jdata.ENV_VAR} is unset: the notebook reads the MNIST IDX files from it")
    nbformat = pytest.importorskip("nbformat", reason="nbformat is in the test extra: pip install -e '.[test]'")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is in the test extra: pip install -e '.[test]'")
    # The kernel runs in experiments/rules/, so a relative data directory must be made absolute here.
    monkeypatch.setenv(jdata.ENV_VAR, os.path.abspath(os.environ[jdata.ENV_VAR]))
    monkeypatch.setenv("JAXNN_LAB_SUBSET", "1000")
    monkeypatch.setenv("JAXNN_LAB_EPOCHS", "2")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "identical to jaxnn.data.load" in text and "test accuracy: jaxnn" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4  # digits; class counts and pixels; weights; errors per epoch and timing
