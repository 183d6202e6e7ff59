"""EvaluationService: evaluations as resources, run in the background, watched live."""
from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from dmod.services.evaluation.metrics import ALL_METRICS
from dmod.services.evaluation.runner import run_evaluation
from dmod.services.evaluation.store import (
    FAILED,
    SUCCEEDED,
    EvaluationStore,
    channel_name,
    parse_name,
    to_message,
)
from dmod.services.runtime.app import App
from dmod.services.runtime.auth import current_principal
from dmod.services.runtime.datasets import caller_datasets, owner_datasets
from dmod.services.runtime.errors import InvalidArgument, from_downstream
from dmod.v1 import evaluation_pb2, evaluation_pb2_grpc

_CATEGORICAL = ("pod", "far", "pofd", "csi", "ets", "frequency_bias", "accuracy")
TERMINAL = (SUCCEEDED, FAILED)


def validate_spec(spec: evaluation_pb2.EvaluationSpec) -> None:
    v = []
    for field in ("output_dataset", "observation_dataset"):
        if not getattr(spec, field).startswith("datasets/"):
            v.append((f"spec.{field}", "required: datasets/{id}"))
    if spec.hydrofabric_dataset and not spec.hydrofabric_dataset.startswith("datasets/"):
        v.append(("spec.hydrofabric_dataset", "must look like datasets/{id}"))
    if spec.HasField("start_time") and spec.HasField("end_time") and \
            spec.end_time.ToDatetime() <= spec.start_time.ToDatetime():
        v.append(("spec.end_time", "must be after spec.start_time"))
    unknown = [m for m in spec.metrics if m not in ALL_METRICS and m not in _CATEGORICAL and m != "score"]
    if unknown:
        v.append(("spec.metrics", f"unknown metric(s) {unknown}; known: {sorted(ALL_METRICS)}"))
    for i, t in enumerate(spec.thresholds):
        kind = t.WhichOneof("threshold")
        if kind is None:
            v.append((f"spec.thresholds[{i}]", "set value or percentile"))
        elif kind == "percentile" and not 0 < t.percentile < 100:
            v.append((f"spec.thresholds[{i}].percentile", "must be between 0 and 100"))
    if spec.min_pairs < 0:
        v.append(("spec.min_pairs", "must be ≥ 0"))
    bad_weights = [k for k, w in spec.weights.items() if w < 0]
    if bad_weights:
        v.append(("spec.weights", f"negative weight(s) for {bad_weights}"))
    if v:
        raise InvalidArgument(v)


class EvaluationServicer(evaluation_pb2_grpc.EvaluationServiceServicer):
    def __init__(self, app: App, store: EvaluationStore):
        self.app = app
        self.store = store
        self.cache = Path(app.settings.home) / "cache/hydrofabric"

    async def start(self) -> None:
        # Evaluations whose runner died (lease expired) resume here.
        self.app.spawn(self._resume_orphans())

    async def _resume_orphans(self) -> None:
        while True:
            for row in await self.store.claim():
                self._run(row)
            await asyncio.sleep(30)

    def _run(self, row) -> None:
        spec = evaluation_pb2.EvaluationSpec.FromString(row["spec"])
        self.app.spawn(run_evaluation(row["id"], spec, owner_datasets(self.app, row["owner"]), self.store,
                                      self.cache))

    def _owner_filter(self) -> str | None:
        principal = current_principal()
        return None if principal.is_admin else principal.user

    async def CreateEvaluation(self, request, context):
        validate_spec(request.spec)
        owner = current_principal().user
        async with caller_datasets(self.app, 30.0) as ds:
            for field in ("output_dataset", "observation_dataset", "hydrofabric_dataset"):
                name = getattr(request.spec, field)
                if name:
                    try:
                        await ds.get_dataset(name)
                    except grpc.aio.AioRpcError as exc:
                        raise from_downstream(exc, f"spec.{field}") from None
        row, created = await self.store.create(owner, request.spec, request.request_id)
        if created:
            claimed = await self.store.claim(row["id"])
            if claimed:
                self._run(claimed[0])
                row = claimed[0]
        return evaluation_pb2.CreateEvaluationResponse(evaluation=to_message(row))

    async def GetEvaluation(self, request, context):
        row = await self.store.get(parse_name(request.name), self._owner_filter())
        return evaluation_pb2.GetEvaluationResponse(evaluation=to_message(row))

    async def ListEvaluations(self, request, context):
        if request.page_size < 0:
            raise InvalidArgument(("page_size", "must be ≥ 0"))
        rows, token = await self.store.list(self._owner_filter(), request.job, request.page_size, request.page_token)
        return evaluation_pb2.ListEvaluationsResponse(evaluations=[to_message(r) for r in rows],
                                                      next_page_token=token)

    async def WatchEvaluation(self, request, context):
        evaluation_id = parse_name(request.name)
        owner = self._owner_filter()
        pubsub = self.app.redis().pubsub()
        await pubsub.subscribe(channel_name(str(evaluation_id)))  # before the first read: no missed change
        try:
            last = None
            while True:
                row = await self.store.get(evaluation_id, owner)
                stamp = (row["state"], row["locations_done"], row["update_time"])
                if stamp != last:
                    last = stamp
                    yield evaluation_pb2.WatchEvaluationResponse(evaluation=to_message(row))
                if row["state"] in TERMINAL:
                    return
                # A change announcement, or a periodic re-read in case one was lost.
                await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
        finally:
            await pubsub.aclose()


async def create_servicer(app: App) -> EvaluationServicer:
    return EvaluationServicer(app, EvaluationStore(await app.db(), app.redis()))

