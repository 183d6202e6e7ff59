"""ngen's positional command line.

    <catchments> <cat_subset|all|''> <nexuses> <nex_subset|all|''> <realization.json>
        [<partitions.json> [--subdivided-hydrofabric]]

Subsets are comma-separated ids; `all` or '' means every feature. With a partition file, rank r
simulates `partitions[r]` and the subsets are ignored (as in ngen).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ConfigError

USAGE = ("usage: <catchments> <cat_subset|all|''> <nexuses> <nex_subset|all|''> <realization.json> "
         "[<partitions.json> [--subdivided-hydrofabric]]")


@dataclass(frozen=True)
class EngineArgs:
    catchment_path: str
    cat_subset: tuple[str, ...] | None  # None = all
    nexus_path: str
    nex_subset: tuple[str, ...] | None
    realization_path: str
    partition_path: str | None = None
    subdivided_hydrofabric: bool = False


def _subset(value: str) -> tuple[str, ...] | None:
    value = value.strip()
    if value in ("", "all"):
        return None
    ids = tuple(dict.fromkeys(s.strip() for s in value.split(",") if s.strip()))
    return ids or None


def parse_argv(argv: Sequence[str]) -> EngineArgs:
    """Parse ngen's argv (without the program name)."""
    flags = [a for a in argv if a.startswith("--")]
    positional = [a for a in argv if not a.startswith("--")]
    unknown = [f for f in flags if f != "--subdivided-hydrofabric"]
    if unknown:
        raise ConfigError(f"unknown option(s) {' '.join(unknown)}; {USAGE}", field="command line")
    if len(positional) not in (5, 6):
        raise ConfigError(f"expected 5 or 6 positional arguments, got {len(positional)}; {USAGE}",
                          field="command line")
    if not positional[0]:
        raise ConfigError("catchment data file path is empty", field="command line")
    if not positional[4]:
        raise ConfigError("realization config path is empty", field="command line")
    return EngineArgs(
        catchment_path=positional[0],
        cat_subset=_subset(positional[1]),
        nexus_path=positional[2] or positional[0],
        nex_subset=_subset(positional[3]),
        realization_path=positional[4],
        partition_path=(positional[5] or None) if len(positional) == 6 else None,
        subdivided_hydrofabric="--subdivided-hydrofabric" in flags,
    )
