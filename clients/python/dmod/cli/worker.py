"""`dmod worker run --job jobs/<id>` (or `--spec file.json` locally): the worker agent.

What launchers start inside a job's process/container: downloads the job's datasets (SHA-256
verified), runs the model under mpiexec, streams logs/progress to JobService, uploads outputs.
"""
from __future__ import annotations

import os
from pathlib import Path

import typer

app = typer.Typer(help="Worker agent: run one attempt of a job.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@app.command()
def run(job: str | None = typer.Option(None, help="jobs/{id}: inputs/outputs through DMOD (token in DMOD_TOKEN)"),
        spec: Path | None = typer.Option(None, help="local JSON spec: {ranks, start_time, end_time, catchment_ids, "
                                                         "inputs: {hydrofabric, realization, forcing, partition, "
                                                         "bmi_config: <local path>}}"),
        attempt: int = typer.Option(0), ranks: int = typer.Option(0, help="MPI ranks (default: the job's cpu_count)"),
        engine: str = typer.Option("auto", help="auto | ngen | embedded | noop"),
        server: str = typer.Option("", help="JobService address (default: DMOD_GATEWAY / the local stack)"),
        workdir: Path | None = typer.Option(None, help="job directory (default ./dmod-job/<id>)")):
    """Run one attempt of a job; exits with the worker's status (0 ok)."""
    if bool(job) == bool(spec):
        raise typer.BadParameter("give exactly one of --job or --spec")
    from dmod.services.worker.agent.cli import main

    argv = ["run", "--job", job] if job else ["run", "--spec", str(spec)]
    argv += ["--attempt", str(attempt), "--ranks", str(ranks), "--engine", engine]
    if not server and job:
        from dmod.client import gateway_address

        server = os.environ.get("DMOD_GATEWAY") or gateway_address()
    if server:
        argv += ["--server", server]
    if workdir:
        argv += ["--workdir", str(workdir)]
    raise typer.Exit(main(argv))
