"""Partition reuse: a job reuses a partition dataset only when method, parameters, rank count and
hydrofabric all match (unit tests of the matching, then jobs through the gateway)."""
from __future__ import annotations

import datetime as dt

from dmod.services.datasets import domain_codec, matching
from dmod.services.datasets.detect.configs import partition_domain as detected_partition_domain
from dmod.services.datasets.domains import shortfalls
from dmod.services.jobs.datasets import Datasets
from dmod.services.jobs.preflight import _requirement
from dmod.services.partitioner import identity
from dmod.v1 import datasets_pb2, domain_pb2, jobs_pb2, partitioner_pb2, partitioner_pb2_grpc

from .helpers import events, job_spec, make_domain, upload_domain, wait_state

S = jobs_pb2
TERMINAL = {S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED}
HF = "a" * 64


def _gaps(made: domain_pb2.Domain, spec: jobs_pb2.JobSpec, n: int, hf: str = HF) -> list[str]:
    need = matching.parse_requirement(_requirement("partition", spec, n, hf)).domain
    return shortfalls(domain_codec.from_proto(made), need)


def test_requirement_matches_only_the_same_method_parameters_ranks_and_hydrofabric():
    metis = jobs_pb2.JobSpec(cpu_count=2, partition_method=partitioner_pb2.PARTITION_METHOD_METIS)
    default = jobs_pb2.JobSpec(cpu_count=2)  # a job naming no method gets DFS_CHUNK
    made_metis = identity.partition_domain("METIS", 2, HF)
    made_dfs = identity.partition_domain("DFS_CHUNK", 2, HF)
    assert _gaps(made_metis, metis, 2) == []
    assert _gaps(made_dfs, default, 2) == []
    assert _gaps(made_dfs, metis, 2)  # another method
    assert _gaps(made_metis, default, 2)
    assert _gaps(identity.partition_domain("METIS", 3, HF), metis, 2)  # other rank count
    assert _gaps(made_metis, metis, 2, "b" * 64)  # other hydrofabric
    subset = jobs_pb2.JobSpec(cpu_count=2, partition_method=partitioner_pb2.PARTITION_METHOD_METIS,
                              catchment_ids=["cat-1", "cat-2", "cat-3"])
    assert _gaps(made_metis, subset, 2)  # made for all catchments, asked for a subset
    assert _gaps(identity.partition_domain("METIS", 2, HF, ["cat-3", "cat-1", "cat-2"]), subset, 2) == []
    # A hand-made partition file (domain detected on seal) is never picked automatically.
    doc = {"partitions": [{"id": 0, "cat-ids": ["cat-1"]}, {"id": 1, "cat-ids": ["cat-2"]}]}
    detected = domain_codec.to_proto(detected_partition_domain("partitions.json", doc))
    assert _gaps(detected, metis, 2)


def test_describe():
    ds = datasets_pb2.Dataset(
        labels=identity.partition_labels("METIS", 2, "datasets/x", HF), domain=identity.partition_domain("METIS", 2, HF))
    assert identity.describe(ds) == f"METIS, k=2, hydrofabric {HF[:12]}…"


async def _run(jobs, spec) -> tuple[jobs_pb2.Job, list[jobs_pb2.JobEvent]]:
    job = (await jobs.CreateJob(S.CreateJobRequest(spec=spec))).job
    job = await wait_state(jobs, job.name, TERMINAL, timeout=180)
    assert job.state == S.JOB_STATE_SUCCEEDED, (job.state_reason, job.state_message)
    return job, await events(jobs, job.name)


async def test_metis_job_does_not_reuse_a_dfs_chunk_partition(jobs, channel, tmp_path):
    # A domain of its own (a hydrofabric no other test partitions).
    files = make_domain(tmp_path, catchments=10, hours=24, seed=int(dt.datetime.now().timestamp()) % 1000 + 17)
    names = await upload_domain(channel, files)
    partitioner = partitioner_pb2_grpc.PartitionerServiceStub(channel)
    dfs = (await partitioner.CreatePartitioning(partitioner_pb2.CreatePartitioningRequest(
        hydrofabric_dataset=names["hydrofabric"], partition_count=2,
        method=partitioner_pb2.PARTITION_METHOD_DFS_CHUNK))).dataset
    assert dfs.labels["dmod.partition.method"] == "dfs_chunk"
    end = "2015-12-01 23:00:00"
    metis_spec = job_spec(names, cpus=2, end=end, partition_method=partitioner_pb2.PARTITION_METHOD_METIS)

    first, history = await _run(jobs, metis_spec)
    made = first.resolved_datasets["partition"]
    assert made and made != dfs.name
    made_ds = await Datasets(channel).get(made)
    assert made_ds.labels["dmod.partition.method"] == "metis" and made_ds.labels["dmod.partition.parts"] == "2"
    hf = identity.hydrofabric_id_of(await Datasets(channel).get(names["hydrofabric"]))
    assert hf and made_ds.labels["dmod.partition.hydrofabric_id"] == hf
    partitioned = [e for e in history if e.reason == "PARTITIONED"]
    assert partitioned and partitioned[0].message.startswith(f"made {made} (METIS, k=2, hydrofabric {hf[:12]}")

    second, history = await _run(jobs, metis_spec)
    assert second.resolved_datasets["partition"] == made
    assert not any(e.reason == "PARTITIONED" for e in history)
    staged = [e for e in history if e.reason == "STAGED"]
    assert f"reused {made} (METIS, k=2, hydrofabric {hf[:12]}" in staged[0].message

    third, _ = await _run(jobs, job_spec(names, cpus=2, end=end))  # no method named: DFS_CHUNK
    assert third.resolved_datasets["partition"] == dfs.name


async def test_a_given_partition_dataset_is_used(jobs, channel, domain):
    partitioner = partitioner_pb2_grpc.PartitionerServiceStub(channel)
    dfs = (await partitioner.CreatePartitioning(partitioner_pb2.CreatePartitioningRequest(
        hydrofabric_dataset=domain["hydrofabric"], partition_count=2,
        method=partitioner_pb2.PARTITION_METHOD_DFS_CHUNK))).dataset
    spec = job_spec(domain, cpus=2, end="2015-12-01 23:00:00", partition_dataset=dfs.name,
                    partition_method=partitioner_pb2.PARTITION_METHOD_METIS)
    job, history = await _run(jobs, spec)
    assert job.resolved_datasets["partition"] == dfs.name
    staged = [e for e in history if e.reason == "STAGED"]
    assert f"given {dfs.name} (DFS_CHUNK, k=2" in staged[0].message
