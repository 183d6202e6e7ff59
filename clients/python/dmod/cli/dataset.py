"""`dmod dataset …`: create, upload, download, list, inspect, seal, detect and search datasets.

DATASET arguments take a resource name (`datasets/{id}`) or a display name.
"""

import asyncio
import datetime as dt
import functools
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Annotated

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from dmod.datasets_client import DatasetsClient, UploadIncomplete, make_domain, requirement
from dmod.errors import describe
from dmod.upload_journal import UploadJournal
from dmod.v1 import datasets_pb2, domain_pb2

app = typer.Typer(help="Datasets: typed collections of files with a domain, stored in S3.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

FORMAT_ALIASES = {"csv": "AORC_CSV", "aorc": "AORC_CSV", "netcdf": "NETCDF_FORCING", "nc": "NETCDF_FORCING",
                  "realization": "NGEN_REALIZATION_CONFIG", "gpkg": "NGEN_GEOPACKAGE_HYDROFABRIC",
                  "geopackage": "NGEN_GEOPACKAGE_HYDROFABRIC", "geojson": "NGEN_GEOJSON_HYDROFABRIC",
                  "partition": "NGEN_PARTITION_CONFIG", "partitions": "NGEN_PARTITION_CONFIG", "bmi": "BMI_CONFIG",
                  "bmi_library": "BMI_LIBRARY", "bmi-library": "BMI_LIBRARY", "library": "BMI_LIBRARY",
                  "output": "NGEN_CSV_OUTPUT", "observation": "OBSERVATION_CSV", "observations": "OBSERVATION_CSV"}


def _enum(kind, prefix: str, value: str | None, aliases: dict | None = None) -> int:
    if not value:
        return 0
    key = value.strip().upper().replace("-", "_")
    key = (aliases or {}).get(value.strip().lower(), key)
    try:
        return kind.Value(prefix + key.removeprefix(prefix))
    except ValueError:
        names = ", ".join(n.removeprefix(prefix).lower() for n in kind.keys()  # noqa: SIM118 - EnumTypeWrapper
                          if not n.endswith("UNSPECIFIED"))
        raise typer.BadParameter(f"{value!r}; one of: {names}") from None


def category_value(value: str | None) -> int:
    return _enum(domain_pb2.DataCategory, "DATA_CATEGORY_", value)


def format_value(value: str | None) -> int:
    return _enum(domain_pb2.DataFormat, "DATA_FORMAT_", value, FORMAT_ALIASES)


def _short(kind, value: int, prefix: str) -> str:
    return kind.Name(value).removeprefix(prefix).lower() if value else "-"


def _labels(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"label {pair!r} must look like key=value")
        out[key] = value
    return out


def _as_dict(message) -> dict:
    return MessageToDict(message, preserving_proto_field_name=True)


def _print_json(value) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def command(fn):
    """Run an async command body with a client; RPC errors are printed, not raised."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        async def run():
            async with DatasetsClient(journal=UploadJournal.default()) as client:  # resumable after a kill
                return await fn(client, *args, **kwargs)
        try:
            return asyncio.run(run())
        except grpc.RpcError as exc:
            err_console.print(f"[red]error[/red] {describe(exc)}", highlight=False)
            raise typer.Exit(1) from None
        except (LookupError, OSError) as exc:
            err_console.print(f"[red]error[/red] {exc}", highlight=False)
            raise typer.Exit(1) from None
    signature = inspect.signature(fn)
    wrapper.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    return wrapper


def _progress(total_label: str) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=err_console, transient=False)


def _rate(nbytes: int, seconds: float) -> str:
    per = nbytes / seconds if seconds > 0 else 0.0
    return f"{per / 1e6:.1f} MB/s" if per >= 1e6 else f"{per / 1e3:.0f} kB/s"


def _fmt_time(ts) -> str:
    return ts.ToDatetime(tzinfo=dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if ts.seconds else "-"


def domain_lines(domain: domain_pb2.Domain, limit: int = 6) -> list[str]:
    lines = []
    for c in domain.continuous:
        lines.append(f"{domain_pb2.StandardIndex.Name(c.index).removeprefix('STANDARD_INDEX_')}: "
                     f"{_fmt_time(c.begin_time)} .. {_fmt_time(c.end_time)} (end exclusive)")
    for r in domain.discrete:
        name = domain_pb2.StandardIndex.Name(r.index).removeprefix("STANDARD_INDEX_")
        count = max(r.value_count, len(r.values))
        shown = ", ".join(r.values[:limit]) + (f" … (+{count - limit})" if count > limit else "")
        lines.append(f"{name}: {shown or '(all)'}" + (f"  [{count}]" if count > limit else ""))
    return lines or ["(empty)"]


# ---- commands ---------------------------------------------------------------------------------

@app.command()
@command
async def create(client: DatasetsClient,
                 name: str = typer.Argument(..., help="Display name (unique per owner)"),
                 category: str = typer.Option(None, "--category", "-c", help="config, forcing, hydrofabric, "
                                              "observation, output (implied by --format)"),
                 data_format: str = typer.Option(None, "--format", "-f", help="e.g. aorc_csv, netcdf, gpkg, geojson, "
                                                 "realization, partition, bmi, bmi_library, observation"),
                 description: str = typer.Option("", "--description", "-d"),
                 label: Annotated[list[str] | None, typer.Option("--label", "-l", help="key=value (repeatable)")] = None,
                 derived_from: Annotated[list[str] | None, typer.Option("--derived-from")] = None,
                 request_id: str = typer.Option(None, "--request-id", help="Idempotency key"),
                 as_json: bool = typer.Option(False, "--json")):
    """Create an OPEN dataset."""
    created = await client.create_dataset(name, category_value(category), format_value(data_format),
                                          description=description, labels=_labels(label),
                                          derived_from=derived_from or (), request_id=request_id)
    if as_json:
        _print_json(_as_dict(created))
    else:
        console.print(f"created [bold]{created.name}[/bold] ({created.display_name})")


@app.command()
@command
async def upload(client: DatasetsClient,
                 dataset: Annotated[str, typer.Argument(help="datasets/{id} or display name")],
                 paths: Annotated[list[Path], typer.Argument(help="Files and directories (uploaded recursively)")],
                 prefix: str = typer.Option("", "--prefix", help="Object path prefix, e.g. forcing/"),
                 concurrency: int = typer.Option(8, "--concurrency", "-j", min=1, max=64),
                 seal: bool = typer.Option(False, "--seal", help="Seal the dataset afterwards"),
                 as_json: bool = typer.Option(False, "--json")):
    """Upload files (SHA-256 verified, resumable); directories keep their relative layout."""
    name = await client.resolve(dataset)
    jobs: list[tuple[Path, str]] = []
    for p in paths:
        if p.is_dir():
            jobs += [(f, prefix + f.relative_to(p).as_posix()) for f in sorted(p.rglob("*")) if f.is_file()]
        elif p.is_file():
            jobs.append((p, prefix + p.name))
        else:
            raise OSError(f"{p}: no such file or directory")
    total = sum(f.stat().st_size for f, _ in jobs)
    started = time.perf_counter()
    with _progress("upload") as progress:
        task = progress.add_task(f"upload {len(jobs)} file(s)", total=total)
        # small files many per call (UploadObjects), large ones one resumable stream each; files
        # already there (same size and SHA-256) are skipped, so a rerun sends only what is missing
        try:
            objects = await client.upload_files(name, jobs, concurrency=concurrency, skip_existing=True,
                                                progress=lambda n, _t: progress.update(task, completed=n))
        except UploadIncomplete as exc:
            failed = exc
        else:
            failed = None
    seconds = time.perf_counter() - started
    if failed is not None:
        for path, why in list(failed.failed.items())[:20]:
            err_console.print(f"[red]not uploaded[/red] {path}: {why}", highlight=False)
        if len(failed.failed) > 20:
            err_console.print(f"... and {len(failed.failed) - 20} more", highlight=False)
        err_console.print(f"[red]error[/red] {len(failed.failed)} of {len(jobs)} file(s) not uploaded "
                          f"({len(failed.uploaded)} committed); run the same command again to send what is missing",
                          highlight=False)
        raise typer.Exit(1)
    sealed = await client.seal_dataset(name) if seal else None
    if as_json:
        _print_json({"dataset": name, "objects": [_as_dict(o) for o in objects], "bytes": total,
                     "seconds": round(seconds, 3), **({"sealed": _as_dict(sealed)} if sealed else {})})
    else:
        console.print(f"uploaded {len(objects)} file(s), {total:,} bytes in {seconds:.1f}s ({_rate(total, seconds)}) "
                      f"to {name}" + (" — sealed" if sealed else ""))


@app.command()
@command
async def download(client: DatasetsClient,
                   source: Annotated[str, typer.Argument(help="A dataset (datasets/{id} or display name) or one object (datasets/{id}/objects/{path})")],
                   dest: Annotated[Path, typer.Argument(help="Directory (or file for one object)")] = Path("."),
                   prefix: str = typer.Option("", "--prefix", help="Only objects under this path prefix"),
                   concurrency: int = typer.Option(8, "--concurrency", "-j", min=1, max=64),
                   via: str = typer.Option("auto", "--via", help="auto: large objects straight from S3 by "
                                           "presigned URL when reachable; url; stream: through the service"),
                   as_json: bool = typer.Option(False, "--json")):
    """Download objects (SHA-256 verified, written atomically)."""
    if via not in ("auto", "url", "stream"):
        raise typer.BadParameter("must be auto, url or stream", param_hint="--via")
    if "/objects/" in source:
        name, path = source.split("/objects/", 1)
        objects = [o for o in await client.list_objects(name, prefix=path) if o.path == path]
        if not objects:
            raise LookupError(f"{source} does not exist")
        targets = [(objects[0], dest / Path(path).name if dest.is_dir() else dest)]
    else:
        name = await client.resolve(source)
        targets = [(o, dest / o.path) for o in await client.list_objects(name, prefix=prefix)]
    total = sum(o.size_bytes for o, _ in targets)
    done: dict[str, int] = {}
    sem = asyncio.Semaphore(concurrency)
    started = time.perf_counter()
    with _progress("download") as progress:
        task = progress.add_task(f"download {len(targets)} file(s)", total=total)

        async def one(obj, target: Path):
            def each(n: int, _t: int) -> None:
                done[obj.name] = n
                progress.update(task, completed=sum(done.values()))
            async with sem:
                await client.download_file(obj.name, target, progress=each, via=via, size_hint=obj.size_bytes)
            return target
        written = await asyncio.gather(*(one(o, t) for o, t in targets))
    seconds = time.perf_counter() - started
    if as_json:
        _print_json({"files": [str(p) for p in written], "bytes": total, "seconds": round(seconds, 3)})
    else:
        console.print(f"downloaded {len(written)} file(s), {total:,} bytes in {seconds:.1f}s ({_rate(total, seconds)}) "
                      f"to {dest}")


@app.command("ls")
@command
async def ls(client: DatasetsClient,
             dataset: str = typer.Argument(None, help="List this dataset's objects instead"),
             prefix: str = typer.Option("", "--prefix"),
             category: str = typer.Option(None, "--category", "-c"),
             data_format: str = typer.Option(None, "--format", "-f"),
             owner: str = typer.Option("", "--owner"),
             state: str = typer.Option(None, "--state", help="open or sealed"),
             label: Annotated[list[str] | None, typer.Option("--label", "-l")] = None,
             limit: int = typer.Option(200, "--limit"),
             as_json: bool = typer.Option(False, "--json")):
    """List datasets (newest first), or the objects of one dataset."""
    if dataset:
        objects = await client.list_objects(await client.resolve(dataset), prefix=prefix)
        if as_json:
            _print_json([_as_dict(o) for o in objects])
            return
        table = Table("path", "size", "sha256", "created")
        for o in objects:
            table.add_row(o.path, f"{o.size_bytes:,}", o.sha256[:16] + "…", _fmt_time(o.create_time))
        console.print(table)
        return
    state_value = _enum(datasets_pb2.DatasetState, "DATASET_STATE_", state)
    found = await client.list_datasets(category=category_value(category), data_format=format_value(data_format),
                                       owner=owner, labels=_labels(label), state=state_value, limit=limit)
    if as_json:
        _print_json([_as_dict(d) for d in found])
        return
    table = Table("name", "display name", "category", "format", "state", "objects", "size", "created")
    for d in found:
        table.add_row(d.name, d.display_name, _short(domain_pb2.DataCategory, d.category, "DATA_CATEGORY_"),
                      _short(domain_pb2.DataFormat, d.data_format, "DATA_FORMAT_"),
                      _short(datasets_pb2.DatasetState, d.state, "DATASET_STATE_"), str(d.object_count),
                      f"{d.size_bytes:,}", _fmt_time(d.create_time))
    console.print(table)


@app.command()
@command
async def show(client: DatasetsClient, dataset: str = typer.Argument(...),
               as_json: bool = typer.Option(False, "--json")):
    """A dataset's details and domain."""
    d = await client.get_dataset(await client.resolve(dataset))
    if as_json:
        _print_json(_as_dict(d))
        return
    rows = [("name", d.name), ("display name", d.display_name), ("owner", d.owner),
            ("category", _short(domain_pb2.DataCategory, d.category, "DATA_CATEGORY_")),
            ("format", _short(domain_pb2.DataFormat, d.data_format, "DATA_FORMAT_")),
            ("state", _short(datasets_pb2.DatasetState, d.state, "DATASET_STATE_")),
            ("objects", f"{d.object_count} ({d.size_bytes:,} bytes)"), ("created", _fmt_time(d.create_time)),
            ("sealed", _fmt_time(d.seal_time)), ("description", d.description or "-"),
            ("labels", ", ".join(f"{k}={v}" for k, v in sorted(d.labels.items())) or "-"),
            ("derived from", ", ".join(d.derived_from) or "-"), ("sharing", _sharing(d))]
    for key, value in rows:
        console.print(f"[bold]{key:>13}[/bold]  {value}", highlight=False)
    for i, line in enumerate(domain_lines(d.domain)):
        console.print(f"[bold]{'domain' if i == 0 else '':>13}[/bold]  {line}", highlight=False)


def _sharing(d: datasets_pb2.Dataset) -> str:
    public = d.visibility == datasets_pb2.DATASET_VISIBILITY_PUBLIC
    readers = ", ".join(d.readers)
    return ("public" if public else "private") + (f"; readers {readers}" if readers else "")


@app.command()
@command
async def share(client: DatasetsClient, dataset: str = typer.Argument(...),
                user: list[str] = typer.Option([], "--user", "-u", help="Let this user read it (repeatable)"),
                group: list[str] = typer.Option([], "--group", "-g", help="Let this group's members read it"),
                remove: list[str] = typer.Option([], "--remove", help="Take users/NAME or groups/NAME off the readers"),
                public: bool = typer.Option(None, "--public/--private", help="Every user may read it / only readers")):
    """Share a dataset for reading (owner or admin): with users, groups, or everyone; `--private` undoes --public."""
    name = await client.resolve(dataset)
    d = await client.get_dataset(name)
    readers = [r for r in d.readers if r not in remove]
    readers += [r for r in [f"users/{u}" for u in user] + [f"groups/{g}" for g in group] if r not in readers]
    visibility = None if public is None else (datasets_pb2.DATASET_VISIBILITY_PUBLIC if public
                                              else datasets_pb2.DATASET_VISIBILITY_PRIVATE)
    d = await client.update_dataset(name, readers=readers, visibility=visibility)
    console.print(f"{d.name}: {_sharing(d)}", highlight=False)


@app.command()
@command
async def rm(client: DatasetsClient, target: str = typer.Argument(..., help="A dataset or datasets/{id}/objects/{path}"),
             force: bool = typer.Option(False, "--force", help="Also delete a SEALED dataset")):
    """Delete a dataset (with its objects) or one object."""
    if "/objects/" in target:
        await client.delete_object(target)
    else:
        await client.delete_dataset(await client.resolve(target), force=force)
    console.print(f"deleted {target}")


@app.command()
@command
async def seal(client: DatasetsClient, dataset: str = typer.Argument(...),
               as_json: bool = typer.Option(False, "--json")):
    """Seal a dataset (immutable from now on); its domain is detected if empty."""
    d = await client.seal_dataset(await client.resolve(dataset))
    if as_json:
        _print_json(_as_dict(d))
        return
    console.print(f"sealed {d.name}")
    for line in domain_lines(d.domain):
        console.print(f"  {line}", highlight=False)


@app.command()
@command
async def detect(client: DatasetsClient, dataset: str = typer.Argument(...),
                 data_format: str = typer.Option(None, "--format", "-f", help="Detect as this format"),
                 apply: bool = typer.Option(False, "--apply", help="Store the detected domain on the dataset"),
                 as_json: bool = typer.Option(False, "--json")):
    """Detect a dataset's domain from its files."""
    name = await client.resolve(dataset)
    reply = await client.detect_domain(name, format_value(data_format))
    if apply:
        await client.update_dataset(name, domain=reply.domain)
    if as_json:
        _print_json(_as_dict(reply))
        return
    console.print(f"{name} as {_short(domain_pb2.DataFormat, reply.data_format, 'DATA_FORMAT_')}"
                  + (" (stored)" if apply else ""))
    for line in domain_lines(reply.domain):
        console.print(f"  {line}", highlight=False)


def _ids(value: str | None) -> list[str] | None:
    if value is None:
        return None
    if value.startswith("@"):
        text = Path(value[1:]).read_text()
        return [v.strip() for v in text.replace(",", "\n").splitlines() if v.strip()]
    return [v.strip() for v in value.split(",") if v.strip()]


@app.command()
@command
async def search(client: DatasetsClient,
                 category: str = typer.Option(None, "--category", "-c"),
                 data_format: str = typer.Option(None, "--format", "-f"),
                 start: str = typer.Option(None, "--start", help="Begin of the time range (inclusive), ISO"),
                 end: str = typer.Option(None, "--end", help="End of the time range (exclusive), ISO"),
                 catchments: str = typer.Option(None, "--catchments", help="cat-1,cat-2 or @file"),
                 gages: str = typer.Option(None, "--gages", help="ids, or @file"),
                 hydrofabric_id: str = typer.Option(None, "--hydrofabric-id"),
                 length: int = typer.Option(None, "--length", help="Partition count"),
                 owner: str = typer.Option("", "--owner"),
                 as_json: bool = typer.Option(False, "--json")):
    """Find the dataset that best fulfils a requirement, and why the others do not."""
    if (start is None) != (end is None):
        raise typer.BadParameter("--start and --end go together")
    domain = make_domain(time=(start, end) if start else None, catchments=_ids(catchments), gages=_ids(gages),
                         hydrofabric_id=hydrofabric_id, length=length)
    reply = await client.search(requirement(category_value(category), format_value(data_format), domain, owner))
    if as_json:
        _print_json(_as_dict(reply))
        return
    if reply.best.name:
        console.print(f"best: [bold green]{reply.best.name}[/bold green] ({reply.best.display_name})")
    else:
        console.print("[yellow]no dataset fulfils the requirement[/yellow]")
    table = Table("dataset", "accepted", "reasons")
    for c in reply.candidates:
        table.add_row(c.dataset, "yes" if c.accepted else "no", "\n".join(c.reasons))
    console.print(table)
