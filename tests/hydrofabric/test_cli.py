import json

from typer.testing import CliRunner

from dmod.cli.hydrofabric import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_end_to_end(tmp_path):
    r = run("synth", tmp_path / "hf", "--catchments", 120, "--seed", 2, "--forcing", "none", "--geojson", "--json")
    assert r.exit_code == 0, r.output
    gp = json.loads(r.output)["gpkg"]

    r = run("stats", gp, "--json")
    assert r.exit_code == 0 and json.loads(r.output)["catchments"] == 120

    r = run("validate", gp, "--json")
    assert r.exit_code == 0 and json.loads(r.output)["valid"] is True

    out = tmp_path / "part.json"
    r = run("partition", gp, "--parts", 3, "--method", "dfs_chunk", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    stats = json.loads(r.output)
    assert stats["valid"] and stats["parts"] == 3 and out.exists()

    r = run("validate", gp, "--partition", out, "--ranks", 4, "--json")
    assert r.exit_code == 1
    assert json.loads(r.output)["partition"][0]["code"] == "PARTITION_COUNT"

    r = run("partition", gp, "-k", 2, "--json")  # METIS default
    assert r.exit_code == 0 and json.loads(r.output)["method"] == "METIS"

    from dmod.services.hydrofabric import load_network
    net = load_network(gp)
    outlet = net.catchment_ids[net.outlet_catchments()[0]]
    r = run("subset", gp, outlet, "--out", tmp_path / "sub", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["catchments"] >= 1 and (tmp_path / "sub" / "subset.gpkg").exists()

    r = run("subset", gp, "cat-nope", "--check", "--json")
    assert r.exit_code == 1 and json.loads(r.output)["unknown"] == ["cat-nope"]


def test_cli_tables_render(hand_gpkg):
    r = run("stats", hand_gpkg)
    assert r.exit_code == 0 and "catchments" in r.output
    r = run("validate", hand_gpkg)
    assert r.exit_code == 0 and "valid" in r.output
