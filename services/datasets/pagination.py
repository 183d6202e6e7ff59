"""Page sizes and page tokens of DatasetService (tokens: runtime/page_tokens.py, fully validated
and bound to the query that produced them)."""
from __future__ import annotations

from dmod.services.runtime.errors import InvalidArgument
from dmod.services.runtime.page_tokens import (  # noqa: F401 - this module's API
    NOT_OURS,
    decode,
    encode,
    epoch_seconds,
    fingerprint,
    text,
    timestamp,
    uuid_value,
)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int, field: str = "page_size", default: int = DEFAULT_PAGE_SIZE) -> int:
    if requested < 0:
        raise InvalidArgument((field, "must not be negative"))
    return min(requested or default, MAX_PAGE_SIZE)
