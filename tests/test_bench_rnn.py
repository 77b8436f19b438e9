"""benchmarks.rnn: its quick path writes the rows it promises, and the PyTorch connectome network it
times against runs the same dynamics as jaxnn's (so the comparison is like for like); the same for
benchmarks.loop_product's two loops."""

import json

import jax
import numpy as np
import pytest

from benchmarks import loop_product, rnn


def test_quick_rate_rows(tmp_path):
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes Python floats and int32 counters
        result = rnn.main(["--lengths", "3", "--steps", "1", "--repeats", "1", "--no-memory",
                           "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "rnn.json").read_text())
    (row,) = saved["rows"]
    assert row["T"] == 3 and row == result["rows"][0]
    for name in ("jaxnn manual", "jaxnn autodiff"):
        timing = row["timing"][name]
        assert timing["steps_per_s"] > 0 and timing["faults_per_step"] >= 0
    assert saved["network"] == "rate" and isinstance(saved["malloc_env"], dict)
    text = (tmp_path / "rnn.md").read_text()
    assert text.startswith("Rate network training step") and "| 3 |" in text


def test_pytorch_connectome_runs_jaxnn_dynamics():
    torch = pytest.importorskip("torch", reason="PyTorch is in the [bench] extra")
    from jaxnn.neuro.connectome import connectome_layer

    try:
        spec = rnn.connectome_spec()
    except FileNotFoundError:
        pytest.skip("no varshney2011 connectome files; write them with "
                    "`python -m experiments.connectome.regenerate --out DIR` and set JAXNN_CONNECTOME_DIR=DIR")
    layer = connectome_layer(spec)
    x = np.random.default_rng(0).standard_normal((2, 7, 3)).astype(np.float32)
    _, params, _ = layer.init(jax.random.key(0), x.shape)
    rng = np.random.default_rng(1)
    params = params._replace(gap=np.float32(0.3), tau=params.tau + rng.normal(0, 0.2, params.tau.shape),
                             w_in=rng.normal(0, 0.3, params.w_in.shape), b=rng.normal(0, 0.1, params.b.shape))
    params = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    want = np.asarray(layer(params, x))  # eval without a key: no noise
    net = rnn.torch_networks()[1](spec)
    net.noise = 0.0
    with torch.no_grad():
        for name, value in (("w", params.w_chem), ("gap", params.gap), ("theta", params.tau),
                            ("u", params.w_in), ("b", params.b)):
            getattr(net, name).copy_(torch.tensor(np.array(value)))
        got = net(torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2)))).numpy().transpose(1, 0, 2)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_loop_product_quick_rows(tmp_path):
    result = loop_product.main(["--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "loop_product.json").read_text())
    (row,) = saved["rows"]
    assert row["N"] == 16 and row == result["rows"][0]
    for name in ("jax loop", "jax one product"):
        assert row["ms"][name] > 0 and row["gflops"][name] > 0
    assert "| 16 |" in (tmp_path / "loop_product.md").read_text()


def test_loop_product_loops_compute_the_same():
    pytest.importorskip("torch", reason="PyTorch is in the [bench] extra")
    jax_fns = loop_product.jax_contenders(7, 4, 5)
    torch_fns = loop_product.torch_contenders(7, 4, 5, threads=1)
    last = np.asarray(jax_fns["jax loop"]())[-1]
    np.testing.assert_allclose(last, torch_fns["torch loop"]().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(jax_fns["jax one product"]()),
                               torch_fns["torch one product"]().numpy(), rtol=1e-4, atol=1e-5)
