"""Identity of the caller: Ed25519-signed JWTs verified locally with the public key.

In the local default (DMOD_AUTH_REQUIRED=false) a call without a token acts as the default user.
"""
from __future__ import annotations

import contextvars
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dmod.services.runtime.errors import PermissionDenied, Unauthenticated, bounded

ISSUER = "dmod"
_JOB_NAME = re.compile(r"jobs/[^\x00/]{1,200}")  # a worker token's job (TokenIssuer.issue(job=...))


@dataclass(frozen=True)
class Principal:
    user: str
    roles: tuple[str, ...] = ()
    # Scope of a per-job worker token: the job it may report on (None for user tokens).
    job: str | None = None
    claims: dict = field(default_factory=dict, compare=False)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("dmod_principal", default=None)


def current_principal() -> Principal:
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("no caller identity")
    return principal


def set_principal(principal: Principal | None, authorization: str | None = None) -> None:
    _principal.set(principal)
    _authorization.set(authorization)


# The caller's own authorization header, forwarded on calls made on its behalf.
_authorization: contextvars.ContextVar[str | None] = contextvars.ContextVar("dmod_authorization", default=None)


def forward_metadata() -> tuple[tuple[str, str], ...]:
    """Metadata for a downstream call made on behalf of the current caller."""
    value = _authorization.get()
    return (("authorization", value),) if value else ()


def ensure_keypair(private_path: Path, public_path: Path) -> None:
    """Create an Ed25519 key pair once (0600 private key)."""
    if private_path.exists() and public_path.exists():
        return
    key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    private_path.chmod(0o600)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))


class TokenIssuer:
    def __init__(self, private_key_pem: bytes, ttl_seconds: int):
        self._key = serialization.load_pem_private_key(private_key_pem, password=None)
        self._ttl = ttl_seconds

    def issue(self, user: str, roles: list[str] | tuple[str, ...] = (), job: str | None = None,
              ttl_seconds: int | None = None, extra: dict | None = None) -> tuple[str, int]:
        """`extra`: more claims (a worker token's attempt, inputs and output; see runtime/scopes.py)."""
        now = int(time.time())
        exp = now + (ttl_seconds or self._ttl)
        claims = {**(extra or {}), "iss": ISSUER, "sub": user, "roles": list(roles), "iat": now, "exp": exp,
                  "jti": uuid.uuid4().hex}
        if job:
            claims["job"] = job
        return jwt.encode(claims, self._key, algorithm="EdDSA"), exp


class TokenVerifier:
    def __init__(self, public_key_pem: bytes | None, required: bool, default_user: str):
        self._key = serialization.load_pem_public_key(public_key_pem) if public_key_pem else None
        self._required = required
        self._default = Principal(user=default_user, roles=("admin",))

    def verify(self, authorization: str | None) -> Principal:
        if not authorization:
            if self._required:
                raise Unauthenticated("missing bearer token", reason="TOKEN_MISSING")
            return self._default
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("authorization must be 'Bearer <token>'", reason="TOKEN_MALFORMED")
        if self._key is None:
            raise Unauthenticated("this server has no verification key", reason="TOKEN_UNVERIFIABLE")
        try:
            claims = jwt.decode(token, self._key, algorithms=["EdDSA"], issuer=ISSUER,
                                options={"require": ["sub", "exp"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired", reason="TOKEN_EXPIRED") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(bounded(f"invalid token: {exc}", 200), reason="TOKEN_INVALID") from None
        except Exception:  # noqa: BLE001 - whatever a crafted token makes the JWT library raise
            raise Unauthenticated("invalid token", reason="TOKEN_INVALID") from None
        # Signed by our key but not shaped like our tokens (TokenIssuer.issue): no identity.
        user, roles, job = claims.get("sub"), claims.get("roles", []), claims.get("job")
        if not isinstance(user, str) or not user or len(user) > 256 or "\x00" in user:
            raise Unauthenticated("invalid token: claim 'sub' must be a user name", reason="TOKEN_INVALID")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise Unauthenticated("invalid token: claim 'roles' must be a list of strings", reason="TOKEN_INVALID")
        if job is not None and not (isinstance(job, str) and _JOB_NAME.fullmatch(job)):
            raise Unauthenticated("invalid token: claim 'job' must be jobs/{id}", reason="TOKEN_INVALID")
        return Principal(user=user, roles=tuple(roles), job=job, claims=claims)


def require_job_scope(principal: Principal, job: str) -> None:
    """Worker tokens may only act on their own job."""
    if principal.job is not None and principal.job != job:
        raise PermissionDenied(f"token is scoped to {principal.job}, not {job}", reason="TOKEN_SCOPE")
