"""`dmod`: run the local stack, serve services, and talk to DMOD.

Sub-commands for each area live in their own module (`dmod.cli.<area>`) and are mounted here.
"""
from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dmod.services.runtime.settings import default_home

app = typer.Typer(help="DMOD: run NextGen model jobs on demand, from a laptop to a Swarm cluster.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()

# area module -> command name; mounted only when the module exists.
_SUBAPPS = {"dataset": "dataset", "job": "job", "hydrofabric": "hydrofabric", "engine": "engine",
            "evaluation": "eval", "partition": "partition", "subset": "subset", "worker": "worker", "demo": "demo",
            "user": "user"}
for _module, _name in _SUBAPPS.items():
    try:
        _sub = importlib.import_module(f"dmod.cli.{_module}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"dmod.cli.{_module}":
            raise
        continue
    if hasattr(_sub, "app"):
        app.add_typer(_sub.app, name=_name)
    elif hasattr(_sub, "command"):
        app.command(_name)(_sub.command)


@app.command()
def up(home: Path = typer.Option(None, envvar="DMOD_HOME", help="State dir (default ~/.local/share/dmod)")):
    """Start PostgreSQL, Redis, S3, every service and the Envoy gateway on 127.0.0.1."""
    from dmod.local.stack import Stack

    home = home or default_home()
    started = time.perf_counter()
    state = Stack(home, log=console.print).up()
    console.print(f"[green]DMOD is up[/green] in {time.perf_counter() - started:.1f}s — gateway "
                  f"[bold]{state.gateway}[/bold] (gRPC + grpc-web), web UI http://{state.gateway}/, state in {home}")
    from dmod.cli.user import bootstrap_admin

    if note := bootstrap_admin(Path(home), state.gateway):  # the first admin (README "Users, sharing and tokens")
        console.print(note)


@app.command()
def down(home: Path = typer.Option(None, envvar="DMOD_HOME")):
    """Stop everything `dmod up` started."""
    from dmod.local.stack import Stack

    stopped = Stack(home or default_home()).down()
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@app.command()
def status(home: Path = typer.Option(None, envvar="DMOD_HOME", help="State dir of the stack"),
           as_json: bool = typer.Option(False, "--json", help="The report as JSON"),
           gateway_only: bool = typer.Option(False, "--gateway", help="Print only the gateway address (host:port), "
                                             "e.g. grpcurl -plaintext $(dmod status --gateway) list")):
    """Health of each component of the local stack, and where to reach it."""
    from dmod.local.stack import Stack, load_state

    home = home or default_home()
    state = load_state(Path(home))
    if gateway_only:
        if state is None:
            print(f"no DMOD stack at {home} — run `dmod up` or set DMOD_GATEWAY", file=sys.stderr)
            raise typer.Exit(1)
        print(state.gateway)
        raise typer.Exit(0)
    report = Stack(home).status()
    addresses = {"gateway": state.gateway, "web_ui": f"http://{state.gateway}/",
                 "s3": f"127.0.0.1:{state.ports['s3']}"} if state is not None and report else {}
    if as_json:
        console.print_json(json.dumps({**report, "addresses": addresses} if addresses else report))
    elif not report:
        console.print(f"DMOD is not running at {home} (dmod up)")
    else:
        console.print(f"gateway [bold]{addresses['gateway']}[/bold] (gRPC + grpc-web)   web UI {addresses['web_ui']}   "
                      f"S3 {addresses['s3']}   state {home}", highlight=False)
        table = Table("component", "healthy", "pid", "port")
        for name, info in report.items():
            table.add_row(name, "[green]yes[/green]" if info.get("healthy") else "[red]no[/red]",
                          str(info.get("pid") or ""), str(info.get("port") or ""))
        console.print(table)
    healthy = bool(report) and all(info.get("healthy") for info in report.values())
    raise typer.Exit(0 if healthy else 1)


@app.command()
def serve(services: list[str] = typer.Argument(None, help="Service names, or 'all'")):
    """Run DMOD gRPC services in this process (what `dmod up` and each Swarm container run)."""
    from dmod.services.runtime.server import main

    main(services or ["all"])


gateway = typer.Typer(help="Envoy gateway configuration.")
app.add_typer(gateway, name="gateway")


@gateway.command("render")
def gateway_render(out: Path = typer.Option(Path("gateway"), help="Folder for the rendered configs")):
    """Write gateway/envoy.local.json and gateway/envoy.swarm.json."""
    from dmod.local.envoy import render_config
    from dmod.services.runtime.registry import SERVICES

    out.mkdir(parents=True, exist_ok=True)
    local = render_config(8780, 8785, {name: ("127.0.0.1", 8781) for name in SERVICES})
    swarm = render_config(8080, 9901, {name: (name, 50051) for name in SERVICES}, dns=True, listen_host="0.0.0.0",
                          web=("web", 8080))
    (out / "envoy.local.json").write_text(json.dumps(local, indent=1) + "\n")
    (out / "envoy.swarm.json").write_text(json.dumps(swarm, indent=1) + "\n")
    console.print(f"wrote {out}/envoy.local.json and {out}/envoy.swarm.json")


if __name__ == "__main__":
    app()
