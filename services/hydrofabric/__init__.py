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
from .crosswalk import gage_crosswalk, read_gage_crosswalk
from .hashing import hydrofabric_id
from .network import Network
from .partition import METHODS, PartitionResult, partition
from .partition_validate import validate_partitioning
from .readers import is_geopackage, load_network, read_topology
from .subset import Subset, subset_network, validate_ids
from .subset_write import subset_hydrofabric, write_subset
from .synth import synth
from .topology import Topology, build_network
from .validate import Issue, errors_only, validate_hydrofabric, validate_network, validate_topology

__all__ = [
    "METHODS", "Issue", "Network", "PartitionResult", "Subset", "Topology", "build_network", "errors_only",
    "gage_crosswalk", "hydrofabric_id", "is_geopackage", "load_network", "partition", "read_gage_crosswalk",
    "read_topology", "subset_hydrofabric", "subset_network", "synth", "validate_hydrofabric", "validate_ids",
    "validate_network", "validate_partitioning", "validate_topology", "write_subset",
]
