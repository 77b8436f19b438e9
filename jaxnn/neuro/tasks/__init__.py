"""Cognitive and motor tasks for recurrent networks, as pure, seeded, batched JAX trial
generators, each with its standard performance measure and stopping criterion.

    task = tasks.get("perceptual_decision")
    trials = task.sample(key, 64)            # Trials: x (64, T, n_in), target, weight, ...
    perf = task.performance(y, trials)       # fraction correct (or normalised error)
    task.reached(perf)                       # the stopping criterion
"""

from collections.abc import Callable

from jaxnn.neuro.tasks.base import (
    Task,
    Trials,
    batched,
    choices,
    fraction_correct,
    masked_cross_entropy,
    masked_mse,
    psychometric,
)
from jaxnn.neuro.tasks.cognitive import (
    CONTEXT_COHERENCES,
    DECISION_COHERENCES,
    context_decision,
    delayed_match_to_sample,
    perceptual_decision,
)
from jaxnn.neuro.tasks.sine import sine_generation

TASKS: dict[str, Callable[..., Task]] = {
    "perceptual_decision": perceptual_decision,
    "context_decision": context_decision,
    "delayed_match_to_sample": delayed_match_to_sample,
    "sine_generation": sine_generation,
}


def get(name: str, **options) -> Task:
    """The task called `name` (one of TASKS), built with `options` (dt, period lengths, ...)."""
    if name not in TASKS:
        raise ValueError(f"tasks: unknown task {name!r}; expected one of {sorted(TASKS)}")
    return TASKS[name](**options)


__all__ = ["CONTEXT_COHERENCES", "DECISION_COHERENCES", "TASKS", "Task", "Trials", "batched",
           "choices", "context_decision", "delayed_match_to_sample", "fraction_correct", "get",
           "masked_cross_entropy", "masked_mse", "perceptual_decision", "psychometric",
           "sine_generation"]
