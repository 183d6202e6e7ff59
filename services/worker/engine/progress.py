r"""Progress lines the worker parses from the engine's stdout (rank 0 only, flushed):

    Running timestep <k> of <K>       k = 0-based index of the step about to run
    Finished <K> timesteps.            the run is complete

`Running` lines come for the first and last step and every max(1, K // 100) steps, so a huge run
prints ~100 of them. Fraction done when a line is seen: k / K; 1.0 at `Finished`.
Regex: ^Running timestep (\d+) of (\d+)$  and  ^Finished (\d+) timesteps\.$
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

ProgressCallback = Callable[[int, int], None]  # (steps done, total steps)


class Progress:
    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None,
                 callback: ProgressCallback | None = None):
        self.total = total
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.callback = callback
        self.every = max(1, total // 100)

    def step(self, k: int) -> None:
        if k % self.every and k != self.total - 1:
            return
        if self.enabled:
            self.stream.write(f"Running timestep {k} of {self.total}\n")
            self.stream.flush()
        if self.callback is not None:
            self.callback(k, self.total)

    def finished(self) -> None:
        if self.enabled:
            self.stream.write(f"Finished {self.total} timesteps.\n")
            self.stream.flush()
        if self.callback is not None:
            self.callback(self.total, self.total)
