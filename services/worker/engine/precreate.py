"""Create output files one rank at a time while the others compute.

Every rank writes into the one output directory ngen prescribes, and creating files in one
directory serializes in the kernel (ext4 holds the directory lock per create and waiters spin):
two ranks creating their files at the same moment spend far more CPU than one. So the ranks
take turns: a token travels rank 0 → 1 → … ; the holder creates a slice of its files each time
step (empty, or with the catchment header) and passes the token on when done, while the other
ranks simply compute. Rows are appended later, which does not contend. A rank that reaches the
end of its loop before its turn waits (politely) for the token. Only lower ranks are ever waited
for, so the token cannot deadlock. Not used in serial runs (nothing to contend
with), nor on memory file systems: tmpfs creates do not contend, and the extra open per file
would cost ~0.4 s per 16k files.
"""
from __future__ import annotations

import math
import os

import numpy as np

from .comm import wait_all
from .outputs import CsvSeriesWriter

#: file systems whose creates do not serialize on a directory lock worth taking turns for
MEMORY_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs"})


def file_system_type(path: str, mounts: str = "/proc/self/mounts") -> str:
    """Type of the file system holding `path` (its longest mount point prefix), "" if unknown."""
    path = os.path.realpath(path)
    best, kind = "", ""
    try:
        with open(mounts) as fh:
            for line in fh:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = path == point or path.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        return ""
    return kind


def worthwhile(output_root: str) -> bool:
    """Take turns creating files? DMOD_ENGINE_PRECREATE=0/1 decides, else the file system."""
    forced = os.environ.get("DMOD_ENGINE_PRECREATE")
    if forced in ("0", "1"):
        return forced == "1"
    return file_system_type(output_root) not in MEMORY_FILE_SYSTEMS


class StaggeredCreator:
    def __init__(self, comm, writers: list[CsvSeriesWriter], total_steps: int):
        self.comm = comm.Dup()  # the token's messages can never match a nexus-tagged message
        self.rank, self.size = comm.rank, comm.size
        self.writers = writers
        self.todo = [(w, i) for w in writers for i in range(len(w.paths))]
        self.done = 0
        # spread this rank's creations over its share of the steps
        self.per_step = max(1, math.ceil(len(self.todo) / max(1, total_steps // self.size)))
        self.token = self.rank == 0
        self.flag = np.zeros(1, dtype=np.int8)
        self.request = None if self.token else self.comm.Irecv(self.flag, source=self.rank - 1, tag=0)
        self.passed = False

    def step(self) -> None:
        """Call once per time step: create a slice of files if holding the token."""
        if self.passed:
            return
        if not self.token:
            if not self.request.Test():
                return
            self.token = True
        self._create(self.per_step)

    def finish(self) -> None:
        """Before writing rows: make sure every file of this rank exists."""
        if not self.passed:
            if not self.token:
                wait_all([self.request])
                self.token = True
            self._create(len(self.todo))
        for w in self.writers:
            w.mark_created()
        self.comm.Free()

    def _create(self, count: int) -> None:
        stop = min(len(self.todo), self.done + count)
        for writer, index in self.todo[self.done: stop]:
            writer.create(index)
        self.done = stop
        if self.done == len(self.todo) and not self.passed:
            if self.rank + 1 < self.size:
                self.comm.Send(np.ones(1, dtype=np.int8), dest=self.rank + 1, tag=0)  # 1 byte: eager
            self.passed = True
