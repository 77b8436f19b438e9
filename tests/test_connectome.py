"""ConnectomeRNN (jaxnn.neuro.connectome): the hand-written BPTT against jax.vjp and central
finite differences in float64 (gap-junction conductance and time constants included), the gap
term moving current without creating any, the wiring mask and the signs holding through training,
the control wirings keeping what they promise, clear errors, and one ensemble step of the touch
experiment. The table rows connectome_* of jaxnn.check.cases (learned signs with noise, per-synapse
signs) run in tests/test_layers.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn as nn
from jaxnn.core import LayerError, fixed_state
from jaxnn.neuro.connectome import (
    ConnectomeRNN,
    Wiring,
    connectome_spec,
    degree_preserving_shuffle,
    dense,
    effective,
    random_sparse,
)

NAMES = ("ALML", "AVM", "RIS", "DD1", "AVAL", "AVBL", "PVCL")


def _wiring(n=7, seed=0, names=NAMES):
    rng = np.random.default_rng(seed)
    chem = (rng.random((n, n)) < 0.45) * rng.integers(1, 5, (n, n))
    np.fill_diagonal(chem, 0)
    gap = np.triu((rng.random((n, n)) < 0.35) * rng.integers(1, 3, (n, n)), 1)
    return Wiring(tuple(names), chem.astype(np.float64), (gap + gap.T).astype(np.float64))


WIRING = _wiring()
INPUTS, READOUT = ("ALML", ("AVM", "DD1")), (("AVAL", "RIS"), "PVCL")


def _random_like(key, tree):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)])


def test_bptt_matches_vjp_and_finite_differences_for_gap_and_tau():
    """Fixed (transmitter) signs, noise on: backward == jax.vjp on every leaf; the directional
    derivative along the gap conductance alone and along the time constants alone equals central
    differences (a random direction in every leaf is the table rows' check, tests/test_layers.py)."""
    with jax.enable_x64(True):
        layer = ConnectomeRNN(WIRING, INPUTS, READOUT, noise=0.1, gap_gain=2.0, dtype=jnp.float64)
        key = jax.random.key(5)
        view = fixed_state(layer, (), key=key, train=True)

        @jax.jit
        def check():
            _, p, _ = layer.init(jax.random.key(1), (2, 6, 2))
            p = jax.tree.map(lambda a, d: a + 0.4 * d, p, _random_like(jax.random.key(2), p))
            x = jax.random.normal(jax.random.key(3), (2, 6, 2), jnp.float64)
            y, vjp = jax.vjp(view, p, x)
            dy = jax.random.normal(jax.random.key(4), y.shape, jnp.float64)
            _, res, _ = layer.forward(p, (), x, key=key, train=True)
            got = layer.backward(p, res, dy)
            zero = jax.tree.map(jnp.zeros_like, (p, x))
            t_gap = (zero[0]._replace(gap=jnp.ones((), jnp.float64)), zero[1])
            t_tau = (zero[0]._replace(tau=jax.random.normal(jax.random.key(7), p.tau.shape, jnp.float64)),
                     zero[1])
            eps = 1e-5
            ts = jax.tree.map(lambda *d: jnp.stack(d), t_gap, t_tau)  # 2 directions

            def along(t):
                moved = [view(*jax.tree.map(lambda a, d, s=sign: a + s * eps * d, (p, x), t))
                         for sign in (1, -1)]
                analytic = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(t)))
                return jnp.vdot(dy, (moved[0] - moved[1]) / (2 * eps)), analytic

            fd, an = jax.vmap(along)(ts)
            return got, vjp(dy), fd, an

        got, want, fd, an = check()
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
        assert abs(float(an[0])) > 1e-6 and abs(float(an[1])) > 1e-6  # gap and τ do matter here
        np.testing.assert_allclose(an, fd, rtol=1e-6, atol=1e-9)


