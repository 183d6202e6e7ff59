"""MPI runs (`mpiexec -n N python -m dmod.services.worker.engine ...`) are byte-identical to the
serial run; bad partition files are refused on every rank with a clear error, not a hang."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from dmod.services.hydrofabric.partition import partition
from dmod.services.worker.engine import ConfigError, run_engine


@pytest.fixture(scope="module")
def serial(domain, eng, tmp_path_factory):
    work = tmp_path_factory.mktemp("serial")
    (work / "cfe_pt").symlink_to(domain.root / "cfe_pt")
    path = eng.write_json(work / "real.json", eng.realization(eng.cfe_formulation(), eng.netcdf_forcing(domain)))
    run_engine(domain.argv(path), cwd=str(work), stdout=io.StringIO())
    return eng.read_outputs(work / "out")


def _partition_file(domain, workdir, ranks: int, method: str) -> tuple[str, dict]:
    result = partition(domain.network, ranks, method)
    path = workdir / f"part-{ranks}-{method}.json"
    path.write_text(json.dumps(result.document))
    return str(path), result.document


def _cut_confluences(domain, doc) -> int:
    """Boundary nexuses with contributors on several ranks or a remote downstream catchment."""
    net = domain.network
    rank = {c: r for r, p in enumerate(doc["partitions"]) for c in p["cat-ids"]}
    cut = 0
    for j in range(net.n_nexuses):
        up = {rank[str(net.catchment_ids[c])] for c in np.flatnonzero(net.cat_to_nex == j)}
        down = net.nex_to_cat[j]
        if len(up) > 1 or (down >= 0 and up and rank[str(net.catchment_ids[down])] not in up):
            cut += 1
    return cut


@pytest.mark.parametrize("ranks, method, block, precreate", [(2, "METIS", None, "0"), (3, "DFS_CHUNK", "5", "1")])
def test_mpi_outputs_are_byte_identical_to_serial(domain, workdir, eng, serial, monkeypatch, ranks, method, block,
                                                  precreate):
    if block:  # several output blocks: files created rank by rank, rows appended per block
        monkeypatch.setenv("DMOD_ENGINE_BLOCK_STEPS", block)
    monkeypatch.setenv("DMOD_ENGINE_PRECREATE", precreate)  # both ways of creating the files
    part, doc = _partition_file(domain, workdir, ranks, method)
    assert _cut_confluences(domain, doc) >= ranks - 1  # contributions really cross ranks
    path = eng.write_json(workdir / "real.json", eng.realization(eng.cfe_formulation(), eng.netcdf_forcing(domain)))
    proc = eng.run_cli(domain.argv(path, part), cwd=workdir, ranks=ranks)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(f"Finished {eng.HOURS} timesteps.") == 1  # rank 0 reports progress
    parallel = eng.read_outputs(workdir / "out")
    assert parallel.keys() == serial.keys()
    assert [k for k in serial if parallel[k] != serial[k]] == []


def test_bad_partitions_are_refused_on_every_rank(domain, workdir, eng):
    part, doc = _partition_file(domain, workdir, 2, "METIS")
    path = eng.write_json(workdir / "real.json", eng.realization(eng.cfe_formulation(), eng.netcdf_forcing(domain)))
    # a send-side entry missing: real ngen deadlocks
    for p in doc["partitions"]:
        p["remote-connections"] = [c for c in p["remote-connections"] if c["cat-direction"] != "nex-to-dest_cat"]
    bad = eng.write_json(workdir / "no-send.json", doc)
    proc = eng.run_cli(domain.argv(path, bad), cwd=workdir, ranks=2, timeout=90)
    assert proc.returncode == 2
    assert "invalid partition file for 2 MPI ranks" in proc.stderr and "nex-to-dest_cat" in proc.stderr
    assert proc.stderr.count("ERROR:") == 1 and "Running timestep" not in proc.stdout
    assert not (workdir / "out").exists()
    # a 2-partition file for a 1-rank run (ngen: MPI abort; fewer than ranks: segfault)
    with pytest.raises(ConfigError, match="PARTITION_COUNT: 2 partitions for 1 MPI ranks"):
        run_engine(domain.argv(path, part), cwd=str(workdir), stdout=io.StringIO())
    # a catchment in two partitions (double counting) names the catchment
    doc = json.loads(Path(part).read_text())
    dup = doc["partitions"][0]["cat-ids"][0]
    doc["partitions"][1]["cat-ids"].append(dup)
    proc = eng.run_cli(domain.argv(path, eng.write_json(workdir / "dup.json", doc)), cwd=workdir, ranks=2, timeout=90)
    assert proc.returncode == 2 and dup in proc.stderr


def test_more_ranks_without_partition_file_is_an_error(domain, workdir, eng):
    path = eng.write_json(workdir / "real.json", eng.realization(eng.cfe_formulation(), eng.netcdf_forcing(domain)))
    proc = eng.run_cli(domain.argv(path), cwd=workdir, ranks=2, timeout=90)
    assert proc.returncode == 2 and "need a partition file" in proc.stderr


def test_forcing_missing_on_one_rank_stops_every_rank(domain, workdir, eng):
    """A rank-local forcing error must not leave the other rank waiting."""
    import netCDF4

    part, doc = _partition_file(domain, workdir, 2, "METIS")
    victim = doc["partitions"][1]["cat-ids"][0]
    keep = [c for c in domain.ids if c != victim]
    src, dst = domain.netcdf, workdir / "partial.nc"
    with netCDF4.Dataset(src) as a, netCDF4.Dataset(dst, "w") as b:
        ids = [str(i) for i in a["ids"][:].tolist()]
        rows = [ids.index(c) for c in keep]
        b.createDimension("catchment-id", len(rows))
        b.createDimension("time", len(a.dimensions["time"]))
        v = b.createVariable("ids", str, ("catchment-id",))
        v[:] = np.asarray(keep, dtype=object)
        for name in ("Time", "precip_rate", "TMP_2maboveground", "DSWRF_surface"):
            out = b.createVariable(name, a[name].dtype, ("catchment-id", "time"))
            out.units = a[name].units
            out[:] = a[name][:][rows]
    doc = eng.realization(eng.cfe_formulation(), {"provider": "NetCDF", "path": str(dst)})
    path = eng.write_json(workdir / "real.json", doc)
    proc = eng.run_cli(domain.argv(path, part), cwd=workdir, ranks=2, timeout=90)
    assert proc.returncode == 2
    assert f"catchment {victim}: forcing: no forcing in" in proc.stderr and proc.stderr.count("ERROR:") == 1


def test_terminal_nexus_summed_on_the_sentinel_rank(domain, workdir, eng, serial):
    """The terminal nexus' sentinel lives on the rank that does not simulate the outlet: the
    outlet's flow is sent there, and that rank writes the nexus file."""
    from dmod.services.hydrofabric.partition_file import Assignment, build_document

    net = domain.network
    part = partition(net, 2, "METIS").assignment.part.copy()
    sentinel = np.full(net.n_nexuses, -1, dtype=np.int64)
    for j in net.terminal_nexuses().tolist():
        feeders = np.flatnonzero(net.cat_to_nex == j)
        sentinel[j] = 1 - int(part[feeders[0]])
    doc = build_document(net, Assignment(part=part, n_parts=2, sentinel_rank=sentinel))
    sentinels = [c for p in doc["partitions"] for c in p["cat-ids"] if c.startswith("wb-TERMINAL_SENTINEL-")]
    assert sentinels and any(c["cat-id"] in sentinels for p in doc["partitions"] for c in p["remote-connections"])
    part_path = eng.write_json(workdir / "sentinel.json", doc)
    path = eng.write_json(workdir / "real.json", eng.realization(eng.cfe_formulation(), eng.netcdf_forcing(domain)))
    proc = eng.run_cli(domain.argv(path, part_path), cwd=workdir, ranks=2)
    assert proc.returncode == 0, proc.stderr
    assert eng.read_outputs(workdir / "out") == serial



