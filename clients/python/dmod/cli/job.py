"""`dmod job submit|ls|show|watch|logs|cancel|retry|nodes`: run and follow model jobs.

    dmod job submit --hydrofabric hf --realization real --forcing aorc --start "2015-12-01" \\
        --end "2015-12-30 23:00" --cpus 4 --wait
"""
from __future__ import annotations

import asyncio
import json
import sys

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from dmod.client import aio_channel, metadata
from dmod.errors import describe
from dmod.jobs_client import (
    PARADIGMS,
    PARTITION_METHODS,
    TERMINAL,
    build_spec,
    job_name,
    resolve_dataset,
    state_name,
    watch,
)
from dmod.v1 import jobs_pb2, jobs_pb2_grpc

app = typer.Typer(help="Model jobs: submit, follow, cancel, retry.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console()
err = Console(stderr=True)

STATE_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "yellow", "CANCELLING": "yellow",
               "RUNNING": "cyan", "QUEUED": "magenta"}


def _run(coro):
    """Run an async command; RPC errors become one readable line and exit code 1."""
    try:
        return asyncio.run(coro)
    except grpc.aio.AioRpcError as exc:
        err.print(f"[red]error:[/red] {describe(exc)}")
        raise typer.Exit(1) from None
    except (ValueError, LookupError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _styled(state: int) -> str:
    name = state_name(state)
    style = STATE_STYLE.get(name)
    return f"[{style}]{name}[/{style}]" if style else name


def _labels(values: list[str] | None) -> dict[str, str]:
    out = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"label {item!r}: use key=value")
        out[key] = value
    return out


async def _stub():
    channel = aio_channel()
    return channel, jobs_pb2_grpc.JobServiceStub(channel)


