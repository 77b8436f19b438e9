"""REINFORCE, the bandit agents and the CartPole environment."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn as nn
from jaxnn.backprop import value_and_grad
from jaxnn.neuro import agents
from jaxnn.neuro import reinforce as rf
from jaxnn.neuro.envs import bandit, cartpole

REWARD = jnp.array([3.0, 2.2, 1.5], jnp.float32)  # r(a) of a one-step, three-action problem
X = jnp.array([[0.3, -1.2]], jnp.float32)


def _policy():
    policy = nn.Dense(3)
    params = policy.init(jax.random.key(3), (1, 2))[1]
    return policy, params


def test_estimate_matches_the_analytic_gradient_in_expectation():
    """E[−dL/dθ] = ∇_θ Σ_a π_θ(a|x) r(a): the exact expectation's gradient by jax.grad."""
    policy, params = _policy()
    exact = jax.grad(lambda p: (jax.nn.softmax(policy(p, X)[0]) * REWARD).sum())(params)
    n_chunks, per_chunk = 40, 5000
    grad_fn = value_and_grad(policy, rf.reinforce_loss())

    @functools.partial(jax.jit, static_argnames="baseline")
    def estimate(key, baseline):
        x = jnp.broadcast_to(X, (per_chunk, 2))
        actions, _ = rf.sample_actions(key, policy(params, x))
        mask = jnp.ones((per_chunk, 1), jnp.float32)
        adv = rf.advantages(REWARD[actions][:, None], mask, baseline)[:, 0]
        weights = rf.episode_weights(adv, mask[:, 0])
        return jax.tree.map(jnp.negative, grad_fn(params, (), x, (actions, weights))[1])

    keys = jax.random.split(jax.random.key(0), n_chunks)
    spreads = {}
    for baseline in ("none", "mean"):
        chunks = [estimate(k, baseline) for k in keys]
        for leaf in ("w", "b"):
            samples = np.stack([np.asarray(getattr(c, leaf)) for c in chunks])
            mean, stderr = samples.mean(0), samples.std(0) / np.sqrt(n_chunks)
            want = np.asarray(getattr(exact, leaf))
            assert np.abs(want).max() > 20 * stderr.max()  # the test can tell a wrong answer
            np.testing.assert_array_less(np.abs(mean - want), 5 * stderr + 1e-6)
        spreads[baseline] = np.stack([np.asarray(c.b) for c in chunks]).std(0).max()
    assert spreads["mean"] < spreads["none"]  # the baseline lowers the variance


def test_manual_backward_equals_autodiff_on_episodes():
    policy = nn.serial(nn.Dense(8), nn.Tanh(), nn.Dense(2))
    params = policy.init(jax.random.key(1), (-1, 4))[1]
    k_obs, k_act, k_adv = jax.random.split(jax.random.key(2), 3)
    obs = jax.random.normal(k_obs, (5, 7, 4), jnp.float32)
    actions = jax.random.randint(k_act, (5, 7), 0, 2, jnp.int32)
    mask = (jnp.arange(7)[None, :] < jnp.array([[7], [3], [5], [1], [6]])).astype(jnp.float32)
    weights = rf.episode_weights(jax.random.normal(k_adv, (5, 7), jnp.float32), mask)
    loss = rf.reinforce_loss()
    auto = value_and_grad(policy, loss, "autodiff")(params, (), obs, (actions, weights))
    manual = value_and_grad(policy, loss, "manual")(params, (), obs, (actions, weights))
    for a, m in zip(jax.tree.leaves(auto), jax.tree.leaves(manual)):
        np.testing.assert_allclose(a, m, rtol=1e-5, atol=1e-6)
    logits = policy(params, obs)
    want = -(weights * rf.log_prob(logits, actions)).sum()
    np.testing.assert_allclose(auto[0][0], want, rtol=1e-6)


def test_choice_loss_reads_the_decision_period_mean():
    y = jax.random.normal(jax.random.key(6), (4, 6, 3), jnp.float32)
    actions = jnp.array([0, 2, 1, 2], jnp.int32)
    weights = jnp.array([0.5, -1.0, 0.25, 2.0], jnp.float32)
    loss = rf.choice_loss(2)
    value, residuals = loss.forward(y, (actions, weights))
    want = -(weights * rf.log_prob(y[:, 2:].mean(1), actions)).sum()
    np.testing.assert_allclose(value, want, rtol=1e-6)
    dy_auto = jax.grad(loss.apply)(y, (actions, weights))
    np.testing.assert_allclose(loss.backward(residuals, jnp.float32(1.0)), dy_auto, atol=1e-6)
    assert not np.asarray(dy_auto[:, :2]).any()


