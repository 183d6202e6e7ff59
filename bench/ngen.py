"""Benchmark: a real ngen run directly vs the same run as a DMOD job; embedded engine vs ngen.

Inputs (the same for every run): a synthetic GeoPackage hydrofabric (`--catchments`, default 500),
`--hours` hourly steps (default 720) of forcing (`--forcing netcdf` (default, one file, as NGIAB
runs use) or `csv`, one file per catchment), ngen's C++ test BMI model (`libtestbmicppmodel.so`)
and a METIS partition for `--ranks` ranks (default 2).

(a) direct:   `mpirun -n R ngen hydrofabric.gpkg all hydrofabric.gpkg all realization.json part.json`
              in a prepared folder (process wall time).
(b) DMOD job: the inputs uploaded once as datasets (not timed), then CreateJob(engine ngen,
              R CPUs, METIS) on a local stack; wall = CreateJob call → SUCCEEDED event (pre-flight,
              partitioning, queueing, input download, the ngen run, output upload and sealing).
              Its outputs are downloaded and compared byte for byte with (a)'s.
(c) engine rate: catchment-steps per second of a serial real ngen run (test BMI model) and of the
              embedded engine (serial, the pass-through bmi_python model) on the same network
              and steps.

Runs alternate (a), (b) `--repeats` times; the best of each counts (shared machines), and the
median of each job's wall over the direct run just before it is reported beside it. Prints a
table and writes bench/results/ngen.json (key `ratio_job_over_direct`).

    .venv/bin/python bench/ngen.py [--catchments 500] [--hours 720] [--ranks 2] [--repeats 3]
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "ngen.json"
sys.path.insert(0, str(ROOT / "tests" / "ngen"))
import ngenkit

PASSTHROUGH = "dmod.services.worker.models.passthrough.PassThrough"


def prepare(cache: Path, catchments: int, hours: int, forcing: str, ranks: int) -> dict:
    """Synthetic domain, run folder for the direct runs (lib/ + config/ + realization), partition."""
    from dmod.services.hydrofabric import load_network, synth
    from dmod.services.hydrofabric.partition import partition

    cache.mkdir(parents=True, exist_ok=True)
    manifest_file = cache / "hf" / "synth.json"
    if manifest_file.exists():
        manifest = json.loads(manifest_file.read_text())
    else:
        manifest = synth(cache / "hf", catchments=catchments, seed=11, hours=hours, forcing=forcing,
                         forcing_limit=max(catchments, 20_000))
    net = load_network(manifest["gpkg"])
    run = cache / "direct"
    ngenkit.make_run_dir(run, Path(manifest["gpkg"]), cache / "hf" / "forcing", hours=hours)
    lib = run / "lib"
    lib.mkdir(exist_ok=True)
    shutil.copyfile(ngenkit.test_model_library(), lib / "libtestbmicppmodel.so")
    doc = ngenkit.test_model_realization(hours=hours, library="./lib/libtestbmicppmodel.so")
    if forcing == "netcdf":
        doc["global"]["forcing"] = {"provider": "NetCDF", "path": "./forcing/forcing.nc"}
    (run / "realization.json").write_text(json.dumps(doc, indent=1))
    part = partition(net, ranks, "METIS")
    (run / "partitions.json").write_text(json.dumps(part.document))
    return {"gpkg": manifest["gpkg"], "forcing_dir": str(cache / "hf" / "forcing"), "run": str(run),
            "catchments": int(net.n_catchments), "nexuses": int(net.n_nexuses), "hours": hours,
            "forcing": forcing, "ranks": ranks, "partition_stats": {k: part.stats[k] for k in
                                                                    ("part_sizes", "cut_nexuses")}}


def direct_run(info: dict, ranks: int) -> float:
    run = Path(info["run"])
    t0 = time.perf_counter()
    proc = ngenkit.run_ngen(run, ranks, run / "partitions.json" if ranks > 1 else None, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"ngen exited {proc.returncode}: {proc.stderr[-2000:]}")
    return wall


def embedded_run(info: dict, scratch: Path) -> float:
    """The embedded engine, serial, pass-through model, the same network, forcing and steps."""
    run = scratch / "embedded"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    doc = ngenkit.test_model_realization(hours=info["hours"])
    doc["global"]["formulations"] = [{"name": "bmi_python", "params": {
        "model_type_name": "PassThrough", "python_type": PASSTHROUGH, "init_config": "",
        "main_output_variable": "Q_OUT", "uses_forcing_file": False,
        "variables_names_map": {"atmosphere_water__liquid_equivalent_precipitation_rate": "precip_rate"}}}]
    src = Path(info["run"])
    doc["global"]["forcing"] = json.loads((src / "realization.json").read_text())["global"]["forcing"]
    (run / "realization.json").write_text(json.dumps(doc))
    (run / "forcing").symlink_to(Path(info["forcing_dir"]).resolve(), target_is_directory=True)
    (run / "output").mkdir()
    argv = [sys.executable, "-m", "dmod.services.worker.engine", info["gpkg"], "all", info["gpkg"], "all",
            "realization.json"]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, check=False, cwd=run, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"embedded engine exited {proc.returncode}: {proc.stderr[-2000:]}")
    return wall


async def upload_inputs(gateway: str, info: dict) -> dict[str, str]:
    import grpc

    from dmod.services.jobs.datasets import Datasets
    from dmod.v1 import datasets_pb2, domain_pb2

    run = Path(info["run"])
    forcing = Path(info["forcing_dir"])
    fmt = domain_pb2.DATA_FORMAT_NETCDF_FORCING if info["forcing"] == "netcdf" else domain_pb2.DATA_FORMAT_AORC_CSV
    pattern = "*.nc" if info["forcing"] == "netcdf" else "*.csv"
    roles = {
        "hydrofabric": (domain_pb2.DATA_CATEGORY_HYDROFABRIC, domain_pb2.DATA_FORMAT_NGEN_GEOPACKAGE_HYDROFABRIC,
                        {"hydrofabric.gpkg": Path(info["gpkg"])}),
        "forcing": (domain_pb2.DATA_CATEGORY_FORCING, fmt, {p.name: p for p in sorted(forcing.glob(pattern))}),
        "realization": (domain_pb2.DATA_CATEGORY_CONFIG, domain_pb2.DATA_FORMAT_NGEN_REALIZATION_CONFIG,
                        {"realization.json": run / "realization.json"}),
        "bmi_library": (domain_pb2.DATA_CATEGORY_CONFIG, domain_pb2.DATA_FORMAT_BMI_LIBRARY,
                        {"lib/libtestbmicppmodel.so": run / "lib" / "libtestbmicppmodel.so",
                         "config/test.ini": run / "config" / "test.ini"}),
    }
    names = {}
    async with grpc.aio.insecure_channel(gateway) as ch:
        ds = Datasets(ch)
        for role, (category, data_format, files) in roles.items():
            dataset = await ds.create(datasets_pb2.Dataset(display_name=f"bench-ngen-{role}-{uuid.uuid4().hex[:6]}",
                                                           category=category, data_format=data_format),
                                      uuid.uuid4().hex)
            async def put(path: str, src: Path, name: str = dataset.name, sem=asyncio.Semaphore(8)) -> None:
                async with sem:
                    await ds.upload_bytes(name, path, src.read_bytes(), "application/octet-stream")

            await asyncio.gather(*(put(p, s) for p, s in files.items()))
            await ds.seal(dataset.name)
            names[role] = dataset.name
    return names


async def dmod_job(gateway: str, names: dict[str, str], info: dict, out_dir: Path) -> dict:
    """One job: wall from the CreateJob call to the SUCCEEDED event, phases from event times."""
    import grpc

    from dmod.jobs_client import build_spec, watch
    from dmod.services.jobs.datasets import Datasets
    from dmod.v1 import jobs_pb2, jobs_pb2_grpc

    end = json.loads((Path(info["run"]) / "realization.json").read_text())["time"]["end_time"]
    spec = build_spec(hydrofabric=names["hydrofabric"], realization=names["realization"], forcing=names["forcing"],
                      start="2015-12-01 00:00:00", end=end, cpus=info["ranks"], partition_method="metis",
                      engine="ngen")
    spec.bmi_library_dataset = names["bmi_library"]
    async with grpc.aio.insecure_channel(gateway) as ch:
        stub = jobs_pb2_grpc.JobServiceStub(ch)
        t0 = time.time()
        job = (await stub.CreateJob(jobs_pb2.CreateJobRequest(spec=spec, request_id=uuid.uuid4().hex))).job
        phases: dict[str, float] = {}
        final = None
        async for item in watch(stub, job.name):
            if item.HasField("event"):
                ev = item.event
                state = jobs_pb2.JobState.Name(ev.state).removeprefix("JOB_STATE_")
                phases.setdefault(state, ev.time.ToDatetime().timestamp())
                if os.environ.get("BENCH_TRACE"):
                    print(f"  event {state:<12} {ev.time.ToDatetime():%H:%M:%S.%f}", flush=True)
                if ev.state in (jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED):
                    final = ev
                    break
        wall = phases.get("SUCCEEDED", time.time()) - t0
        job = (await stub.GetJob(jobs_pb2.GetJobRequest(name=job.name))).job
        if final is None or final.state != jobs_pb2.JOB_STATE_SUCCEEDED:
            raise RuntimeError(f"{job.name} ended {jobs_pb2.JobState.Name(job.state)} {job.state_reason}: "
                               f"{job.state_message}")
        ds = Datasets(ch)
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        for obj in await ds.objects(job.output_dataset):
            await ds.download(obj, out_dir / obj.path)
    order = [s for s in ("PENDING", "VALIDATING", "STAGING", "PARTITIONING", "QUEUED", "STARTING", "RUNNING",
                         "FINALIZING", "SUCCEEDED") if s in phases]
    spans = {f"{a}->{b}": round(phases[b] - phases[a], 3) for a, b in itertools.pairwise(order)}
    return {"job": job.name, "wall_seconds": round(wall, 3), "phases": spans, "engine": job.engine,
            "engine_detail": job.engine_detail}


def start_stack(home: Path):
    from dmod.local.stack import Stack

    binary = ngenkit.ngen_binary()
    if binary is None:
        raise SystemExit("no ngen binary: set DMOD_NGEN_PATH (or provide ../shared/ngen/ngen)")
    os.environ["DMOD_NGEN_PATH"] = str(binary)
    stack = Stack(home, fixed_ports=False, log=lambda *a: None)
    return stack, stack.up()


def table(result: dict) -> str:
    d, j, e = result["direct"], result["job"], result["engines"]
    rows = [("direct mpirun ngen, best (s)", f"{d['best_seconds']:.2f}"),
            ("DMOD job, best (s)", f"{j['best_seconds']:.2f}"),
            ("ratio job / direct (best / best)", f"{result['ratio_job_over_direct']:.3f}"),
            ("ratio job / direct (paired, median)", f"{result['paired_ratio_median']:.3f}"),
            ("job outputs identical to direct", str(result["outputs_identical"])),
            ("job phases of the best run (s)", ", ".join(f"{k} {v}" for k, v in j["best_phases"].items())),
            ("ngen serial catchment-steps/s", f"{e['ngen_catchment_steps_per_s']:,.0f}"),
            ("embedded serial catchment-steps/s", f"{e['embedded_catchment_steps_per_s']:,.0f}"),
            ("embedded / ngen rate", f"{e['embedded_over_ngen']:.2f}")]
    width = max(len(a) for a, _ in rows)
    head = (f"ngen job benchmark: {result['inputs']['catchments']} catchments, {result['inputs']['hours']} steps, "
            f"{result['inputs']['ranks']} ranks, {result['inputs']['forcing']} forcing, test BMI model")
    return "\n".join([head, "-" * len(head)] + [f"{a:<{width}}  {b}" for a, b in rows])


async def main_async(args) -> dict:
    scratch = Path(args.workdir or tempfile.mkdtemp(prefix="dmod-bench-ngen-"))
    info = prepare(scratch / f"domain-{args.catchments}-{args.hours}-{args.forcing}", args.catchments, args.hours,
                   args.forcing, args.ranks)
    stack, state = start_stack(scratch / "stack")
    try:
        names = await upload_inputs(state.gateway, info)
        direct, jobs = [], []
        identical = True
        for i in range(args.repeats):
            direct.append(direct_run(info, args.ranks))
            expected = ngenkit.read_outputs(Path(info["run"]))
            job = await dmod_job(state.gateway, names, info, scratch / f"job-out-{i}")
            got = ngenkit.read_outputs(scratch / f"job-out-{i}")
            job["identical"] = got == expected
            identical &= job["identical"]
            jobs.append(job)
            print(f"repeat {i + 1}: direct {direct[-1]:.2f}s, job {job['wall_seconds']:.2f}s "
                  f"({'identical' if job['identical'] else 'OUTPUTS DIFFER'}) {job['phases']}", flush=True)
    finally:
        stack.purge()
    serial = min(direct_run(info, 1) for _ in range(max(1, args.repeats - 1)))
    embedded = min(embedded_run(info, scratch) for _ in range(max(1, args.repeats - 1)))
    work = info["catchments"] * info["hours"]
    best_job = min(jobs, key=lambda j: j["wall_seconds"])
    result = {
        "inputs": info,
        "direct": {"walls_seconds": [round(w, 3) for w in direct], "best_seconds": round(min(direct), 3)},
        "job": {"walls_seconds": [j["wall_seconds"] for j in jobs], "best_seconds": best_job["wall_seconds"],
                "best_phases": best_job["phases"], "engine": best_job["engine"],
                "engine_detail": best_job["engine_detail"], "runs": jobs},
        "ratio_job_over_direct": round(best_job["wall_seconds"] / min(direct), 3),
        # each job against the direct run just before it (the machine's state at the time)
        "paired_ratios": [round(j["wall_seconds"] / d, 3) for j, d in zip(jobs, direct, strict=True)],
        "paired_ratio_median": round(statistics.median(j["wall_seconds"] / d for j, d in zip(jobs, direct, strict=True)), 3),
        "outputs_identical": identical,
        "engines": {"ngen_serial_seconds": round(serial, 3), "embedded_serial_seconds": round(embedded, 3),
                    "ngen_catchment_steps_per_s": work / serial, "embedded_catchment_steps_per_s": work / embedded,
                    "embedded_over_ngen": round(serial / embedded, 3)},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg": os.getloadavg(), "ngen": str(ngenkit.ngen_binary())},
    }
    if not args.workdir:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catchments", type=int, default=500)
    parser.add_argument("--hours", type=int, default=720)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--forcing", choices=("netcdf", "csv"), default="netcdf")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", help="keep inputs and outputs here (default: a temp dir, removed)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
