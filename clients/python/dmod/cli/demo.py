"""`dmod demo`: the main job, end to end, on the running stack.

Synthesises a small hydrofabric with forcing and gage observations, uploads everything as
datasets, submits a 2-rank NextGen job (partitioned on demand), follows it live, then evaluates
the outputs against the observations and prints the metrics.

Models, by `--engine`:
  auto (default), embedded  the CFE-style Python BMI model (`bmi_python`); pre-flight picks the
                            engine (auto: ngen when it can run Python BMI models, else embedded)
  ngen                      the compiled NOAA-OWP models on the real ngen: a `bmi_multi` of SLoTH
                            (`bmi_c++`), PET and CFE (`bmi_c`), their libraries found in `lib/` next
                            to the ngen binary (or `--models DIR`), per-catchment CFE/PET configs
                            written by DMOD (`owp_configs.py`), uploaded as a `bmi_library` dataset
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
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
ENGINES = ("auto", "ngen", "embedded")
#: the compiled models of `--engine ngen`, by what they are (file names as NOAA-OWP builds them)
MODEL_LIBRARIES = {"SLoTH": "libslothmodel.so", "PET": "libpetbmi.so", "CFE": "libcfebmi.so"}


class DemoError(Exception):
    """The demo cannot start as asked (printed as is, exit code 2)."""


def find_ngen() -> Path | None:
    """The ngen binary of this setup: DMOD_NGEN_PATH, else the one the running local stack was
    started with (`dmod up` records it), else `ngen` on PATH."""
    given = os.environ.get("DMOD_NGEN_PATH")
    if given:
        return Path(given)
    try:
        from dmod.local.stack import load_state

        state = load_state(Path(default_home()))
    except (OSError, ValueError, TypeError):
        state = None
    if state is not None and state.ngen_path:
        return Path(state.ngen_path)
    found = shutil.which("ngen")
    return Path(found) if found else None


def find_models(models: str | os.PathLike | None = None) -> Path:
    """The folder holding the SLoTH, PET and CFE libraries: `models`, else `lib/` next to the ngen
    binary (the binary's own folder first, then the folder of the file a symlink points to)."""
    wanted = ", ".join(f"{name} {lib}" for name, lib in MODEL_LIBRARIES.items())
    if models:
        folders, where = [Path(models)], f"--models {models}"
    else:
        ngen = find_ngen()
        if ngen is None:
            raise DemoError("--engine ngen: no ngen binary found (set DMOD_NGEN_PATH, start the stack with it, or "
                            f"put ngen on PATH) to look for the models next to; or pass --models DIR, a folder "
                            f"with {wanted}")
        folders = list(dict.fromkeys([ngen.parent / "lib", ngen.resolve().parent / "lib"]))
        where = f"lib/ next to {ngen}"
    for folder in folders:
        if all((folder / lib).is_file() for lib in MODEL_LIBRARIES.values()):
            return folder
    folder = folders[0]
    missing = [f"{name} ({lib})" for name, lib in MODEL_LIBRARIES.items() if not (folder / lib).is_file()]
    raise DemoError(f"--engine ngen: model librar{'y' if len(missing) == 1 else 'ies'} {', '.join(missing)} not found "
                    f"in {folder} ({where}); point --models DIR at the folder that has {wanted}")


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


def build_native_domain(folder: Path, catchments: int, seed: int, models: Path) -> dict:
    """The same synthetic domain for the compiled models on ngen: `models/` (the `bmi_library`
    dataset) holds lib/*.so copied from `models`, CFE/*.txt and PET/*.txt written by DMOD; the
    realization is the SLoTH + PET + CFE `bmi_multi` loading ./lib/<name>.so."""
    from dmod.services.hydrofabric import load_network, synth
    from dmod.services.worker.models import owp_configs as owp

    manifest = synth(folder / "synth", catchments=catchments, seed=seed, hours=HOURS, forcing="csv", start=START,
                     gage_fraction=0.15)
    net = load_network(manifest["gpkg"])
    ids = [str(c) for c in net.catchment_ids.tolist()]
    library = folder / "models"
    (library / "lib").mkdir(parents=True, exist_ok=True)
    for lib in MODEL_LIBRARIES.values():
        shutil.copyfile(models / lib, library / "lib" / lib)
    owp.write_owp_configs(ids, library, sites=owp.hydrofabric_sites(manifest["gpkg"], ids), seed=seed, hours=HOURS)
    end = manifest["forcing_time"]["end_time"]
    (folder / "realization.json").write_text(json.dumps(owp.sloth_pet_cfe_realization(START, end), indent=1))
    return {"gpkg": Path(manifest["gpkg"]), "forcing": folder / "synth/forcing", "bmi_library": library,
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

    todo = {"hydrofabric": ("hydrofabric", HYDROFABRIC, F.DATA_FORMAT_NGEN_GEOPACKAGE_HYDROFABRIC, domain["gpkg"]),
            "forcing": ("forcing", FORCING, F.DATA_FORMAT_AORC_CSV, domain["forcing"]),
            "realization": ("realization", CONFIG, F.DATA_FORMAT_NGEN_REALIZATION_CONFIG, domain["realization"])}
    if "bmi" in domain:
        todo["bmi_config"] = ("bmi", CONFIG, F.DATA_FORMAT_BMI_CONFIG, domain["bmi"])
    if "bmi_library" in domain:
        todo["bmi_library"] = ("models", CONFIG, F.DATA_FORMAT_BMI_LIBRARY, domain["bmi_library"])
    todo["observations"] = ("observations", OBSERVATION, F.DATA_FORMAT_OBSERVATION_CSV, domain["observations"])
    names = await asyncio.gather(*(one(*args) for args in todo.values()))
    return dict(zip(todo, names))


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
            cpus: int = typer.Option(2, help="MPI ranks"), seed: int = typer.Option(42),
            engine: str = typer.Option(
                "auto", help="auto (default): the CFE-style Python BMI model, the engine picked by pre-flight "
                "(ngen if it runs Python BMI models, else embedded) — never switches to compiled models by itself; "
                "embedded: the same model on the embedded engine; ngen: the compiled SLoTH + PET + CFE models "
                "(bmi_multi) on the real ngen, libraries from lib/ next to the ngen binary (DMOD_NGEN_PATH, the "
                "binary `dmod up` was started with, or PATH) or --models, CFE/PET configs written by DMOD"),
            models: str = typer.Option("", "--models", metavar="DIR",
                                       help="with --engine ngen: folder holding libslothmodel.so, libpetbmi.so "
                                            "and libcfebmi.so (default: lib/ next to the ngen binary)")):
    """Run the demo job end to end on the running stack (start it with `dmod up`)."""
    if engine not in ENGINES:
        console.print(f"[red]error:[/red] --engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        raise typer.Exit(2)
    if models and engine != "ngen":
        console.print("[red]error:[/red] --models DIR is for the compiled models: add --engine ngen")
        raise typer.Exit(2)
    library_dir = None
    if engine == "ngen":
        try:
            library_dir = find_models(models or None)
        except DemoError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None

    async def go() -> int:
        started = time.perf_counter()
        tag = uuid.uuid4().hex[:6]
        folder = Path(default_home()) / "demo" / tag
        # the user's data, private like the rest of $DMOD_HOME (other local users see nothing)
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.parent.chmod(0o700)
        console.print(f"[bold]1/4[/bold] synthesising a {catchments}-catchment hydrofabric, {HOURS} h of forcing, "
                      f"gage observations → {folder}")
        if library_dir is not None:
            console.print(f"      models: SLoTH + PET + CFE (bmi_multi) on ngen, libraries from {library_dir}; "
                          "CFE/PET configs written per catchment")
            domain = await asyncio.to_thread(build_native_domain, folder, catchments, seed, library_dir)
        else:
            domain = await asyncio.to_thread(build_domain, folder, catchments, seed)
        async with aio_channel() as channel:
            async with DatasetsClient(channel) as ds:
                console.print("[bold]2/4[/bold] uploading datasets (SHA-256 verified) and sealing them")
                names = await upload(ds, tag, domain)
            for role, name in names.items():
                console.print(f"      {role:<12} {name}")
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            spec = build_spec(hydrofabric=names["hydrofabric"], forcing=names["forcing"],
                              realization=names["realization"], bmi_config=names.get("bmi_config", ""),
                              bmi_library=names.get("bmi_library", ""), start=START, end=domain["end"], cpus=cpus,
                              partition_method="metis" if cpus > 1 else "", engine=engine)
            spec.evaluation.observation_dataset = names["observations"]
            job = (await stub.CreateJob(jobs_pb2.CreateJobRequest(spec=spec, labels={"demo": tag},
                                                                  request_id=f"demo-{tag}"), metadata=metadata())).job
            console.print(f"[bold]3/4[/bold] job {job.name} on {cpus} MPI ranks (engine {engine})")
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
