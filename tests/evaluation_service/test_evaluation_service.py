"""EvaluationService end to end: datasets in, metrics + PNG hydrographs + a result dataset out."""
import json
import uuid

import grpc
import numpy as np
import pandas as pd
import pytest

from dmod.datasets_client import HYDROFABRIC, OBSERVATION, OUTPUT, DatasetsClient
from dmod.errors import error_details
from dmod.services.evaluation import evaluate
from dmod.services.hydrofabric import synth
from dmod.v1 import domain_pb2, evaluation_pb2, evaluation_pb2_grpc

HOURS = 96


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    """A synthetic hydrofabric with several gages, observations, and 'model output' at each gaged
    nexus: the observed series scaled and shifted, so every metric is non-trivial."""
    root = tmp_path_factory.mktemp("eval")
    manifest = synth(root, catchments=120, seed=5, forcing="csv", hours=HOURS, gage_fraction=0.1)
    crosswalk = json.loads((root / "crosswalk.json").read_text())
    obs = pd.read_csv(root / "observations.csv", dtype={"gage_id": str})
    out = root / "output"
    out.mkdir()
    rng = np.random.default_rng(1)
    for gage, nexus in crosswalk.items():
        values = obs[obs.gage_id == gage].value.to_numpy()
        sim = np.roll(values, 2) * 1.1 + rng.normal(0, 0.05, len(values)).clip(0)
        times = obs[obs.gage_id == gage].time.to_numpy()
        (out / f"{nexus}_output.csv").write_text(
            "".join(f"{i}, {t}, {v:.9g}\n" for i, (t, v) in enumerate(zip(times, sim))))
    return root, manifest, crosswalk


async def _dataset(ds, category, fmt, files: dict):
    d = await ds.create_dataset(f"t-{uuid.uuid4().hex[:10]}", category, fmt)
    for path, local in files.items():
        await ds.upload_file(d.name, local, path)
    return (await ds.seal_dataset(d.name)).name


@pytest.fixture
async def datasets(stack, domain):
    root, _, _ = domain
    async with DatasetsClient(target=stack.gateway) as ds:
        hf = await _dataset(ds, HYDROFABRIC, domain_pb2.DATA_FORMAT_NGEN_GEOPACKAGE_HYDROFABRIC,
                            {"hydrofabric.gpkg": root / "hydrofabric.gpkg"})
        obs = await _dataset(ds, OBSERVATION, domain_pb2.DATA_FORMAT_OBSERVATION_CSV,
                             {"observations.csv": root / "observations.csv"})
        out = await _dataset(ds, OUTPUT, domain_pb2.DATA_FORMAT_NGEN_CSV_OUTPUT,
                             {p.name: p for p in (root / "output").iterdir()})
    return hf, obs, out


async def _watch(stub, name):
    states = []
    async for update in stub.WatchEvaluation(evaluation_pb2.WatchEvaluationRequest(name=name), timeout=120):
        states.append(update.evaluation.state)
        last = update.evaluation
    return states, last


async def test_evaluation_against_observations_with_hydrofabric_crosswalk(channel, stack, domain, datasets):
    root, _, crosswalk = domain
    hf, obs, out = datasets
    stub = evaluation_pb2_grpc.EvaluationServiceStub(channel)
    spec = evaluation_pb2.EvaluationSpec(
        output_dataset=out, observation_dataset=obs, hydrofabric_dataset=hf, min_pairs=10,
        thresholds=[evaluation_pb2.Threshold(name="p90", percentile=90)])
    created = (await stub.CreateEvaluation(evaluation_pb2.CreateEvaluationRequest(
        spec=spec, request_id=uuid.uuid4().hex))).evaluation
    assert created.name.startswith("evaluations/")
    states, final = await _watch(stub, created.name)
    assert final.state == evaluation_pb2.EVALUATION_STATE_SUCCEEDED, final.state_message
    assert states[-1] == evaluation_pb2.EVALUATION_STATE_SUCCEEDED
    assert {loc.gage_id for loc in final.locations} == set(crosswalk)

    expected = evaluate(root / "output", root / "observations.csv", crosswalk, min_pairs=10, thresholds=["p90"])
    for loc in final.locations:
        want = expected.location(loc.gage_id).metrics
        for metric in ("nse", "kge", "pbias", "rmse", "pod@p90"):
            assert loc.metrics[metric] == pytest.approx(want[metric], rel=1e-9), (loc.gage_id, metric)
    assert final.aggregate["nse"] == pytest.approx(np.mean([loc.metrics["nse"] for loc in final.locations]))

    async with DatasetsClient(target=stack.gateway) as ds:
        paths = {o.path for o in await ds.list_objects(final.result_dataset)}
    assert {"evaluation.json", "locations.csv"} <= paths
    assert sum(p.endswith(".png") for p in paths) == len(crosswalk)

    listed = await stub.ListEvaluations(evaluation_pb2.ListEvaluationsRequest(page_size=100))
    assert created.name in {e.name for e in listed.evaluations}


