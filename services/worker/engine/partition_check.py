"""Partition-file validation through the hydrofabric library's `validate_partitioning`.

Every rank runs it on the same inputs and so reaches the same verdict; a bad file is refused
before any time step (ngen itself would segfault, deadlock or silently lose flow).
"""
from __future__ import annotations

from .errors import ConfigError


def _validator():
    try:
        from dmod.services.hydrofabric import validate_partitioning
    except ImportError:
        try:
            from dmod.services.hydrofabric.partition import validate_partitioning
        except ImportError:
            return None
    return validate_partitioning


def validate_partition_file(network, path: str, parts: list[dict], n_ranks: int) -> None:
    validate = _validator()
    if validate is None:  # library not available: the engine's own plan checks still apply
        return
    errors = validate(network, {"partitions": parts}, n_ranks)
    if errors:
        shown = "; ".join(str(getattr(e, "message", e)) for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise ConfigError(f"invalid partition file for {n_ranks} ranks: {shown}{more}", field=path)
