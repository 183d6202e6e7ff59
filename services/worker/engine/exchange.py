"""Per-step MPI exchange of boundary-nexus contributions (mpi4py, point-to-point).

Every step, each send channel of `Domain` carries one float64 message (that rank's contributors
to one boundary nexus, in catchment-id order) tagged with the nexus' integer id, and each receive
channel gets one. Messages are persistent requests (MPI_Send_init/Recv_init) started together
with one `Startall`, so the per-step Python cost does not grow with the number of boundary
nexuses. `WINDOW` request sets rotate, letting a rank run up to WINDOW steps ahead of a slower
neighbour instead of meeting it at every step; MPI's non-overtaking rule keeps step order per
(source, tag). Received values are kept for the whole run (only boundary nexuses, so small).
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from .comm import wait_all
from .domain import Domain

WINDOW = 8


class NullExchange:
    """Serial run: nothing crosses ranks."""

    recv_values: ClassVar[list[np.ndarray]] = []

    def post(self, k: int, contributions: np.ndarray) -> None:
        pass

    def complete_through(self, k: int) -> None:
        pass

    def close(self) -> None:
        pass


class MpiExchange:
    def __init__(self, comm, domain: Domain, n_steps: int, window: int = WINDOW):
        from mpi4py import MPI

        self.comm = comm
        self.window = max(1, min(window, n_steps))
        sends, recvs = domain.sends, domain.recvs
        # one packed buffer per request set; each channel is a slice of it
        send_len = [len(ch.positions) for ch in sends]
        recv_len = [len(ch.catchments) for ch in recvs]
        self.send_offsets = np.concatenate([[0], np.cumsum(send_len)]).astype(np.int64)
        self.recv_offsets = np.concatenate([[0], np.cumsum(recv_len)]).astype(np.int64)
        self.gather = np.concatenate([ch.positions for ch in sends]).astype(np.int64) if sends else np.zeros(0, np.int64)
        self.send_buf = np.zeros((self.window, int(self.send_offsets[-1])))
        self.recv_buf = np.zeros((self.window, int(self.recv_offsets[-1])))
        self.requests: list[list] = []
        for s in range(self.window):
            reqs = []
            for i, ch in enumerate(recvs):
                view = self.recv_buf[s, self.recv_offsets[i]: self.recv_offsets[i + 1]]
                reqs.append(comm.Recv_init([view, MPI.DOUBLE], source=ch.peer, tag=ch.tag))
            for i, ch in enumerate(sends):
                view = self.send_buf[s, self.send_offsets[i]: self.send_offsets[i + 1]]
                reqs.append(comm.Send_init([view, MPI.DOUBLE], dest=ch.peer, tag=ch.tag))
            self.requests.append(reqs)
        self.active = [-1] * self.window  # step each request set is carrying, -1 idle
        # received contributions for every step: (K, total received values)
        self.received = np.zeros((n_steps, int(self.recv_offsets[-1])))
        self._MPI = MPI

    @property
    def recv_values(self) -> list[np.ndarray]:
        """Per receive channel: (K, values) view into the received history."""
        return [self.received[:, self.recv_offsets[i]: self.recv_offsets[i + 1]]
                for i in range(len(self.recv_offsets) - 1)]

    def _finish(self, s: int) -> None:
        k = self.active[s]
        if k < 0:
            return
        wait_all(self.requests[s])
        self.received[k] = self.recv_buf[s]
        self.active[s] = -1

    def post(self, k: int, contributions: np.ndarray) -> None:
        """Start step k's sends (from this rank's contributions vector) and receives."""
        s = k % self.window
        self._finish(s)
        if not self.requests[s]:
            return
        self.send_buf[s] = contributions[self.gather]
        self._MPI.Prequest.Startall(self.requests[s])
        self.active[s] = k

    def complete_through(self, k: int) -> None:
        """Wait until every step <= k has been exchanged."""
        for s in sorted(range(self.window), key=lambda i: self.active[i]):
            if 0 <= self.active[s] <= k:
                self._finish(s)

    def close(self) -> None:
        for s in range(self.window):
            self._finish(s)
        for reqs in self.requests:
            for r in reqs:
                r.Free()
        self.requests = []
