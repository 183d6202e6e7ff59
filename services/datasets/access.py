"""Who may do what with a dataset (the sharing model; README "Users, sharing and tokens").

- A dataset is PRIVATE by default: its owner and admins read it.
- The owner (or an admin) may share it for reading with named users (`users/{name}`) and groups
  (`groups/{name}`, membership in the `users` table of AuthService, read here and cached for 5 s,
  so UpdateUser's group changes apply within seconds) — Dataset.readers — or make it
  PUBLIC (Dataset.visibility): every authenticated user may then read it.
- Reading = GetDataset, ListDatasets, ListObjects, DownloadObject, CreateDownloadUrl, DetectDomain
  and being found by SearchDatasets. Changing (metadata, sharing, objects, seal, delete) stays
  with the owner and admins.
- A caller who may not read a dataset gets NOT_FOUND, exactly as for a dataset that does not
  exist; a reader who tries to change one gets PERMISSION_DENIED (NOT_DATASET_OWNER).
- A worker token (Principal.job) reads only its job's inputs and output and writes only its
  output (its claims, runtime/scopes.py), and only while its attempt is the job's current one.
- The legacy label `public=true` (before Dataset.visibility) still makes a dataset PUBLIC when it is
  written; migration 0004 turned existing ones PUBLIC.
"""
from __future__ import annotations

import re
import time

import asyncpg

from dmod.services.datasets import names
from dmod.services.runtime import scopes
from dmod.services.runtime.auth import Principal, current_principal
from dmod.services.runtime.errors import NotFound, PermissionDenied

PRIVATE, PUBLIC = 1, 2  # dmod.v1.DatasetVisibility
MAX_READERS = 100
READER = re.compile(r"^(users|groups)/[a-z][a-z0-9_.-]{1,62}$")
LEGACY_PUBLIC_LABEL = ("public", "true")

_GROUPS_TTL = 5.0
_groups: dict[str, tuple[float, tuple[str, ...]]] = {}


def caller() -> Principal:
    return current_principal()


def reader_violations(readers, field: str) -> list[tuple[str, str]]:
    readers = list(readers)
    violations = []
    if len(readers) > MAX_READERS:
        violations.append((field, f"at most {MAX_READERS} readers"))
    bad = [r for r in readers if not READER.match(r)]
    if bad:
        shown = ", ".join(repr(r[:40]) for r in bad[:3])
        violations.append((field, f"entries must look like users/{{name}} or groups/{{name}}: {shown}"))
    return violations


async def groups_of(conn, user: str) -> tuple[str, ...]:
    """The caller's groups (AuthService's users table; cached a few seconds). The local default
    user and users of a deployment without AuthService have none."""
    now = time.monotonic()
    hit = _groups.get(user)
    if hit is not None and hit[0] > now:
        return hit[1]
    try:
        value = await conn.fetchval("SELECT groups FROM users WHERE username = $1", user)
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
        value = None
    groups = tuple(value or ())
    if len(_groups) > 10_000:
        _groups.clear()
    _groups[user] = (now + _GROUPS_TTL, groups)
    return groups


def reader_names(principal: Principal, groups: tuple[str, ...]) -> list[str]:
    """What Dataset.readers entries name this caller."""
    return [f"users/{principal.user}"] + [f"groups/{g}" for g in groups]


def readable(row, principal: Principal, groups: tuple[str, ...]) -> bool:
    if principal.is_admin or row["owner"] == principal.user or row["visibility"] == PUBLIC:
        return True
    readers = set(row["readers"] or ())
    return any(name in readers for name in reader_names(principal, groups))


def _worker_may(row, principal: Principal, write: bool) -> bool:
    name = names.dataset_name(row["id"])
    if write:
        return name == scopes.output_of(principal)
    return name == scopes.output_of(principal) or name in scopes.inputs_of(principal)


async def require_read(conn, row, principal: Principal | None = None, name: str | None = None) -> None:
    """NOT_FOUND unless the caller may read `row` (the dataset)."""
    principal = principal or caller()
    shown = name or names.dataset_name(row["id"])
    if principal.job is not None:
        if not _worker_may(row, principal, write=False):
            raise PermissionDenied(f"this worker token may not read {shown} (not an input or the output of "
                                   f"{principal.job})", reason="TOKEN_SCOPE")
        await scopes.require_live_worker(conn, principal)
    groups = () if principal.is_admin or row["owner"] == principal.user else await groups_of(conn, principal.user)
    if not readable(row, principal, groups):
        raise NotFound(f"{shown} does not exist", reason="DATASET_NOT_FOUND", metadata={"name": shown})


def require_owner(row, principal: Principal | None = None) -> None:
    """Changes: the owner or an admin; a worker token only into its job's output dataset."""
    principal = principal or caller()
    if principal.job is not None and not _worker_may(row, principal, write=True):
        raise PermissionDenied(f"this worker token may only write the output dataset of {principal.job}",
                               reason="TOKEN_SCOPE")
    if row["owner"] != principal.user and not principal.is_admin:
        raise PermissionDenied(f"datasets/{row['id']} belongs to {row['owner']}", reason="NOT_DATASET_OWNER")


async def visible_filter(conn, principal: Principal | None = None) -> list[str] | None:
    """For listing and searching: None (everything: admins) or the reader names of the caller,
    for store queries (own, PUBLIC, or shared with one of these names)."""
    principal = principal or caller()
    if principal.is_admin and principal.job is None:
        return None
    return reader_names(principal, await groups_of(conn, principal.user))
