"""CPU priority of local workers: they get what the control plane leaves (stdlib only: the fork
server imports it)."""
from __future__ import annotations

import os


def lower_priority(pid: int, nice: int, idle: bool = False) -> None:
    """Make `pid` (0 = this process) `nice` steps nicer than this process and, if `idle`,
    SCHED_IDLE. Best effort: it may be gone already, or the platform may lack SCHED_IDLE.

    Workers lead their own session, and with autogroup scheduling (Linux's default) the CPU is
    shared fairly between sessions whatever the nice value or policy of their processes (ten
    SCHED_IDLE jobs still took ~90% of the CPU from the API server): the session is made nice too.
    """
    try:
        if nice > 0:
            os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice))
        if idle and hasattr(os, "SCHED_IDLE"):
            os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        pass
    session_nice = 19 if idle else nice
    if session_nice > 0:
        try:  # absent when the kernel has no autogroups
            with open(f"/proc/{pid or 'self'}/autogroup", "w") as f:
                f.write(str(min(19, session_nice)))
        except OSError:
            pass
