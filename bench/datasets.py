"""DatasetService transfer benchmark: the service (client helper → Envoy → DatasetService → S3)
against the `minio` client talking to the same S3 server directly, same machine, same run.

Cases: one 1 GiB object, and 1,000 × 100 KiB files (8 in flight on both sides). The service
side includes everything a user gets: client SHA-256 while sending, server SHA-256, verified
downloads written atomically. The direct side is plain `fput_object`/`fget_object` (16 MiB parts,
minio's 3 parallel part uploads). Each measurement is repeated (`--repeat`) and the best run
counts, since other processes may share the machine (load is recorded before and after).

Target: service ÷ direct ≥ 0.8 for upload and download of the 1 GiB object.

    .venv/bin/python bench/datasets.py [--size-mib 1024] [--files 1000] [--file-kib 100] [--repeat 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
from minio import Minio
from rich.console import Console
from rich.table import Table

from dmod.datasets_client import FORCING, DatasetsClient
from dmod.local.stack import Stack

TARGET = 0.8
RESULTS = Path(__file__).parent / "results" / "datasets.json"
console = Console()


def write_random(path: Path, size: int, rng: np.random.Generator) -> None:
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(left, 64 << 20)
            fh.write(rng.bytes(n))
            left -= n


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class CpuMeter:
    """CPU seconds used by the stack's processes and this one, per measurement."""

    def __init__(self, pids: dict[str, int]):
        self.procs = {}
        for name, pid in pids.items():
            try:
                root = psutil.Process(pid)
                self.procs[name] = [root] + root.children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        self.procs["bench"] = [psutil.Process()]

    def sample(self) -> dict[str, float]:
        out = {}
        for name, procs in self.procs.items():
            total = 0.0
            for p in procs:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system + t.children_user + t.children_system
                except psutil.NoSuchProcess:
                    pass
            out[name] = total
        return out

    @staticmethod
    def diff(a: dict, b: dict) -> dict[str, float]:
        return {k: round(b[k] - a[k], 2) for k in a if round(b[k] - a[k], 2) > 0.01}


def timed(meter: CpuMeter, fn) -> dict:
    before, start = meter.sample(), time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 3), "cpu_seconds": CpuMeter.diff(before, meter.sample())}


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--file-kib", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dmod-bench-datasets-"))
    home = work / "home"
    stack = Stack(home, fixed_ports=False, log=lambda *a: None)
    load_before = load()
    try:
        console.print(f"starting a stack in {home} …")
        state = stack.up()
        os.environ["DMOD_GATEWAY"] = state.gateway
        rng = np.random.default_rng(42)
        big = work / "big.bin"
        write_random(big, args.size_mib << 20, rng)
        small_dir = work / "small"
        small_dir.mkdir()
        for i in range(args.files):
            (small_dir / f"f{i:05d}.bin").write_bytes(rng.bytes(args.file_kib << 10))
        big_bytes = big.stat().st_size
        small_bytes = args.files * (args.file_kib << 10)

        s3 = Minio(f"127.0.0.1:{state.ports['s3']}", access_key=state.access_key, secret_key=state.secret_key,
                   secure=False)
        if not s3.bucket_exists("bench"):
            s3.make_bucket("bench")
        meter = CpuMeter(state.pids)
        runs: dict[str, list[dict]] = {k: [] for k in (
            "big_upload_direct", "big_upload_service", "big_download_direct", "big_download_service",
            "small_upload_direct", "small_upload_service", "small_download_direct", "small_download_service")}
        small_files = sorted(small_dir.iterdir())
        pool = ThreadPoolExecutor(args.concurrency)

        def direct_small_up(round_: int) -> None:
            list(pool.map(lambda p: s3.fput_object("bench", f"small{round_}/{p.name}", str(p)), small_files))

        def direct_small_down(round_: int) -> None:
            out = work / f"direct-small-{round_}"
            list(pool.map(lambda p: s3.fget_object("bench", f"small{round_}/{p.name}", str(out / p.name)),
                          small_files))

        async def service_round(round_: int) -> None:
            async with DatasetsClient(target=state.gateway) as ds:
                dataset = (await ds.create_dataset(f"bench-{round_}", FORCING)).name
                runs["big_upload_service"].append(await atimed(lambda: ds.upload_file(dataset, big, "big.bin")))
                name = f"{dataset}/objects/big.bin"
                runs["big_download_service"].append(
                    await atimed(lambda: ds.download_file(name, work / f"svc-big-{round_}.bin")))
                (work / f"svc-big-{round_}.bin").unlink()
                runs["small_upload_service"].append(await atimed(
                    lambda: ds.upload_dir(dataset, small_dir, "small/", concurrency=args.concurrency)))
                runs["small_download_service"].append(await atimed(
                    lambda: ds.download_dir(dataset, work / f"svc-small-{round_}", "small/",
                                            concurrency=args.concurrency)))
                await ds.delete_dataset(dataset)

        async def atimed(make) -> dict:
            before, start = meter.sample(), time.perf_counter()
            await make()
            seconds = time.perf_counter() - start
            return {"seconds": round(seconds, 3), "cpu_seconds": CpuMeter.diff(before, meter.sample())}

        for r in range(args.repeat):
            console.print(f"round {r + 1}/{args.repeat} (load {load()})")
            runs["big_upload_direct"].append(timed(meter, lambda: s3.fput_object(
                "bench", "big.bin", str(big), part_size=16 << 20)))
            runs["big_download_direct"].append(timed(meter, lambda: s3.fget_object(
                "bench", "big.bin", str(work / "direct-big.bin"))))
            (work / "direct-big.bin").unlink()
            (work / f"direct-small-{r}").mkdir()
            runs["small_upload_direct"].append(timed(meter, lambda r=r: direct_small_up(r)))
            runs["small_download_direct"].append(timed(meter, lambda r=r: direct_small_down(r)))
            asyncio.run(service_round(r))
        pool.shutdown()
    finally:
        stack.down()
        shutil.rmtree(work, ignore_errors=True)

    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                           "python": platform.python_version(), "load_before": load_before, "load_after": load()},
               "params": vars(args), "target_ratio": TARGET, "cases": {}, "runs": runs}
    table = Table("case", "direct MB/s", "service MB/s", "service ÷ direct", "target")
    for case, nbytes in (("big_upload", big_bytes), ("big_download", big_bytes),
                         ("small_upload", small_bytes), ("small_download", small_bytes)):
        d, s = best(runs[f"{case}_direct"]), best(runs[f"{case}_service"])
        d_mbs, s_mbs = nbytes / d["seconds"] / 1e6, nbytes / s["seconds"] / 1e6
        ratio = s_mbs / d_mbs
        target = TARGET if case.startswith("big") else None
        results["cases"][case] = {"bytes": nbytes, "direct_mb_s": round(d_mbs, 1), "service_mb_s": round(s_mbs, 1),
                                  "ratio": round(ratio, 3), "target": target,
                                  "meets_target": None if target is None else ratio >= target,
                                  "direct_cpu_seconds": d["cpu_seconds"], "service_cpu_seconds": s["cpu_seconds"]}
        mark = "" if target is None else ("[green]✓[/green]" if ratio >= target else "[red]✗[/red]")
        table.add_row(case, f"{d_mbs:.0f}", f"{s_mbs:.0f}", f"{ratio:.2f}", f"≥ {target} {mark}" if target else "-")
    console.print(table)
    console.print(f"load before {load_before}, after {results['machine']['load_after']} "
                  f"({os.cpu_count()} CPUs); best of {args.repeat} runs")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
