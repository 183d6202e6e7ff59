"""Serial engine runs on the synthetic domain: ngen output formats, forcing providers, bmi_multi,
batching, hydrofabric parameters, and pre-flight errors that name the catchment/field."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest

from dmod.services.worker.engine import ConfigError, run_engine

CAT_ROW = re.compile(r"^(\d+),(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(.+)$")
NEX_ROW = re.compile(r"^(\d+), (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d), (\S+)$")


def _run(domain, workdir, eng, doc, name="real.json", **kw):
    path = eng.write_json(workdir / name, doc)
    return run_engine(domain.argv(path, geojson=kw.pop("geojson", False)), cwd=str(workdir), stdout=io.StringIO(),
                      **kw)


def test_outputs_match_ngen_formats(domain, workdir, eng):
    progress = []
    out = io.StringIO()
    path = eng.write_json(workdir / "real.json", eng.realization(eng.cfe_formulation(), eng.netcdf_forcing(domain)))
    result = run_engine(domain.argv(path), lambda k, n: progress.append((k, n)), cwd=str(workdir), stdout=out)
    assert result.steps == eng.HOURS and result.catchments == len(domain.ids)
    # progress lines: "Running timestep k of K" (first, every K//100, last) then "Finished K timesteps."
    lines = out.getvalue().splitlines()
    assert lines[0] == f"Running timestep 0 of {eng.HOURS}" and lines[-1] == f"Finished {eng.HOURS} timesteps."
    assert f"Running timestep {eng.HOURS - 1} of {eng.HOURS}" in lines
    assert progress[0] == (0, eng.HOURS) and progress[-1] == (eng.HOURS, eng.HOURS)

    net, root = domain.network, workdir / "out"
    q = {}
    for cid in domain.ids:
        text = (root / f"{cid}.csv").read_text()
        header, *rows = text.splitlines()
        assert header == "Time Step,Time,Q_OUT,ACTUAL_ET" and len(rows) == eng.HOURS
        for k, row in enumerate(rows):
            step, _stamp, values = CAT_ROW.match(row).groups()
            assert int(step) == k
            for v in values.split(","):
                assert v == f"{float(v):.9g}"  # 9 significant digits, C++ default notation
        assert rows[0].split(",")[1] == eng.START and rows[-1].split(",")[1] == eng.END
        q[cid] = np.array([float(r.split(",")[2]) for r in rows])
    # nexus files: no header, "<step>, <time>, <m3/s>", flow = sum(Q_OUT m/h * area m2 / 3600)
    area = dict(zip(domain.ids, net.area_sqkm.tolist()))
    nexus_files = sorted(p.name for p in root.glob("*_output.csv"))
    fed = {str(net.nexus_ids[j]) for j in net.cat_to_nex.tolist() if j >= 0}
    assert nexus_files == sorted(f"{n}_output.csv" for n in fed)
    for j, nid in enumerate(net.nexus_ids.tolist()):
        if nid not in fed:
            continue
        rows = (root / f"{nid}_output.csv").read_text().splitlines()
        assert len(rows) == eng.HOURS
        flows = []
        for k, row in enumerate(rows):
            step, _stamp, flow = NEX_ROW.match(row).groups()
            assert int(step) == k and flow == f"{float(flow):.6g}"
            flows.append(float(flow))
        expect = sum(q[c] * area[c] * 1e6 / 3600 for c, n in zip(domain.ids, net.cat_to_nex.tolist()) if n == j)
        np.testing.assert_allclose(flows, expect, rtol=6e-6, atol=1e-12)  # 6 significant digits


def test_csv_and_netcdf_forcing_give_identical_outputs(domain, workdir, eng):
    _run(domain, workdir, eng, eng.realization(eng.cfe_formulation(), eng.netcdf_forcing(domain), out="./nc/"))
    _run(domain, workdir, eng, eng.realization(eng.cfe_formulation(), eng.csv_forcing(domain), out="./csv/"),
         name="csv.json", geojson=True)  # also GeoJSON instead of the GeoPackage
    nc, csv = eng.read_outputs(workdir / "nc"), eng.read_outputs(workdir / "csv")
    assert nc.keys() == csv.keys() and nc == csv


def test_batched_and_per_catchment_instances_are_identical(domain, workdir, eng):
    doc = eng.realization(eng.cfe_formulation(outputs=("Q_OUT", "SOIL_STORAGE", "GROUNDWATER_FLOW")),
                          eng.netcdf_forcing(domain), out="./batch/")
    _run(domain, workdir, eng, doc, batch=True)
    doc["output"]["root"] = "./single/"
    _run(domain, workdir, eng, doc, name="single.json", batch=False)
    assert eng.read_outputs(workdir / "batch") == eng.read_outputs(workdir / "single")


def test_bmi_multi_chains_outputs_into_later_modules(domain, workdir, eng):
    """PET module → CFE(pet_method=input) equals CFE computing the same PET internally."""
    pet = {"name": "bmi_python", "params": {
        "python_type": eng.PET, "init_config": "./pet/{{id}}.json", "main_output_variable": "water_potential_evaporation_flux",
        "variables_names_map": {eng.TEMP: "TMP_2maboveground", eng.SW: "DSWRF_surface"}}}
    cfe = eng.cfe_formulation(init="./cfe_in/{{id}}.yml")["params"]
    cfe["variables_names_map"] = {eng.PRECIP: "precip_rate"}
    multi = {"name": "bmi_multi", "params": {
        "model_type_name": "PET+CFE", "main_output_variable": "Q_OUT", "output_variables": ["Q_OUT", "ACTUAL_ET"],
        "modules": [pet, {"name": "bmi_python", "params": cfe}]}}
    _run(domain, workdir, eng, eng.realization(multi, eng.netcdf_forcing(domain), out="./multi/"))
    _run(domain, workdir, eng, eng.realization(eng.cfe_formulation(), eng.netcdf_forcing(domain), out="./mono/"),
         name="mono.json")
    multi_out, mono_out = eng.read_outputs(workdir / "multi"), eng.read_outputs(workdir / "mono")
    assert multi_out == mono_out
    assert any(b"e-0" in v for v in multi_out.values())  # ET really flowed through the chain


def test_hydrofabric_model_params_subsets_and_legacy_output(domain, workdir, eng):
    """PassThrough scale from the hydrofabric `lengthkm`; a catchment subset; legacy output keys."""
    form = {"name": "bmi_python", "params": {
        "python_type": eng.PASS, "main_output_variable": "Q_OUT", "variables_names_map": {eng.PRECIP: "precip_rate"},
        "model_params": {"scale": {"source": "hydrofabric", "from": "lengthkm"}}}}
    doc = eng.realization(form, eng.netcdf_forcing(domain))
    del doc["output"]
    doc.update(output_root="./legacy/", disable_catchment_output=False)
    pick = domain.ids[:3]
    path = eng.write_json(workdir / "pt.json", doc)
    run_engine([domain.gpkg, ",".join(pick), domain.gpkg, "all", path], cwd=str(workdir), stdout=io.StringIO())
    written = sorted(p.name for p in (workdir / "legacy").glob("cat-*.csv"))
    assert written == sorted(f"{c}.csv" for c in pick)
    import netCDF4

    from dmod.services.hydrofabric import load_network

    length = dict(zip(domain.ids, load_network(domain.gpkg, attributes=["lengthkm"]).attributes["lengthkm"].tolist()))
    with netCDF4.Dataset(domain.netcdf) as ds:
        ids = [str(i) for i in ds["ids"][:].tolist()]
        precip = np.asarray(ds["precip_rate"][ids.index(pick[0]), :], dtype=np.float64)
    got = [float(r.split(",")[2]) for r in (workdir / "legacy" / f"{pick[0]}.csv").read_text().splitlines()[1:]]
    expect = [float(f"{v:.9g}") for v in precip * length[pick[0]] * 3600.0 / 1000.0]
    assert got == expect


def test_missing_forcing_names_the_catchment(domain, workdir, eng, tmp_path):
    forcing_dir = tmp_path / "forcing"
    forcing_dir.mkdir()
    victim = domain.ids[7]
    for cid in domain.ids:
        if cid != victim:
            (forcing_dir / f"{cid}.csv").symlink_to(f"{domain.csv_dir}/{cid}.csv")
    forcing = {"provider": "CsvPerFeature", "path": str(forcing_dir), "file_pattern": "{{id}}.csv"}
    with pytest.raises(ConfigError, match=rf"catchment {victim}: forcing.file_pattern: no forcing file"):
        _run(domain, workdir, eng, eng.realization(eng.cfe_formulation(), forcing))
    assert not (workdir / "out").exists()  # refused before any time step


def test_forcing_errors_name_catchment_and_variable(domain, workdir, eng):
    doc = eng.realization(eng.cfe_formulation(), eng.netcdf_forcing(domain))
    doc["global"]["formulations"][0]["params"]["variables_names_map"][eng.PRECIP] = "RAINRATE"
    with pytest.raises(ConfigError, match="no variable.*RAINRATE"):
        _run(domain, workdir, eng, doc)
    doc = eng.realization(eng.cfe_formulation(), eng.csv_forcing(domain))
    doc["time"]["end_time"] = "2015-12-03 05:00:00"  # past the forcing
    with pytest.raises(ConfigError, match=r"catchment cat-\d+: forcing: forcing file .* does not cover the run"):
        _run(domain, workdir, eng, doc)


def test_model_configuration_errors_name_the_field(domain, workdir, eng):
    doc = eng.realization(eng.cfe_formulation(init="./nowhere/{{id}}.json"), eng.netcdf_forcing(domain))
    with pytest.raises(ConfigError, match=r"catchment cat-\d+: global.formulations\[0\].params.init_config"):
        _run(domain, workdir, eng, doc)
    doc = eng.realization(eng.cfe_formulation(outputs=("Q_OUT", "RUNOFF")), eng.netcdf_forcing(domain))
    with pytest.raises(ConfigError, match=r"params.output_variables: 'RUNOFF' is not an output"):
        _run(domain, workdir, eng, doc)
    doc = eng.realization(eng.cfe_formulation(python_type="dmod.services.worker.models.cfe.Nope"),
                          eng.netcdf_forcing(domain))
    with pytest.raises(ConfigError, match=r"params.python_type: cannot import"):
        _run(domain, workdir, eng, doc)


def test_cli_exit_codes(domain, workdir, eng):
    doc = eng.realization(eng.cfe_formulation(), eng.netcdf_forcing(domain))
    del doc["time"]["output_interval"]
    path = eng.write_json(workdir / "bad.json", doc)
    proc = eng.run_cli(domain.argv(path), cwd=workdir)
    assert proc.returncode == 2 and "time.output_interval: missing required key" in proc.stderr
    assert "Running timestep" not in proc.stdout
    doc = eng.realization({"name": "bmi_c++", "params": {"model_type_name": "cfe", "library_file": "x.so"}},
                          eng.netcdf_forcing(domain))
    proc = eng.run_cli(domain.argv(eng.write_json(workdir / "native.json", doc)), cwd=workdir)
    assert proc.returncode == 2 and "needs the ngen binary" in proc.stderr


def test_substeps_and_nexus_subset(domain, workdir, eng):
    """A model with a 30-minute step is advanced twice per hourly output step (update_until);
    a nexus subset limits the nexus files."""
    cfg = workdir / "half.yml"
    cfg.write_text("time_step_seconds: 1800\nscale: 2.0\n")
    form = {"name": "bmi_python", "params": {"python_type": eng.PASS, "init_config": str(cfg),
                                             "main_output_variable": "Q_OUT",
                                             "variables_names_map": {eng.PRECIP: "precip_rate"}}}
    path = eng.write_json(workdir / "half.json", eng.realization(form, eng.netcdf_forcing(domain)))
    nexus = str(domain.network.nexus_ids[domain.network.cat_to_nex[0]])
    result = run_engine([domain.gpkg, "all", domain.gpkg, nexus, path], cwd=str(workdir), stdout=io.StringIO())
    assert result.steps == eng.HOURS
    assert sorted(p.name for p in (workdir / "out").glob("*_output.csv")) == [f"{nexus}_output.csv"]
    header, first = (workdir / "out" / f"{domain.ids[0]}.csv").read_text().splitlines()[:2]
    assert header == "Time Step,Time,Q_OUT,PRECIP_RATE"  # default: every output of the model
    q, p = (float(v) for v in first.split(",")[2:])
    assert q == pytest.approx(p * 2.0 * 3.6, rel=1e-8)


def test_single_csv_file_for_every_catchment(domain, workdir, eng):
    """CsvPerFeature with `path` naming one file: every catchment reads it."""
    one = f"{domain.csv_dir}/{domain.ids[0]}.csv"
    form = {"name": "bmi_python", "params": {"python_type": eng.PASS, "main_output_variable": "Q_OUT",
                                             "variables_names_map": {eng.PRECIP: "precip_rate"}}}
    doc = eng.realization(form, {"provider": "CsvPerFeature", "path": one})
    run_engine(domain.argv(eng.write_json(workdir / "one.json", doc)), cwd=str(workdir), stdout=io.StringIO())
    texts = {(workdir / "out" / f"{c}.csv").read_bytes() for c in domain.ids}
    assert len(texts) == 1


def test_output_blocks_do_not_change_the_files(domain, workdir, eng, monkeypatch):
    """Rows written in several appended blocks are the same bytes as one block."""
    doc = eng.realization(eng.cfe_formulation(), eng.netcdf_forcing(domain), out="./one/")
    _run(domain, workdir, eng, doc)
    monkeypatch.setenv("DMOD_ENGINE_BLOCK_STEPS", "7")  # 48 steps: 7 blocks, the last one short
    doc["output"]["root"] = "./many/"
    _run(domain, workdir, eng, doc, name="many.json")
    assert eng.read_outputs(workdir / "one") == eng.read_outputs(workdir / "many")
