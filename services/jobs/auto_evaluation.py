"""The evaluation a job spec asks for, started when the job's outputs are sealed."""
from __future__ import annotations

import logging

import grpc

from dmod.services.runtime.deadlines import downstream_timeout
from dmod.v1 import evaluation_pb2, evaluation_pb2_grpc, jobs_pb2

log = logging.getLogger("dmod.jobs")


async def start_evaluation(channel: grpc.aio.Channel, metadata, job_id, spec: jobs_pb2.JobSpec, output: str,
                           hydrofabric: str) -> tuple[str, str]:
    """(evaluation name or "", a note for the SUCCEEDED event). Idempotent per job: a scheduler
    restarted between this call and the transition gets the same evaluation back."""
    wanted = spec.evaluation
    request = evaluation_pb2.CreateEvaluationRequest(
        spec=evaluation_pb2.EvaluationSpec(output_dataset=output, observation_dataset=wanted.observation_dataset,
                                           hydrofabric_dataset=hydrofabric, crosswalk=dict(wanted.crosswalk),
                                           metrics=list(wanted.metrics)),
        request_id=f"job-{job_id}-evaluation")
    try:
        reply = await evaluation_pb2_grpc.EvaluationServiceStub(channel).CreateEvaluation(
            request, metadata=metadata, timeout=downstream_timeout(30.0))
    except grpc.aio.AioRpcError as exc:
        # The model run itself succeeded; a refused evaluation is reported, not a job failure.
        log.warning("evaluation not started", extra={"job": str(job_id), "code": exc.code().name})
        return "", f"; evaluation not started: {exc.code().name}: {exc.details()}"
    return reply.evaluation.name, f"; evaluation {reply.evaluation.name} started"
