"""The simulation clock: `time.start_time` .. `time.end_time` inclusive every `output_interval` s.

Like ngen, the number of steps is (end − start) // interval + 1 and step k reports the time at
its start, start + k·interval. Times are UTC `YYYY-MM-DD HH:MM:SS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def parse_time(text: str) -> int:
    """`YYYY-MM-DD HH:MM:SS` (UTC) → epoch seconds; ValueError when malformed."""
    dt = datetime.strptime(text.strip(), TIME_FORMAT)
    return int(dt.replace(tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class TimeGrid:
    start: int  # epoch seconds
    interval: int  # seconds
    n_steps: int

    @property
    def epochs(self) -> np.ndarray:
        return self.start + self.interval * np.arange(self.n_steps, dtype=np.int64)

    @property
    def end(self) -> int:
        return self.start + self.interval * (self.n_steps - 1)

    def labels(self) -> list[str]:
        """`YYYY-MM-DD HH:MM:SS` of every step (vectorised through numpy datetime64)."""
        stamps = self.epochs.astype("datetime64[s]").astype(str)
        return [s.replace("T", " ") for s in stamps.tolist()]

    def label(self, k: int) -> str:
        return datetime.fromtimestamp(self.start + self.interval * k, tz=UTC).strftime(TIME_FORMAT)
