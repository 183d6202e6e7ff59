"""AuthService: users with argon2 password hashes, short-lived Ed25519 JWTs, the public JWKS."""
from __future__ import annotations

import base64
import json
import re

from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from cryptography.hazmat.primitives import serialization
from google.protobuf.timestamp_pb2 import Timestamp

from dmod.services.runtime.app import App
from dmod.services.runtime.auth import TokenIssuer, current_principal
from dmod.services.runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied, Unauthenticated
from dmod.v1 import auth_pb2, auth_pb2_grpc

USERNAME = re.compile(r"^[a-z][a-z0-9_.-]{1,62}$")
_hasher = PasswordHasher()


def _user(row) -> auth_pb2.User:
    created = Timestamp()
    created.FromDatetime(row["create_time"])
    return auth_pb2.User(name=f"users/{row['username']}", username=row["username"], roles=list(row["roles"]),
                         create_time=created)


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
        if not current_principal().is_admin:
            raise PermissionDenied("only admins create users")
        violations = []
        if not USERNAME.match(request.username):
            violations.append(("username", "must match ^[a-z][a-z0-9_.-]{1,62}$"))
        if len(request.password) < 8:
            violations.append(("password", "must be at least 8 characters"))
        bad_roles = [r for r in request.roles if r not in ("admin", "user")]
        if bad_roles:
            violations.append(("roles", f"unknown role(s) {bad_roles}; known: admin, user"))
        if violations:
            raise InvalidArgument(violations)
        row = await (await self.app.db()).fetchrow(
            "INSERT INTO users (username, password_hash, roles) VALUES ($1, $2, $3) "
            "ON CONFLICT (username) DO NOTHING RETURNING *",
            request.username, _hasher.hash(request.password), list(request.roles) or ["user"])
        if row is None:
            raise AlreadyExists(f"user {request.username} exists")
        return auth_pb2.CreateUserResponse(user=_user(row))


async def create_servicer(app: App) -> AuthServicer:
    return AuthServicer(app)
