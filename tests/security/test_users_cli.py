"""The first admin (`dmod up`), `dmod user create|ls|login` against the real stack."""
from __future__ import annotations

import asyncio
import os
import stat
import uuid
from pathlib import Path

import grpc
from typer.testing import CliRunner

from dmod.cli.main import app
from dmod.cli.user import bootstrap_admin
from dmod.v1 import auth_pb2, auth_pb2_grpc

from .authz import mint


def _users(gateway: str, key: bytes) -> list:
    async def go():
        async with grpc.aio.insecure_channel(gateway) as ch:
            md = (("authorization", f"Bearer {mint(key, 'probe-admin', ['admin'])}"),)
            return list((await auth_pb2_grpc.AuthServiceStub(ch).ListUsers(
                auth_pb2.ListUsersRequest(page_size=1000), metadata=md)).users)
    return asyncio.run(go())


def _login(gateway: str, user: str, password: str) -> auth_pb2.LoginResponse:
    async def go():
        async with grpc.aio.insecure_channel(gateway) as ch:
            return await auth_pb2_grpc.AuthServiceStub(ch).Login(auth_pb2.LoginRequest(username=user, password=password))
    return asyncio.run(go())


def test_first_admin_then_users(stack, tmp_path):
    home = Path(stack.home)
    key = (home / "keys/jwt.key").read_bytes()
    note = bootstrap_admin(home, stack.gateway)
    admins = [u for u in _users(stack.gateway, key) if "admin" in u.roles]
    assert admins, "no admin after bootstrap"
    if note:  # this stack had none: `admin` with a private random password
        secret = home / "admin-password"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert _login(stack.gateway, "admin", secret.read_text().strip()).user.roles == ["admin"]
    assert bootstrap_admin(home, stack.gateway) == ""  # once only

    runner = CliRunner()
    name = f"cli-{uuid.uuid4().hex[:8]}"
    env = {"DMOD_GATEWAY": stack.gateway, "DMOD_HOME": str(home)}
    assert "DMOD_TOKEN" not in os.environ  # the CLI acts as the stack's operator (its key)
    made = runner.invoke(app, ["user", "create", name, "--group", "hydro", "--password-stdin"],
                         input="a long password\n", env=env)
    assert made.exit_code == 0, made.output
    assert f"users/{name}" in made.output and "hydro" in made.output
    again = runner.invoke(app, ["user", "create", name, "--password-stdin"], input="a long password\n", env=env)
    assert again.exit_code == 1 and "ALREADY_EXISTS" in again.output
    short = runner.invoke(app, ["user", "create", f"{name}x", "--password-stdin"], input="short\n", env=env)
    assert short.exit_code == 1 and "password" in short.output
    listed = runner.invoke(app, ["user", "ls"], env=env)
    assert listed.exit_code == 0 and name in listed.output
    changed = runner.invoke(app, ["user", "update", name, "--group", "ops", "--group", "hydro", "--admin"], env=env)
    assert changed.exit_code == 0 and f"users/{name}: admin; groups hydro, ops" in changed.output, changed.output
    changed = runner.invoke(app, ["user", "update", name, "--user", "--no-groups", "--password-stdin"],
                            input="another long password\n", env=env)
    assert changed.exit_code == 0 and f"users/{name}: user; no groups" in changed.output, changed.output
    assert _login(stack.gateway, name, "another long password").user.roles == ["user"]
    assert runner.invoke(app, ["user", "update", name], env=env).exit_code == 2  # nothing to change
    missing = runner.invoke(app, ["user", "update", "nobody-at-all", "--admin"], env=env)
    assert missing.exit_code == 1 and "NOT_FOUND" in missing.output
    bad = runner.invoke(app, ["user", "update", name, "--group", "Bad Group"], env=env)
    assert bad.exit_code == 1 and "INVALID_ARGUMENT" in bad.output and "user.groups" in bad.output

    # login writes a private token file that later commands use; that user is no admin
    own = tmp_path / "home"
    logged = runner.invoke(app, ["user", "login", name, "--password-stdin"], input="another long password\n",
                           env={"DMOD_GATEWAY": stack.gateway, "DMOD_HOME": str(own)})
    assert logged.exit_code == 0, logged.output
    token_file = own / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    denied = runner.invoke(app, ["user", "ls"], env={"DMOD_GATEWAY": stack.gateway, "DMOD_HOME": str(own)})
    assert denied.exit_code == 1 and "PERMISSION_DENIED" in denied.output
    wrong = runner.invoke(app, ["user", "login", name, "--password-stdin"], input="a long password\n",
                          env={"DMOD_GATEWAY": stack.gateway, "DMOD_HOME": str(own)})
    assert wrong.exit_code == 1 and "UNAUTHENTICATED" in wrong.output


def test_dataset_share_command(stack):
    from dmod.datasets_client import FORCING, DatasetsClient

    async def create():
        async with DatasetsClient(target=stack.gateway, metadata=()) as ds:
            return await ds.create_dataset(f"cli-share-{uuid.uuid4().hex[:8]}", FORCING, 1)

    d = asyncio.run(create())
    runner = CliRunner()
    env = {"DMOD_GATEWAY": stack.gateway, "DMOD_HOME": str(stack.home)}
    shared = runner.invoke(app, ["dataset", "share", d.name, "--user", "bob", "--group", "hydro"], env=env)
    def text(result) -> str:  # rich wraps at the runner's width
        return " ".join(result.output.split())

    assert shared.exit_code == 0, shared.output
    assert "private; readers groups/hydro, users/bob" in text(shared)
    public = runner.invoke(app, ["dataset", "share", d.name, "--public", "--remove", "users/bob"], env=env)
    assert public.exit_code == 0 and "public; readers groups/hydro" in text(public), public.output
    shown = runner.invoke(app, ["dataset", "show", d.name], env=env)
    assert "public; readers groups/hydro" in text(shown)
    private = runner.invoke(app, ["dataset", "share", d.name, "--private", "--remove", "groups/hydro"], env=env)
    assert private.exit_code == 0 and f"{d.name}: private" in text(private)
    bad = runner.invoke(app, ["dataset", "share", d.name, "--user", "Not A Name"], env=env)
    assert bad.exit_code == 1 and "dataset.readers" in text(bad)


async def test_server_side_first_admin(settings):
    """DMOD_BOOTSTRAP_ADMIN (Swarm): the auth service creates the first admin, once, on a fresh database
    (here: a fresh schema of the stack's database)."""
    import asyncpg

    from dmod.services.auth.service import bootstrap_admin as server_bootstrap
    from dmod.services.runtime.db import apply_migrations
    from dmod.services.runtime.registry import SERVICES

    schema = f"authz_boot_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(settings.database_url)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2,
                                     server_settings={"search_path": schema})
    try:
        await apply_migrations(pool, "auth", SERVICES["auth"].migrations)
        assert await server_bootstrap(pool, "root", "a good password") is True
        assert await server_bootstrap(pool, "root", "a good password") is False
        assert await server_bootstrap(pool, "second", "a good password") is False  # an admin exists
        rows = await pool.fetch("SELECT username, roles FROM users")
        assert [(r["username"], list(r["roles"])) for r in rows] == [("root", ["admin"])]
    finally:
        await pool.close()
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
