"""Tiny hand-made GeoJSON hydrofabrics for probing the real ngen binary's MPI behaviour.

`write_case` lays out a run folder (catchments.geojson, nexus.geojson, per-catchment CSV
forcing, the test BMI model's realization and init config, empty output/); `run_case` runs
ngen there, serially or on N OpenMPI ranks with a partition file. Partition files are made
by DMOD's own `build_document` from a hand-chosen catchment → rank map, so only the
boundary configuration varies between cases.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np

from .ngenkit import ngen_binary, openmpi_run, test_model_config, test_model_realization

START = "2015-12-01 00:00:00"


def write_case(dest: Path, cats: dict[str, str], nexus: dict[str, str | None], hours: int = 720) -> Path:
    """cats: catchment id → downstream nexus id; nexus: nexus id → downstream catchment id
    (None: terminal)."""
    dest.mkdir(parents=True, exist_ok=True)
    feats = []
    for i, (cid, toid) in enumerate(cats.items()):
        x, y = float(i), 0.0
        ring = [[x, y], [x + 1, y], [x + 1, y + 1], [x, y + 1], [x, y]]
        feats.append({"type": "Feature", "id": cid, "properties": {"id": cid, "toid": toid,
                      "areasqkm": 2.0 + i}, "geometry": {"type": "Polygon", "coordinates": [ring]}})
    (dest / "catchments.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    feats = []
    for i, (nid, toid) in enumerate(nexus.items()):
        feats.append({"type": "Feature", "id": nid, "properties": {"id": nid, "toid": toid or ""},
                      "geometry": {"type": "Point", "coordinates": [float(i), 2.0]}})
    (dest / "nexus.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    fdir = dest / "forcing"
    fdir.mkdir(exist_ok=True)
    t = np.datetime64("2015-12-01T00:00") + np.arange(hours) * np.timedelta64(1, "h")
    stamps = [str(s).replace("T", " ") + ":00" for s in t.astype("datetime64[m]")]
    for i, cid in enumerate(cats):
        rate = 1e-4 * (1 + i) * (1.5 + np.sin(np.arange(hours) / (5.0 + i)))
        body = "".join(f"{s},{r:.6g},{270 + i}\n" for s, r in zip(stamps, rate))
        (fdir / f"{cid}.csv").write_text("time,precip_rate,TMP_2maboveground\n" + body)
    (dest / "config").mkdir(exist_ok=True)
    (dest / "config" / "test.ini").write_text(test_model_config(START, hours))
    (dest / "realization.json").write_text(json.dumps(test_model_realization(START, hours), indent=1))
    (dest / "output").mkdir(exist_ok=True)
    return dest


def run_case(dest: Path, ranks: int = 1, partition: Path | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess | None:
    """ngen on the case (output/ emptied first); None when it did not finish in `timeout` s
    (the whole process group is killed)."""
    out = dest / "output"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    model = [str(ngen_binary()), "catchments.geojson", "all", "nexus.geojson", "all", "realization.json"]
    argv = model if ranks == 1 else [*openmpi_run(), "-n", str(ranks), *model, str(Path(partition).resolve())]
    proc = subprocess.Popen(argv, cwd=dest, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out_s, err_s = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # mpirun and its ranks share the new session's group
        proc.communicate()
        return None
    return subprocess.CompletedProcess(argv, proc.returncode, out_s, err_s)


def network_dicts(net) -> tuple[dict[str, str], dict[str, str | None]]:
    """A Network as write_case's (cats, nexus) dicts."""
    cids, nids = net.catchment_ids.tolist(), net.nexus_ids.tolist()
    cats = {c: nids[j] for c, j in zip(cids, net.cat_to_nex.tolist())}
    nexus = {n: (cids[d] if d >= 0 else None) for n, d in zip(nids, net.nex_to_cat.tolist())}
    return cats, nexus
