"""ListDatasets under load: latency of the dataset catalogue's first page while many clients
use it at once (the web UI and CLI poll it), against a local stack holding `--datasets` datasets.

Two loads, each `--seconds` long, `--clients` clients on their own channels through the gateway:
  polling  each client calls ListDatasets, then waits `--think` seconds (default 1 s: a web UI
           refreshing), so the offered load is ~clients/think calls per second;
  closed   each client calls again as soon as it has its answer (the worst case: the latency is
           then the queue length over the throughput; reported for information).
Idle latency (one client) is measured first. Prints a table and writes bench/results/list_load.json.

    .venv/bin/python bench/list_load.py [--datasets 300] [--clients 200] [--seconds 30] [--think 1]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "list_load.json"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def populate(gateway: str, count: int) -> None:
    from dmod.datasets_client import FORCING, DatasetsClient, make_domain

    async with DatasetsClient(target=gateway) as ds:
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            ids = [f"cat-{i * 50 + j}" for j in range(50)]
            async with sem:
                await ds.create_dataset(f"load-{i:04d}", FORCING, 1, labels={"bench": "list", "n": str(i % 7)},
                                        domain=make_domain(catchments=ids,
                                                           time=("2015-12-01 00:00:00", "2015-12-31 00:00:00")))
        await asyncio.gather(*(one(i) for i in range(count)))


async def load(gateway: str, clients: int, seconds: float, think: float) -> dict:
    import grpc

    from dmod.v1 import datasets_pb2, datasets_pb2_grpc

    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop = time.monotonic() + seconds

    async def client() -> None:
        async with grpc.aio.insecure_channel(gateway) as ch:
            stub = datasets_pb2_grpc.DatasetServiceStub(ch)
            await asyncio.sleep(random.random() * max(think, 0.05))  # spread the starts
            while time.monotonic() < stop:
                t = time.perf_counter()
                try:
                    await stub.ListDatasets(datasets_pb2.ListDatasetsRequest(), timeout=30)
                    latencies.append(time.perf_counter() - t)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                if think:
                    await asyncio.sleep(think)
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - started
    ms = [x * 1000 for x in latencies]
    return {"clients": clients, "think_seconds": think, "calls": len(ms), "calls_per_second": round(len(ms) / wall, 1),
            "p50_ms": round(pct(ms, 0.5), 1), "p99_ms": round(pct(ms, 0.99), 1), "max_ms": round(max(ms), 1),
            "errors": errors}


async def main_async(args) -> dict:
    from dmod.local.stack import Stack

    home = Path(tempfile.mkdtemp(prefix="dmod-bench-list-"))
    stack = Stack(home, fixed_ports=False, log=lambda *a: None)
    state = stack.up()
    try:
        await populate(state.gateway, args.datasets)
        idle = await load(state.gateway, 1, 5, 0)
        polling = await load(state.gateway, args.clients, args.seconds, args.think)
        closed = await load(state.gateway, args.clients, min(args.seconds, 15), 0)
    finally:
        stack.purge()
    return {"datasets": args.datasets, "idle": idle, "polling": polling, "closed": closed,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()}}


def table(result: dict) -> str:
    rows = [("load", "clients", "think s", "calls/s", "p50 ms", "p99 ms", "errors")]
    for name in ("idle", "polling", "closed"):
        r = result[name]
        rows.append((name, str(r["clients"]), str(r["think_seconds"]), f"{r['calls_per_second']:.0f}",
                     f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", str(sum(r["errors"].values()))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"ListDatasets (first page, 50 of {result['datasets']} datasets) through the gateway"]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=int, default=300)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--think", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
