"""Partition-file validation through the hydrofabric library's `validate_partitioning`.

Every rank runs it on the same inputs and so reaches the same verdict; a bad file is refused
before any time step (ngen itself would segfault, deadlock or silently lose flow).
"""
from __future__ import annotations

from .errors import ConfigError

SHOWN = 5


def validate_partition_file(network, path: str, doc: dict, n_ranks: int) -> None:
    from dmod.services.hydrofabric.partition_validate import validate_partitioning

    errors = [i for i in validate_partitioning(network, doc, n_ranks) if getattr(i, "severity", "error") == "error"]
    if errors:
        shown = "; ".join(f"{e.code}: {e.message}" for e in errors[:SHOWN])
        more = f" (and {len(errors) - SHOWN} more)" if len(errors) > SHOWN else ""
        raise ConfigError(f"invalid partition file for {n_ranks} MPI ranks: {shown}{more}", field=path)