async def test_unusable_inputs_fail_with_a_clear_message(channel, stack, datasets):
    hf, obs, out = datasets
    stub = evaluation_pb2_grpc.EvaluationServiceStub(channel)
    # Observations given as the model output: no nexus files to evaluate.
    spec = evaluation_pb2.EvaluationSpec(output_dataset=obs, observation_dataset=obs, hydrofabric_dataset=hf)
    created = (await stub.CreateEvaluation(evaluation_pb2.CreateEvaluationRequest(spec=spec))).evaluation
    _, final = await _watch(stub, created.name)
    assert final.state == evaluation_pb2.EVALUATION_STATE_FAILED
    assert "no nexus outputs" in final.state_message


async def test_bad_requests(channel, datasets):
    hf, obs, out = datasets
    stub = evaluation_pb2_grpc.EvaluationServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateEvaluation(evaluation_pb2.CreateEvaluationRequest(spec=evaluation_pb2.EvaluationSpec(
            output_dataset=out, metrics=["nse", "bogus"],
            thresholds=[evaluation_pb2.Threshold(percentile=150)])))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field for v in error_details(caught.value)["BadRequest"].field_violations}
    assert fields == {"spec.observation_dataset", "spec.metrics", "spec.thresholds[0].percentile"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateEvaluation(evaluation_pb2.CreateEvaluationRequest(spec=evaluation_pb2.EvaluationSpec(
            output_dataset=out, observation_dataset="datasets/00000000-0000-0000-0000-000000000000")))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetEvaluation(evaluation_pb2.GetEvaluationRequest(name=f"evaluations/{uuid.uuid4()}"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetEvaluation(evaluation_pb2.GetEvaluationRequest(name="jobs/1"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cli_create_show_plot(stack, datasets, domain, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    hf, obs, out = datasets
    dmod = [str(Path(sys.executable).parent / "dmod"), "eval"]
    env = {**os.environ, "DMOD_GATEWAY": stack.gateway, "COLUMNS": "250"}
    created = subprocess.run(dmod + ["create", "--output", out, "--observations", obs, "--hydrofabric", hf,
                                     "--threshold", "p75", "--wait", "--json"],
                             capture_output=True, text=True, env=env, timeout=180)
    assert created.returncode == 0, created.stderr
    evaluation = json.loads(created.stdout)
    assert evaluation["state"] == "EVALUATION_STATE_SUCCEEDED"
    table = subprocess.run(dmod + ["show", evaluation["name"]], capture_output=True, text=True, env=env, timeout=60)
    assert table.returncode == 0 and "pod@p75" in table.stdout and "mean" in table.stdout
    plots = subprocess.run(dmod + ["plot", evaluation["name"], "--out", str(tmp_path)], capture_output=True,
                           text=True, env=env, timeout=60)
    assert plots.returncode == 0, plots.stderr
    pngs = list(tmp_path.glob("*.png"))
    assert len(pngs) == len(domain[2]) and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    missing = subprocess.run(dmod + ["show", "evaluations/00000000-0000-0000-0000-000000000000"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr and "Traceback" not in missing.stderr
