"""JobService benchmark, through Envoy, against a bare grpc.aio ceiling measured in the same run.

DMOD (local launcher, a stack of its own in a temp dir unless --gateway is given):
* submissions — a burst of N jobs with the no-op engine (the worker starts, reports and exits at
  once) from C concurrent clients (one channel each): submissions/s and CreateJob p50/p99; the
  burst's time-to-RUNNING is reported too, but it is queueing (N worker processes to start on
  this host), not scheduler latency;
* time-to-RUNNING — P jobs arriving at a steady R jobs/s (open loop, one channel): RUNNING event
  time − create time (server clock) p50/p99: how long a submitted job waits to start on a host
  that keeps up with its arrivals;
* watch — W concurrent WatchJob streams over J running jobs (a tiny domain whose BMI model
  sleeps 0.1 s a step, progress recorded every 0.1 s): event delivery latency p50/p99
  (receive time − event time), once every stream is open (as the bare fan-out is measured: the
  ratio uses this) and over the whole run (including the 1,000 snapshots of the opening).
Bare ceiling (a grpc.aio server in its own process, same client code, one channel per client):
* unary — an empty unary call from C clients: calls/s, p50/p99;
* fan-out — a server stream pushing a timestamp to W subscribers every 100 ms: p50/p99.
Ratios: submissions/s ÷ bare calls/s (target ≥ 0.15), steady time-to-RUNNING p99 (target
≤ 0.5 s), WatchJob p99 ÷ bare fan-out p99 (target ≤ 1.5).

    .venv/bin/python bench/jobs.py [--jobs 1000] [--clients 50] [--paced-jobs 300] [--paced-rate 10]
                                   [--watchers 1000] [--phases bare,submit,steady,watch] [--gateway HOST:PORT]
Writes bench/results/jobs.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "jobs.json"
SLOW_MODEL = '''import time
from dmod.services.worker.models.passthrough import PassThrough


class Tick(PassThrough):
    def _advance(self, dt):
        time.sleep(0.1)
        super()._advance(dt)
'''


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def summary(values) -> dict:
    return {"n": len(values), "p50_ms": round(pct(values, 50) * 1000, 2), "p99_ms": round(pct(values, 99) * 1000, 2),
            "max_ms": round(max(values) * 1000, 2) if values else None}


# ---- the bare ceiling -------------------------------------------------------------------------------
def echo_server(port: int) -> None:
    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 4000), ("grpc.so_reuseport", 0)])
        subscribers: set[asyncio.Queue] = set()

        async def ping(request, context):
            return b""

        async def subscribe(request, context):
            queue: asyncio.Queue = asyncio.Queue()
            subscribers.add(queue)
            try:
                while True:
                    yield await queue.get()
            finally:
                subscribers.discard(queue)

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.1)
                stamp = struct.pack("<d", time.time())
                for queue in list(subscribers):
                    queue.put_nowait(stamp)

        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {
            "Ping": grpc.unary_unary_rpc_method_handler(ping),
            "Subscribe": grpc.unary_stream_rpc_method_handler(subscribe)}),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        asyncio.get_running_loop().create_task(ticker())
        await server.wait_for_termination()

    asyncio.run(main())


async def bare_unary(target: str, calls: int, clients: int) -> dict:
    lat: list[float] = []
    per = calls // clients

    async def client() -> None:
        async with grpc.aio.insecure_channel(target) as ch:
            ping = ch.unary_unary("/bench.Echo/Ping")
            await ping(b"")  # connect
            for _ in range(per):
                t0 = time.perf_counter()
                await ping(b"")
                lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - t0
    return {"calls_per_s": round(len(lat) / wall, 1), **summary(lat)}


async def bare_fanout(target: str, subscribers: int, seconds: float) -> dict:
    lat: list[float] = []
    ready = asyncio.Event()
    started = 0
    measuring = False

    async def subscriber(ch) -> None:
        nonlocal started
        call = ch.unary_stream("/bench.Echo/Subscribe")(b"")
        first = True
        async for raw in call:
            now = time.time()
            if first:
                first = False
                started += 1
                if started == subscribers:
                    ready.set()
                continue
            if measuring:
                lat.append(now - struct.unpack("<d", raw)[0])

    channels = [grpc.aio.insecure_channel(target) for _ in range(max(1, subscribers // 20))]
    tasks = [asyncio.get_running_loop().create_task(subscriber(channels[i % len(channels)]))
             for i in range(subscribers)]
    await asyncio.wait_for(ready.wait(), 60)
    measuring = True
    await asyncio.sleep(seconds)
    measuring = False
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for ch in channels:
        await ch.close()
    return {"subscribers": subscribers, "messages_per_s": round(len(lat) / seconds, 1), **summary(lat)}


# ---- DMOD ---------------------------------------------------------------------------------------------
async def dmod_submissions(gateway: str, jobs: int, clients: int, tag: str) -> dict:
    from dmod.v1 import jobs_pb2, jobs_pb2_grpc

    lat: list[float] = []
    names: list[str] = []
    per = jobs // clients

    async def client(i: int) -> None:
        async with grpc.aio.insecure_channel(gateway) as ch:
            stub = jobs_pb2_grpc.JobServiceStub(ch)
            await ch.channel_ready()
            for k in range(per):
                req = jobs_pb2.CreateJobRequest(spec=jobs_pb2.JobSpec(engine="noop"), labels={"bench": tag},
                                                request_id=f"{tag}-{i}-{k}")
                t0 = time.perf_counter()
                reply = await stub.CreateJob(req)
                lat.append(time.perf_counter() - t0)
                names.append(reply.job.name)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - t0
    return {"jobs": len(names), "wall_s": round(wall, 2), "submissions_per_s": round(len(names) / wall, 1),
            "create_job": summary(lat), "names": names}


async def dmod_paced(gateway: str, jobs: int, rate: float, tag: str) -> list[str]:
    """Submit `jobs` no-op jobs at a steady `rate` per second (open loop: a slow reply does not
    delay the next submission)."""
    from dmod.v1 import jobs_pb2, jobs_pb2_grpc

    names: list[str] = []
    async with grpc.aio.insecure_channel(gateway) as ch:
        stub = jobs_pb2_grpc.JobServiceStub(ch)
        await ch.channel_ready()

        async def one(k: int) -> None:
            req = jobs_pb2.CreateJobRequest(spec=jobs_pb2.JobSpec(engine="noop"), labels={"bench": tag},
                                            request_id=f"{tag}-{k}")
            names.append((await stub.CreateJob(req)).job.name)

        start, tasks = time.perf_counter(), []
        for k in range(jobs):
            await asyncio.sleep(max(0.0, start + k / rate - time.perf_counter()))
            tasks.append(asyncio.get_running_loop().create_task(one(k)))
        await asyncio.gather(*tasks)
    return names


async def dmod_time_to_running(gateway: str, names: list[str], tag: str, timeout: float = 900) -> dict:
    from dmod.v1 import jobs_pb2, jobs_pb2_grpc

    terminal = [jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED]
    t0 = time.perf_counter()
    async with grpc.aio.insecure_channel(gateway) as ch:
        stub = jobs_pb2_grpc.JobServiceStub(ch)
        while True:  # wait until every job is over
            done, token = 0, ""
            while True:
                reply = await stub.ListJobs(jobs_pb2.ListJobsRequest(labels={"bench": tag}, states=terminal,
                                                                     page_size=500, page_token=token))
                done += len(reply.jobs)
                token = reply.next_page_token
                if not token:
                    break
            if done >= len(names) or time.perf_counter() - t0 > timeout:
                break
            await asyncio.sleep(1.0)
        drain = time.perf_counter() - t0
        to_running, to_done, states = [], [], {}
        sem = asyncio.Semaphore(50)

        async def history(name: str) -> None:
            async with sem:
                created = running = end = None
                final = None
                async for item in stub.WatchJob(jobs_pb2.WatchJobRequest(name=name)):
                    if item.HasField("snapshot"):
                        created = item.snapshot.create_time.ToNanoseconds() / 1e9
                        continue
                    e = item.event
                    t = e.time.ToNanoseconds() / 1e9
                    if e.state == jobs_pb2.JOB_STATE_RUNNING and running is None:
                        running = t
                    end, final = t, e.state
                states[final] = states.get(final, 0) + 1
                if running is not None:
                    to_running.append(running - created)
                to_done.append(end - created)

        await asyncio.gather(*(history(n) for n in names))
    return {"drain_s": round(drain, 1), "time_to_running": summary(to_running), "time_to_terminal": summary(to_done),
            "final_states": {jobs_pb2.JobState.Name(k): v for k, v in states.items()}}


async def upload_tick_domain(gateway: str, folder: Path) -> dict[str, str]:
    from dmod.services.hydrofabric import synth
    from dmod.services.jobs.datasets import Datasets
    from dmod.v1 import datasets_pb2, domain_pb2

    manifest = synth(folder, catchments=3, seed=1, hours=100, forcing="csv", start="2015-12-01 00:00:00")
    real = {"global": {"formulations": [{"name": "bmi_python", "params": {
        "model_type_name": "Tick", "python_type": "tickmodel.Tick", "init_config": "", "main_output_variable": "Q_OUT",
        "uses_forcing_file": False,
        "variables_names_map": {"atmosphere_water__liquid_equivalent_precipitation_rate": "precip_rate"}}}],
        "forcing": {"provider": "CsvPerFeature", "path": "./forcing/", "file_pattern": "{{id}}.csv"}},
        "time": {"start_time": "2015-12-01 00:00:00", "end_time": "2015-12-05 03:00:00", "output_interval": 3600},
        "output": {"root": "./output/"}}
    files = {
        "hydrofabric": (domain_pb2.DATA_CATEGORY_HYDROFABRIC, domain_pb2.DATA_FORMAT_NGEN_GEOPACKAGE_HYDROFABRIC,
                        {"hydrofabric.gpkg": Path(manifest["gpkg"]).read_bytes()}),
        "forcing": (domain_pb2.DATA_CATEGORY_FORCING, domain_pb2.DATA_FORMAT_AORC_CSV,
                    {p.name: p.read_bytes() for p in (folder / "forcing").glob("*.csv")}),
        "realization": (domain_pb2.DATA_CATEGORY_CONFIG, domain_pb2.DATA_FORMAT_NGEN_REALIZATION_CONFIG,
                        {"realization.json": json.dumps(real).encode(), "tickmodel.py": SLOW_MODEL.encode()}),
    }
    out = {}
    async with grpc.aio.insecure_channel(gateway) as ch:
        ds = Datasets(ch)
        for role, (category, fmt, content) in files.items():
            dataset = await ds.create(datasets_pb2.Dataset(display_name=f"bench-{role}-{uuid.uuid4().hex[:6]}",
                                                           category=category, data_format=fmt), uuid.uuid4().hex)
            for path, data in content.items():
                await ds.upload_bytes(dataset.name, path, data)
            await ds.seal(dataset.name)
            out[role] = dataset.name
    return out


async def dmod_watch(gateway: str, watchers: int, running_jobs: int, folder: Path) -> dict:
    from dmod.v1 import jobs_pb2, jobs_pb2_grpc

    names = await upload_tick_domain(gateway, folder)
    async with grpc.aio.insecure_channel(gateway) as ch:
        stub = jobs_pb2_grpc.JobServiceStub(ch)
        jobs = []
        for _ in range(running_jobs):
            spec = jobs_pb2.JobSpec(hydrofabric_dataset=names["hydrofabric"], forcing_dataset=names["forcing"],
                                    realization_dataset=names["realization"], engine="embedded")
            jobs.append((await stub.CreateJob(jobs_pb2.CreateJobRequest(spec=spec, labels={"bench": "watch"}))).job)
        # Watch from the current seq once every job is RUNNING.
        current = {}
        deadline = time.time() + 180
        while len(current) < len(jobs) and time.time() < deadline:
            for job in jobs:
                j = (await stub.GetJob(jobs_pb2.GetJobRequest(name=job.name))).job
                if j.state == jobs_pb2.JOB_STATE_RUNNING:
                    current[j.name] = j.last_event_seq
                elif j.state in (jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED):
                    raise RuntimeError(f"watch job {j.name} {j.state_reason}: {j.state_message}")
            await asyncio.sleep(0.2)
    channels = [grpc.aio.insecure_channel(gateway) for _ in range(max(1, watchers // 20))]
    counts = {"events": 0, "streams_done": 0, "stream_errors": {}}
    samples: list[tuple[float, float]] = []  # (receive time, latency)
    opened: set[int] = set()
    all_open = [float("inf")]  # when the last stream got its snapshot

    async def watcher(i: int) -> None:
        name = jobs[i % len(jobs)].name
        stub = jobs_pb2_grpc.JobServiceStub(channels[i % len(channels)])
        last = current.get(name, 0)
        for _ in range(20):  # a broken stream is resumed from the last seq (no gaps, no duplicates)
            try:
                async for item in stub.WatchJob(jobs_pb2.WatchJobRequest(name=name, after_seq=last)):
                    now = time.time()
                    if item.HasField("event"):
                        assert item.event.seq == last + 1, "gap or duplicate"
                        last = item.event.seq
                        samples.append((now, now - item.event.time.ToNanoseconds() / 1e9))
                        counts["events"] += 1
                    elif i not in opened:
                        opened.add(i)
                        if len(opened) == watchers:
                            all_open[0] = now
                counts["streams_done"] += 1
                return
            except grpc.aio.AioRpcError as exc:
                key = f"{exc.code().name}: {exc.details()}"
                counts["stream_errors"][key] = counts["stream_errors"].get(key, 0) + 1

    t0, opened_from = time.perf_counter(), time.time()
    await asyncio.gather(*(watcher(i) for i in range(watchers)))
    wall = time.perf_counter() - t0
    for c in channels:
        await c.close()
    steady = [lat for t, lat in samples if t >= all_open[0]]
    return {"streams": watchers, "jobs": running_jobs, "opening_s": round(all_open[0] - opened_from, 2),
            "events_delivered": counts["events"],
            "streams_completed": counts["streams_done"], "stream_errors": counts["stream_errors"],
            "deliveries_per_s": round(counts["events"] / wall, 1), **summary(steady),
            "including_opening": summary([lat for _, lat in samples])}


# ---- driver -------------------------------------------------------------------------------------------
def start_stack(home: Path):
    from dmod.local.stack import Stack

    os.environ.setdefault("DMOD_JOBS_OVERSUBSCRIBE", "100000")  # no-op jobs never wait for CPUs
    # Two `serve all` processes behind Envoy (each with its own scheduler; see dmod.local.stack).
    os.environ.setdefault("DMOD_SERVICES_REPLICAS", "2")
    os.environ.setdefault("DMOD_JOBS_PROGRESS_INTERVAL_SECONDS", "0.1")
    stack = Stack(home, fixed_ports=False, log=lambda *a: None)
    return stack, stack.up()


PHASES = ("bare", "submit", "steady", "watch")


async def run(args) -> dict:
    from dmod.local.procs import free_port, tcp_open

    phases = set(args.phases.split(","))
    if not phases <= set(PHASES):
        raise SystemExit(f"--phases: choose from {','.join(PHASES)}")
    load_before = [round(x, 2) for x in os.getloadavg()]
    bare: dict = {}
    dmod: dict = {}
    stack = None
    scratch = Path(tempfile.mkdtemp(prefix="dmod-bench-"))
    try:
        if "bare" in phases:
            port = free_port()
            echo = subprocess.Popen([sys.executable, __file__, "--echo-server", str(port)])  # noqa: ASYNC220
            try:
                for _ in range(300):
                    if tcp_open(port):
                        break
                    await asyncio.sleep(0.1)
                target = f"127.0.0.1:{port}"
                print("bare unary ...", flush=True)
                bare["unary"] = await bare_unary(target, args.jobs * 5, args.clients)
                print("bare fan-out ...", flush=True)
                bare["fanout"] = await bare_fanout(target, args.watchers, 5.0)
            finally:
                echo.terminate()
                echo.wait()
        gateway = args.gateway
        if not gateway and phases - {"bare"}:
            print(f"starting a stack in {scratch / 'stack'} ...", flush=True)
            stack, state = start_stack(scratch / "stack")
            gateway = state.gateway
        if "submit" in phases:
            tag = uuid.uuid4().hex[:8]
            print(f"DMOD: {args.jobs} no-op jobs from {args.clients} clients ...", flush=True)
            sub = await dmod_submissions(gateway, args.jobs, args.clients, tag)
            names = sub.pop("names")
            print("waiting for every job to finish ...", flush=True)
            dmod["submissions"] = sub
            dmod["burst"] = await dmod_time_to_running(gateway, names, tag)
            print(json.dumps({"bare": bare, **dmod}), flush=True)
        if "steady" in phases:
            print(f"DMOD: {args.paced_jobs} no-op jobs at {args.paced_rate}/s ...", flush=True)
            paced_tag = uuid.uuid4().hex[:8]
            paced_names = await dmod_paced(gateway, args.paced_jobs, args.paced_rate, paced_tag)
            paced = await dmod_time_to_running(gateway, paced_names, paced_tag)
            dmod["steady"] = {"jobs": args.paced_jobs, "rate_per_s": args.paced_rate, **paced}
            print(json.dumps({"steady": dmod["steady"]}), flush=True)
        if "watch" in phases:
            print(f"DMOD: {args.watchers} WatchJob streams over {args.watch_jobs} running jobs ...", flush=True)
            dmod["watch"] = await dmod_watch(gateway, args.watchers, args.watch_jobs, scratch / "watch-domain")
    finally:
        if stack is not None:
            stack.purge()  # the temp stack and its Postgres cluster
        shutil.rmtree(scratch, ignore_errors=True)
    ratios, targets = {}, {}
    if "unary" in bare and "submissions" in dmod:
        ratios["submissions_vs_bare_unary"] = round(dmod["submissions"]["submissions_per_s"] /
                                                    bare["unary"]["calls_per_s"], 3)
        ratios["create_job_p99_vs_bare_unary_p99"] = round(dmod["submissions"]["create_job"]["p99_ms"] /
                                                           bare["unary"]["p99_ms"], 2)
        targets["submissions_vs_bare_unary >= 0.15"] = ratios["submissions_vs_bare_unary"] >= 0.15
    if "steady" in dmod:
        targets["steady time_to_running_p99 <= 0.5 s"] = dmod["steady"]["time_to_running"]["p99_ms"] <= 500
    if "fanout" in bare and "watch" in dmod:
        ratios["watch_p99_vs_bare_fanout_p99"] = round(dmod["watch"]["p99_ms"] / bare["fanout"]["p99_ms"], 2)
        ratios["watch_p99_including_opening_vs_bare_fanout_p99"] = round(
            dmod["watch"]["including_opening"]["p99_ms"] / bare["fanout"]["p99_ms"], 2)
        targets["watch_p99 <= 1.5 x bare fan-out p99"] = ratios["watch_p99_vs_bare_fanout_p99"] <= 1.5
    config = {"DMOD_JOBS_OVERSUBSCRIBE": os.environ.get("DMOD_JOBS_OVERSUBSCRIBE"),
              "DMOD_SERVICES_REPLICAS": os.environ.get("DMOD_SERVICES_REPLICAS"),
              "DMOD_JOBS_PROGRESS_INTERVAL_SECONDS": os.environ.get("DMOD_JOBS_PROGRESS_INTERVAL_SECONDS"),
              "note": "node capacity is oversubscribed so no-op jobs never wait for CPUs: time-to-RUNNING is "
                      "scheduler latency, not queue waiting" if not args.gateway else "external stack"}
    return {"host": {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
                     "load_avg_before": load_before, "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
            "stack_config": config,
            "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "bare": bare,
            "dmod": dmod, "ratios": ratios, "targets_met": targets}


def table(result: dict) -> str:
    b, d = result["bare"], result["dmod"]

    def row(name: str, part: dict | None, rate: str = "") -> tuple | None:
        return (name, rate, f"p50 {part['p50_ms']} ms", f"p99 {part['p99_ms']} ms") if part else None

    rows = [
        row("bare unary", b.get("unary"), f"{b['unary']['calls_per_s']}/s" if "unary" in b else ""),
        row("bare fan-out", b.get("fanout"), f"{b['fanout']['messages_per_s']} msg/s" if "fanout" in b else ""),
        row("CreateJob", d.get("submissions", {}).get("create_job"),
            f"{d['submissions']['submissions_per_s']}/s" if "submissions" in d else ""),
        row("burst to-RUNNING", d.get("burst", {}).get("time_to_running")),
        row("burst to-terminal", d.get("burst", {}).get("time_to_terminal")),
        row("steady to-RUNNING", d.get("steady", {}).get("time_to_running"),
            f"{d['steady']['rate_per_s']} jobs/s" if "steady" in d else ""),
        row("WatchJob delivery", d.get("watch"), f"{d['watch']['deliveries_per_s']} ev/s" if "watch" in d else ""),
        row(f"  incl. opening {d['watch']['opening_s']} s" if "watch" in d else "", d.get("watch", {}).get("including_opening")),
    ]
    out = [f"{a:<20}{b_:>16}{c:>18}{e:>18}" for a, b_, c, e in filter(None, rows)]
    out.append("")
    out += [f"{k:<48} {v}" for k, v in result["ratios"].items()]
    out.append(f"{'load avg before / after':<48} {result['host']['load_avg_before']} / {result['host']['load_avg_after']}")
    out += [f"{k:<48} {v}" for k, v in result.get("stack_config", {}).items() if k != "note"]
    out += [f"{k:<48} {'met' if v else 'NOT met'}" for k, v in result["targets_met"].items()]
    return "\n".join(out)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--echo-server":
        echo_server(int(sys.argv[2]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--paced-jobs", type=int, default=300)
    p.add_argument("--paced-rate", type=float, default=10.0, help="jobs/s of the steady phase")
    p.add_argument("--watchers", type=int, default=1000)
    p.add_argument("--watch-jobs", type=int, default=10)
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}")
    p.add_argument("--gateway", default="", help="use a running stack (default: start one in a temp dir)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    result = asyncio.run(run(args))
    print(table(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result["params"]["out"] = str(out)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
