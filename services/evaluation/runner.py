"""Running one evaluation: fetch inputs from DatasetService, evaluate, publish results.

Everything the user supplied that turns out unusable (no nexus outputs, unreadable observations,
no crosswalk) ends the evaluation FAILED with a message saying what and where.
"""
from __future__ import annotations

import asyncio
import logging
import posixpath
import tempfile
import time
import uuid
from pathlib import Path

import grpc

from dmod.datasets_client import OUTPUT, DatasetsClient
from dmod.services.evaluation.evaluate import evaluate
from dmod.services.evaluation.outputs import write_outputs
from dmod.services.evaluation.store import FAILED, SUCCEEDED, EvaluationStore
from dmod.services.hydrofabric.crosswalk import gage_crosswalk
from dmod.services.hydrofabric.fetch import fetch_files
from dmod.v1 import domain_pb2, evaluation_pb2

log = logging.getLogger("dmod.evaluation")

MAX_PLOTS = 500
_RESAMPLE = {evaluation_pb2.RESAMPLE_HOURLY: "hourly", evaluation_pb2.RESAMPLE_DAILY: "daily"}


class EvaluationInputError(Exception):
    """The inputs cannot be evaluated (user error, reported as the FAILED message)."""


def thresholds_of(spec: evaluation_pb2.EvaluationSpec) -> list:
    out: list = []
    for t in spec.thresholds:
        kind = t.WhichOneof("threshold")
        out.append(f"p{t.percentile:g}" if kind == "percentile" else float(t.value))
    return out


async def _download(ds: DatasetsClient, dataset: str, dest: Path, keep) -> list[Path]:
    files = []
    for obj in await ds.list_objects(dataset):
        if keep(obj.path):
            target = dest / obj.path
            await ds.download_file(obj.name, target)
            files.append(target)
    return files


async def _crosswalk(ds: DatasetsClient, spec, cache: Path) -> dict[str, str]:
    if spec.crosswalk:
        return dict(spec.crosswalk)
    hydrofabric = spec.hydrofabric_dataset
    if not hydrofabric:  # the job's output dataset names the hydrofabric it came from
        output = await ds.get_dataset(spec.output_dataset)
        for parent in output.derived_from:
            if (await ds.get_dataset(parent)).category == domain_pb2.DATA_CATEGORY_HYDROFABRIC:
                hydrofabric = parent
                break
    if not hydrofabric:
        raise EvaluationInputError("no crosswalk: give spec.crosswalk or spec.hydrofabric_dataset (gage ↔ nexus)")
    files = await fetch_files(ds, hydrofabric, cache)
    crosswalk = await asyncio.to_thread(gage_crosswalk, str(files.catchments))
    if not crosswalk:
        raise EvaluationInputError(f"{hydrofabric} has no gages (hydrolocations / rl_gages) to crosswalk")
    return crosswalk


async def run_evaluation(evaluation_id: uuid.UUID, spec: evaluation_pb2.EvaluationSpec, ds: DatasetsClient,
                         store: EvaluationStore, cache: Path) -> None:
    loop = asyncio.get_running_loop()
    last = [0.0]

    def progress(done: int, total: int) -> None:  # called from the worker thread
        now = time.monotonic()
        if now - last[0] >= 0.25 or done == total:
            last[0] = now
            asyncio.run_coroutine_threadsafe(store.progress(evaluation_id, done, total, "evaluating"), loop)

    try:
        with tempfile.TemporaryDirectory(prefix="dmod-eval-") as tmp:
            root = Path(tmp)
            sim = await _download(ds, spec.output_dataset, root / "sim",
                                  lambda p: posixpath.basename(p).endswith("_output.csv") or p.endswith(".nc"))
            if not sim:
                raise EvaluationInputError(f"{spec.output_dataset} has no nexus outputs (<nex-id>_output.csv or .nc)")
            obs = await _download(ds, spec.observation_dataset, root / "obs", lambda p: p.endswith(".csv"))
            if not obs:
                raise EvaluationInputError(f"{spec.observation_dataset} has no observation CSV")
            crosswalk = await _crosswalk(ds, spec, cache)
            window = None
            if spec.HasField("start_time") or spec.HasField("end_time"):
                window = (spec.start_time.ToDatetime() if spec.HasField("start_time") else None,
                          spec.end_time.ToDatetime() if spec.HasField("end_time") else None)
            sim_input = sim[0] if len(sim) == 1 and sim[0].suffix == ".nc" else root / "sim"
            obs_input = obs[0] if len(obs) == 1 else root / "obs"
            units = "ft3/s" if spec.observation_unit == evaluation_pb2.FLOW_UNIT_CUBIC_FEET_PER_SECOND else "m3/s"
            try:
                result = await asyncio.to_thread(
                    evaluate, sim_input, obs_input, crosswalk, window, _RESAMPLE.get(spec.resample),
                    list(spec.metrics) or None, thresholds_of(spec) or None, spec.min_pairs or 10, progress,
                    obs_units=units, weights=dict(spec.weights) or None)
            except (ValueError, KeyError) as exc:
                raise EvaluationInputError(str(exc)) from None
            out = root / "result"
            # Hydrographs cost ~0.2 s of CPU each: beyond a few hundred locations, tables only.
            await asyncio.to_thread(write_outputs, result, out, len(result.locations) <= MAX_PLOTS)
            dataset = await ds.create_dataset(
                f"evaluation-{evaluation_id}", OUTPUT, domain_pb2.DATA_FORMAT_EVALUATION_RESULT,
                derived_from=[spec.output_dataset, spec.observation_dataset],
                description=f"evaluation of {spec.output_dataset} against {spec.observation_dataset}",
                request_id=f"evaluation:{evaluation_id}")
            if dataset.state != 2:
                await ds.upload_dir(dataset.name, out)
                dataset = await ds.seal_dataset(dataset.name)
        summary = result.summary()
        message = f"{summary.get('evaluated', 0)} of {summary.get('locations', 0)} locations evaluated"
        full = result.to_dict()
        await store.finish(evaluation_id, SUCCEEDED, message,
                           {"locations": full["locations"], "aggregate": full["aggregate"]}, dataset.name)
    except EvaluationInputError as exc:
        await store.finish(evaluation_id, FAILED, str(exc))
    except grpc.aio.AioRpcError as exc:
        await store.finish(evaluation_id, FAILED, f"dataset access failed: {exc.code().name}: {exc.details()}")
    except asyncio.CancelledError:
        raise  # shutdown: the lease expires and another runner (or this one, restarted) resumes it
    except Exception as exc:
        log.exception("evaluation failed", extra={"evaluation": str(evaluation_id)})
        await store.finish(evaluation_id, FAILED, f"internal error: {type(exc).__name__}")