def test_gap_junctions_move_current_without_creating_it():
    """With only gap junctions (no chemical synapses) and equal time constants, the sum over
    neurons of the potentials v = logit(f) follows the same trajectory at any gap conductance
    (Σ_i Σ_j G_ij (f_j − f_i) = 0), while the individual potentials change."""
    with jax.enable_x64(True):
        w = Wiring(WIRING.neurons, np.zeros_like(WIRING.chemical), WIRING.gap)
        every = tuple(WIRING.neurons)
        x = jnp.ones((1, 12, 1), jnp.float64)

        def potentials(gap_gain):
            layer = ConnectomeRNN(w, ("ALML",), every, gap_gain=gap_gain, dtype=jnp.float64)
            _, p, _ = layer.init(jax.random.key(0), x.shape)
            f = layer(p._replace(b=jnp.linspace(-1, 1, len(every))), x)
            return np.asarray(jnp.log(f / (1 - f)))[0]

        weak, strong = potentials(1e-3), potentials(3.0)
        np.testing.assert_allclose(weak.sum(1), strong.sum(1), rtol=1e-9, atol=1e-9)
        assert np.abs(weak - strong).max() > 1e-2


def _train(layer, steps=3, seed=0):
    """A few gradient-descent steps of the hand-written gradient on a regression target."""
    init, step = nn.train_step(layer, nn.losses.mse(), 0.5, "manual")  # plain gradient descent
    _, p, _ = layer.init(jax.random.key(seed), (2, 4, 2))
    ts = init(p)
    x = jax.random.normal(jax.random.key(1), (2, 4, 2))
    target = jax.random.uniform(jax.random.key(2), (2, 4, 2))
    for i in range(steps):
        ts, _ = step(ts, (x, target), jax.random.key(i))
    return p, ts.params, (x, target)


@pytest.mark.parametrize("signs", ["transmitter", "neuron", "synapse"])
def test_wiring_mask_and_signs_hold(signs):
    """Gradients on non-synapses are 0 (under plain gradient descent the parameters there do not
    move by a single bit, while those of the synapses do) and the effective weights stay 0 off the
    wiring; with fixed signs every outgoing weight of the GABAergic RIS and DD1 is ≤ 0 and of
    every other neuron ≥ 0; with per-neuron signs each row keeps one sign."""
    layer = ConnectomeRNN(WIRING, INPUTS, READOUT, signs=signs)
    p0, p1, _ = _train(layer)
    spec = connectome_spec(WIRING, INPUTS, READOUT, signs=signs)
    off = WIRING.chemical == 0
    np.testing.assert_array_equal(np.asarray(p1.w_chem)[off], np.asarray(p0.w_chem)[off])
    assert np.abs(np.asarray(p1.w_chem - p0.w_chem)[~off]).max() > 0  # training did move the synapses
    W = np.asarray(effective(spec, p1).W)
    assert np.all(W[off] == 0)
    if signs == "transmitter":
        inhibitory = np.isin(WIRING.neurons, ("RIS", "DD1"))
        assert np.all(W[inhibitory] <= 0) and np.all(W[~inhibitory] >= 0)
        assert (W[inhibitory] < 0).any() and (W[~inhibitory] > 0).any()
    elif signs == "neuron":
        for row in W:
            assert np.all(row >= 0) or np.all(row <= 0)


