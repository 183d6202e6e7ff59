"""Opaque page tokens shared by the services: base64 of the last row's sort key plus a fingerprint
of the filters, so a token is only accepted with the query that produced it.

Tokens are fully validated before any part of them reaches a query: the JSON shape ({"k": [...],
"f": "..."} and nothing else), the fingerprint, and each key element against the `schema` the caller
gives (`timestamp`, `uuid_value`, `text`). Anything else, including a token crafted from a real one
(int overflow, a time outside Postgres' range, a NUL, a missing key), is INVALID_ARGUMENT on
`page_token`, never an error from the database.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import math
import uuid
from collections.abc import Callable

from dmod.services.runtime.errors import InvalidArgument

MAX_TOKEN_LENGTH = 1024
NOT_OURS = "is not a token returned by this method"


def fingerprint(filters: object) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode(key: list, filters: object) -> str:
    raw = json.dumps({"k": key, "f": fingerprint(filters)}, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# ---- key element converters: JSON value -> query value, ValueError/TypeError when it is not one ----
def timestamp(value) -> dt.datetime:
    """An ISO 8601 time as `encode` wrote it, as an aware UTC datetime within Postgres' range."""
    if not isinstance(value, str) or len(value) > 64:
        raise TypeError("not a time")
    when = dt.datetime.fromisoformat(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    try:
        return when.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("time out of range") from None


def uuid_value(value) -> uuid.UUID:
    if not isinstance(value, str):
        raise TypeError("not a uuid")
    return uuid.UUID(value)


def text(value) -> str:
    """A string key (an object path): bounded, no NUL (Postgres text cannot hold one)."""
    if not isinstance(value, str) or len(value) > MAX_TOKEN_LENGTH or "\x00" in value:
        raise ValueError("not a text key")
    return value


def epoch_seconds(value) -> float:
    """Seconds since 1970 as a finite number within 0001..9999 (never a bool, NaN or 1e400)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("not a number")
    value = float(value)
    if not math.isfinite(value) or not -62_135_596_800 <= value <= 253_402_300_799:
        raise ValueError("out of range")
    return value


def decode(token: str, filters: object, field: str = "page_token",
           schema: tuple[Callable, ...] | None = None) -> list | None:
    """The key of `token` (None for no token), converted by `schema` (one converter per element)
    when given; INVALID_ARGUMENT on `field` for anything this module did not issue for `filters`."""
    if not token:
        return None
    try:
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValueError("too long")
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(doc, dict) or set(doc) != {"k", "f"}:
            raise ValueError("not a token")
        key, fp = doc["k"], doc["f"]
        if not isinstance(key, list) or not isinstance(fp, str):
            raise TypeError("not a token")
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise InvalidArgument((field, NOT_OURS)) from None
    if fp != fingerprint(filters):
        raise InvalidArgument((field, "was issued for a different query (filters changed)"))
    if schema is None:
        return key
    if len(key) != len(schema):
        raise InvalidArgument((field, NOT_OURS))
    try:
        return [convert(value) for convert, value in zip(schema, key, strict=True)]
    except (ValueError, TypeError, OverflowError):
        raise InvalidArgument((field, NOT_OURS)) from None