def test_returns_and_leave_one_out_baseline():
    g = rf.discounted_returns(jnp.array([[1.0, 1.0, 1.0]], jnp.float32), 0.5)
    np.testing.assert_allclose(g, [[1.75, 1.5, 1.0]])
    returns = jnp.array([[3.0, 2.0], [5.0, 0.0], [1.0, 0.0]], jnp.float32)
    mask = jnp.array([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]], jnp.float32)
    adv = rf.advantages(returns, mask, "per_step")
    # step 0: the others' means 3, 2, 4; step 1: the two running episodes see each other only
    np.testing.assert_allclose(adv, [[0.0, 2.0], [3.0, -2.0], [-3.0, 0.0]])
    assert float(rf.advantages(returns, mask, "none").sum()) == 11.0


def _reference_advantages(returns, mask, baseline):
    """The documented baselines, literally: loops over the other episodes' running steps."""
    g, m = np.asarray(returns, np.float64), np.asarray(mask) > 0
    n_ep, n_t = g.shape
    adv = np.zeros_like(g)
    for n, t in itertools.product(range(n_ep), range(n_t)):
        if not m[n, t]:
            continue
        steps = range(n_t) if baseline == "mean" else [t]
        others = [g[k, s] for k in range(n_ep) if k != n for s in steps if m[k, s]]
        b = np.mean(others) if others and baseline != "none" else 0.0
        adv[n, t] = g[n, t] - b
    return adv


def test_mean_baseline_leaves_the_whole_episode_out():
    g = jnp.array([[1.0, 5.0], [0.0, 0.0]], jnp.float32)
    # b_0 = mean of episode 1's returns = 0; b_1 = mean of episode 0's = 3 (once -0.667, 4.667 / -2)
    np.testing.assert_allclose(rf.advantages(g, jnp.ones((2, 2), jnp.float32), "mean"),
                               [[1.0, 5.0], [-3.0, -3.0]])
    # one episode: no other episode to average, so b = 0 (never the episode's own returns)
    for baseline in rf.BASELINES:
        np.testing.assert_allclose(rf.advantages(g[:1], jnp.ones((1, 2), jnp.float32), baseline),
                                   [[1.0, 5.0]])
    k_g, k_m = jax.random.split(jax.random.key(7))
    returns = jax.random.normal(k_g, (5, 4), jnp.float32)
    mask = (jnp.arange(4)[None, :] < jnp.array([[4], [2], [0], [1], [3]])).astype(jnp.float32)
    for baseline in rf.BASELINES:  # masked steps excluded, an empty episode included
        np.testing.assert_allclose(rf.advantages(returns, mask, baseline),
                                   _reference_advantages(returns, mask, baseline),
                                   rtol=1e-5, atol=1e-6, err_msg=baseline)


# A two-step problem small enough to enumerate: obs s0, then a0 = 1 ends the episode with r = 2;
# a0 = 0 gives r = 1 and leads to s1, where a1 = 0 gives 3 and a1 = 1 gives -1. Each episode has
# three outcomes (rows): actions, mask, rewards, observations (the ended step's is never used).
_S0, _S1, _END = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]
_OUTCOMES = dict(actions=np.array([[0, 0], [0, 1], [1, 0]], np.int32),
                 mask=np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]]),
                 rewards=np.array([[1.0, 3.0], [1.0, -1.0], [2.0, 0.0]]),
                 obs=np.array([[_S0, _S1], [_S0, _S1], [_S0, _END]]))
_EPISODES = 3  # per batch: 3 ** 3 = 27 batches


def _own_returns_mean(returns, mask):
    """The old "mean" rule: it left out only the (episode, step) entry itself."""
    g = returns * mask
    return (g - (g.sum() - g) / jnp.maximum(mask.sum() - mask, 1.0)) * mask


@functools.cache
def _enumerated_problem():
    """(policy, params, exact ∇J by jax.grad, every batch, each batch's probability), float64."""
    policy = nn.serial(nn.Dense(4, dtype=jnp.float64), nn.Tanh(), nn.Dense(2, dtype=jnp.float64))
    shapes = jax.eval_shape(lambda k: policy.init(k, (-1, 3))[1], jax.random.key(0))
    rng = np.random.default_rng(11)  # N(0, 1) weights: a policy far from uniform, set at once
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), shapes)

    def outcome_probs(p):
        pi = jax.nn.softmax(policy(p, jnp.array([_S0, _S1])), axis=-1)
        return jnp.stack([pi[0, 0] * pi[1, 0], pi[0, 0] * pi[1, 1], pi[0, 1]])

    episode_return = jnp.asarray(_OUTCOMES["rewards"].sum(1))
    exact = jax.jit(jax.grad(lambda p: outcome_probs(p) @ episode_return))(params)  # ∇ E[Σ r]
    index = np.array(list(itertools.product(range(3), repeat=_EPISODES)))  # (27, N)
    batches = {k: jnp.asarray(v[index]) for k, v in _OUTCOMES.items()}
    prob = jnp.asarray(np.prod(np.asarray(jax.jit(outcome_probs)(params))[index], axis=1))
    return policy, params, exact, batches, prob