def test_control_wirings_keep_degrees_density_and_totals():
    w = _wiring(n=30, seed=3, names=tuple(f"N{i}" for i in range(30)))
    s = degree_preserving_shuffle(w, seed=1)
    a, b = w.chemical > 0, s.chemical > 0
    np.testing.assert_array_equal(a.sum(0), b.sum(0))  # in-degrees
    np.testing.assert_array_equal(a.sum(1), b.sum(1))  # out-degrees
    np.testing.assert_array_equal((w.gap > 0).sum(0), (s.gap > 0).sum(0))
    np.testing.assert_array_equal(s.gap, s.gap.T)
    assert np.trace(s.chemical) == 0 and s.chemical.sum() == w.chemical.sum()
    assert (a != b).sum() > a.sum() // 2  # actually rewired
    r = random_sparse(w, seed=1)
    assert (r.chemical > 0).sum() == a.sum() and np.trace(r.chemical) == 0
    assert (np.triu(r.gap, 1) > 0).sum() == (np.triu(w.gap, 1) > 0).sum()
    d = dense(w)
    assert (d.chemical > 0).sum() == 30 * 29
    np.testing.assert_allclose([d.chemical.sum(), d.gap.sum()], [w.chemical.sum(), w.gap.sum()])


def test_bad_arguments_name_the_layer_and_the_problem():
    with pytest.raises(LayerError, match=r"ConnectomeRNN: readout: neurons \['XYZ'\]"):
        ConnectomeRNN(WIRING, INPUTS, ("XYZ",))
    with pytest.raises(LayerError, match="signs must be one of"):
        ConnectomeRNN(WIRING, INPUTS, READOUT, signs="dale")
    with pytest.raises(LayerError, match="0 < dt < tau"):
        ConnectomeRNN(WIRING, INPUTS, READOUT, tau=10.0, dt=10.0)
    asym = Wiring(WIRING.neurons, WIRING.chemical, np.triu(WIRING.gap + 1, 1))
    with pytest.raises(LayerError, match="gap must be symmetric"):
        ConnectomeRNN(asym, INPUTS, READOUT)
    layer = ConnectomeRNN(WIRING, INPUTS, READOUT, noise=0.1)
    _, p, _ = layer.init(jax.random.key(0), (1, 3, 2))
    with pytest.raises(LayerError, match="needs a key"):
        layer.forward(p, (), jnp.zeros((1, 3, 2)), train=True)


def test_touch_ensemble_step_trains_every_model():
    """One vmapped step of the touch experiment's ensemble on a synthetic circuit with the touch
    neurons' names: every model's loss is finite and its parameters change, differently per model."""
    from experiments.connectome import touch
    from experiments.connectome.ensemble import ensemble_step, init_ensemble

    names = touch.NEURONS
    w = _wiring(n=len(names), seed=4, names=names)
    cfg = touch.Config(out="unused", models=3, shuffles=1, batch=4).filled()
    _, layer = touch.build(w, cfg)
    init, step = ensemble_step(layer, touch.touch_loss(), 0.5)  # plain gradient descent
    ts = init_ensemble(layer, init, [0, 1, 2], (4, touch.N_STEPS, 2))
    before = np.asarray(ts.params.w_chem).copy()
    x, s = touch.touch_trials(jax.random.key(0), 4, 0.2)
    ts, metrics = step(ts, (x, (s, touch.response_window())), jax.random.key(1))
    loss = np.asarray(metrics["loss"])
    assert loss.shape == (3,) and np.all(np.isfinite(loss)) and len(set(loss.round(6))) == 3
    moved = np.abs(np.asarray(ts.params.w_chem) - before).reshape(3, -1).max(1)
    assert np.all(moved > 0)


def test_experiments_name_neurons_of_the_real_connectome():
    """Every neuron the two experiments wire inputs to or read out from is in Varshney 2011, and
    the touch circuit keeps synapses and gap junctions (needs the generated data)."""
    from experiments.connectome import touch, whole
    from jaxnn.data.connectome import load_connectome

    try:
        full = load_connectome("varshney2011")
    except FileNotFoundError:
        pytest.skip("connectome data not generated (python -m experiments.connectome.regenerate)")
    circuit = full.subset(list(touch.NEURONS))
    assert circuit.chemical.sum() > 0 and circuit.gap.sum() > 0
    spec = connectome_spec(full, whole.INPUTS, whole.READOUT)
    assert spec.input_mask.sum() == sum(len(g) for g in whole.INPUTS)
