"""`python -m dmod.services.worker run ...` (what launchers start) — argparse, so a worker starts fast."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dmod-worker", description="DMOD worker agent: run one attempt of a job")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a job attempt")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--job", help="jobs/{id}: inputs and outputs through DMOD")
    src.add_argument("--spec", type=Path, help="local JSON spec (inputs are local paths; no server)")
    r.add_argument("--attempt", type=int, default=0)
    r.add_argument("--ranks", type=int, default=0, help="MPI ranks (default: the job's cpu_count)")
    r.add_argument("--engine", default="auto", choices=["auto", "ngen", "embedded", "noop"])
    r.add_argument("--server", default=os.environ.get("DMOD_GATEWAY", "127.0.0.1:8780"))
    r.add_argument("--workdir", type=Path, default=None)
    r.add_argument("--heartbeat", type=float, default=float(os.environ.get("DMOD_WORKER_HEARTBEAT_SECONDS", "5")))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from dmod.services.worker.agent.agent import Options, run

    job = args.job or ""
    if job and not job.startswith("jobs/"):
        job = f"jobs/{job}"
    workdir = args.workdir or Path.cwd() / "dmod-job" / (job.removeprefix("jobs/") or "local")
    return run(Options(job=job, attempt=args.attempt, ranks=args.ranks, engine=args.engine, server=args.server,
                       workdir=workdir, spec_file=args.spec, heartbeat_seconds=args.heartbeat))


if __name__ == "__main__":
    sys.exit(main())
