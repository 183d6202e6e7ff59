"""`dmod user create|update|ls|login`: accounts (admins create them) and the CLI's own token.

    dmod user create alice                      # asks for the password (or --password-stdin)
    dmod user create ops --admin --group hydro
    dmod user update alice --group hydro --group ops  # replaces alice's groups; --admin/--user, --password
    dmod user ls
    dmod user login alice                       # writes $DMOD_HOME/token (0600) for later commands

Calls carry DMOD_TOKEN / $DMOD_HOME/token. Without one, on the machine running the local stack,
the CLI acts as its operator: it signs a short-lived admin token with the stack's own key
($DMOD_HOME/keys/jwt.key, readable only by whoever started `dmod up`).
"""
from __future__ import annotations

import asyncio
import getpass
import os
import secrets
import sys
from pathlib import Path

import grpc
import typer
from google.protobuf import field_mask_pb2
from rich.console import Console
from rich.table import Table

from dmod.client import aio_channel, token
from dmod.errors import describe
from dmod.services.runtime.settings import default_home
from dmod.v1 import auth_pb2, auth_pb2_grpc

app = typer.Typer(help="Users: create, list, log in.", no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()
err = Console(stderr=True)

ADMIN_NAME = "admin"
OPERATOR = "dmod-operator"


def operator_metadata(home: Path | None = None) -> tuple[tuple[str, str], ...]:
    """A 5-minute admin token signed with the local stack's key, when this user can read it."""
    key = Path(home or default_home()) / "keys/jwt.key"
    try:
        pem = key.read_bytes()
    except OSError:
        return ()
    from dmod.services.runtime.auth import TokenIssuer

    value, _ = TokenIssuer(pem, 300).issue(OPERATOR, roles=["admin"])
    return (("authorization", f"Bearer {value}"),)


def _metadata() -> tuple[tuple[str, str], ...]:
    value = token()
    return (("authorization", f"Bearer {value}"),) if value else operator_metadata()


def _run(coro):
    try:
        return asyncio.run(coro)
    except grpc.aio.AioRpcError as exc:
        err.print(f"[red]error:[/red] {describe(exc)}")
        raise typer.Exit(1) from None


def _password(stdin: bool, confirm: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if confirm and getpass.getpass("again: ") != first:
        err.print("[red]error:[/red] the passwords differ")
        raise typer.Exit(2)
    return first


@app.command("create")
def create(username: str = typer.Argument(..., help="Lower case: [a-z][a-z0-9_.-]{1,62}"),
           admin: bool = typer.Option(False, "--admin", help="May do everything (users, every dataset and job)"),
           group: list[str] = typer.Option([], "--group", "-g", help="Group membership (repeatable)"),
           password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin")):
    """Create a user (admins only)."""
    password = _password(password_stdin, confirm=True)

    async def go():
        async with aio_channel() as ch:
            return await auth_pb2_grpc.AuthServiceStub(ch).CreateUser(auth_pb2.CreateUserRequest(
                username=username, password=password, roles=["admin"] if admin else ["user"], groups=group),
                metadata=_metadata(), timeout=30)

    user = _run(go()).user
    console.print(f"created [bold]{user.name}[/bold] ({', '.join(user.roles)}"
                  f"{'; groups ' + ', '.join(user.groups) if user.groups else ''})")


@app.command("update")
def update(username: str,
           admin: bool = typer.Option(None, "--admin/--user", help="Make an admin / a plain user"),
           group: list[str] = typer.Option(None, "--group", "-g", help="The user's groups (repeatable; replaces them)"),
           no_groups: bool = typer.Option(False, "--no-groups", help="Remove the user from every group"),
           password_stdin: bool = typer.Option(False, "--password-stdin", help="New password from stdin"),
           password: bool = typer.Option(False, "--password", help="Ask for a new password")):
    """Change a user's role, groups or password (admins only)."""
    user = auth_pb2.User(name=f"users/{username}")
    paths = []
    if admin is not None:
        user.roles.append("admin" if admin else "user")
        paths.append("roles")
    if group or no_groups:
        user.groups.extend(group or [])
        paths.append("groups")
    secret = ""
    if password or password_stdin:
        secret = _password(password_stdin, confirm=not password_stdin)
        paths.append("password")
    if not paths:
        err.print("[red]error:[/red] nothing to change (--admin/--user, --group, --no-groups, --password)")
        raise typer.Exit(2)

    async def go():
        async with aio_channel() as ch:
            return await auth_pb2_grpc.AuthServiceStub(ch).UpdateUser(auth_pb2.UpdateUserRequest(
                user=user, update_mask=field_mask_pb2.FieldMask(paths=paths), password=secret),
                metadata=_metadata(), timeout=30)

    changed = _run(go()).user
    console.print(f"{changed.name}: {', '.join(changed.roles)}"
                  f"{'; groups ' + ', '.join(changed.groups) if changed.groups else '; no groups'}")


@app.command("ls")
def ls():
    """Every user (admins only)."""
    async def go():
        users, page = [], ""
        async with aio_channel() as ch:
            stub = auth_pb2_grpc.AuthServiceStub(ch)
            while True:
                reply = await stub.ListUsers(auth_pb2.ListUsersRequest(page_size=1000, page_token=page),
                                             metadata=_metadata(), timeout=30)
                users += reply.users
                page = reply.next_page_token
                if not page:
                    return users

    table = Table("user", "roles", "groups", "created")
    for u in _run(go()):
        table.add_row(u.username, ", ".join(u.roles), ", ".join(u.groups),
                      u.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M") if u.HasField("create_time") else "")
    console.print(table)


@app.command("login")
def login(username: str,
          password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin")):
    """Log in: later commands use the token ($DMOD_HOME/token, 0600) until it expires."""
    password = _password(password_stdin, confirm=False)

    async def go():
        async with aio_channel() as ch:
            return await auth_pb2_grpc.AuthServiceStub(ch).Login(
                auth_pb2.LoginRequest(username=username, password=password), timeout=30)

    reply = _run(go())
    path = Path(default_home()) / "token"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(reply.access_token + "\n")
    os.chmod(path, 0o600)
    console.print(f"logged in as {reply.user.username}; token in {path} until "
                  f"{reply.expire_time.ToDatetime().strftime('%Y-%m-%d %H:%M')} UTC")


def bootstrap_admin(home: Path, gateway: str) -> str:
    """`dmod up`: the first admin. When the stack has no admin yet, create `admin` with a random
    password saved to $DMOD_HOME/admin-password (0600). Returns a line for the user ("" if
    nothing was done)."""
    metadata = operator_metadata(home)
    if not metadata:
        key = home / "keys/jwt.key"
        return (f"[yellow]no first admin created:[/yellow] {key} is not readable by this user; run "
                f"`dmod user create NAME --admin` as its owner, or start the auth service with "
                f"DMOD_BOOTSTRAP_ADMIN and DMOD_BOOTSTRAP_ADMIN_PASSWORD_FILE") if key.exists() else ""

    async def go() -> str:
        async with aio_channel(gateway) as ch:
            stub = auth_pb2_grpc.AuthServiceStub(ch)
            page = ""
            while True:
                reply = await stub.ListUsers(auth_pb2.ListUsersRequest(page_size=1000, page_token=page),
                                             metadata=metadata, timeout=30)
                if any("admin" in u.roles for u in reply.users):
                    return ""
                page = reply.next_page_token
                if not page:
                    break
            password = secrets.token_urlsafe(18)
            path = home / "admin-password"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(password + "\n")
            try:
                await stub.CreateUser(auth_pb2.CreateUserRequest(username=ADMIN_NAME, password=password,
                                                                 roles=["admin"]), metadata=metadata, timeout=30)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
                path.unlink(missing_ok=True)
                return (f"a user named {ADMIN_NAME} exists but no admin: create one with "
                        f"`dmod user create NAME --admin`")
            return (f"first admin: user [bold]{ADMIN_NAME}[/bold], password in {path} "
                    f"(`dmod user login {ADMIN_NAME} --password-stdin < {path}`)")

    try:
        return asyncio.run(go())
    except grpc.aio.AioRpcError as exc:
        return f"[yellow]could not bootstrap the first admin:[/yellow] {describe(exc)}"
