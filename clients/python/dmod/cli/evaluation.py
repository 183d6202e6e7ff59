"""`dmod eval create|show|ls|plot`: evaluate job outputs against observations.

    dmod eval create --output datasets/<job output> --observations datasets/<obs> \\
        --hydrofabric datasets/<hf> --threshold p90 --resample daily --wait
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import uuid
from pathlib import Path

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from dmod.client import aio_channel, metadata
from dmod.errors import describe
from dmod.v1 import evaluation_pb2, evaluation_pb2_grpc

app = typer.Typer(help="Evaluations: metrics of model output against observations.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console()
err = Console(stderr=True)

STATES = {v.number: v.name.removeprefix("EVALUATION_STATE_") for v in evaluation_pb2.EvaluationState.DESCRIPTOR.values}
HEADLINE = ("nse", "kge", "kge_prime", "pbias", "rmse", "pearson_r", "peak_timing_error", "score")


def _run(coro):
    try:
        return asyncio.run(coro)
    except grpc.aio.AioRpcError as exc:
        err.print(f"[red]error:[/red] {describe(exc)}")
        raise typer.Exit(1) from None
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _name(value: str) -> str:
    return value if value.startswith("evaluations/") else f"evaluations/{value}"


def _threshold(text: str) -> evaluation_pb2.Threshold:
    if text.startswith("p"):
        return evaluation_pb2.Threshold(name=text, percentile=float(text[1:]))
    return evaluation_pb2.Threshold(name=text, value=float(text))


def _fmt(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def _print(evaluation: evaluation_pb2.Evaluation) -> None:
    state = STATES[evaluation.state]
    console.print(f"[bold]{evaluation.name}[/bold]  {state}  {evaluation.locations_done}/{evaluation.locations_total} "
                  f"locations  {evaluation.state_message}")
    if evaluation.result_dataset:
        console.print(f"results: {evaluation.result_dataset}")
    if not evaluation.locations:
        return
    extra = sorted({k for loc in evaluation.locations for k in loc.metrics if "@" in k})
    columns = [m for m in HEADLINE if any(m in loc.metrics for loc in evaluation.locations)] + extra
    table = Table("gage", "nexus", "pairs", *columns, "error")
    for loc in evaluation.locations:
        table.add_row(loc.gage_id, loc.nexus_id, str(loc.pair_count),
                      *(_fmt(loc.metrics.get(m, float("nan"))) for m in columns), loc.error)
    table.add_row("[bold]mean[/bold]", "", "", *(_fmt(evaluation.aggregate.get(m, float("nan"))) for m in columns), "")
    console.print(table)


async def _follow(stub, name: str) -> evaluation_pb2.Evaluation:
    last = None
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), console=err,
                  transient=True) as bar:
        task = bar.add_task(name, total=None)
        async for update in stub.WatchEvaluation(evaluation_pb2.WatchEvaluationRequest(name=name),
                                                 metadata=metadata()):
            last = update.evaluation
            bar.update(task, total=last.locations_total or None, completed=last.locations_done,
                       description=f"{name} {STATES[last.state]}")
    return last


@app.command()
def create(output: str = typer.Option(..., help="Job output dataset (datasets/{id})"),
           observations: str = typer.Option(..., help="Observation dataset"),
           hydrofabric: str = typer.Option("", help="Hydrofabric dataset for the gage crosswalk"),
           crosswalk: Path | None = typer.Option(None, help="JSON {gage: nexus} instead of the hydrofabric's"),
           units: str = typer.Option("m3/s", help="Observation units: m3/s or ft3/s"),
           start: str = typer.Option("", help="Window start (UTC)"), end: str = typer.Option("", help="Window end"),
           resample: str = typer.Option("", help="hourly | daily"),
           metric: list[str] = typer.Option([], help="Metrics (default all)"),
           threshold: list[str] = typer.Option([], help="Event threshold: a value (m3/s) or pNN (percentile)"),
           min_pairs: int = typer.Option(10), wait: bool = typer.Option(False, help="Follow until done"),
           as_json: bool = typer.Option(False, "--json")):
    """Start an evaluation (returns at once unless --wait)."""
    spec = evaluation_pb2.EvaluationSpec(
        output_dataset=output, observation_dataset=observations, hydrofabric_dataset=hydrofabric,
        crosswalk=json.loads(crosswalk.read_text()) if crosswalk else {}, metrics=metric, min_pairs=min_pairs,
        thresholds=[_threshold(t) for t in threshold],
        observation_unit=evaluation_pb2.FLOW_UNIT_CUBIC_FEET_PER_SECOND if units in ("ft3/s", "cfs")
        else evaluation_pb2.FLOW_UNIT_CUBIC_METERS_PER_SECOND,
        resample={"hourly": evaluation_pb2.RESAMPLE_HOURLY, "daily": evaluation_pb2.RESAMPLE_DAILY}.get(resample, 0))
    for field, text in (("start_time", start), ("end_time", end)):
        if text:
            getattr(spec, field).FromDatetime(dt.datetime.fromisoformat(text))

    async def go():
        async with aio_channel() as channel:
            stub = evaluation_pb2_grpc.EvaluationServiceStub(channel)
            reply = await stub.CreateEvaluation(evaluation_pb2.CreateEvaluationRequest(
                spec=spec, request_id=uuid.uuid4().hex), metadata=metadata())
            evaluation = await _follow(stub, reply.evaluation.name) if wait else reply.evaluation
        if as_json:
            console.print_json(json.dumps(MessageToDict(evaluation)))
        else:
            _print(evaluation)
        if wait and evaluation.state != evaluation_pb2.EVALUATION_STATE_SUCCEEDED:
            raise typer.Exit(1)
    _run(go())


@app.command()
def show(name: str, as_json: bool = typer.Option(False, "--json"), follow: bool = typer.Option(False)):
    """Per-location and aggregate metrics of an evaluation."""
    async def go():
        async with aio_channel() as channel:
            stub = evaluation_pb2_grpc.EvaluationServiceStub(channel)
            if follow:
                evaluation = await _follow(stub, _name(name))
            else:
                evaluation = (await stub.GetEvaluation(evaluation_pb2.GetEvaluationRequest(name=_name(name)),
                                                       metadata=metadata())).evaluation
        if as_json:
            console.print_json(json.dumps(MessageToDict(evaluation)))
        else:
            _print(evaluation)
    _run(go())


@app.command("ls")
def list_(job: str = typer.Option("", help="Only evaluations of this job"), limit: int = typer.Option(50),
          as_json: bool = typer.Option(False, "--json")):
    """List evaluations, newest first."""
    async def go():
        async with aio_channel() as channel:
            reply = await evaluation_pb2_grpc.EvaluationServiceStub(channel).ListEvaluations(
                evaluation_pb2.ListEvaluationsRequest(page_size=limit, job=job), metadata=metadata())
        if as_json:
            console.print_json(json.dumps([MessageToDict(e) for e in reply.evaluations]))
            return
        table = Table("name", "state", "locations", "nse (mean)", "kge (mean)", "output", "created")
        for e in reply.evaluations:
            table.add_row(e.name, STATES[e.state], f"{e.locations_done}/{e.locations_total}",
                          _fmt(e.aggregate.get("nse", float("nan"))), _fmt(e.aggregate.get("kge", float("nan"))),
                          e.spec.output_dataset, e.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"))
        console.print(table)
    _run(go())


@app.command()
def plot(name: str, out: Path = typer.Option(Path("."), help="Folder for the PNG hydrographs"),
         gage: list[str] = typer.Option([], help="Only these gages")):
    """Download the PNG hydrographs (observed vs simulated) of an evaluation."""
    from dmod.datasets_client import DatasetsClient

    async def go():
        async with aio_channel() as channel:
            evaluation = (await evaluation_pb2_grpc.EvaluationServiceStub(channel).GetEvaluation(
                evaluation_pb2.GetEvaluationRequest(name=_name(name)), metadata=metadata())).evaluation
            if not evaluation.result_dataset:
                raise ValueError(f"{evaluation.name} has no results yet ({STATES[evaluation.state]})")
            async with DatasetsClient(channel) as ds:
                written = []
                for obj in await ds.list_objects(evaluation.result_dataset, prefix="plots/"):
                    stem = Path(obj.path).stem
                    if gage and stem.split("__")[0] not in gage:
                        continue
                    dest = out / Path(obj.path).name
                    await ds.download_file(obj.name, dest)
                    written.append(dest)
        for path in written:
            console.print(str(path))
        if not written:
            raise ValueError("no hydrograph matched")
    _run(go())
