"""Three cognitive tasks with a fixation period and a choice, after neurogym's definitions
(Molano-Mazón et al. 2022) and the monkey experiments they model. Times in ms; one step is dt.

Inputs carry noise N(0, σ²/dt) per step (σ = 1, neurogym's convention, so evidence summed
over a period has the same signal-to-noise ratio at any dt). Outputs: 0 = fixate, 1 and 2 =
the two choices; the target is 0 until the decision period and the correct choice in it,
where the loss weighs each step DECISION_WEIGHT times more.

- `perceptual_decision` (Britten et al. 1992; Song et al. 2016): two stimulus channels of
  mean (1 ± c)/2 for a signed coherence c; choose the larger. Graded on c ≠ 0; goal 85 %.
- `context_decision` (Mante et al. 2013): motion and colour evidence at once, a context cue
  says which one to report. Goal 90 %.
- `delayed_match_to_sample` (neurogym's DelayMatchSample): a sample direction, a delay, a
  test direction; answer 1 if they match, 2 if not. Chance is 50 %; goal 90 %.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.neuro.tasks.base import Task, Trials, batched, fraction_correct, masked_cross_entropy

DECISION_COHERENCES = (0.0, 0.032, 0.064, 0.128, 0.256, 0.512)
CONTEXT_COHERENCES = (0.05, 0.15, 0.5)
DECISION_WEIGHT = 5.0


def _steps(ms: float, dt: float) -> int:
    return max(1, int(round(ms / dt)))


def _choice_trial(x, label, decision_from, n_steps, condition):
    """Targets (fixate, then the choice) and weights (DECISION_WEIGHT in the decision period,
    1 before it, as Yang et al. 2019 weight their loss) for a trial whose inputs are built."""
    t = jnp.arange(n_steps)
    target = jnp.where(t >= decision_from, label, 0).astype(jnp.int32)
    weight = jnp.where(t >= decision_from, DECISION_WEIGHT, 1.0).astype(jnp.float32)
    return Trials(x.astype(jnp.float32), target, weight,
                  jnp.asarray(label, jnp.int32), jnp.asarray(condition, jnp.float32))


def _noise(key, shape, dt, sigma):
    return jax.random.normal(key, shape) * float(sigma / np.sqrt(dt))


def perceptual_decision(dt: float = 20.0, *, fixation: float = 100.0, stimulus: float = 800.0,
                        decision: float = 200.0, sigma: float = 1.0,
                        coherences=DECISION_COHERENCES) -> Task:
    """Random-dot motion discrimination. Inputs (3): fixation cue, stimulus for choice 1,
    stimulus for choice 2. condition: (signed coherence,), positive favours choice 2."""
    t_stim, t_dec = _steps(fixation, dt), _steps(fixation, dt) + _steps(stimulus, dt)
    n_steps = t_dec + _steps(decision, dt)
    cohs = jnp.asarray(coherences, jnp.float32)

    def trial(key):
        k_c, k_s, k_n = jax.random.split(key, 3)
        sign = jnp.where(jax.random.bernoulli(k_s), 1.0, -1.0)
        coh = sign * jax.random.choice(k_c, cohs)
        label = jnp.where(coh > 0, 2, jnp.where(coh < 0, 1, jnp.where(sign > 0, 2, 1)))
        t = jnp.arange(n_steps)
        on = ((t >= t_stim) & (t < t_dec)).astype(jnp.float32)
        stim = jnp.stack([(1 - coh) / 2, (1 + coh) / 2])[None, :] * on[:, None]
        stim = stim + _noise(k_n, (n_steps, 2), dt, sigma) * on[:, None]
        x = jnp.concatenate([(t < t_dec).astype(jnp.float32)[:, None], stim], axis=1)
        return _choice_trial(x, label, t_dec, n_steps, [coh])

    graded = lambda trials: trials.condition[:, 0] != 0  # noqa: E731  (c = 0 has no answer)
    return Task("perceptual_decision", 3, 3, n_steps, dt, batched(trial), masked_cross_entropy(),
                fraction_correct(t_dec, graded), 0.85, True, t_dec, ("coherence",))


def context_decision(dt: float = 20.0, *, fixation: float = 100.0, stimulus: float = 800.0,
                     decision: float = 200.0, sigma: float = 1.0,
                     coherences=CONTEXT_COHERENCES) -> Task:
    """Context-dependent integration. Inputs (7): fixation, motion (2), colour (2), context
    (motion, colour). condition: (context 0 = motion / 1 = colour, motion coh, colour coh)."""
    t_stim, t_dec = _steps(fixation, dt), _steps(fixation, dt) + _steps(stimulus, dt)
    n_steps = t_dec + _steps(decision, dt)
    cohs = jnp.asarray(coherences, jnp.float32)

    def trial(key):
        k_ctx, k_m, k_c, k_sm, k_sc, k_n = jax.random.split(key, 6)
        context = jax.random.bernoulli(k_ctx).astype(jnp.int32)
        motion = jnp.where(jax.random.bernoulli(k_sm), 1.0, -1.0) * jax.random.choice(k_m, cohs)
        colour = jnp.where(jax.random.bernoulli(k_sc), 1.0, -1.0) * jax.random.choice(k_c, cohs)
        relevant = jnp.where(context == 0, motion, colour)
        label = jnp.where(relevant > 0, 2, 1)
        t = jnp.arange(n_steps)
        on = ((t >= t_stim) & (t < t_dec)).astype(jnp.float32)
        means = jnp.stack([(1 - motion) / 2, (1 + motion) / 2, (1 - colour) / 2, (1 + colour) / 2])
        stim = (means[None, :] + _noise(k_n, (n_steps, 4), dt, sigma)) * on[:, None]
        fix = (t < t_dec).astype(jnp.float32)[:, None]
        cue = jax.nn.one_hot(context, 2)[None, :] * fix
        x = jnp.concatenate([fix, stim, cue], axis=1)
        return _choice_trial(x, label, t_dec, n_steps, [context, motion, colour])

    return Task("context_decision", 7, 3, n_steps, dt, batched(trial), masked_cross_entropy(),
                fraction_correct(t_dec), 0.90, True, t_dec, ("context", "motion", "colour"))


def delayed_match_to_sample(dt: float = 20.0, *, fixation: float = 300.0, sample: float = 500.0,
                            delay: float = 1000.0, test: float = 500.0, decision: float = 300.0,
                            sigma: float = 1.0) -> Task:
    """Delayed match-to-sample with two directions θ ∈ {0, π} on a ring of 2 input units
    (cos(θ − θ_k) / 2 + 1/2, as neurogym). Inputs (3): fixation, ring (2).
    condition: (sample direction index, match 1 / non-match 0)."""
    t_sample = _steps(fixation, dt)
    t_delay = t_sample + _steps(sample, dt)
    t_test = t_delay + _steps(delay, dt)
    t_dec = t_test + _steps(test, dt)
    n_steps = t_dec + _steps(decision, dt)
    prefs = jnp.asarray([0.0, np.pi], jnp.float32)

    def trial(key):
        k_s, k_m, k_n = jax.random.split(key, 3)
        s = jax.random.bernoulli(k_s).astype(jnp.int32)
        match = jax.random.bernoulli(k_m).astype(jnp.int32)
        theta_s, theta_t = prefs[s], prefs[jnp.where(match == 1, s, 1 - s)]
        t = jnp.arange(n_steps)
        on_s = ((t >= t_sample) & (t < t_delay)).astype(jnp.float32)[:, None]
        on_t = ((t >= t_test) & (t < t_dec)).astype(jnp.float32)[:, None]
        ring = lambda th: jnp.cos(th - prefs)[None, :] / 2 + 0.5  # noqa: E731
        stim = on_s * ring(theta_s) + on_t * ring(theta_t)
        stim = stim + _noise(k_n, (n_steps, 2), dt, sigma) * (on_s + on_t)
        x = jnp.concatenate([(t < t_dec).astype(jnp.float32)[:, None], stim], axis=1)
        return _choice_trial(x, jnp.where(match == 1, 1, 2), t_dec, n_steps, [s, match])

    return Task("delayed_match_to_sample", 3, 3, n_steps, dt, batched(trial),
                masked_cross_entropy(), fraction_correct(t_dec), 0.90, True, t_dec,
                ("sample", "match"))


__all__ = ["CONTEXT_COHERENCES", "DECISION_COHERENCES", "DECISION_WEIGHT", "context_decision",
           "delayed_match_to_sample", "perceptual_decision"]
