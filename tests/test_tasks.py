"""Tasks: seeded, batched, vmap/jit-able trial generators; their losses' hand-written gradients;
their performance measures on ideal and on wrong outputs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.neuro import tasks

_SAMPLERS = {}


def _sample(task, key, batch):
    """task.sample compiled once per (task, batch): eager vmap would compile op by op."""
    fn = _SAMPLERS.setdefault((task.name, batch), jax.jit(task.sample, static_argnums=1))
    return fn(key, batch)


@pytest.mark.parametrize("name", list(tasks.TASKS))
def test_trials_are_seeded_and_ideal_outputs_meet_the_goal(name):
    task = tasks.get(name)
    trials = _sample(task, jax.random.key(3), 64)
    chex.assert_trees_all_equal(trials, _sample(task, jax.random.key(3), 64))
    assert trials.x.shape == (64, task.n_steps, task.n_in) and trials.x.dtype == jnp.float32
    assert trials.weight.shape == (64, task.n_steps)
    assert not np.allclose(trials.x, _sample(task, jax.random.key(4), 64).x)
    if task.higher_is_better:
        ideal = 10.0 * jax.nn.one_hot(trials.target, task.n_out)
        wrong = 10.0 * jax.nn.one_hot(3 - trials.target, task.n_out)
    else:
        ideal, wrong = trials.target, -trials.target
    assert task.reached(float(task.performance(ideal, trials)))
    assert not task.reached(float(task.performance(wrong, trials)))


def test_a_generator_nests_inside_vmap_and_jit():
    task = tasks.sine_generation()
    nested = jax.jit(jax.vmap(lambda k: task.sample(k, 2)))(jax.random.split(jax.random.key(0), 3))
    assert nested.x.shape == (3, 2, task.n_steps, task.n_in)
    chex.assert_trees_all_equal(jax.tree.map(lambda a: a[1], nested),
                                _sample(task, jax.random.split(jax.random.key(0), 3)[1], 2))


def test_labels_follow_the_evidence():
    pd = _sample(tasks.perceptual_decision(), jax.random.key(3), 64)
    coh = pd.condition[:, 0]
    assert np.all(np.asarray(pd.label)[np.asarray(coh) > 0] == 2)
    stim = pd.x[:, 10:40, 1:].mean(1)  # the stimulus period
    agree = (jnp.argmax(stim, -1) + 1 == pd.label)[jnp.abs(coh) >= 0.256]
    assert float(agree.mean()) > 0.9
    cd = _sample(tasks.context_decision(), jax.random.key(3), 64)
    relevant = jnp.where(cd.condition[:, 0] == 0, cd.condition[:, 1], cd.condition[:, 2])
    np.testing.assert_array_equal(cd.label, jnp.where(relevant > 0, 2, 1))
    dms = _sample(tasks.delayed_match_to_sample(), jax.random.key(3), 64)
    np.testing.assert_array_equal(dms.label, jnp.where(dms.condition[:, 1] == 1, 1, 2))


@pytest.mark.parametrize("loss_name", ["cross_entropy", "mse"])
def test_masked_losses_backward_matches_autodiff(loss_name):
    with jax.enable_x64(True):
        k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
        y = jax.random.normal(k1, (3, 5, 4), jnp.float64)
        weight = jax.random.uniform(k3, (3, 5), jnp.float32)
        if loss_name == "cross_entropy":
            loss, target = tasks.masked_cross_entropy(), jax.random.randint(k2, (3, 5), 0, 4)
        else:
            loss, target = tasks.masked_mse(), jax.random.normal(k2, (3, 5, 4), jnp.float32)

        @jax.jit
        def both(y):
            value, res = loss.forward(y, (target, weight))
            return value, loss.backward(res, jnp.ones((), jnp.float64)), jax.grad(
                lambda y: loss.apply(y, (target, weight)))(y)

        value, manual, want = both(y)
        np.testing.assert_allclose(manual, want, rtol=1e-12)
        assert value.dtype == jnp.float64


def test_psychometric_fractions():
    choice = jnp.array([2, 1, 2, 2, 1, 1])
    evidence = jnp.array([-0.5, -0.5, 0.5, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(tasks.psychometric(choice, evidence, jnp.array([-0.5, 0.0, 0.5, 1.0])),
                               [0.5, 0.0, 1.0, np.nan])


def test_unknown_task_is_named():
    with pytest.raises(ValueError, match="unknown task 'dms'"):
        tasks.get("dms")
