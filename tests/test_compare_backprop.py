"""experiments.backprop.compare_backprop run as `python -m` would run it: reports, and the exit status
(0 when every pair agrees, 1 when one disagrees, 2 for an unknown case id)."""

import json
import runpy
import sys

import pytest

import jaxnn as nn
from jaxnn.check import cases

MODULE = "experiments.backprop.compare_backprop"


def _run_as_main(monkeypatch, *args):
    """The exit status of `python -m experiments.backprop.compare_backprop *args`, run in this process."""
    monkeypatch.setattr(sys, "argv", [MODULE, *args])
    monkeypatch.delitem(sys.modules, MODULE, raising=False)  # run_module executes a fresh copy
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module(MODULE, run_name="__main__")
    return exit_info.value.code


def _doubled_dx(layer):
    """The layer with a wrong backward: dx twice the true one."""
    def backward(params, residuals, dy):
        dparams, dx = layer.backward(params, residuals, dy)
        return dparams, 2 * dx
    return layer._replace(backward=backward)


def test_quick_run_agrees_writes_reports_and_exits_0(tmp_path, monkeypatch):
    assert _run_as_main(monkeypatch, "--quick", "--out", str(tmp_path), "--repeats", "2") == 0
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert saved["all_agree"] and not saved["failed"] and saved["results"]
    assert saved["expected"]  # the straight-through estimator vs finite differences
    markdown = (tmp_path / "compare.md").read_text()
    assert "| dense |" in markdown and "ALL PAIRS AGREED" in markdown
    assert (tmp_path / "compare.png").stat().st_size > 0


def test_a_wrong_backward_exits_1(tmp_path, monkeypatch, capsys):
    table = [case._replace(make=lambda: _doubled_dx(nn.Dense(5))) if case.id == "dense" else case
             for case in cases.LAYER_CASES]
    monkeypatch.setattr(cases, "LAYER_CASES", table)
    status = _run_as_main(monkeypatch, "--quick", "--cases", "dense", "--out", str(tmp_path),
                          "--repeats", "1")
    assert status == 1
    assert capsys.readouterr().out.rstrip().splitlines()[-1].startswith("SOME PAIRS DISAGREED")
    failed = json.loads((tmp_path / "compare.json").read_text())["failed"]
    assert "dense float32 manual vs reverse dx" in failed
    assert all(f.startswith("dense ") and "manual vs reverse dx" in f for f in failed), failed


def test_unknown_case_id_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    assert _run_as_main(monkeypatch, "--cases", "dense,no_such_layer", "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no_such_layer" in err
    assert not (tmp_path / "out").exists()
