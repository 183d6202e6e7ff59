"""What a DMOD-made partition dataset is: method, parameters, rank count and hydrofabric.

Two partitionings are interchangeable only when all four match, so every partition dataset DMOD
makes (PartitionerService.CreatePartitioning and the jobs' in-process fallback) records them in
its domain, where SearchDatasets matches them (`matching.py`: the dataset must restrict every
index the requirement restricts, with the required values):

- LENGTH = the rank count;
- HYDROFABRIC_ID = the content hash of the hydrofabric (`detect/hydrofabric.py`);
- DATA_ID = `partition:<METHOD>;k=<n>;catchments=<all | sha256 of the subset, 16 hex>`.

A partition file uploaded by hand has no DATA_ID, so it is never picked up automatically; a job
uses it when it names it (`partition_dataset`). Labels repeat the same facts for people
(`dmod.partition.method`, `.parts`, `.hydrofabric`, `.hydrofabric_id`, `.catchments`).
Import-light: the jobs service uses it without numpy or GDAL.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

from dmod.v1 import datasets_pb2, domain_pb2, partitioner_pb2

METHODS = {partitioner_pb2.PARTITION_METHOD_DFS_CHUNK: "DFS_CHUNK",
           partitioner_pb2.PARTITION_METHOD_LOCAL_ONLY: "LOCAL_ONLY",
           partitioner_pb2.PARTITION_METHOD_METIS: "METIS"}
JOB_DEFAULT_METHOD = partitioner_pb2.PARTITION_METHOD_DFS_CHUNK  # what a job gets when it names none
KEY_PREFIX = "partition:"


def catchments_tag(catchment_ids: Iterable[str]) -> str:
    ids = sorted(set(catchment_ids))
    return "all" if not ids else hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def partition_key(method: str, parts: int, catchment_ids: Iterable[str] = ()) -> str:
    return f"{KEY_PREFIX}{method.upper()};k={parts};catchments={catchments_tag(catchment_ids)}"


def partition_domain(method: str, parts: int, hydrofabric_id: str, catchment_ids: Iterable[str] = ()
                     ) -> domain_pb2.Domain:
    """The domain a partition dataset is made with, and the one a job requires (same values)."""
    d = domain_pb2.Domain()
    d.discrete.add(index=domain_pb2.STANDARD_INDEX_LENGTH, values=[str(parts)])
    if hydrofabric_id:
        d.discrete.add(index=domain_pb2.STANDARD_INDEX_HYDROFABRIC_ID, values=[hydrofabric_id])
    d.discrete.add(index=domain_pb2.STANDARD_INDEX_DATA_ID, values=[partition_key(method, parts, catchment_ids)])
    return d


def partition_labels(method: str, parts: int, hydrofabric_dataset: str, hydrofabric_id: str,
                     catchment_ids: Iterable[str] = ()) -> dict[str, str]:
    return {"dmod.partition.method": method.lower(), "dmod.partition.parts": str(parts),
            "dmod.partition.hydrofabric": hydrofabric_dataset, "dmod.partition.hydrofabric_id": hydrofabric_id,
            "dmod.partition.catchments": catchments_tag(catchment_ids)}


def hydrofabric_id_of(dataset: datasets_pb2.Dataset) -> str:
    """The HYDROFABRIC_ID a hydrofabric dataset's domain records ("" when it has none or several)."""
    for r in dataset.domain.discrete:
        if r.index == domain_pb2.STANDARD_INDEX_HYDROFABRIC_ID and len(r.values) == 1:
            return r.values[0]
    return ""


def describe(dataset: datasets_pb2.Dataset) -> str:
    """`METIS, k=2, hydrofabric 3f2a9c1b0d4e…` from a partition dataset's labels/domain ("" if unknown)."""
    labels = dataset.labels
    method = labels.get("dmod.partition.method", "").upper()
    parts = labels.get("dmod.partition.parts", "")
    hf = labels.get("dmod.partition.hydrofabric_id", "")
    for r in dataset.domain.discrete:
        if r.index == domain_pb2.STANDARD_INDEX_LENGTH and r.values and not parts:
            parts = r.values[0]
        if r.index == domain_pb2.STANDARD_INDEX_HYDROFABRIC_ID and r.values and not hf:
            hf = r.values[0]
    bits = [method or "method unknown", f"k={parts}" if parts else ""]
    if hf:
        bits.append(f"hydrofabric {hf[:12]}…")
    if labels.get("dmod.partition.catchments", "all") != "all":
        bits.append(f"catchment subset {labels['dmod.partition.catchments']}")
    return ", ".join(b for b in bits if b)
