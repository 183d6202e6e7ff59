"""Resource names (`datasets/{id}`, `datasets/{id}/objects/{path}`), object paths and S3 keys."""
from __future__ import annotations

import uuid

from dmod.services.runtime.errors import InvalidArgument, quote

MAX_PATH_BYTES = 1024
_PREFIX = "datasets/"
_OBJECTS = "/objects/"


def dataset_name(dataset_id: uuid.UUID | str) -> str:
    return f"{_PREFIX}{dataset_id}"


def object_name(dataset_id: uuid.UUID | str, path: str) -> str:
    return f"{_PREFIX}{dataset_id}{_OBJECTS}{path}"


def parse_dataset_name(name: str, field: str = "name") -> uuid.UUID:
    if not name.startswith(_PREFIX):
        raise InvalidArgument((field, f"must look like datasets/{{id}}, got {quote(name)}"))
    raw = name[len(_PREFIX):]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidArgument((field, f"{quote(raw)} is not a dataset id (a UUID)")) from None


def parse_object_name(name: str, field: str = "name") -> tuple[uuid.UUID, str]:
    head, sep, path = name.partition(_OBJECTS)
    if not sep:
        raise InvalidArgument((field, f"must look like datasets/{{id}}/objects/{{path}}, got {quote(name)}"))
    return parse_dataset_name(head, field), check_path(path, field)


def path_problem(path: str) -> str | None:
    """Why `path` is not an acceptable object path, or None."""
    if not path:
        return "must not be empty"
    if "\x00" in path:
        return "must not contain NUL"
    if any(ord(ch) < 0x20 for ch in path):
        return "must not contain control characters"
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return f"must be at most {MAX_PATH_BYTES} bytes"
    if "\\" in path:
        return "must use '/' as the separator, not '\\'"
    if path.startswith("/"):
        return "must be relative (no leading '/')"
    parts = path.split("/")
    if ".." in parts:
        return "must not contain '..'"
    if any(p in ("", ".") for p in parts):
        return "must be normalized (no empty or '.' segments, no trailing '/')"
    return None


def check_path(path: str, field: str) -> str:
    problem = path_problem(path)
    if problem:
        raise InvalidArgument((field, f"object path {problem}"), reason="INVALID_OBJECT_PATH")
    return path


def object_key(dataset_id: uuid.UUID | str, upload_id: uuid.UUID | str, path: str) -> str:
    """S3 key of one stored version of an object: under the dataset's prefix, unique per upload,
    so a half-written or rejected upload is never what a committed object points at."""
    return f"{_PREFIX}{dataset_id}/{upload_id}/{path}"


def pack_key(dataset_id: uuid.UUID | str, upload_id: uuid.UUID | str, number: int) -> str:
    """S3 key of a pack (small objects of one UploadObjects call stored back to back): beside the
    call's object keys, never equal to one (those all sit under `{upload_id}/`)."""
    return f"{_PREFIX}{dataset_id}/{upload_id}.pack{number}"


def dataset_prefix(dataset_id: uuid.UUID | str) -> str:
    return f"{_PREFIX}{dataset_id}/"
