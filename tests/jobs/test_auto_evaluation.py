"""A job spec asking for an evaluation gets one, started when its outputs are sealed."""
from __future__ import annotations

import datetime as dt

from dmod.v1 import domain_pb2, evaluation_pb2, evaluation_pb2_grpc, jobs_pb2

from .helpers import job_spec, upload_dataset, wait_state


async def test_job_starts_its_evaluation_after_success(jobs, channel, domain, domain_files):
    nexus = domain_files["nexuses"][0]
    start = dt.datetime(2015, 12, 1)
    rows = "".join(f"GAGE-1,{(start + dt.timedelta(hours=h)):%Y-%m-%d %H:%M:%S},{0.5 + 0.1 * (h % 7)}\n"
                   for h in range(48))
    observations = await upload_dataset(channel, "obs", domain_pb2.DATA_CATEGORY_OBSERVATION,
                                        domain_pb2.DATA_FORMAT_OBSERVATION_CSV,
                                        {"observations.csv": ("gage_id,time,value\n" + rows).encode()})
    spec = job_spec(domain, cpus=1)
    spec.evaluation.observation_dataset = observations
    spec.evaluation.crosswalk["GAGE-1"] = nexus
    created = (await jobs.CreateJob(jobs_pb2.CreateJobRequest(spec=spec))).job
    job = await wait_state(jobs, created.name, {jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED}, timeout=180)
    assert job.state == jobs_pb2.JOB_STATE_SUCCEEDED, (job.state_reason, job.state_message)
    assert job.evaluation.startswith("evaluations/"), job.state_message
    final = None
    async for update in evaluation_pb2_grpc.EvaluationServiceStub(channel).WatchEvaluation(
            evaluation_pb2.WatchEvaluationRequest(name=job.evaluation), timeout=120):
        final = update.evaluation
    assert final.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, final.state_message
    assert final.spec.output_dataset == job.output_dataset
    [location] = final.locations
    assert (location.gage_id, location.nexus_id, location.pair_count) == ("GAGE-1", nexus, 48)
    assert "nse" in location.metrics