# ---- submit -------------------------------------------------------------------------------------
@app.command()
def submit(
    hydrofabric: str = typer.Option("", help="hydrofabric dataset (name or datasets/{id}); empty: found by search"),
    realization: str = typer.Option("", help="realization config dataset; empty: found by search"),
    forcing: str = typer.Option("", help="forcing dataset; empty: found by search (covering --start..--end)"),
    partition: str = typer.Option("", help="partition dataset (N > 1); empty: found or made"),
    bmi_config: str = typer.Option("", "--bmi-config", help="BMI init config dataset"),
    bmi_library: str = typer.Option("", "--bmi-library", help="compiled BMI model libraries (bmi_library dataset, "
                                                                "laid at the job directory root: lib/x.so is ./lib/x.so)"),
    start: str | None = typer.Option(None, help="start time, UTC 'YYYY-MM-DD[ HH:MM[:SS]]'"),
    end: str | None = typer.Option(None, help="end time (inclusive), UTC"),
    cpus: int = typer.Option(1, "--cpus", "-n", help="MPI ranks"),
    memory: int = typer.Option(0, help="memory in bytes (0: no limit)"),
    paradigm: str = typer.Option("round-robin", help=f"allocation paradigm: {', '.join(PARADIGMS)}"),
    partition_method: str = typer.Option("", help=f"when partitioning: {', '.join(PARTITION_METHODS)}"),
    catchments: str = typer.Option("", help="comma-separated catchment ids to run (default: all)"),
    priority: int = typer.Option(0),
    timeout: float = typer.Option(0, help="seconds; 0: none"),
    engine: str = typer.Option("auto", help="auto | ngen | embedded | noop"),
    max_attempts: int = typer.Option(0, help="retries of infrastructure failures (0: server default)"),
    label: list[str] | None = typer.Option(None, "--label", "-l", help="key=value (repeatable)"),
    observations: str = typer.Option("", help="observation dataset: evaluate the outputs when the job succeeds"),
    request_id: str = typer.Option("", help="idempotency key: resubmitting returns the same job"),
    wait: bool = typer.Option(False, "--wait", "-w", help="follow the job; exit non-zero unless it SUCCEEDED"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Submit a model run; prints the job name (or follows it with --wait)."""

    async def main() -> int:
        channel, stub = await _stub()
        async with channel:
            md = metadata()
            names = [await resolve_dataset(channel, v, md) for v in (hydrofabric, realization, forcing, partition,
                                                                        bmi_config, bmi_library)]
            spec = build_spec(hydrofabric=names[0], realization=names[1], forcing=names[2], partition=names[3],
                              bmi_config=names[4], start=start, end=end, cpus=cpus, memory_bytes=memory,
                              paradigm=paradigm, partition_method=partition_method,
                              catchments=[c for c in catchments.split(",") if c], priority=priority,
                              timeout_seconds=timeout, engine=engine, max_attempts=max_attempts,
                              bmi_library=names[5])
            if observations:
                spec.evaluation.observation_dataset = await resolve_dataset(channel, observations, md)
            job = (await stub.CreateJob(jobs_pb2.CreateJobRequest(spec=spec, labels=_labels(label),
                                                                  request_id=request_id), metadata=md)).job
            if as_json and not wait:
                sys.stdout.write(json.dumps(MessageToDict(job), indent=1) + "\n")
                return 0
            console.print(f"submitted [bold]{job.name}[/bold]" if not as_json else job.name)
            if not wait:
                return 0
            final = await _follow(stub, job.name, md)
            return 0 if final.state == jobs_pb2.JOB_STATE_SUCCEEDED else 1

    raise typer.Exit(_run(main()))


# ---- follow -------------------------------------------------------------------------------------
async def _follow(stub, name: str, md, quiet: bool = False) -> jobs_pb2.Job:
    """A live status line with a progress bar until the job is terminal; returns the final job."""
    progress = Progress(TextColumn("{task.fields[state]}"), BarColumn(), TaskProgressColumn(),
                        TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console,
                        transient=False)
    task = progress.add_task("job", total=None, state="", detail="")
    job = None
    with Live(progress, console=console, refresh_per_second=8, transient=False, redirect_stdout=False):
        async for item in watch(stub, name, metadata=md):
            if item.HasField("snapshot"):
                job = item.snapshot
                state, step, total, detail = job.state, job.progress.step, job.progress.total_steps, job.state_message
            else:
                e = item.event
                state, step, total = e.state, e.progress.step, e.progress.total_steps
                detail = e.message if e.reason != "PROGRESS" else ""
                if e.reason != "PROGRESS" and not quiet:
                    progress.console.print(f"  {e.time.ToDatetime():%H:%M:%S} #{e.seq:<3} {_styled(e.state):<22} "
                                           f"{e.reason}: {e.message}")
            fields = {"state": _styled(state)}
            if detail:
                fields["detail"] = detail[:60]
            if total:
                progress.update(task, total=total, completed=step, **fields)
            else:
                progress.update(task, **fields)
    job = (await stub.GetJob(jobs_pb2.GetJobRequest(name=name), metadata=md)).job
    color = "green" if job.state == jobs_pb2.JOB_STATE_SUCCEEDED else "red"
    console.print(f"[{color}]{job.name} {state_name(job.state)}[/{color}]"
                  + (f" ({job.state_reason}): {job.state_message}" if job.state_message else ""))
    if job.output_dataset and job.state == jobs_pb2.JOB_STATE_SUCCEEDED:
        console.print(f"outputs: {job.output_dataset}")
    return job


@app.command("watch")
def watch_cmd(name: str = typer.Argument(..., help="jobs/{id} or {id}")):
    """Follow a job live (status line, progress bar, every event); exit 1 unless it SUCCEEDED."""

    async def main() -> int:
        channel, stub = await _stub()
        async with channel:
            job = await _follow(stub, job_name(name), metadata())
            return 0 if job.state == jobs_pb2.JOB_STATE_SUCCEEDED else 1

    raise typer.Exit(_run(main()))


@app.command()
def logs(name: str = typer.Argument(...), follow: bool = typer.Option(False, "--follow", "-f"),
         after: int = typer.Option(0, help="only lines after this sequence number"),
         show_seq: bool = typer.Option(False, "--seq", help="prefix each line with its sequence number")):
    """Log lines of a job's workers (stored; with --follow, also new ones until the job ends)."""

    async def main() -> int:
        channel, stub = await _stub()
        async with channel:
            async for reply in stub.StreamJobLogs(jobs_pb2.StreamJobLogsRequest(
                    name=job_name(name), after_seq=after, follow=follow), metadata=metadata()):
                for line in reply.lines:
                    prefix = f"{line.seq} " if show_seq else ""
                    out = sys.stderr if line.stream == "stderr" else sys.stdout
                    out.write(f"{prefix}{line.text}\n")
                sys.stdout.flush()
        return 0

    raise typer.Exit(_run(main()))


# ---- inspect ------------------------------------------------------------------------------------
@app.command("ls")
def ls(state: list[str] | None = typer.Option(None, "--state", "-s", help="filter (repeatable), e.g. RUNNING"),
       label: list[str] | None = typer.Option(None, "--label", "-l", help="key=value (repeatable)"),
       owner: str = typer.Option("", help="another user's jobs (admins)"),
       limit: int = typer.Option(50, help="at most this many (0: all)"),
       as_json: bool = typer.Option(False, "--json")):
    """List jobs, newest first."""
    from dmod.services.jobs.states import parse

    async def main() -> int:
        states = [parse(s) for s in state or []]
        channel, stub = await _stub()
        found: list[jobs_pb2.Job] = []
        async with channel:
            token = ""
            while True:
                reply = await stub.ListJobs(jobs_pb2.ListJobsRequest(
                    page_size=min(limit or 500, 500), page_token=token, states=states, labels=_labels(label),
                    owner=owner), metadata=metadata())
                found.extend(reply.jobs)
                token = reply.next_page_token
                if not token or (limit and len(found) >= limit):
                    break
        found = found[:limit] if limit else found
        if as_json:
            sys.stdout.write(json.dumps([MessageToDict(j) for j in found], indent=1) + "\n")
            return 0
        table = Table("job", "state", "progress", "cpus", "owner", "created", "reason")
        for j in found:
            prog = f"{j.progress.step}/{j.progress.total_steps}" if j.progress.total_steps else ""
            table.add_row(j.name.removeprefix("jobs/"), _styled(j.state), prog, str(j.spec.cpu_count), j.owner,
                          f"{j.create_time.ToDatetime():%Y-%m-%d %H:%M:%S}", j.state_reason)
        console.print(table)
        return 0

    raise typer.Exit(_run(main()))


@app.command()
def show(name: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json"),
         history: bool = typer.Option(True, help="also list the job's events")):
    """One job: spec, state, datasets, allocation, and its event history."""

    async def main() -> int:
        channel, stub = await _stub()
        async with channel:
            job = (await stub.GetJob(jobs_pb2.GetJobRequest(name=job_name(name)), metadata=metadata())).job
            events = []
            if history:
                async for item in stub.WatchJob(jobs_pb2.WatchJobRequest(name=job.name), metadata=metadata()):
                    if item.HasField("event"):
                        events.append(item.event)
                    if item.HasField("event") and item.event.seq >= job.last_event_seq:
                        break
        if as_json:
            doc = MessageToDict(job)
            doc["events"] = [MessageToDict(e) for e in events]
            sys.stdout.write(json.dumps(doc, indent=1) + "\n")
            return 0
        table = Table(show_header=False, title=job.name)
        table.add_column("key", style="bold")
        table.add_column("value", overflow="fold")
        table.add_row("state", f"{_styled(job.state)} {job.state_reason}")
        table.add_row("message", job.state_message)
        table.add_row("attempt", str(job.attempt))
        if job.progress.total_steps:
            table.add_row("progress", f"{job.progress.step}/{job.progress.total_steps}")
        table.add_row("owner", job.owner)
        table.add_row("cpus", f"{job.spec.cpu_count} ({jobs_pb2.AllocationParadigm.Name(job.spec.allocation_paradigm)})")
        table.add_row("allocation", ", ".join(f"{a.node}:{a.cpus}" for a in job.allocations))
        table.add_row("engine", f"{job.engine}: {job.engine_detail}" if job.engine else
                      f"{job.spec.engine or 'auto'} (not chosen yet)")
        for role, dataset in sorted(job.resolved_datasets.items()):
            table.add_row(role, dataset)
        table.add_row("output", job.output_dataset)
        table.add_row("labels", ", ".join(f"{k}={v}" for k, v in sorted(job.labels.items())))
        console.print(table)
        if events:
            ev = Table("#", "time", "state", "reason", "message", title="events")
            for e in events:
                if e.reason == "PROGRESS":
                    continue
                ev.add_row(str(e.seq), f"{e.time.ToDatetime():%H:%M:%S.%f}"[:-3], _styled(e.state), e.reason,
                           e.message)
            console.print(ev)
        return 0

    raise typer.Exit(_run(main()))


# ---- transitions ----------------------------------------------------------------------------------
@app.command()
def cancel(name: str = typer.Argument(...), wait: bool = typer.Option(False, "--wait", "-w")):
    """Cancel a job (any non-terminal state): its processes stop and its CPUs are released."""

    async def main() -> int:
        channel, stub = await _stub()
        async with channel:
            job = (await stub.CancelJob(jobs_pb2.CancelJobRequest(name=job_name(name)), metadata=metadata())).job
            console.print(f"{job.name} {_styled(job.state)}")
            if wait and job.state not in TERMINAL:
                job = await _follow(stub, job.name, metadata(), quiet=True)
        return 0

    raise typer.Exit(_run(main()))


@app.command()
def retry(name: str = typer.Argument(...), wait: bool = typer.Option(False, "--wait", "-w")):
    """Run a FAILED or CANCELLED job again as a new attempt (its history is kept)."""

    async def main() -> int:
        channel, stub = await _stub()
        async with channel:
            job = (await stub.RetryJob(jobs_pb2.RetryJobRequest(name=job_name(name)), metadata=metadata())).job
            console.print(f"{job.name} attempt {job.attempt}: {_styled(job.state)}")
            if wait:
                job = await _follow(stub, job.name, metadata())
                return 0 if job.state == jobs_pb2.JOB_STATE_SUCCEEDED else 1
        return 0

    raise typer.Exit(_run(main()))


@app.command()
def nodes():
    """The node pool and what is allocated on it."""

    async def main() -> int:
        channel, stub = await _stub()
        async with channel:
            reply = await stub.ListNodes(jobs_pb2.ListNodesRequest(), metadata=metadata())
        table = Table("node", "hostname", "cpus", "allocated", "memory", "ready")
        for n in reply.nodes:
            table.add_row(n.name, n.hostname, str(n.cpus), str(n.allocated_cpus), f"{n.memory_bytes / 2**30:.1f} GiB",
                          "yes" if n.ready else "no")
        console.print(table)
        return 0

    raise typer.Exit(_run(main()))
