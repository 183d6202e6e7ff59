"""`dmod engine`: run the embedded ngen-compatible engine, and prepare model configs for it.

    dmod engine run <catchments> <cat_subset|all|''> <nexuses> <nex_subset|all|''> <realization.json> [<partitions.json>] [--np N]
    dmod engine init-configs <hydrofabric> <out_dir> [--model cfe|pet|passthrough] [--format json|yaml]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import typer

app = typer.Typer(help="Embedded ngen-compatible engine (Python BMI models, MPI).", no_args_is_help=True,
                  pretty_exceptions_enable=False)


def _mpiexec() -> str:
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else (shutil.which("mpiexec") or "mpiexec")


@app.command("run", context_settings={"allow_interspersed_args": True})
def run(
    catchments: str = typer.Argument(..., help="catchment hydrofabric (GeoPackage if it ends in gpkg, else GeoJSON)"),
    cat_subset: str = typer.Argument(..., help="comma-separated catchment ids, 'all' or ''"),
    nexuses: str = typer.Argument(..., help="nexus hydrofabric (may be the same GeoPackage)"),
    nex_subset: str = typer.Argument(..., help="comma-separated nexus ids, 'all' or ''"),
    realization: str = typer.Argument(..., help="ngen realization config (JSON)"),
    partitions: str = typer.Argument(None, help="ngen partition file (needed for more than one rank)"),
    np_: int = typer.Option(1, "--np", min=1, help="MPI ranks: re-runs itself under mpiexec -n N"),
    subdivided: bool = typer.Option(False, "--subdivided-hydrofabric", help="accepted for ngen compatibility"),
    no_batch: bool = typer.Option(False, "--no-batch", help="one BMI instance per catchment (like ngen)"),
):
    """Run a realization exactly like `ngen` would, writing ngen's output files."""
    argv = [catchments, cat_subset, nexuses, nex_subset, realization]
    if partitions is not None:
        argv.append(partitions)
    if subdivided:
        argv.append("--subdivided-hydrofabric")
    env = dict(os.environ, DMOD_ENGINE_BATCH="0") if no_batch else None
    if np_ > 1:
        cmd = [_mpiexec(), "-n", str(np_), sys.executable, "-m", "dmod.services.worker.engine", *argv]
        raise typer.Exit(subprocess.call(cmd, env=env))
    if env is not None:
        os.environ.update(env)
    from dmod.services.worker.engine.cli import main

    raise typer.Exit(main(argv))


@app.command("init-configs")
def init_configs(
    hydrofabric: str = typer.Argument(..., help="hydrofabric whose catchments get a config"),
    out_dir: Path = typer.Argument(..., help="directory for <catchment-id>.<json|yml>"),
    model: str = typer.Option("cfe", help="cfe | pet | passthrough"),
    fmt: str = typer.Option("json", "--format", help="json | yaml"),
    pet_method: str = typer.Option("", help="cfe only: constant | priestley_taylor | input"),
    seed: int = typer.Option(0, help="seed of the per-catchment parameter draw"),
):
    """Write one BMI init config per catchment (realization: init_config "<out_dir>/{{id}}.json")."""
    from dmod.services.hydrofabric import load_network
    from dmod.services.worker.models.init_configs import write_init_configs

    net = load_network(hydrofabric)
    overrides = {"pet_method": pet_method} if pet_method else None
    written = write_init_configs([str(c) for c in net.catchment_ids.tolist()], out_dir, model, fmt=fmt, seed=seed,
                                 overrides=overrides)
    typer.echo(f"wrote {len(written)} {model} configs to {out_dir}")
