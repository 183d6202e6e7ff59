"""Embedded ngen-compatible engine: runs ngen realizations of Python BMI models, serially or
under MPI, and writes ngen's output files.

    python -m dmod.services.worker.engine <catchments> <cat_subset|all|''> <nexuses> \\
        <nex_subset|all|''> <realization.json> [<partitions.json>]
    mpiexec -n N python -m dmod.services.worker.engine ... <partitions.json>

In-process: `run_engine(argv_or_args, progress_callback=None)`; see runner.py.
Progress lines on stdout: see progress.py. Exit codes: 0 ok, 1 run failure, 2 bad input.
"""
from .args import EngineArgs, parse_argv
from .errors import ConfigError, EngineError, UnsupportedFormulation
from .runner import EngineResult, run_engine

__all__ = ["ConfigError", "EngineArgs", "EngineError", "EngineResult", "UnsupportedFormulation",
           "parse_argv", "run_engine", "main"]


def main(argv: list[str] | None = None) -> int:
    from .cli import main as _main

    return _main(argv)
