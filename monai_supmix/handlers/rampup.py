"""Ramp-up schedules for loss weights."""

from __future__ import annotations

import math

__all__ = ["rampup_factor", "RAMPUP_SCHEDULES"]

RAMPUP_SCHEDULES = ("sigmoid", "linear", "none")


def rampup_factor(iteration: int, rampup_iterations: int, schedule: str = "sigmoid") -> float:
    """Return a weight factor in [0, 1] for ``iteration`` (0-based).

    ``sigmoid`` is the mean-teacher ramp ``exp(-5 (1 - t)^2)`` with
    ``t = iteration / rampup_iterations``; ``linear`` is ``t``; ``none`` is 1. The factor is
    a pure function of the iteration, so it needs no state of its own to survive a
    resume from checkpoint (which is why Ignite's state schedulers are not used here).

    Raises:
        ValueError: for an unknown schedule or a negative length.
    """
    if schedule not in RAMPUP_SCHEDULES:
        raise ValueError(f"rampup schedule must be one of {RAMPUP_SCHEDULES}, got {schedule!r}.")
    if rampup_iterations < 0:
        raise ValueError(f"rampup_iterations must be >= 0, got {rampup_iterations!r}.")
    if schedule == "none" or rampup_iterations == 0:
        return 1.0
    t = min(max(iteration, 0), rampup_iterations) / rampup_iterations
    if schedule == "linear":
        return float(t)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))
