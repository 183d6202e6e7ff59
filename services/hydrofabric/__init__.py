"""Pure hydrofabric library: read, validate, subset, partition and synthesise NextGen
hydrofabrics. No gRPC here; the Subset/Partitioner services, the job pre-flight and the
engine wrap these functions.

    load_network(catchments, nexus=None, attributes=())  → Network
    validate_hydrofabric(catchments, nexus=None)          → [Issue]
    gage_crosswalk(gpkg, network=None)                    → {gage: nexus}
    subset_network(net, ids, upstream, downstream, depth, crosswalk) → Subset
    subset_hydrofabric(catchments, ids, out_dir, ...)     → subset.json dict (writes files)
    partition(net, n_parts, method, cost=None, **opts)    → PartitionResult(document, stats)
    validate_partitioning(net, partition_json, n_ranks)   → [Issue]
    synth(out_dir, catchments, seed, ...)                 → manifest dict (writes files)
"""
import importlib

# Names that are also submodule names must be bound eagerly: importing the submodule would
# otherwise replace the lazy function with the module object.
from .partition import partition as partition
from .synth import synth as synth

# Exported names → their module, imported on first use: a submodule (say `network` or
# `fetch`) must not pay for GDAL/pyogrio, which the readers pull in.
_EXPORTS = {
    "gage_crosswalk": "crosswalk", "read_gage_crosswalk": "crosswalk", "hydrofabric_id": "hashing",
    "Network": "network", "METHODS": "partition", "PartitionResult": "partition",
    "validate_partitioning": "partition_validate", "is_geopackage": "readers", "load_network": "readers",
    "read_topology": "readers", "Subset": "subset", "subset_network": "subset", "validate_ids": "subset",
    "subset_hydrofabric": "subset_write", "write_subset": "subset_write",
    "Topology": "topology", "build_network": "topology", "Issue": "validate", "errors_only": "validate",
    "validate_hydrofabric": "validate", "validate_network": "validate", "validate_topology": "validate",
}
__all__ = sorted([*_EXPORTS, "partition", "synth"])  # noqa: PLE0605 - the lazy exports


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
