"""Command-line front end shared by `python -m dmod.services.worker.engine` and `dmod engine run`."""
from __future__ import annotations

import sys

from .args import USAGE
from .errors import EXIT_OK, EngineError

VERSION = "dmod-engine 0.1 (ngen-compatible; bmi_python, bmi_multi)"


def _rank() -> int:
    import os

    for var in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv in (["--info"], ["--version"], ["-h"], ["--help"]):
        print(VERSION)
        print(USAGE)
        return 1 if argv == ["--info"] else EXIT_OK  # ngen --info exits 1
    from .runner import run_engine

    try:
        result = run_engine(argv)
    except EngineError as exc:
        # every rank holds the same agreed message; print it once
        if _rank() == 0:
            print(f"ERROR: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    _write_stats(result)
    return EXIT_OK


def _write_stats(result) -> None:
    """With DMOD_ENGINE_STATS=<path>, rank 0 writes every rank's phase timings as JSON."""
    import json
    import os

    path = os.environ.get("DMOD_ENGINE_STATS")
    if not path or result.rank_timings is None:
        return
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"steps": result.steps, "catchments": result.catchments, "ranks": result.size,
                   "rank_timings": result.rank_timings}, fh, indent=1)
