"""The three REINFORCE set-ups of `experiments.reward.reinforce`, each as the arguments of the shared
loop (`experiments.common.loop.run`): a training state of arrays, a jitted step (state, batch, key),
the batches of an epoch, an evaluation and a summary.

- bandit: every agent (`jaxnn.neuro.agents`) plays the same 10-armed problems side by side;
  one step is `chunk` trials of every agent on every problem; the state keeps the mean regret
  of each trial.
- cartpole: `jaxnn.make_step` of the `reinforce.on_policy` rule: one step runs `batch`
  episodes of a Dense(hidden)-tanh-Dense(2) policy and makes one REINFORCE update
  (returns-to-go, γ, leave-one-out per-step baseline, normalised); the rule's state keeps
  every training episode's return.
- decision: the RateRNN of `experiments.rate.rate_rnn` (Dale's law, recurrent noise) on the
  perceptual decision task, trained by supervised BPTT on the task's loss, or by REINFORCE
  on one reward per trial: a choice a ~ softmax(mean output over the decision period), the
  reward 1 if a is the correct choice, else 0 (fixating counts as wrong). After every update
  the step scores a fixed batch of held-out trials; trials to criterion is the first update
  whose last `criterion_window` scores average ≥ 85 %, times the batch. Both are
  `jaxnn.make_step` of a `reinforce.on_policy` rule (the supervised one with the task's loss);
  the score of the params an update starts from is recorded by the next update's rule, the
  last one's by `summarize`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

import jaxnn as nn
from jaxnn.neuro import agents as ag
from jaxnn.neuro import reinforce as rf
from jaxnn.neuro import tasks
from jaxnn.neuro.envs import bandit, cartpole

DEFAULTS = {
    "bandit": dict(epochs=4, steps=10, chunk=50, problems=2000, arms=10, lr=0.1, epsilon=0.1),
    "cartpole": dict(epochs=30, steps=10, batch=16, hidden=32, lr=0.01, gamma=0.99),
    "decision": dict(epochs=20, steps=10, batch=64, hidden=64, lr=0.003, noise=0.05,
                     eval_trials=1000, criterion_window=5),
}
SOLVED = 475.0  # CartPole-v1's threshold on the mean return of 100 consecutive episodes
METHODS = ("supervised", "reinforce")


def _batches(steps):
    return lambda epoch: [np.int32(i) for i in range(steps)]


def _moving_mean(values: np.ndarray, window: int) -> np.ndarray:
    """mean of values[i−window+1 .. i] for i ≥ window−1: (len − window + 1,)."""
    c = np.cumsum(np.concatenate([[0.0], values]))
    return (c[window:] - c[:-window]) / window


def _first_reach(values: np.ndarray, window: int, goal: float) -> int:
    """1-based index of the first window whose mean reaches the goal, or −1."""
    if len(values) < window:
        return -1
    hits = np.flatnonzero(_moving_mean(values, window) >= goal)
    return int(hits[0]) + window if hits.size else -1


def bandit_setup(o: dict, seed: int) -> dict:
    agents = (ag.epsilon_greedy(1.0), ag.epsilon_greedy(0.0),
              ag.epsilon_greedy(o["epsilon"]), ag.reinforce_agent(o["lr"], o["arms"]))
    names = [a.name for a in agents]
    n_trials = o["epochs"] * o["steps"] * o["chunk"]
    k_problems, k_agents = jax.random.split(jax.random.key(seed))
    q_star = bandit.problems(k_problems, o["problems"], o["arms"])

    def init():
        keys = jax.random.split(k_agents, o["problems"])
        return {"agents": tuple(jax.vmap(lambda k, a=a: a.init(k, o["arms"]))(keys) for a in agents),
                "q_star": q_star, "regret": jnp.zeros((len(agents), n_trials), jnp.float32),
                "optimal": jnp.zeros((len(agents), n_trials), jnp.float32),
                "t": jnp.zeros((), jnp.int32)}

    @jax.jit
    def step(state, batch, key):
        new_agents, regret, optimal = [], [], []
        for i, agent in enumerate(agents):
            keys = jax.random.split(jax.random.fold_in(key, i), o["problems"])
            play = jax.vmap(lambda k, q, s, a=agent: ag.run(a, k, q, o["chunk"], s))
            s, trials = play(keys, state["q_star"], state["agents"][i])
            new_agents.append(s)
            regret.append(trials.regret.mean(0))
            optimal.append((trials.regret == 0).mean(0).astype(jnp.float32))
        at = (jnp.zeros((), jnp.int32), state["t"])
        state = {"agents": tuple(new_agents), "q_star": state["q_star"],
                 "regret": lax.dynamic_update_slice(state["regret"], jnp.stack(regret), at),
                 "optimal": lax.dynamic_update_slice(state["optimal"], jnp.stack(optimal), at),
                 "t": state["t"] + o["chunk"]}
        metrics = {f"regret_{n}": r.mean() for n, r in zip(names, regret)}
        return state, {"loss": regret[-1].mean(), **metrics}

    def evaluate(state, epoch):
        cum = np.asarray(state["regret"]).sum(1)
        return {f"cum_regret_{n}": float(c) for n, c in zip(names, cum)}

    def summarize(state):
        regret = np.asarray(state["regret"])
        cum = np.cumsum(regret, axis=1)
        last = min(500, n_trials // 2)
        marks = [t for t in (10, 100, 1000, 2000, 5000, n_trials) if t <= n_trials]
        return {"agents": {n: {"cumulative_regret": {str(t): float(cum[i, t - 1]) for t in marks},
                               "regret_per_trial_first_100": float(regret[i, :100].mean()),
                               f"regret_per_trial_last_{last}": float(regret[i, -last:].mean()),
                               f"optimal_arm_last_{last}": float(np.asarray(state["optimal"])[i, -last:].mean())}
                           for i, n in enumerate(names)},
                "curves": {"regret_per_trial": {n: regret[i].tolist() for i, n in enumerate(names)}}}

    return dict(init=init, step=step, batches=_batches(o["steps"]), evaluate=evaluate,
                summarize=summarize)


def _record(buffer, at, values):
    return lax.dynamic_update_slice(buffer, values, (at,))


def cartpole_setup(o: dict, seed: int) -> dict:
    policy = nn.serial(nn.Dense(o["hidden"]), nn.Tanh(), nn.Dense(cartpole.N_ACTIONS))
    n_updates = o["epochs"] * o["steps"]
    k_init, k_eval = jax.random.split(jax.random.key(seed))

    def collect(model, params, model_state, history, key):
        """`batch` fresh episodes; the rule's state records every episode's return."""
        eps = cartpole.rollout(model, params, key, o["batch"])
        adv = rf.advantages(rf.discounted_returns(eps.rewards, o["gamma"]), eps.mask,
                            "per_step", normalise=True)
        returns, (record, updates) = cartpole.returns_of(eps), history
        history = (_record(record, updates * o["batch"], returns), updates + 1)
        return ((eps.obs, (eps.actions, rf.episode_weights(adv, eps.mask))), key, history,
                {"return": returns.mean()})

    def no_history(params):
        return jnp.zeros((n_updates * o["batch"],), jnp.float32), jnp.zeros((), jnp.int32)

    init, step = nn.make_step(policy, rf.on_policy(collect, init=no_history), optax.adam(o["lr"]))

    def history(ts):
        record, updates = ts.rule_state
        return np.asarray(record)[: int(updates) * o["batch"]]

    def evaluate(ts, epoch):
        returns = history(ts)
        return {"mean_return_last_100": float(returns[-100:].mean()),
                "solved_at_episode": _first_reach(returns, 100, SOLVED)}

    def summarize(ts):
        returns = history(ts)
        fresh = cartpole.returns_of(jax.jit(cartpole.rollout, static_argnums=(0, 3))(
            policy, ts.params, k_eval, 100))
        return {"episodes_to_solve": _first_reach(returns, 100, SOLVED),
                "final_eval_mean_return_100": float(fresh.mean()),
                "curves": {"train_return": returns.tolist()}}

    return dict(init=lambda: init(policy.init(k_init, (-1, cartpole.OBS_SIZE))[1]), step=step,
                batches=_batches(o["steps"]), evaluate=evaluate, summarize=summarize)


def decision_setup(o: dict, seed: int, method: str) -> dict:
    if method not in METHODS:
        raise ValueError(f"decision_setup: method must be one of {METHODS}, got {method!r}")
    task = tasks.get("perceptual_decision")
    # The network of experiments.rate.rate_rnn: Dale's law (80 % excitatory), recurrent noise.
    model = nn.RateRNN(o["hidden"], task.n_out, tau=100.0, dt=task.dt, noise=o["noise"],
                       dale=True, mask_seed=seed)
    n_updates = o["epochs"] * o["steps"]
    k_init, k_eval = jax.random.split(jax.random.key(seed))
    held_out = jax.jit(task.sample, static_argnums=1)(k_eval, o["eval_trials"])
    t0, batch = task.decision_from, o["batch"]

    def score(params):
        """Fraction correct on the held-out trials (the same noise draw every time)."""
        return task.performance(model(params, held_out.x, key=k_eval), held_out)

    def collect(model, params, model_state, scores, key):
        """A batch of fresh trials; the rule's state records the score of the params each
        update starts from. Supervised: the trials with the task's targets. REINFORCE: one
        choice per trial, drawn under the noise the gradient then sees; reward 1 if right."""
        k_trials, k_noise, k_act = jax.random.split(key, 3)
        trials = task.sample(k_trials, batch)
        y = model(params, trials.x, key=k_noise)
        record, updates = scores
        scores = (lax.dynamic_update_slice(record, score(params)[None], (updates,)), updates + 1)
        if method == "supervised":
            return ((trials.x, (trials.target, trials.weight)), k_noise, scores,
                    {"train_correct": task.performance(y, trials)})
        actions, _ = rf.sample_actions(k_act, rf.choice_logits(y, t0))
        reward = (actions == trials.label).astype(jnp.float32)
        ones = jnp.ones((batch, 1), jnp.float32)
        adv = rf.advantages(reward[:, None], ones, "mean")[:, 0]
        return ((trials.x, (actions, rf.episode_weights(adv, ones[:, 0]))), k_noise, scores,
                {"train_correct": reward.mean()})

    def no_scores(params):
        return jnp.zeros((n_updates + 1,), jnp.float32), jnp.zeros((), jnp.int32)

    loss = task.loss if method == "supervised" else rf.choice_loss(t0)
    init, step = nn.make_step(model, rf.on_policy(collect, loss, init=no_scores),
                              optax.adam(o["lr"]))
    last_score = jax.jit(score)

    def history(ts):
        """The held-out score after each update so far: (updates,)."""
        record, updates = ts.rule_state
        return np.concatenate([np.asarray(record)[1:int(updates)], [float(last_score(ts.params))]])

    def trials_to_criterion(ts):
        hit = _first_reach(history(ts), o["criterion_window"], task.goal)
        return hit * batch if hit > 0 else -1

    def evaluate(ts, epoch):
        return {"held_out_correct": float(history(ts)[-1]),
                "trials_to_criterion": trials_to_criterion(ts)}

    def summarize(ts):
        perf = history(ts)
        return {"method": method, "trials_to_criterion": trials_to_criterion(ts),
                "goal": task.goal, "final_held_out_correct": float(perf[-1]),
                "held_out_correct_last_50_updates": float(perf[-50:].mean()),
                "curves": {"held_out_correct": perf.tolist(), "trials_per_update": batch}}

    def start():
        _, params, state = model.init(k_init, (-1, task.n_steps, task.n_in))
        return init(params, state)

    return dict(init=start, step=step, batches=_batches(o["steps"]), evaluate=evaluate,
                summarize=summarize)


__all__ = ["DEFAULTS", "METHODS", "SOLVED", "bandit_setup", "cartpole_setup", "decision_setup"]
