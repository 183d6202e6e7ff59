"""Whether this process is busy serving unary calls, so background work on the same event loop
can give way to requests (see services/jobs/admission.py). The interceptor counts the calls.

"Busy" includes a short quiet period after the last call: under load, calls reach Python one
by one from gRPC's queue and the count alone keeps dropping to zero between them.
"""
from __future__ import annotations

import time

QUIET_SECONDS = 0.05

_serving = 0
_last = 0.0


def enter() -> None:
    global _serving, _last
    _serving += 1
    _last = time.monotonic()


def leave() -> None:
    global _serving, _last
    _serving -= 1
    _last = time.monotonic()


def busy() -> bool:
    return _serving > 0 or time.monotonic() - _last < QUIET_SECONDS
