"""One validation layer for every incoming message, applied by the interceptor before any service code.

Whatever a service does with a request, these values never reach it (nor Postgres, Redis or an
error message):

- NUL characters in any string field (PostgreSQL text cannot hold them; C libraries truncate at them);
- strings longer than their limit: `SHORT_LIMIT` (1 KiB, UTF-8 bytes) for names, ids, tokens,
  paths, request ids, map keys and the like (`_is_short`); `LONG_LIMIT` (64 KiB) for free text
  (descriptions, log lines, messages). Bytes fields (upload chunks) are not checked;
- `google.protobuf.Timestamp` outside 0001-01-01T00:00:00Z..9999-12-31T23:59:59.999999999Z or with
  nanos outside 0..999,999,999; `google.protobuf.Duration` outside ±315,576,000,000 s (10,000
  years), nanos outside ±999,999,999 or of the other sign than seconds;
- enum values the server does not know.

The walk follows the descriptor: nested messages, repeated fields and maps, only fields that are set.
Errors are INVALID_ARGUMENT with a google.rpc.BadRequest naming the field path (`dataset.labels["k"]`,
`ids[3]`) and the reason; they never contain the value itself (a map key in a path is cut to 32
characters). Cost per message (bench/request_guard.py): 0.7 µs for GetDatasetRequest, ~4 µs for
CreateDatasetRequest, ~6.5 µs for CreateJobRequest with 20 catchment ids, 0.1 µs for an upload chunk
(parsed as a view, not walked).
"""
from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor

from dmod.services.runtime.errors import InvalidArgument

SHORT_LIMIT = 1024
LONG_LIMIT = 64 * 1024
MAX_VIOLATIONS = 10
KEY_ECHO = 32

# google.protobuf.Timestamp: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z (RFC 3339 range).
TIMESTAMP_MIN_SECONDS = -62_135_596_800
TIMESTAMP_MAX_SECONDS = 253_402_300_799
# google.protobuf.Duration: about ±10,000 years.
DURATION_MAX_SECONDS = 315_576_000_000
NANOS_MAX = 999_999_999

# Free-text fields keep LONG_LIMIT whatever their name; everything named like an identifier gets
# SHORT_LIMIT.
_SHORT_NAMES = frozenset({
    "name", "parent", "owner", "job", "dataset", "username", "password", "request_id", "upload_id", "page_token",
    "path", "paths", "prefix", "display_name", "model", "engine", "sha256", "final_sha256", "content_type",
    "stream", "reason", "service", "roles", "groups", "readers", "derived_from", "ids", "metrics", "key",
    "observation_dataset", "symbol",
})
_SHORT_SUFFIXES = ("_id", "_ids", "_dataset", "_name", "_token", "_type")

# Fields a service validates itself, with a more precise error (field name and reason) than this
# layer's: here they only get the LONG_LIMIT cap. Object paths: names.path_problem rejects NUL and
# more than 1024 bytes, and UploadObjects reports them as `objects/{path}` (INVALID_OBJECT_PATH).
SERVICE_VALIDATED = frozenset({"dmod.v1.UploadObjectsHeader.path", "dmod.v1.UploadMetadata.path"})

_STRING, _MESSAGE, _TIMESTAMP, _DURATION, _ENUM, _MAP = range(6)


def _is_short(fd) -> bool:
    name = fd.name
    return name in _SHORT_NAMES or name.endswith(_SHORT_SUFFIXES)


class _Rule:
    __slots__ = ("enum", "key", "kind", "limit", "name", "nul", "repeated", "value")

    def __init__(self, kind: int, fd, limit: int = 0, nul: bool = True, enum=None, key=None, value=None):
        self.kind, self.name, self.repeated = kind, fd.name, fd.is_repeated
        self.limit, self.nul, self.enum, self.key, self.value = limit, nul, enum, key, value


_rules: dict = {}


def _rule(fd) -> _Rule | None:
    """What to check in field `fd` (None: nothing, e.g. bytes and numbers); cached per field."""
    try:
        return _rules[fd]
    except KeyError:
        pass
    rule = None
    if fd.type == FieldDescriptor.TYPE_STRING:
        if fd.full_name in SERVICE_VALIDATED:
            rule = _Rule(_STRING, fd, LONG_LIMIT, nul=False)
        else:
            rule = _Rule(_STRING, fd, SHORT_LIMIT if _is_short(fd) else LONG_LIMIT)
    elif fd.type == FieldDescriptor.TYPE_ENUM:
        rule = _Rule(_ENUM, fd, enum=(fd.enum_type.name, frozenset(v.number for v in fd.enum_type.values)))
    elif fd.type == FieldDescriptor.TYPE_MESSAGE:
        entry = fd.message_type
        if entry.GetOptions().map_entry:
            key_fd, value_fd = entry.fields_by_name["key"], entry.fields_by_name["value"]
            key_rule = _Rule(_STRING, key_fd, SHORT_LIMIT) if key_fd.type == FieldDescriptor.TYPE_STRING else None
            value_rule = _rule(value_fd)
            if value_rule is not None and value_rule.kind == _STRING:
                value_rule = _Rule(_STRING, value_fd, LONG_LIMIT)  # map values are free text
            if key_rule is not None or value_rule is not None:
                rule = _Rule(_MAP, fd, key=key_rule, value=value_rule)
        elif entry.full_name == "google.protobuf.Timestamp":
            rule = _Rule(_TIMESTAMP, fd)
        elif entry.full_name == "google.protobuf.Duration":
            rule = _Rule(_DURATION, fd)
        else:
            rule = _Rule(_MESSAGE, fd)
    _rules[fd] = rule
    return rule


