"""A job's processes (worker agent, MPI launcher, ranks running the user's model) never see the
services' secrets: the local launcher passes an allowlist of the environment."""
from __future__ import annotations


import psutil

from dmod.v1 import jobs_pb2

from .helpers import job_processes, job_spec, no_job_processes, upload_slow_realization, wait_running, wait_state

S = jobs_pb2
SECRETS = ("DMOD_DATABASE_URL", "DMOD_REDIS_URL", "DMOD_S3_SECRET_KEY", "DMOD_S3_ACCESS_KEY",
           "DMOD_JWT_PRIVATE_KEY_FILE", "DMOD_JWT_PUBLIC_KEY_FILE")


def test_allowlist_keeps_what_runs_a_model_and_drops_service_settings():
    from dmod.services.jobs.launchers.local import worker_environment

    env = worker_environment({"PATH": "/bin", "HOME": "/root", "LC_ALL": "C", "DMOD_NGEN_PATH": "/x/ngen",
                              "DMOD_ENGINE_PRECREATE": "0", "OMPI_MCA_btl": "self,vader",
                              "DMOD_S3_SECRET_KEY": "s", "DMOD_DATABASE_URL": "postgresql://", "AWS_SECRET_ACCESS_KEY": "a",
                              "DMOD_JWT_PRIVATE_KEY_FILE": "/k"})
    assert env == {"PATH": "/bin", "HOME": "/root", "LC_ALL": "C", "DMOD_NGEN_PATH": "/x/ngen",
                   "DMOD_ENGINE_PRECREATE": "0", "OMPI_MCA_btl": "self,vader"}


async def test_running_job_processes_hold_no_service_secret(stack, jobs, channel, domain):
    names = dict(domain, realization=await upload_slow_realization(channel))
    created = (await jobs.CreateJob(S.CreateJobRequest(spec=job_spec(names, cpus=2)))).job
    job_id = created.name.removeprefix("jobs/")
    try:
        await wait_running(jobs, created.name)
        seen, execs = [], 0
        for proc in job_processes(job_id):
            try:
                env = proc.environ()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            seen.append((proc.pid, " ".join(proc.cmdline())[:80]))
            leaked = [k for k in SECRETS if k in env]
            assert not leaked, f"pid {proc.pid} ({' '.join(proc.cmdline())[:120]}) has {leaked}"
            if "launchers.forkserver" not in " ".join(proc.cmdline()):  # forked: /proc shows the server's env
                # the job's own directory is its HOME, its TMPDIR is inside it
                assert env.get("HOME", "").endswith("/work") and env.get("TMPDIR") == env["HOME"] + "/tmp", env
                execs += 1
        assert len(seen) >= 2 and execs >= 1, seen  # the worker and at least its launcher/ranks were looked at
    finally:
        await jobs.CancelJob(S.CancelJobRequest(name=created.name))
        await wait_state(jobs, created.name, {S.JOB_STATE_CANCELLED, S.JOB_STATE_FAILED, S.JOB_STATE_SUCCEEDED})
        await no_job_processes(job_id)
