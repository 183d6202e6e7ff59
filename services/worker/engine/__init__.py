r"""Embedded ngen-compatible engine: runs ngen realizations of Python BMI models, serially or
under MPI, and writes ngen's output files.

    python -m dmod.services.worker.engine <catchments> <cat_subset|all|''> <nexuses> \
        <nex_subset|all|''> <realization.json> [<partitions.json>]
    mpiexec -n N python -m dmod.services.worker.engine ... <partitions.json>

In-process: `run_engine(argv_or_args, progress_callback=None)`; see runner.py.

Progress on stdout (rank 0 only, each line flushed) — the worker parses exactly these:
    Running timestep <k> of <K>      k: 0-based index of the step about to run; printed for the
                                     first step, every max(1, K // 100) steps and the last step
    Finished <K> timesteps.          the run completed
    regexes: ^Running timestep (\d+) of (\d+)$   ^Finished (\d+) timesteps\.$
Errors go to stderr as one line `ERROR: <message>` (printed once, by rank 0); messages name the
file/field and catchment at fault. Exit codes: 0 ok, 1 run failure, 2 bad input (refused before
the first time step).

Outputs (ngen's): <root>/<cat-id>.csv (`Time Step,Time,<vars>`, %.9g values) and
<root>/<nex-id>_output.csv (`<step>, <time>, <m3/s>`, %.6g), see outputs.py. An N-rank run
writes the same bytes as a serial run (domain.py explains why).
"""
from .args import EngineArgs, parse_argv
from .errors import ConfigError, EngineError, UnsupportedFormulation
from .runner import EngineResult, run_engine

__all__ = [
    "ConfigError",
    "EngineArgs",
    "EngineError",
    "EngineResult",
    "UnsupportedFormulation",
    "main",
    "parse_argv",
    "run_engine",
]


def main(argv: list[str] | None = None) -> int:
    from .cli import main as _main

    return _main(argv)