def _expected_estimate(advantage_fn, method):
    """Σ_batches P(batch) · (−dL/dθ), every batch of the enumerated problem."""
    policy, params, _, batches, prob = _enumerated_problem()
    vg = value_and_grad(policy, rf.reinforce_loss(), method, jit=False)

    def estimate(actions, mask, rewards, obs):
        adv = advantage_fn(rf.discounted_returns(rewards, 1.0), mask)
        return vg(params, (), obs, (actions, rf.episode_weights(adv, mask)))[1]

    grads = jax.jit(jax.vmap(estimate))(batches["actions"], batches["mask"], batches["rewards"],
                                        batches["obs"])
    return jax.tree.map(lambda g: -jnp.tensordot(prob, g, axes=1), grads)


@pytest.mark.parametrize("method", ["autodiff", "manual"])
@pytest.mark.parametrize("baseline", rf.BASELINES)
def test_every_baseline_is_unbiased_by_exact_enumeration(baseline, method):
    """E[−dL/dθ] over all 27 batches of 3 two-step episodes (some ending after one step)
    equals ∇_θ E[Σ_t r_t] by jax.grad, to float64 rounding."""
    with jax.enable_x64(True):
        exact = _enumerated_problem()[2]
        np.testing.assert_allclose(_enumerated_problem()[4].sum(), 1.0, rtol=1e-12)
        got = _expected_estimate(lambda g, m: rf.advantages(g, m, baseline), method)
        for want, have in zip(jax.tree.leaves(exact), jax.tree.leaves(got)):
            np.testing.assert_allclose(have, want, rtol=1e-9, atol=1e-12)
        assert max(float(jnp.abs(w).max()) for w in jax.tree.leaves(exact)) > 0.05


def test_enumeration_finds_a_baseline_that_sees_its_own_returns():
    """The same check fails for the old "mean" rule (own returns at the episode's other steps)."""
    with jax.enable_x64(True):
        exact = _enumerated_problem()[2]
        got = _expected_estimate(_own_returns_mean, "autodiff")
        gap = max(float(jnp.abs(h - w).max())
                  for w, h in zip(jax.tree.leaves(exact), jax.tree.leaves(got)))
        assert gap > 1e-3


def test_reinforce_agent_regret_is_sublinear_and_beats_random():
    n_problems, n_trials = 100, 1000
    q_star = bandit.problems(jax.random.key(4), n_problems)
    keys = jax.random.split(jax.random.key(5), n_problems)
    agent = agents.reinforce_agent(lr=0.1)
    regret = jax.jit(jax.vmap(lambda k, q: agents.run(agent, k, q, n_trials)[1].regret))(keys, q_star)
    per_trial = np.asarray(regret.mean(0))
    random_per_trial = float((q_star.max(1) - q_star.mean(1)).mean())  # uniform arm, exactly
    assert per_trial.sum() < 0.2 * random_per_trial * n_trials
    assert per_trial[-200:].mean() < 0.25 * per_trial[:100].mean()  # regret grows ever slower


def test_epsilon_greedy_agent_updates_sample_averages():
    agent = agents.epsilon_greedy(0.0)
    state = agent.init(jax.random.key(0), 3)
    for arm, reward in [(1, 2.0), (1, 4.0), (2, -1.0)]:
        state = agent.update(state, jnp.int32(arm), jnp.float32(reward))
    np.testing.assert_allclose(state[0], [0.0, 3.0, -1.0])
    assert int(agent.act(state, jax.random.key(1))) == 1


def test_cartpole_step_matches_hand_computed_values():
    # From rest, push right: temp = F/M = 100/11, θ̈ = −temp/(l(4/3 − m_p/M)) = −600/41,
    # ẍ = temp + m_p l (600/41)/M = 4400/451; one Euler step of 0.02 s.
    nxt, done = cartpole.step(jnp.zeros(4, jnp.float32), jnp.int32(1))
    np.testing.assert_allclose(nxt, [0.0, 0.02 * 4400 / 451, 0.0, -0.02 * 600 / 41], rtol=1e-6)
    assert not bool(done)
    left, _ = cartpole.step(jnp.zeros(4, jnp.float32), jnp.int32(0))
    np.testing.assert_allclose(left, -nxt, rtol=1e-6)
    _, done = cartpole.step(jnp.array([0.0, 0.0, 0.2094, 3.0], jnp.float32), jnp.int32(1))
    assert bool(done)  # the pole passes 12°