def _string_problem(value: str, rule: _Rule) -> str | None:
    limit = rule.limit
    n = len(value)
    if n > limit:
        return f"is longer than {limit} bytes"
    if n * 4 > limit and len(value.encode("utf-8", "surrogatepass")) > limit:
        return f"is longer than {limit} bytes"
    if rule.nul and "\x00" in value:
        return "must not contain NUL characters"
    return None


def _timestamp_problem(ts) -> str | None:
    if not 0 <= ts.nanos <= NANOS_MAX:
        return "nanos must be within 0..999999999"
    if not TIMESTAMP_MIN_SECONDS <= ts.seconds <= TIMESTAMP_MAX_SECONDS:
        return "must be within 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z"
    return None


def _duration_problem(d) -> str | None:
    seconds, nanos = d.seconds, d.nanos
    if not -DURATION_MAX_SECONDS <= seconds <= DURATION_MAX_SECONDS:
        return "must be within ±315576000000 seconds (10,000 years)"
    if not -NANOS_MAX <= nanos <= NANOS_MAX:
        return "nanos must be within -999999999..999999999"
    if (seconds > 0 and nanos < 0) or (seconds < 0 and nanos > 0):
        return "seconds and nanos must have the same sign"
    return None


def _key_label(key) -> str:
    if isinstance(key, str):
        shown = key[:KEY_ECHO].replace("\x00", "\\0")
        return '["' + shown.replace('"', '\\"') + ('…"]' if len(key) > KEY_ECHO else '"]')
    return f"[{key}]"


def _check_value(rule: _Rule, value, path: str, out: list) -> None:
    kind = rule.kind
    if kind == _STRING:
        problem = _string_problem(value, rule)
        if problem:
            out.append((path, problem))
    elif kind == _MESSAGE:
        _walk(value, path + ".", out)
    elif kind == _TIMESTAMP:
        problem = _timestamp_problem(value)
        if problem:
            out.append((path, problem))
    elif kind == _DURATION:
        problem = _duration_problem(value)
        if problem:
            out.append((path, problem))
    elif kind == _ENUM:
        name, known = rule.enum
        if value not in known:
            out.append((path, f"{value} is not a known {name} value"))


def _walk(message, prefix: str, out: list) -> None:
    for fd, value in message.ListFields():
        rule = _rules.get(fd, 0)
        if rule == 0:
            rule = _rule(fd)
        if rule is None:
            continue
        kind = rule.kind
        repeated = rule.repeated
        if not repeated:  # the common cases, without a call or a path
            if kind == _STRING:
                if len(value) << 2 <= rule.limit and (not rule.nul or "\x00" not in value):
                    continue
            elif kind == _ENUM and value in rule.enum[1]:
                continue
        if len(out) >= MAX_VIOLATIONS:
            return
        path = prefix + rule.name
        if kind == _MAP:
            key_rule, value_rule = rule.key, rule.value
            plain = value_rule is not None and value_rule.kind == _STRING
            for key in value:
                if key_rule is not None:
                    problem = _string_problem(key, key_rule)
                    if problem:
                        out.append((path + _key_label(key), "key " + problem))
                        continue
                if value_rule is None:
                    continue
                item = value[key]
                if plain and len(item) << 2 <= value_rule.limit and "\x00" not in item:
                    continue
                _check_value(value_rule, item, path + _key_label(key), out)
        elif repeated and kind == _STRING:
            limit, nul = rule.limit, rule.nul
            for i, item in enumerate(value):
                if len(item) << 2 <= limit and (not nul or "\x00" not in item):
                    continue
                problem = _string_problem(item, rule)
                if problem:
                    out.append((f"{path}[{i}]", problem))
                    if len(out) >= MAX_VIOLATIONS:
                        return
        elif repeated:
            for i, item in enumerate(value):
                _check_value(rule, item, f"{path}[{i}]", out)
                if len(out) >= MAX_VIOLATIONS:
                    return
        else:
            _check_value(rule, value, path, out)


def violations(message) -> list[tuple[str, str]]:
    """(field path, problem) pairs for `message` (at most MAX_VIOLATIONS); [] when it is fine or
    not a protobuf message (e.g. an upload chunk view)."""
    if not hasattr(message, "ListFields"):
        return []
    out: list[tuple[str, str]] = []
    _walk(message, "", out)
    return out[:MAX_VIOLATIONS]


def check(message) -> None:
    """Raise INVALID_ARGUMENT (BadRequest naming each field) when `message` has a value no service
    may see."""
    found = violations(message)
    if found:
        raise InvalidArgument(found, reason="INVALID_FIELD_VALUE")
