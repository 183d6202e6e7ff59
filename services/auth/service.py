"""AuthService: users with argon2 password hashes, short-lived Ed25519 JWTs, the public JWKS."""
from __future__ import annotations

import base64
import json
import logging
import os
import re
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from cryptography.hazmat.primitives import serialization
from google.protobuf.timestamp_pb2 import Timestamp

from dmod.services.runtime.app import App
from dmod.services.runtime.auth import TokenIssuer, current_principal
from dmod.services.runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from dmod.v1 import auth_pb2, auth_pb2_grpc

log = logging.getLogger("dmod.auth")

USERNAME = re.compile(r"^[a-z][a-z0-9_.-]{1,62}$")


MAX_GROUPS = 64
_hasher = PasswordHasher()


def _user(row) -> auth_pb2.User:
    created = Timestamp()
    created.FromDatetime(row["create_time"])
    return auth_pb2.User(name=f"users/{row['username']}", username=row["username"], roles=list(row["roles"]),
                         create_time=created, groups=list(row["groups"]))


def _require_admin(what: str) -> None:
    if not current_principal().is_admin:
        raise PermissionDenied(f"only admins {what}", reason="ADMIN_ONLY")


def user_violations(username: str, password: str, roles, groups) -> list[tuple[str, str]]:
    violations = []
    if not USERNAME.match(username):
        violations.append(("username", "must match ^[a-z][a-z0-9_.-]{1,62}$"))
    if len(password) < 8:
        violations.append(("password", "must be at least 8 characters"))
    elif len(password) > 1024:
        violations.append(("password", "must be at most 1024 characters"))
    bad_roles = [r[:40] for r in roles if r not in ("admin", "user")]
    if bad_roles:
        violations.append(("roles", f"unknown role(s) {bad_roles[:5]}; known: admin, user"))
    if len(groups) > MAX_GROUPS:
        violations.append(("groups", f"at most {MAX_GROUPS} groups"))
    bad_groups = [g[:40] for g in groups if not USERNAME.match(g)]
    if bad_groups:
        violations.append(("groups", f"group names must match ^[a-z][a-z0-9_.-]{{1,62}}$: {bad_groups[:5]}"))
    return violations