def test_cartpole_trajectory_matches_gymnasium():
    gym = pytest.importorskip("gymnasium")
    env = gym.make("CartPole-v1").unwrapped
    obs, _ = env.reset(seed=3)
    state = jnp.asarray(obs)
    actions = np.random.default_rng(0).integers(0, 2, 30)
    for t, a in enumerate(actions):
        want, _, terminated, _, _ = env.step(int(a))
        state, done = cartpole.step(state, jnp.int32(a))
        np.testing.assert_allclose(state, want, rtol=1e-4, atol=1e-5, err_msg=f"step {t}")
        assert bool(done) == terminated
        if terminated:
            break


def test_rollout_masks_and_returns():
    def always_right(params, s):
        return jnp.stack([jnp.zeros(s.shape[:-1]), jnp.ones(s.shape[:-1])], axis=-1) * 1e3

    eps = cartpole.rollout(always_right, (), jax.random.key(0), 4)
    assert eps.obs.shape == (4, 500, 4) and eps.actions.shape == (4, 500)
    lengths = np.asarray(cartpole.returns_of(eps))
    state, steps = eps.obs[0, 0], 0
    for _ in range(500):
        state, done = cartpole.step(state, jnp.int32(1))
        steps += 1
        if done:
            break
    assert lengths[0] == steps and 5 < lengths.max() < 20
    assert np.all(np.diff(np.asarray(eps.mask), axis=1) <= 0)  # once over, always over


def test_reinforce_improves_cartpole_quickly():
    policy = nn.serial(nn.Dense(32), nn.Tanh(), nn.Dense(2))
    params = policy.init(jax.random.key(0), (-1, 4))[1]
    init, step = rf.reinforce_step(policy, optax.adam(0.01))
    rollout = jax.jit(cartpole.rollout, static_argnums=(0, 3))
    ts, means = init(params), []
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes int32 counts with floats
        for k in jax.random.split(jax.random.key(1), 25):
            eps = rollout(policy, ts.params, k, 16)
            adv = rf.advantages(rf.discounted_returns(eps.rewards, 0.99), eps.mask, normalise=True)
            ts, _ = step(ts, (eps.obs, (eps.actions, rf.episode_weights(adv, eps.mask))), k)
            means.append(float(cartpole.returns_of(eps).mean()))
    assert np.mean(means[-5:]) > 3 * np.mean(means[:5])


@pytest.mark.parametrize("call, exc, words", [
    (lambda: rf.discounted_returns(jnp.ones((2, 3)), 1.5), ValueError, "gamma"),
    (lambda: rf.advantages(jnp.ones((2, 3)), jnp.ones((2, 3)), "median"), ValueError, "baseline"),
    (lambda: rf.advantages(jnp.ones((2, 3)), jnp.ones((2, 2))), ValueError, "shape"),
    (lambda: rf.log_prob(jnp.ones((2, 3)), jnp.zeros(2)), TypeError, "integers"),
    (lambda: rf.episode_weights(jnp.ones(3), jnp.ones(2)), ValueError, "shape"),
    (lambda: rf.reinforce_loss().apply(jnp.ones((2, 3)), (jnp.zeros(3, jnp.int32), jnp.ones(3))),
     ValueError, "reinforce"),
    (lambda: rf.reinforce_loss().apply(jnp.ones((2, 3)), (jnp.zeros(2), jnp.ones(2))),
     TypeError, "reinforce"),
    (lambda: rf.reinforce_loss().apply(jnp.ones((2, 3)), (jnp.array([0, 3]), jnp.ones(2))),
     ValueError, r"reinforce: action 3 at index \(1,\) is outside \[0, 3\) \(3 classes"),
    (lambda: rf.reinforce_loss().apply(jnp.ones((2, 3)), (jnp.array([-1, 0]), jnp.ones(2))),
     ValueError, r"reinforce: action -1 at index \(0,\) is outside \[0, 3\)"),
    (lambda: rf.choice_loss(-1), ValueError, "decision_from"),
    (lambda: rf.choice_loss(5).apply(jnp.ones((2, 5, 3)), (jnp.zeros(2, jnp.int32), jnp.ones(2))),
     ValueError, "T > 5"),
    (lambda: agents.epsilon_greedy(1.5), ValueError, "epsilon"),
    (lambda: agents.reinforce_agent(lr=0.0), ValueError, "lr"),
    (lambda: agents.reinforce_agent(n_arms=5).init(jax.random.key(0), 3), ValueError, "5 arms"),
    (lambda: agents.run(agents.epsilon_greedy(0.1), jax.random.key(0), jnp.ones((2, 3)), 5),
     ValueError, "vmap"),
    (lambda: bandit.problems(jax.random.key(0), 3, 1), ValueError, "n_arms"),
    (lambda: cartpole.step(jnp.zeros(3), jnp.int32(0)), ValueError, "cartpole.step"),
])
def test_bad_arguments_give_clear_errors(call, exc, words):
    with pytest.raises(exc, match=words):
        call()
