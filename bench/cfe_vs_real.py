"""The embedded CFE held against the real one (issue 11, item 7).

Runs ngen's example `gauge_01073000` (5 catchments, 2015-12-01..30 hourly) twice on the same
hydrofabric, forcing and per-catchment config files:

* real: the `ngen` binary with the bmi_multi SLoTH + PET + CFE realization
  (`realization_sloth_pet_cfe.json`, the real C libraries of NOAA-OWP CFE and evapotranspiration);
* embedded: `python -m dmod.services.worker.engine` with a bmi_multi of two bmi_python modules,
  `dmod.services.worker.models.pet_owp.OwpPET` and `dmod.services.worker.models.cfe.CFE`, whose
  init configs are the very same `PET/*_pet_config.txt` and `CFE/*_bmi_config_cfe_pass.txt` files.

Per catchment it compares Q_OUT (NSE of embedded against real, max |diff|, total volume
difference) and every other CFE output column (max |diff|), and per nexus the flow; once with the
example's own files and once with a "stress" variant of them (see `stress`). Prints a table per
variant and writes bench/results/cfe_vs_real.json.

ngen: $DMOD_NGEN_PATH, else ../shared/ngen/ngen next to the repository root. The example and the
BMI libraries are taken from the folder of that binary (`examples/gauge_01073000`, `lib/`).

    .venv/bin/python bench/cfe_vs_real.py [--keep DIR]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "cfe_vs_real.json"
EXAMPLE = "gauge_01073000"
REAL_REALIZATION = "realization_sloth_pet_cfe.json"
PET = "dmod.services.worker.models.pet_owp.OwpPET"
CFE = "dmod.services.worker.models.cfe.CFE"
#: the AORC forcing columns ngen gives the PET and CFE inputs (the embedded engine is told explicitly)
PET_FORCING = {
    "land_surface_radiation~incoming~longwave__energy_flux": "DLWRF_surface",
    "land_surface_air__pressure": "PRES_surface",
    "atmosphere_air_water~vapor__relative_saturation": "SPFH_2maboveground",
    "land_surface_radiation~incoming~shortwave__energy_flux": "DSWRF_surface",
    "land_surface_air__temperature": "TMP_2maboveground",
    "land_surface_wind__x_component_of_velocity": "UGRD_10maboveground",
    "land_surface_wind__y_component_of_velocity": "VGRD_10maboveground",
}
CFE_FORCING = {"atmosphere_water__liquid_equivalent_precipitation_rate": "precip_rate"}


def find_ngen() -> Path | None:
    """$DMOD_NGEN_PATH, else ../shared/ngen/ngen relative to the repository root."""
    env = os.environ.get("DMOD_NGEN_PATH")
    candidate = Path(env) if env else ROOT.parent / "shared" / "ngen" / "ngen"
    return candidate.resolve() if candidate.is_file() and os.access(candidate, os.X_OK) else None


def find_example(ngen: Path) -> Path | None:
    example = ngen.parent / "examples" / EXAMPLE
    return example if (example / REAL_REALIZATION).is_file() and (ngen.parent / "lib").is_dir() else None


def embedded_realization(real: dict) -> dict:
    """The real realization with its PET and CFE modules swapped for the embedded bmi_python ones
    (same init configs, same time block, same forcing); SLoTH (constant zeros) is not needed."""
    modules = {m["params"]["model_type_name"]: m["params"] for m in real["global"]["formulations"][0]["params"]["modules"]}
    pet = next(p for name, p in modules.items() if "pet" in name)
    cfe = next(p for name, p in modules.items() if "cfe" in name)
    return {
        "global": {
            "formulations": [{"name": "bmi_multi", "params": {
                "model_type_name": "bmi_multi_pet_cfe_embedded", "init_config": "", "main_output_variable": "Q_OUT",
                "uses_forcing_file": False,
                "modules": [
                    {"name": "bmi_python", "params": {
                        "model_type_name": "owp_pet", "python_type": PET, "init_config": pet["init_config"],
                        "main_output_variable": "water_potential_evaporation_flux", "uses_forcing_file": False,
                        "variables_names_map": PET_FORCING}},
                    {"name": "bmi_python", "params": {
                        "model_type_name": "cfe", "python_type": CFE, "init_config": cfe["init_config"],
                        "main_output_variable": "Q_OUT", "uses_forcing_file": False,
                        "variables_names_map": CFE_FORCING}},
                ]}}],
            "forcing": real["global"]["forcing"],
        },
        "time": real["time"],
        "output": real.get("output", {"root": "./output/"}),
    }


def _prepare(example: Path, lib: Path, work: Path, variant: str) -> None:
    shutil.copytree(example, work)
    (work / "lib").symlink_to(lib)
    if variant == "stress":
        stress(work)


def _edit(path: Path, changes: dict[str, str]) -> None:
    lines = [ln for ln in path.read_text().splitlines() if ln.split("=", 1)[0] not in changes]
    path.write_text("\n".join(lines + [f"{k}={v}" for k, v in changes.items()]) + "\n")


def stress(work: Path) -> None:
    """Variant that drives the paths the December example leaves idle, applied to both runs' files:
    rain x20 (saturation excess, the soil-full branch, percolation limited by a full groundwater
    store), wet initial stores, three Nash reservoirs with initial water, Xinanjiang partitioning on
    two catchments, and the energy-balance PET method on one."""
    cats = sorted(p.stem for p in (work / "forcing").glob("cat-*.csv"))
    for cid in cats:
        path = work / "forcing" / f"{cid}.csv"
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
        col = rows[0].index("precip_rate")
        for row in rows[1:]:
            row[col] = repr(float(row[col]) * 20.0)
        with open(path, "w", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows(rows)
    for i, cid in enumerate(cats):
        changes = {"soil_storage": "0.9[m/m]", "gw_storage": "0.8[m/m]", "nash_storage": "0.001,0.002,0.0005",
                   "giuh_ordinates": "0.3,0.4,0.2,0.1"}
        if i % 2 == 1:
            changes |= {"surface_partitioning_scheme": "Xinanjiang", "a_Xinanjiang_inflection_point_parameter": "-0.2",
                        "b_Xinanjiang_shape_parameter": "0.66", "x_Xinanjiang_shape_parameter": "0.02",
                        "urban_decimal_fraction": "0.1"}
        _edit(work / "CFE" / f"{cid}_bmi_config_cfe_pass.txt", changes)
    _edit(work / "PET" / f"{cats[0]}_pet_config.txt", {"pet_method": "1"})


def _run(cmd: list[str], cwd: Path, env: dict | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def _read_catchment(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k not in ("Time Step", "Time")}


def _read_nexus(path: Path) -> np.ndarray:
    with open(path) as fh:
        return np.array([float(line.split(",")[2]) for line in fh if line.strip()])


def nse(sim: np.ndarray, obs: np.ndarray) -> float:
    return float(1.0 - np.sum((sim - obs) ** 2) / np.sum((obs - obs.mean()) ** 2))


def compare(ngen: Path, work: Path, variant: str = "as_is") -> dict:
    """Run real and embedded in `work` and return the comparison. variant: "as_is" (the example's
    own files) or "stress" (see `stress`)."""
    example = find_example(ngen)
    if example is None:
        raise FileNotFoundError(f"no {EXAMPLE} example with {REAL_REALIZATION} and lib/ next to {ngen}")
    real_dir, emb_dir = work / "real", work / "embedded"
    _prepare(example, ngen.parent / "lib", real_dir, variant)
    _prepare(example, ngen.parent / "lib", emb_dir, variant)
    gpkg = f"{EXAMPLE}.gpkg"
    _run([str(ngen), gpkg, "all", gpkg, "all", REAL_REALIZATION], real_dir)
    with open(example / REAL_REALIZATION) as fh:
        real_realization = json.load(fh)
    (emb_dir / "realization_embedded.json").write_text(json.dumps(embedded_realization(real_realization), indent=1))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    _run([sys.executable, "-m", "dmod.services.worker.engine", gpkg, "all", gpkg, "all",
          "realization_embedded.json"], emb_dir, env)

    real_out, emb_out = real_dir / "output", emb_dir / "output"
    catchments = {}
    for path in sorted(real_out.glob("cat-*.csv")):
        real, emb = _read_catchment(path), _read_catchment(emb_out / path.name)
        q_r, q_e = real["Q_OUT"], emb["Q_OUT"]
        catchments[path.stem] = {
            "steps": int(q_r.size),
            "nse": nse(q_e, q_r),
            "max_abs_diff_m": float(np.max(np.abs(q_e - q_r))),
            "volume_real_m": float(q_r.sum()), "volume_embedded_m": float(q_e.sum()),
            "volume_diff_m": float(q_e.sum() - q_r.sum()),
            "volume_diff_rel": float(q_e.sum() / q_r.sum() - 1.0),
            "columns_max_abs_diff": {k: float(np.max(np.abs(emb[k] - real[k]))) for k in real if k in emb},
            "columns_missing": sorted(set(real) - set(emb)),
        }
    nexuses = {}
    for path in sorted(real_out.glob("nex-*_output.csv")):
        real, emb = _read_nexus(path), _read_nexus(emb_out / path.name)
        nexuses[path.name.removesuffix("_output.csv")] = {
            "nse": nse(emb, real), "max_abs_diff_m3s": float(np.max(np.abs(emb - real))),
            "volume_diff_rel": float(emb.sum() / real.sum() - 1.0)}
    return {"ngen": str(ngen), "example": EXAMPLE, "variant": variant, "catchments": catchments, "nexuses": nexuses,
            "min_nse": min(c["nse"] for c in catchments.values()),
            "max_abs_diff_m": max(c["max_abs_diff_m"] for c in catchments.values()),
            "max_abs_volume_diff_rel": max(abs(c["volume_diff_rel"]) for c in catchments.values())}


def print_table(result: dict) -> None:
    print(f"{'catchment':<12} {'steps':>5} {'NSE':>14} {'max|dQ| m':>11} {'vol real m':>11} "
          f"{'vol emb m':>11} {'dvol rel':>10}")
    for cid, c in result["catchments"].items():
        print(f"{cid:<12} {c['steps']:>5} {c['nse']:>14.12f} {c['max_abs_diff_m']:>11.3e} {c['volume_real_m']:>11.6f} "
              f"{c['volume_embedded_m']:>11.6f} {c['volume_diff_rel']:>10.2e}")
    for nid, x in result["nexuses"].items():
        print(f"{nid:<12} {'':>5} {x['nse']:>14.12f} {x['max_abs_diff_m3s']:>11.3e} m3/s"
              f"{'':>19} {x['volume_diff_rel']:>10.2e}")
    worst = max((v, k, cid) for cid, c in result["catchments"].items() for k, v in c["columns_max_abs_diff"].items())
    print(f"largest difference in any other CFE output: {worst[1]} of {worst[2]}: {worst[0]:.3e}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", help="run in this folder (kept) instead of a temporary one")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    ngen = find_ngen()
    if ngen is None:
        print("no ngen binary: set DMOD_NGEN_PATH or put one at ../shared/ngen/ngen", file=sys.stderr)
        return 2
    results = {}
    for variant in ("as_is", "stress"):
        if args.keep:
            work = Path(args.keep) / variant
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            result = compare(ngen, work, variant)
        else:
            with tempfile.TemporaryDirectory(prefix="cfe_vs_real_") as tmp:
                result = compare(ngen, Path(tmp), variant)
        print(f"\n== {variant} ==")
        print_table(result)
        result["ngen"] = os.path.relpath(result["ngen"], ROOT)
        results[variant] = result
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
