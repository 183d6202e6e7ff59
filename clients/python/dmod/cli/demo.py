"""`dmod demo`: the main job, end to end, on the running stack.

Synthesises a small hydrofabric with forcing and gage observations, uploads everything as
datasets, submits a 2-rank NextGen job (partitioned on demand, CFE-style model in the embedded
engine unless a real ngen is installed), follows it live, then evaluates the outputs against the
observations and prints the metrics.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import grpc
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from dmod.client import aio_channel, metadata
from dmod.datasets_client import CONFIG, FORCING, HYDROFABRIC, OBSERVATION, DatasetsClient
from dmod.errors import describe
from dmod.jobs_client import build_spec, state_name, watch
from dmod.services.runtime.settings import default_home
from dmod.v1 import domain_pb2, evaluation_pb2, evaluation_pb2_grpc, jobs_pb2, jobs_pb2_grpc

console = Console()
START, HOURS = "2015-12-01 00:00:00", 72
CFE = "dmod.services.worker.models.cfe.CFE"


def realization(end: str, start: str = START) -> dict:
    """A realization running the CFE-style model on CSV forcing (`config/<id>.json` init files)."""
    return {
        "global": {
            "formulations": [{"name": "bmi_python", "params": {
                "model_type_name": "CFE", "python_type": CFE, "init_config": "./config/{{id}}.json",
                "main_output_variable": "Q_OUT", "uses_forcing_file": False,
                "variables_names_map": {"atmosphere_water__liquid_equivalent_precipitation_rate": "precip_rate"}}}],
            "forcing": {"provider": "CsvPerFeature", "path": "./forcing/", "file_pattern": "{{id}}.csv"},
        },
        "time": {"start_time": start, "end_time": end, "output_interval": 3600},
        "output": {"root": "./output/", "catchment": {"enable": True}},
    }


def build_domain(folder: Path, catchments: int, seed: int) -> dict:
    from dmod.services.hydrofabric import load_network, synth
    from dmod.services.worker.models.init_configs import write_init_configs

    manifest = synth(folder / "synth", catchments=catchments, seed=seed, hours=HOURS, forcing="csv", start=START,
                     gage_fraction=0.15)
    net = load_network(manifest["gpkg"])
    write_init_configs([str(c) for c in net.catchment_ids.tolist()], folder / "bmi" / "config", "cfe")
    end = manifest["forcing_time"]["end_time"]
    (folder / "realization.json").write_text(json.dumps(realization(end), indent=1))
    return {"gpkg": Path(manifest["gpkg"]), "forcing": folder / "synth/forcing", "bmi": folder / "bmi",
            "realization": folder / "realization.json", "observations": folder / "synth/observations.csv",
            "end": end, "catchments": net.n_catchments, "gages": manifest["gages"]}


async def upload(ds: DatasetsClient, tag: str, domain: dict) -> dict[str, str]:
    F = domain_pb2

    async def one(name, category, fmt, local: Path) -> str:
        d = await ds.create_dataset(f"demo-{tag}-{name}", category, fmt, request_id=f"demo-{tag}-{name}")
        if local.is_dir():
            await ds.upload_dir(d.name, local)
        else:
            await ds.upload_file(d.name, local, local.name)
        return (await ds.seal_dataset(d.name)).name

    names = await asyncio.gather(
        one("hydrofabric", HYDROFABRIC, F.DATA_FORMAT_NGEN_GEOPACKAGE_HYDROFABRIC, domain["gpkg"]),
        one("forcing", FORCING, F.DATA_FORMAT_AORC_CSV, domain["forcing"]),
        one("realization", CONFIG, F.DATA_FORMAT_NGEN_REALIZATION_CONFIG, domain["realization"]),
        one("bmi", CONFIG, F.DATA_FORMAT_BMI_CONFIG, domain["bmi"]),
        one("observations", OBSERVATION, F.DATA_FORMAT_OBSERVATION_CSV, domain["observations"]))
    return dict(zip(("hydrofabric", "forcing", "realization", "bmi_config", "observations"), names))


async def follow(stub, name: str) -> jobs_pb2.Job:
    job = None
    with Progress(TextColumn("{task.description:<34}"), BarColumn(), TextColumn("{task.fields[steps]}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task(name, total=None, steps="")
        async for item in watch(stub, name, metadata=metadata()):
            if item.HasField("snapshot"):
                job = item.snapshot
            else:
                event = item.event
                job.state = event.state
                if event.progress.total_steps:
                    job.progress.CopyFrom(event.progress)
                if event.state != jobs_pb2.JOB_STATE_RUNNING or event.message:
                    bar.console.print(f"  {state_name(event.state):<12} {event.reason} {event.message}".rstrip())
            total = job.progress.total_steps or None
            bar.update(task, total=total, completed=job.progress.step, description=f"{name} {state_name(job.state)}",
                       steps=f"step {job.progress.step}/{total}" if total else "")
    return (await stub.GetJob(jobs_pb2.GetJobRequest(name=name), metadata=metadata())).job


async def evaluate(channel, job: jobs_pb2.Job, names: dict[str, str]) -> evaluation_pb2.Evaluation:
    stub = evaluation_pb2_grpc.EvaluationServiceStub(channel)
    if job.evaluation:  # requested in the job spec and started by the scheduler
        name = job.evaluation
    else:
        spec = evaluation_pb2.EvaluationSpec(output_dataset=job.output_dataset,
                                             observation_dataset=names["observations"],
                                             hydrofabric_dataset=names["hydrofabric"], min_pairs=24,
                                             thresholds=[evaluation_pb2.Threshold(name="p90", percentile=90)])
        name = (await stub.CreateEvaluation(evaluation_pb2.CreateEvaluationRequest(spec=spec), metadata=metadata())
                ).evaluation.name
    final = None
    async for update in stub.WatchEvaluation(evaluation_pb2.WatchEvaluationRequest(name=name), metadata=metadata()):
        final = update.evaluation
    return final


def command(catchments: int = typer.Option(60, help="Size of the synthetic domain"),
            cpus: int = typer.Option(2, help="MPI ranks"), seed: int = typer.Option(42)):
    """Run the demo job end to end on the running stack (start it with `dmod up`)."""
    async def go() -> int:
        started = time.perf_counter()
        tag = uuid.uuid4().hex[:6]
        folder = Path(default_home()) / "demo" / tag
        console.print(f"[bold]1/4[/bold] synthesising a {catchments}-catchment hydrofabric, {HOURS} h of forcing, "
                      f"gage observations → {folder}")
        domain = await asyncio.to_thread(build_domain, folder, catchments, seed)
        async with aio_channel() as channel:
            async with DatasetsClient(channel) as ds:
                console.print("[bold]2/4[/bold] uploading datasets (SHA-256 verified) and sealing them")
                names = await upload(ds, tag, domain)
            for role, name in names.items():
                console.print(f"      {role:<12} {name}")
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            spec = build_spec(hydrofabric=names["hydrofabric"], forcing=names["forcing"],
                              realization=names["realization"], bmi_config=names["bmi_config"], start=START,
                              end=domain["end"], cpus=cpus, partition_method="metis" if cpus > 1 else "")
            spec.evaluation.observation_dataset = names["observations"]
            job = (await stub.CreateJob(jobs_pb2.CreateJobRequest(spec=spec, labels={"demo": tag},
                                                                  request_id=f"demo-{tag}"), metadata=metadata())).job
            console.print(f"[bold]3/4[/bold] job {job.name} on {cpus} MPI ranks")
            job = await follow(stub, job.name)
            if job.state != jobs_pb2.JOB_STATE_SUCCEEDED:
                console.print(f"[red]job {state_name(job.state)}[/red]: {job.state_reason} {job.state_message}\n"
                              f"logs: dmod job logs {job.name}")
                return 1
            outputs = await DatasetsClient(channel).list_objects(job.output_dataset)
            console.print(f"      outputs: {len(outputs)} files in {job.output_dataset} (sealed)")
            console.print("[bold]4/4[/bold] evaluating the outputs against the gage observations")
            evaluation = await evaluate(channel, job, names)
        if evaluation.state != evaluation_pb2.EVALUATION_STATE_SUCCEEDED:
            console.print(f"[red]evaluation failed[/red]: {evaluation.state_message}")
            return 1
        for loc in evaluation.locations:
            m = loc.metrics
            console.print(f"      gage {loc.gage_id} ↔ {loc.nexus_id}: NSE {m.get('nse', float('nan')):.3f}  "
                          f"KGE {m.get('kge', float('nan')):.3f}  PBIAS {m.get('pbias', float('nan')):.1f}%"
                          + (f"  ({loc.error})" if loc.error else ""))
        console.print(f"[green]demo finished[/green] in {time.perf_counter() - started:.0f}s — "
                      f"dmod job show {job.name} · dmod eval show {evaluation.name} · "
                      f"dmod eval plot {evaluation.name} · web UI http://{_gateway()}/")
        return 0

    try:
        code = asyncio.run(go())
    except grpc.aio.AioRpcError as exc:
        console.print(f"[red]error:[/red] {describe(exc)}")
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            console.print("is the stack up? run `dmod up` first")
        code = 1
    raise typer.Exit(code)


def _gateway() -> str:
    from dmod.client import gateway_address

    return gateway_address()
