"""Partition-file validation through the hydrofabric library's `validate_partitioning`.

Every rank runs it on the same inputs and so reaches the same verdict; a bad file is refused
before any time step (with such files the real ngen was seen to segfault, abort, hang or lose
or double-count flow). ngen's receive-side hang (NGEN_REMOTE_NEXUS_HANG: the owning rank of
a boundary nexus holding ≥ 2 of its contributors) does not affect this engine — it sends one
message per (rank, nexus) and step whatever the local count — so it is only a warning here.
"""
from __future__ import annotations

from .errors import ConfigError

SHOWN = 5


def validate_partition_file(network, path: str, doc: dict, n_ranks: int) -> None:
    from dmod.services.hydrofabric.partition_validate import validate_partitioning

    errors = [i for i in validate_partitioning(network, doc, n_ranks, engine="embedded") if getattr(i, "severity", "error") == "error"]
    if errors:
        shown = "; ".join(f"{e.code}: {e.message}" for e in errors[:SHOWN])
        more = f" (and {len(errors) - SHOWN} more)" if len(errors) > SHOWN else ""
        raise ConfigError(f"invalid partition file for {n_ranks} MPI ranks: {shown}{more}", field=path)
