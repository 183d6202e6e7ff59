"""How many unary calls this process is serving right now, so background work on the same
event loop can give way to requests (see services/jobs/admission.py). The interceptor counts."""
from __future__ import annotations

_serving = 0


def enter() -> None:
    global _serving
    _serving += 1


def leave() -> None:
    global _serving
    _serving -= 1


def busy() -> bool:
    return _serving > 0
