"""Pure hydrofabric library: read, validate, subset, partition and synthesise NextGen
hydrofabrics. No gRPC here; the Subset/Partitioner services and the engine wrap these."""
from .hashing import hydrofabric_id
from .network import Network
from .readers import is_geopackage, load_network, read_topology
from .synth import synth
from .topology import Topology, build_network

__all__ = [
    "Network", "Topology", "build_network", "hydrofabric_id", "is_geopackage", "load_network",
    "read_topology", "synth",
]