def test_ngen_hang_pattern_is_fine_for_the_embedded_engine(domain, workdir, eng, serial):
    """A file with ngen's receive-side hang pattern (the owner of a boundary nexus holds two of
    its contributors, the third is remote) is only a warning here, and this engine runs it
    byte-identical to serial: it sends one message per (rank, nexus) and step."""
    from dmod.services.hydrofabric.partition_file import Assignment, build_document, place_sentinels
    from dmod.services.hydrofabric.partition_validate import validate_partitioning

    net = domain.network
    counts = np.bincount(net.cat_to_nex[net.cat_to_nex >= 0], minlength=net.n_nexuses)
    j = int(np.flatnonzero((counts >= 3) & (net.nex_to_cat >= 0))[0])
    part = np.zeros(net.n_catchments, dtype=np.int64)
    part[np.flatnonzero(net.cat_to_nex == j)[2:]] = 1
    doc = build_document(net, Assignment(part=part, n_parts=2, sentinel_rank=place_sentinels(net, part)))
    issues = validate_partitioning(net, doc, 2, engine="embedded")
    assert [(i.code, i.severity) for i in issues] == [("NGEN_REMOTE_NEXUS_HANG", "warning")]
    assert [i.code for i in validate_partitioning(net, doc, 2)] == ["NGEN_REMOTE_NEXUS_HANG"]
    part_path = eng.write_json(workdir / "hang.json", doc)
    path = eng.write_json(workdir / "real.json", eng.realization(eng.cfe_formulation(), eng.netcdf_forcing(domain)))
    proc = eng.run_cli(domain.argv(path, part_path), cwd=workdir, ranks=2)
    assert proc.returncode == 0, proc.stderr
    assert eng.read_outputs(workdir / "out") == serial
