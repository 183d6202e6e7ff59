"""Deadline propagation: a downstream call never outlives the caller's deadline."""
from __future__ import annotations

import contextvars
import time

# Monotonic deadline of the RPC being handled in this task (None: no deadline).
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("dmod_deadline", default=None)


def set_deadline(time_remaining: float | None) -> None:
    _deadline.set(None if time_remaining is None else time.monotonic() + time_remaining)


def downstream_timeout(default: float | None = 30.0, margin: float = 0.05) -> float | None:
    """Timeout for a downstream call: the caller's remaining time minus a margin, capped by `default`."""
    deadline = _deadline.get()
    if deadline is None:
        return default
    remaining = max(0.001, deadline - time.monotonic() - margin)
    return remaining if default is None else min(default, remaining)