async def insert_user(pool, username: str, password: str, roles, groups):
    """The new user's row, or None when the username is taken."""
    return await pool.fetchrow(
        "INSERT INTO users (username, password_hash, roles, groups) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (username) DO NOTHING RETURNING *",
        username, _hasher.hash(password), list(roles) or ["user"], sorted(set(groups)))


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, app: App):
        self.app = app
        s = app.settings
        self._issuer = TokenIssuer(s.jwt_private_key_file.read_bytes(), s.token_ttl_seconds) \
            if s.jwt_private_key_file and s.jwt_private_key_file.exists() else None

    async def Login(self, request, context):
        if not request.username or not request.password:
            raise InvalidArgument([(f, "required") for f in ("username", "password") if not getattr(request, f)])
        row = await (await self.app.db()).fetchrow("SELECT * FROM users WHERE username = $1", request.username)
        try:
            if row is None:
                raise VerifyMismatchError
            _hasher.verify(row["password_hash"], request.password)
        except VerifyMismatchError:
            raise Unauthenticated("unknown user or wrong password", reason="BAD_CREDENTIALS") from None
        if self._issuer is None:
            raise FailedPrecondition("this server has no signing key (DMOD_JWT_PRIVATE_KEY_FILE)", reason="NO_SIGNING_KEY")
        token, exp = self._issuer.issue(row["username"], row["roles"])
        expire = Timestamp(seconds=exp)
        return auth_pb2.LoginResponse(access_token=token, expire_time=expire, user=_user(row))

    async def GetCurrentUser(self, request, context):
        principal = current_principal()
        row = await (await self.app.db()).fetchrow("SELECT * FROM users WHERE username = $1", principal.user)
        if row is None:  # the local default user, or a worker token
            return auth_pb2.GetCurrentUserResponse(user=auth_pb2.User(
                name=f"users/{principal.user}", username=principal.user, roles=list(principal.roles)))
        return auth_pb2.GetCurrentUserResponse(user=_user(row))

    async def GetJwks(self, request, context):
        keys = []
        path = self.app.settings.jwt_public_key_file
        if path and path.exists():
            raw = serialization.load_pem_public_key(path.read_bytes()).public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
            keys.append({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "x": x})
        return auth_pb2.GetJwksResponse(jwks_json=json.dumps({"keys": keys}))

    async def CreateUser(self, request, context):
        _require_admin("create users")
        violations = user_violations(request.username, request.password, request.roles, request.groups)
        if violations:
            raise InvalidArgument(violations)
        row = await insert_user(await self.app.db(), request.username, request.password, request.roles,
                                request.groups)
        if row is None:
            raise AlreadyExists(f"user {request.username} exists", reason="USER_EXISTS")
        return auth_pb2.CreateUserResponse(user=_user(row))

    async def ListUsers(self, request, context):
        _require_admin("list users")
        if request.page_size < 0:
            raise InvalidArgument(("page_size", "must not be negative"))
        size = min(request.page_size or 100, 1000)
        after = ""
        if request.page_token:
            try:
                after = base64.urlsafe_b64decode(request.page_token.encode()).decode()
            except (ValueError, UnicodeError):
                after = "\x00"
            if not USERNAME.match(after):
                raise InvalidArgument(("page_token", "is not a token returned by this method"))
        rows = await (await self.app.db()).fetch(
            "SELECT * FROM users WHERE username > $1 ORDER BY username LIMIT $2", after, size + 1)
        token = base64.urlsafe_b64encode(rows[size - 1]["username"].encode()).decode() if len(rows) > size else ""
        return auth_pb2.ListUsersResponse(users=[_user(r) for r in rows[:size]], next_page_token=token)

    async def UpdateUser(self, request, context):
        _require_admin("change users")
        paths = list(request.update_mask.paths)
        known = ("roles", "groups", "password")
        if not paths:
            raise InvalidArgument(("update_mask", f"name the fields to update: {', '.join(known)}"))
        bad = [p[:40] for p in paths if p not in known]
        if bad:
            raise InvalidArgument(("update_mask", f"cannot update {bad[:5]} (updatable: {', '.join(known)})"))
        username = request.user.name.removeprefix("users/") if request.user.name.startswith("users/") \
            else request.user.username if not request.user.name else ""
        violations = [] if USERNAME.match(username) else [("user.name", "must look like users/{username}")]
        checked = user_violations(username or "x" * 2, request.password if "password" in paths else "x" * 8,
                                  request.user.roles if "roles" in paths else (),
                                  request.user.groups if "groups" in paths else ())
        violations += [(f if f == "password" else f"user.{f}", d) for f, d in checked if f != "username"]
        if "roles" in paths and not request.user.roles:
            violations.append(("user.roles", "give at least one role (admin, user)"))
        if violations:
            raise InvalidArgument(violations)
        pool = await self.app.db()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('dmod.auth.bootstrap'))")  # vs. last-admin races
            row = await conn.fetchrow("SELECT * FROM users WHERE username = $1 FOR UPDATE", username)
            if row is None:
                raise NotFound(f"users/{username} does not exist", reason="USER_NOT_FOUND")
            roles = list(dict.fromkeys(request.user.roles)) if "roles" in paths else list(row["roles"])
            if "admin" in row["roles"] and "admin" not in roles and not await conn.fetchval(
                    "SELECT count(*) FROM users WHERE 'admin' = ANY(roles) AND username <> $1", username):
                raise FailedPrecondition(f"users/{username} is the last admin", reason="LAST_ADMIN")
            groups = sorted(set(request.user.groups)) if "groups" in paths else list(row["groups"])
            password_hash = _hasher.hash(request.password) if "password" in paths else row["password_hash"]
            row = await conn.fetchrow("UPDATE users SET roles = $2, groups = $3, password_hash = $4 WHERE username = $1 "
                                      "RETURNING *", username, roles, groups, password_hash)
        return auth_pb2.UpdateUserResponse(user=_user(row))


async def bootstrap_admin(pool, username: str, password: str) -> bool:
    """Create `username` as an admin when no admin exists yet (the first admin); True if created.
    Concurrent starts are serialized by an advisory lock."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('dmod.auth.bootstrap'))")
        if await conn.fetchval("SELECT count(*) FROM users WHERE 'admin' = ANY(roles)"):
            return False
        violations = user_violations(username, password, ["admin"], [])
        if violations:
            raise ValueError(f"DMOD_BOOTSTRAP_ADMIN: {violations}")
        return await insert_user(conn, username, password, ["admin"], []) is not None


async def create_servicer(app: App) -> AuthServicer:
    # Deployments without a local operator (Swarm): the first admin comes from the environment,
    # DMOD_BOOTSTRAP_ADMIN=<username> and DMOD_BOOTSTRAP_ADMIN_PASSWORD_FILE=<a secret's path>.
    username = os.environ.get("DMOD_BOOTSTRAP_ADMIN", "")
    password_file = os.environ.get("DMOD_BOOTSTRAP_ADMIN_PASSWORD_FILE", "")
    if username and password_file:
        password = Path(password_file).read_text().strip()
        if await bootstrap_admin(await app.db(), username, password):
            log.info("first admin created", extra={"user": username})
    return AuthServicer(app)
