"""`make chaos`, CI size: the chaos harness (chaos/run.py) on a stack of its own with 6 jobs, one
fault of each kind (kill -9 of a worker agent, of one MPI rank, of the services then `dmod up` at
once, and 35 s later as jobs finish; Redis and SeaweedFS killed and restarted) and the security
suites at a small fuzz count. Every counter must be 0, every fault must have landed, and every job
must end SUCCEEDED: each of these faults is one DMOD recovers from (a lost worker or rank is
retried, a restarted store or service is reconnected to, outputs wait for the services to return).

What it caught: a rank killed by SIGKILL failed its job for good (MODEL_FAILED); the services
down ~15 s as jobs finished failed them for good (OUTPUT_UPLOAD_FAILED after 1.5 s of retries);
down ~40 s, the restarted monitor stopped every running worker as silent (it counted the outage
as the workers' silence) and their jobs ran again from the start."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from chaos import run as chaos

    saved = dict(os.environ)
    try:
        result = chaos.run(dict(chaos.SHORT), out=tmp_path_factory.mktemp("chaos") / "chaos.json")
    finally:  # the harness points DMOD_HOME/DMOD_GATEWAY at its own (now stopped) stack
        os.environ.clear()
        os.environ.update(saved)
    print("\n" + chaos.table(result))
    return result


def test_every_fault_landed(report):
    faults = report["details"]["faults"]
    assert {f["kind"] for f in faults} == {"worker_kill", "rank_kill", "services_outage", "services_kill",
                                           "redis_restart", "s3_restart"}, faults
    assert not [f for f in faults if f.get("skipped")], faults


def test_no_job_lost_or_run_twice_and_all_succeeded(report):
    c, jobs = report["counters"], report["details"]["jobs"]
    assert c["jobs_lost"] == 0, jobs["lost"]
    assert c["jobs_run_twice"] == 0, jobs["run_twice"]
    assert jobs["final_states"] == {"SUCCEEDED": jobs["submitted"]}, jobs["failed"]
    # Only the attempts that were killed are retried: no other fault costs a job its attempt.
    ended_by = jobs["retried_attempts_ended_by"]
    assert sum(ended_by.values()) == 2 and set(ended_by) <= {"WORKER_LOST", "RANK_KILLED"}, (ended_by, jobs["retried"])
    assert not jobs["orphan_processes"], jobs["orphan_processes"]


def test_no_event_missing_or_duplicated(report):
    c, events = report["counters"], report["details"]["events"]
    assert c["events_missing"] == 0, events["missing"]
    assert c["events_duplicated"] == 0, events["duplicated"]
    assert report["details"]["jobs"]["watch_streams"] > report["details"]["jobs"]["submitted"], \
        "the services kill must have broken (and the watches resumed) the live WatchJob streams"


def test_no_internal_error_and_no_leak(report):
    c, suites = report["counters"], report["details"]["security"]
    assert c["internal_or_unknown"] == 0, suites.get("fuzz")
    assert c["leaks"] == 0, {k: v for k, v in suites.items() if k != "fuzz"}
