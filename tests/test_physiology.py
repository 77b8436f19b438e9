"""jaxnn.neuro.physiology against known answers (a rectified Gabor's F1/F0 is π/2, the energy
model's is 0, receptive fields by the recursion) and experiments.vision.visual_hierarchy's core
measurement on a small untrained LeNet-5."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.vision import visual_hierarchy as vh
from jaxnn import AvgPool, Conv2D, ConvParams, LayerError, MaxPool, Relu, serial
from jaxnn.models import lenet5
from jaxnn.neuro import physiology as ph
from tests._cli import assert_one_line_usage_error

SIZE = (28, 28)
THETA = np.arange(12) * 15.0


def _gratings(frequencies=(1 / 8,), steps=24):
    return ph.drifting_gratings(SIZE, THETA, frequencies, steps, mean=0.5, std=1.0)


def _measure(cell, stimuli):
    model, params = cell
    (tuning,) = ph.measure(model, params, stimuli, f"serial[1] {model.children[1].name}").values()
    return tuning


@pytest.fixture(scope="module")
def cells():
    return ph.reference_cells(SIZE, 30.0, 1 / 8, 3.0)


@pytest.fixture(scope="module")
def lenet():
    """LeNet-5 modern with random normal weights (shapes from eval_shape: no slow init)."""
    model = lenet5("modern")
    shapes = jax.eval_shape(lambda k: model.init(k, (-1, *SIZE, 1))[1], jax.random.key(0))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.3, s.shape), jnp.float32), shapes)
    return model, params


def test_fourier_components_of_a_sinusoid():
    t = np.arange(16)
    f0, f1 = ph.fourier(2.0 + 0.5 * np.cos(2 * np.pi * t / 16 + 1.0))
    assert f0 == pytest.approx(2.0) and f1 == pytest.approx(0.5)


def test_rectified_gabor_is_simple_with_ratio_pi_over_2(cells):
    t = _measure(cells["simple"], _gratings())
    assert t.f1f0[0] == pytest.approx(np.pi / 2, rel=0.02)
    assert t.baseline[0] == pytest.approx(0.0, abs=1e-5)


def test_energy_model_is_complex_and_phase_invariant(cells):
    t = _measure(cells["complex"], _gratings())
    assert t.f1f0[0] < 0.1
    f, o = int(np.argmax(t.drive[0].max(1))), int(np.argmax(t.drive[0].max(0)))
    r = t.response[0, f, o]                                   # one drift cycle at the optimum
    assert (r.max() - r.min()) / r.mean() < 0.1


def test_unit_built_for_30_degrees_peaks_there():
    # Bars at 30° counter-clockwise from horizontal (y up): the carrier varies along their normal.
    yy, xx = np.mgrid[0:28, 0:28]
    x, y = xx - 13.5, 13.5 - yy
    across = -x * np.sin(np.pi / 6) + y * np.cos(np.pi / 6)
    g = np.exp(-(x ** 2 + y ** 2) / 18.0) * np.cos(2 * np.pi * across / 8)
    params = (ConvParams(jnp.asarray((g - g.mean())[:, :, None, None], jnp.float32), jnp.zeros(1)), ())
    t = _measure((serial(Conv2D(1, 28), Relu()), params), _gratings(steps=8))
    assert abs(t.preferred_orientation[0] - 30.0) <= 15.0
    assert t.preferred_frequency[0] == pytest.approx(1 / 8)


def test_bar_orientation_convention():
    horizontal, vertical = ph.bars((9, 9), [0.0, 90.0], width=1.0)
    assert horizontal[4].min() > 0.999 and horizontal[0].max() < 1e-9      # row 4 lit
    assert vertical[:, 4].min() > 0.999 and vertical[:, 0].max() < 1e-9    # column 4 lit


def test_osi_isotropic_near_zero_and_oriented_large(cells):
    stimuli = _gratings(steps=8)
    yy, xx = np.mgrid[0:28, 0:28]
    d2 = (xx - 13.5) ** 2 + (yy - 13.5) ** 2
    dog = np.exp(-d2 / 8) / 8 - np.exp(-d2 / 32) / 32             # centre-surround, no orientation
    params = (ConvParams(jnp.asarray(dog[:, :, None, None], jnp.float32), jnp.zeros(1)), ())
    iso = _measure((serial(Conv2D(1, 28), Relu()), params), stimuli)
    assert iso.osi[0] < 0.05
    assert _measure(cells["simple"], stimuli).osi[0] > 0.5
    assert ph.orientation_index(np.ones(12), THETA) == pytest.approx(0.0, abs=1e-12)
    assert ph.orientation_index(np.eye(12)[2], THETA) == pytest.approx(1.0)


def test_receptive_field_recursion_exact(lenet):
    model, params = lenet
    rfs = ph.theoretical_receptive_fields(model, params, (-1, *SIZE, 1))
    sizes = {name: rf.size[0] for name, rf in rfs.items()}
    assert sizes == {"serial[0] Conv2D": 5, "serial[1] Relu": 5, "serial[2] MaxPool": 6,
                     "serial[3] Conv2D": 14, "serial[4] Relu": 14, "serial[5] MaxPool": 16}
    assert [rf.jump[0] for rf in rfs.values()] == [1, 1, 2, 2, 2, 4]
    assert rfs["serial[0] Conv2D"].box(14, 14) == ((12, 16), (12, 16))   # SAME pads by 2


def test_strided_stack_matches_formula_and_end_to_end_support():
    stack = serial(Conv2D(2, 3, strides=2, padding="SAME"), Relu(), Conv2D(2, (3, 5)),
                   AvgPool(3, strides=2, padding="SAME"), MaxPool(2))
    params = jax.jit(lambda k: stack.init(k, (-1, 40, 40, 1))[1])(jax.random.key(1))
    rf = list(ph.theoretical_receptive_fields(stack, params, (-1, 40, 40, 1)).values())
    # r_l = r_{l-1} + (k_l - 1) j_{l-1}, j_l = j_{l-1} s_l
    assert [r.size for r in rf] == [(3, 3), (3, 3), (7, 11), (11, 15), (15, 19)]
    assert [r.jump for r in rf] == [(2, 2), (2, 2), (2, 2), (4, 4), (8, 8)]
    whole = ph.probe_geometry(lambda x: stack(params, jnp.asarray(x)), (1, 40, 40, 1))
    assert whole.kernel == (15, 19) and whole.stride == (8, 8)


def test_bad_layer_and_channel_name_what_was_expected(lenet):
    model, params = lenet
    x = np.zeros((1, *SIZE, 1), np.float32)
    with pytest.raises(LayerError, match=r"no layer named 'conv9'.*serial\[2\] MaxPool"):
        ph.unit_responses(model, params, x, "conv9")
    with pytest.raises(LayerError, match=r"channel 6 out of range; expected 0\.\.5"):
        ph.unit_responses(model, params, x, "serial[2] MaxPool", channels=[6])
    with pytest.raises(LayerError, match=r"position \(20, 3\) outside its 14×14 map"):
        ph.effective_receptive_field(model, params, x, "serial[2] MaxPool", position=(20, 3))


def test_effective_size_of_known_masses():
    mass = np.zeros((10, 10))
    mass[4:7, 4:7] = 1.0
    assert ph.effective_size(mass, (5.0, 5.0)) == 3
    mass[4:6, 4:6] = 0.0
    mass[:, :] = 0.0
    mass[4:6, 4:6] = 1.0
    assert ph.effective_size(mass, (4.5, 4.5)) == 2
    assert ph.effective_size(np.zeros((4, 4)), (1.5, 1.5)) == 0


def test_trained_params_from_dict_or_attributes():
    class State:
        params, model_state = "p", "s"
    assert vh.trained_params({"params": "p", "model_state": "s"}) == vh.trained_params(State()) == ("p", "s")


def test_experiment_core_on_a_small_untrained_lenet(lenet):
    model, params = lenet
    protocol = {**vh.QUICK, "orientations": [0.0, 45.0, 90.0, 135.0], "wavelengths": [6],
                "steps": 8, "bar_offsets": [-1, 0, 1]}
    images = np.random.default_rng(2).normal(size=(4, *SIZE, 1)).astype(np.float32)
    names = vh.layer_names("modern")
    assert names == {"conv1": "serial[1] Relu", "pool1": "serial[2] MaxPool",
                     "conv2": "serial[4] Relu", "pool2": "serial[5] MaxPool"}
    summary, arrays = vh.measure_network(model, params, names, protocol, images)
    assert [summary[k]["theoretical_rf"] for k in names] == [5, 6, 14, 16]
    for label, s in summary.items():
        assert 0 < s["effective_rf"] <= s["theoretical_rf"]
        assert s["units"] == arrays[label]["tuning"].osi.shape[0]
        assert s["median_osi"] is None or 0 <= s["median_osi"] <= 1


@pytest.mark.parametrize("argv, message", [
    (["--out", "x", "--lenet", "/nonexistent/run"], "not a run folder of experiments.train_lenet"),
    (["--out", "x", "--seed", "-1"], "--seed must be ≥ 0"),
    (["--out", "x", "--bogus"], "unrecognized arguments"),
])
def test_usage_errors_are_one_line(argv, message, capsys):
    assert_one_line_usage_error(vh.main, argv, message, capsys)
