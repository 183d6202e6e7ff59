"""The job state machine: which transitions exist, which states are terminal, and reasons.

    PENDING -> VALIDATING -> STAGING -> [PARTITIONING] -> QUEUED -> STARTING -> RUNNING
            -> FINALIZING -> SUCCEEDED
    (any non-terminal) -> FAILED(reason)          (any non-terminal) -> CANCELLING -> CANCELLED
    STARTING/RUNNING -> QUEUED                    automatic retry of a transient failure
    RUNNING -> CANCELLING(TIMEOUT) -> FAILED(TIMEOUT)   past JobSpec.timeout: decided, then the worker stopped
    FAILED/CANCELLED -> PENDING                   RetryJob: a new attempt, history kept
"""
from __future__ import annotations

from dmod.v1.jobs_pb2 import JobState

S = JobState
PENDING, VALIDATING, STAGING, PARTITIONING = S.JOB_STATE_PENDING, S.JOB_STATE_VALIDATING, S.JOB_STATE_STAGING, \
    S.JOB_STATE_PARTITIONING
QUEUED, STARTING, RUNNING, FINALIZING = S.JOB_STATE_QUEUED, S.JOB_STATE_STARTING, S.JOB_STATE_RUNNING, \
    S.JOB_STATE_FINALIZING
SUCCEEDED, FAILED, CANCELLING, CANCELLED = S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLING, \
    S.JOB_STATE_CANCELLED

TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
# States in which the job holds (or is about to hold) an allocation.
ALLOCATED = frozenset({STARTING, RUNNING, FINALIZING, CANCELLING})
# States with a launched (or launching) worker.
WORKER_STATES = frozenset({STARTING, RUNNING})

_FORWARD = {
    PENDING: {VALIDATING},
    VALIDATING: {STAGING},
    STAGING: {PARTITIONING, QUEUED},
    PARTITIONING: {QUEUED},
    QUEUED: {STARTING},
    STARTING: {RUNNING, QUEUED},
    RUNNING: {FINALIZING, QUEUED},
    FINALIZING: {SUCCEEDED},
    CANCELLING: {CANCELLED},
    FAILED: {PENDING},
    CANCELLED: {PENDING},
    SUCCEEDED: set(),
}

# Reasons a failure may be retried automatically (infrastructure, not the job's own fault).
# RANK_KILLED: an MPI rank died of SIGKILL (the OOM killer, an operator), as a killed worker would.
# OUTPUTS_UNAVAILABLE: the output upload kept failing transiently (the services down ~30 s).
TRANSIENT_REASONS = frozenset({"WORKER_LOST", "LAUNCH_FAILED_TRANSIENT", "NODE_LOST", "WORKER_UNREACHABLE",
                               "INPUTS_UNAVAILABLE", "RANK_KILLED", "OUTPUTS_UNAVAILABLE"})


def name(state: int) -> str:
    return JobState.Name(state).removeprefix("JOB_STATE_")


def parse(text: str) -> int:
    text = text.strip().upper()
    return JobState.Value(text if text.startswith("JOB_STATE_") else f"JOB_STATE_{text}")


def is_terminal(state: int) -> bool:
    return state in TERMINAL


def allowed(src: int, dst: int) -> bool:
    """Whether `src -> dst` is a legal transition (a same-state event, e.g. progress, is legal
    in every non-terminal state)."""
    if src == dst:
        return src not in TERMINAL
    if src not in TERMINAL and dst in (FAILED, CANCELLING):
        return src != CANCELLING or dst == FAILED
    return dst in _FORWARD.get(src, set())


def cancellable(state: int) -> bool:
    return state not in TERMINAL and state != CANCELLING


def retryable(state: int) -> bool:
    return state in (FAILED, CANCELLED)
