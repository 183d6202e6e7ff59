"""`dmod hydrofabric ...`: synthesise, validate, subset, partition and inspect local
hydrofabric files (GeoPackage, or GeoJSON catchment + nexus pairs). No server needed."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Hydrofabric tools working on local files.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

JSON_OPT = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")
NEXUS_OPT = typer.Option(None, "--nexus", "-n", help="Nexus file (GeoJSON pair, or a second GeoPackage).")


def _emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=1, default=str) + "\n")


def _kv_table(title: str, data: dict) -> Table:
    t = Table(title=title, show_header=False)
    t.add_column("key", style="bold")
    t.add_column("value")
    for k, v in data.items():
        t.add_row(str(k), json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    return t


def _issues_table(issues, title: str) -> Table:
    t = Table(title=title)
    for col in ("severity", "code", "id", "message"):
        t.add_column(col, overflow="fold")
    for i in issues:
        style = "red" if i.severity == "error" else "yellow"
        t.add_row(f"[{style}]{i.severity}[/{style}]", i.code, i.id, i.message)
    return t


@app.command()
def synth(
    out_dir: Path = typer.Argument(..., help="Directory to write into."),
    catchments: int = typer.Option(1000, "--catchments", "-c"),
    seed: int = typer.Option(0, "--seed"),
    outlets: int | None = typer.Option(None, "--outlets", help="Number of basins (default ~sqrt(N)/3)."),
    geojson: bool = typer.Option(False, "--geojson", help="Also write a GeoJSON catchment/nexus pair."),
    forcing: str = typer.Option("csv", "--forcing", help="csv | netcdf | both | none"),
    start: str = typer.Option("2015-12-01 00:00:00", "--start"),
    hours: int = typer.Option(720, "--hours"),
    gage_fraction: float = typer.Option(0.02, "--gage-fraction"),
    forcing_limit: int = typer.Option(20000, "--forcing-limit", help="Skip forcing above this many catchments."),
    as_json: bool = JSON_OPT,
):
    """Write a synthetic v2.2-style hydrofabric with forcing and gage observations."""
    from dmod.services.hydrofabric.synth import synth as run

    if forcing not in ("csv", "netcdf", "both", "none"):
        raise typer.BadParameter("--forcing must be csv, netcdf, both or none")
    t0 = time.perf_counter()
    m = run(out_dir, catchments=catchments, seed=seed, outlets=outlets, geojson=geojson,
            forcing=None if forcing == "none" else forcing, start=start, hours=hours,
            gage_fraction=gage_fraction, forcing_limit=forcing_limit)
    m["seconds"] = round(time.perf_counter() - t0, 2)
    if as_json:
        _emit_json(m)
    else:
        console.print(_kv_table(f"synthetic hydrofabric in {out_dir}", m))


@app.command()
def validate(
    catchments: Path = typer.Argument(..., help="GeoPackage, or GeoJSON catchments."),
    nexus: Path | None = NEXUS_OPT,
    partition: Path | None = typer.Option(None, "--partition", "-p", help="Also validate this partition file."),
    ranks: int | None = typer.Option(None, "--ranks", "-r", help="MPI ranks the partition file is for."),
    engine: str = typer.Option("ngen", "--engine", help="Engine the partition file is for: ngen (strict) | "
                               "embedded (ngen's receive-side hang is then only a warning)."),
    warnings: bool = typer.Option(True, "--warnings/--errors-only"),
    as_json: bool = JSON_OPT,
):
    """Check the hydrofabric (and optionally a partition file); exit 1 on any error."""
    from dmod.services.hydrofabric.partition_validate import validate_partitioning
    from dmod.services.hydrofabric.readers import load_network
    from dmod.services.hydrofabric.validate import validate_hydrofabric

    issues = validate_hydrofabric(catchments, nexus)
    p_issues = []
    if partition is not None:
        net = load_network(catchments, nexus)
        if ranks is None:
            ranks = len(json.loads(partition.read_text()).get("partitions", []))
        try:
            p_issues = validate_partitioning(net, partition, ranks, engine=engine.lower())
        except ValueError as e:
            err.print(f"[red]{e}[/red]")
            raise typer.Exit(2)
    if not warnings:
        issues = [i for i in issues if i.severity == "error"]
        p_issues = [i for i in p_issues if i.severity == "error"]
    n_err = sum(i.severity == "error" for i in issues + p_issues)
    if as_json:
        _emit_json({"valid": n_err == 0, "hydrofabric": [i.to_dict() for i in issues],
                    "partition": [i.to_dict() for i in p_issues] if partition else None})
    else:
        if issues:
            console.print(_issues_table(issues, f"hydrofabric {catchments}"))
        if p_issues:
            console.print(_issues_table(p_issues, f"partition {partition} on {ranks} ranks"))
        console.print("[green]valid[/green]" if n_err == 0 else f"[red]{n_err} error(s)[/red]")
    raise typer.Exit(1 if n_err else 0)


def _read_ids(ids: list[str], ids_file: Path | None) -> list[str]:
    out = list(ids)
    if ids_file:
        out += [s.strip() for s in ids_file.read_text().replace(",", "\n").splitlines() if s.strip()]
    if not out:
        raise typer.BadParameter("give ids as arguments or with --ids-file")
    return out


@app.command()
def subset(
    catchments: Path = typer.Argument(...),
    ids: list[str] = typer.Argument(None, help="Catchment (cat-N), waterbody (wb-N), nexus or gage ids."),
    nexus: Path | None = NEXUS_OPT,
    out: Path = typer.Option(Path("subset"), "--out", "-o", help="Output directory."),
    ids_file: Path | None = typer.Option(None, "--ids-file", help="File of ids (one per line or commas)."),
    upstream: bool = typer.Option(True, "--upstream/--no-upstream"),
    downstream: bool = typer.Option(False, "--downstream/--no-downstream"),
    depth: int | None = typer.Option(None, "--depth", help="Limit the closure to this many hops."),
    check: bool = typer.Option(False, "--check", help="Only report unknown ids; write nothing."),
    as_json: bool = JSON_OPT,
):
    """Write the upstream/downstream closure of ids as a new hydrofabric (+ subset.json)."""
    from dmod.services.hydrofabric.crosswalk import gage_crosswalk
    from dmod.services.hydrofabric.readers import is_geopackage, load_network
    from dmod.services.hydrofabric.subset import validate_ids
    from dmod.services.hydrofabric.subset_write import subset_hydrofabric

    wanted = _read_ids(ids or [], ids_file)
    net = load_network(catchments, nexus)
    cw = gage_crosswalk(catchments, net) if is_geopackage(catchments) else None
    unknown = validate_ids(net, wanted, cw)
    if check or unknown:
        if as_json:
            _emit_json({"unknown": unknown, "known": len(wanted) - len(unknown)})
        elif unknown:
            err.print(f"[red]unknown id(s):[/red] {', '.join(unknown)}")
        else:
            console.print(f"[green]all {len(wanted)} id(s) known[/green]")
        raise typer.Exit(1 if unknown else 0)
    t0 = time.perf_counter()
    doc = subset_hydrofabric(catchments, wanted, out, nexus_path=nexus, upstream=upstream,
                             downstream=downstream, depth=depth, network=net)
    doc["seconds"] = round(time.perf_counter() - t0, 3)
    if as_json:
        _emit_json({k: v for k, v in doc.items() if k not in ("catchment_ids", "nexus_ids")})
    else:
        console.print(_kv_table(f"subset → {out}", {k: v for k, v in doc.items()
                                                    if k not in ("catchment_ids", "nexus_ids")}))


@app.command()
def partition(
    catchments: Path = typer.Argument(...),
    parts: int = typer.Option(..., "--parts", "-k", help="Number of partitions (MPI ranks)."),
    nexus: Path | None = NEXUS_OPT,
    method: str = typer.Option("METIS", "--method", "-m", help="DFS_CHUNK | LOCAL_ONLY | METIS"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the ngen partition JSON here."),
    cost: str = typer.Option("count", "--cost", help="Per-catchment cost: count | area"),
    ufactor: int = typer.Option(25, "--ufactor", help="METIS load imbalance allowance (1/1000)."),
    contiguous: bool = typer.Option(True, "--contiguous/--no-contiguous"),
    seed: int = typer.Option(0, "--seed"),
    repair: bool = typer.Option(True, "--repair/--no-repair", help="Remove ngen's hang pattern (a boundary "
                                "nexus' owning rank holding ≥ 2 of its contributors); --no-repair keeps the "
                                "method's raw result (DFS_CHUNK then matches ngen's partitionGenerator)."),
    as_json: bool = JSON_OPT,
):
    """Partition a hydrofabric for N MPI ranks and report quality."""
    from dmod.services.hydrofabric.partition import partition as run
    from dmod.services.hydrofabric.partition_validate import validate_partitioning
    from dmod.services.hydrofabric.readers import load_network

    net = load_network(catchments, nexus)
    opts = {"ufactor": ufactor, "contiguous": contiguous, "seed": seed} if method.upper() == "METIS" else {}
    try:
        res = run(net, parts, method, cost=cost, repair=repair, **opts)
    except ValueError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2)
    issues = [i for i in validate_partitioning(net, res.document, parts) if i.severity == "error"]
    res.stats["valid"] = not issues
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res.document, indent=1))
        res.stats["file"] = str(out)
    if as_json:
        _emit_json(res.stats)
    else:
        console.print(_kv_table(f"{res.method} into {parts}", res.stats))
    raise typer.Exit(1 if issues else 0)


@app.command()
def stats(
    catchments: Path = typer.Argument(...),
    nexus: Path | None = NEXUS_OPT,
    as_json: bool = JSON_OPT,
):
    """Size, shape and id of a hydrofabric."""
    import numpy as np

    from dmod.services.hydrofabric.crosswalk import gage_crosswalk
    from dmod.services.hydrofabric.readers import is_geopackage, layer_names, load_network

    t0 = time.perf_counter()
    net = load_network(catchments, nexus)
    s = net.summary()
    s["load_seconds"] = round(time.perf_counter() - t0, 3)
    t = net.tour
    s["max_depth"] = int(t.depth.max()) if net.n_catchments else 0
    roots = np.flatnonzero(t.down < 0)
    s["largest_basin"] = int(t.size[roots].max()) if len(roots) else 0
    if is_geopackage(catchments):
        s["layers"] = layer_names(catchments)
        s["gages"] = len(gage_crosswalk(catchments, net))
    if as_json:
        _emit_json(s)
    else:
        console.print(_kv_table(str(catchments), s))
