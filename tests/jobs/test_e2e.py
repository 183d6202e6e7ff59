"""End to end through the gateway with real services and real MPI."""
from __future__ import annotations

from dmod.v1 import datasets_pb2, datasets_pb2_grpc, jobs_pb2

from .helpers import events, job_spec, state_names, wait_state

S = jobs_pb2


async def test_two_rank_job_succeeds_with_sealed_outputs(jobs, channel, domain, domain_files):
    created = (await jobs.CreateJob(S.CreateJobRequest(spec=job_spec(domain, cpus=2)))).job
    assert created.state == S.JOB_STATE_PENDING
    job = await wait_state(jobs, created.name, {S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED}, timeout=180)
    assert job.state == S.JOB_STATE_SUCCEEDED, (job.state_reason, job.state_message)
    # PARTITIONING only when no valid partition dataset for 2 ranks exists yet (else it is reused).
    history = [s for s in state_names(await events(jobs, created.name)) if s != "PARTITIONING"]
    assert history == ["PENDING", "VALIDATING", "STAGING", "QUEUED", "STARTING", "RUNNING",
                       "FINALIZING", "SUCCEEDED"], history
    assert "partition" in job.resolved_datasets
    assert job.progress.total_steps == 48 and job.progress.step == 48
    ds = datasets_pb2_grpc.DatasetServiceStub(channel)
    output = (await ds.GetDataset(datasets_pb2.GetDatasetRequest(name=job.output_dataset))).dataset
    assert output.state == datasets_pb2.DATASET_STATE_SEALED
    objects = (await ds.ListObjects(datasets_pb2.ListObjectsRequest(parent=job.output_dataset, page_size=1000))).objects
    paths = {o.path for o in objects}
    assert {f"{c}.csv" for c in domain_files["catchments"]} <= paths
    assert all(o.sha256 for o in objects)
    assert any(p.endswith("_output.csv") for p in paths)
