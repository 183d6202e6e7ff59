"""How a job directory is laid out from the job's datasets, shared by the worker agent (which
builds it) and the scheduler's pre-flight check (which reasons about it without building it).

    <job dir>/
      realization.json        the realization dataset's JSON, rewritten (time range, forcing, output)
      <other objects>         the realization, BMI config and BMI library datasets' other objects,
                              paths kept (a library dataset's lib/libx.so is ./lib/libx.so)
      hydrofabric/...         the hydrofabric dataset (GeoPackage, or catchment + nexus GeoJSON)
      forcing/...             the forcing dataset (CSV per catchment, or one NetCDF file)
      partitions.json         the partition dataset's JSON (N > 1)
      output/                 where the model writes; uploaded into the output dataset
"""
from __future__ import annotations

import datetime as dt
import posixpath

from dmod.services.hydrofabric.fetch import pick_files

REALIZATION_FILE = "realization.json"
PARTITION_FILE = "partitions.json"
OUTPUT_DIR = "output"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
ROLES = ("hydrofabric", "realization", "forcing", "partition", "bmi_config", "bmi_library")
ROLE_DIR = {"hydrofabric": "hydrofabric", "forcing": "forcing", "realization": "", "bmi_config": "", "bmi_library": ""}
EXECUTABLE_ROLES = ("bmi_library",)  # downloaded with mode 0755 (ngen dlopens the libraries)


class LayoutError(Exception):
    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


def pick_hydrofabric(paths: list[str]) -> tuple[str, str]:
    """(catchment file, nexus file) among a hydrofabric dataset's object paths."""
    try:
        return pick_files(paths)
    except ValueError as exc:
        raise LayoutError(str(exc), "hydrofabric_dataset") from None


def pick_json(paths: list[str], preferred: str, role: str) -> str:
    candidates = sorted(p for p in paths if p.lower().endswith(".json"))
    for p in candidates:
        if posixpath.basename(p) == preferred:
            return p
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise LayoutError(f"no JSON file in the {role} dataset", f"{role}_dataset")
    raise LayoutError(f"several JSON files in the {role} dataset ({', '.join(candidates[:5])}) and none is "
                      f"named {preferred}", f"{role}_dataset")


def _forcing_path(original: str, provider: str, forcing_paths: list[str]) -> str:
    """Where a realization forcing `path` points in the job directory."""
    if provider == "NetCDF":
        base = posixpath.basename(original.rstrip("/"))
        nc = [p for p in forcing_paths if posixpath.basename(p) == base] or \
             sorted(p for p in forcing_paths if p.lower().endswith((".nc", ".nc4", ".netcdf")))
        if not nc:
            raise LayoutError("the realization uses NetCDF forcing but the forcing dataset has no .nc file",
                              "forcing_dataset")
        return "./forcing/" + nc[0]
    base = posixpath.basename(original.rstrip("/"))
    if base.lower().endswith(".csv"):  # one file for every catchment
        match = [p for p in forcing_paths if posixpath.basename(p) == base]
        if match:
            return "./forcing/" + match[0]
    dirs = {posixpath.dirname(p) for p in forcing_paths if p.lower().endswith(".csv")}
    sub = sorted(dirs)[0] if len(dirs) == 1 else ""
    return "./forcing/" + (sub + "/" if sub else "")


def rewrite_realization(doc: dict, *, forcing_paths: list[str], start: dt.datetime | None,
                        end: dt.datetime | None) -> dict:
    """The realization as the job runs it: the job's time range, forcing pointing into
    `forcing/`, output into `output/`."""
    doc = dict(doc)
    if start is not None and end is not None:
        time = dict(doc.get("time") or {})
        time["start_time"] = start.strftime(TIME_FORMAT)
        time["end_time"] = end.strftime(TIME_FORMAT)
        time.setdefault("output_interval", 3600)
        doc["time"] = time
    if forcing_paths:
        glob = dict(doc.get("global") or {})
        if isinstance(glob.get("forcing"), dict):
            forcing = dict(glob["forcing"])
            if forcing.get("provider", "CsvPerFeature") != "NullForcingProvider":
                forcing["path"] = _forcing_path(forcing.get("path", ""), forcing.get("provider", "CsvPerFeature"),
                                                forcing_paths)
            glob["forcing"] = forcing
            doc["global"] = glob
        cats = dict(doc.get("catchments") or {})
        for cid, block in cats.items():
            if isinstance(block, dict) and isinstance(block.get("forcing"), dict) and "path" in block["forcing"]:
                forcing = dict(block["forcing"])
                provider = forcing.get("provider") or (glob.get("forcing") or {}).get("provider", "CsvPerFeature")
                forcing["path"] = _forcing_path(forcing["path"], provider, forcing_paths)
                cats[cid] = {**block, "forcing": forcing}
        if cats:
            doc["catchments"] = cats
    output = dict(doc.get("output") or {})
    output["root"] = f"./{OUTPUT_DIR}/"
    doc["output"] = output
    doc.pop("output_root", None)
    if doc.pop("disable_catchment_output", False):
        output.setdefault("catchment", {"enable": False})
    return doc


def expected_outputs(network, simulated: list[str] | None, catchment_enabled: bool) -> list[str]:
    """Output file names the run must produce: `<cat>.csv` per simulated catchment (when
    catchment output is on) and `<nex>_output.csv` per nexus fed by a simulated catchment."""
    import numpy as np

    if simulated is None:
        cats = np.arange(network.n_catchments)
    else:
        index = network.catchment_index
        cats = np.asarray([index[c] for c in simulated], dtype=np.int64)
    nex = network.cat_to_nex[cats]
    nex = np.unique(nex[nex >= 0])
    names = [f"{n}_output.csv" for n in network.nexus_ids[nex].tolist()]
    if catchment_enabled:
        names += [f"{c}.csv" for c in network.catchment_ids[cats].tolist()]
    return sorted(names)


def partition_catchments(doc: dict) -> list[str]:
    out = []
    for part in doc.get("partitions", []):
        out.extend(c for c in part.get("cat-ids", []) if not c.startswith("wb-TERMINAL_SENTINEL-"))
    return out
