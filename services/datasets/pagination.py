"""Opaque page tokens: base64 of the last row's sort key plus a fingerprint of the filters, so a
token is only accepted with the query that produced it."""
from __future__ import annotations

import base64
import hashlib
import json

from dmod.services.runtime.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int, field: str = "page_size", default: int = DEFAULT_PAGE_SIZE) -> int:
    if requested < 0:
        raise InvalidArgument((field, "must not be negative"))
    return min(requested or default, MAX_PAGE_SIZE)


def fingerprint(filters: object) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode(key: list, filters: object) -> str:
    raw = json.dumps({"k": key, "f": fingerprint(filters)}, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str, filters: object, field: str = "page_token") -> list | None:
    if not token:
        return None
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        key, fp = doc["k"], doc["f"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument((field, "is not a token returned by this method")) from None
    if fp != fingerprint(filters):
        raise InvalidArgument((field, "was issued for a different query (filters changed)"))
    return key
