"""Descriptor-driven fuzzer: bad input for every RPC of every dmod.v1 service, through the gateway.

For each method found in the dmod.v1 descriptors (so a new RPC is fuzzed without anyone listing it),
`messages_per_rpc` request bodies are generated and sent as raw bytes (identity serializers, so
undecodable bodies reach the server as they are):

- random bytes, truncated and bit-flipped encodings of a plausible message, bad UTF-8 in every
  string field (wire level), unknown and wrongly typed fields;
- NUL bytes in every string field (nested messages, repeated elements, map keys and values);
- out-of-range google.protobuf.Timestamp (year 0 / 10000, nanos -1 / 1e9) and Duration values;
- oversized strings (2 KiB, 70 KiB and one 1 MiB per RPC) in every string field;
- crafted page tokens (garbage base64, non-JSON, wrong types, int overflow, missing keys, tokens
  signed by the service's own encoder for an impossible position or another filter);
- unknown enum values, extreme integers.

Client-streaming RPCs get each body as the first message and again after a plausible first
message; server-streaming RPCs are read until their first response.

While fuzzing, a canary calls Health/Check on its own connection: one request must never break
unrelated calls. `run_fuzz` returns the status codes per RPC; the test (test_bad_input.py) and
`make chaos` require zero INTERNAL and zero UNKNOWN.

Usage: python tests/security/fuzz.py [gateway] [messages_per_rpc]  (prints the JSON summary)
"""
from __future__ import annotations

import asyncio
import base64
import collections
import importlib
import json
import os
import pkgutil
import random
import time
import uuid
from collections.abc import Callable, Iterator

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor

import dmod.v1

DEFAULT_MESSAGES = int(os.environ.get("DMOD_FUZZ_MESSAGES", "300"))
BIG = 1 << 20
SLOT_SIZES = (2 * 1024, 70 * 1024)
BAD_CODES = ("INTERNAL", "UNKNOWN")


# ---- the contract ------------------------------------------------------------------------------
def rpcs() -> list:
    """Every method of every service in the dmod.v1 descriptors."""
    methods = []
    for info in pkgutil.iter_modules(dmod.v1.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"dmod.v1.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            methods.extend(service.methods)
    return sorted(methods, key=lambda m: m.full_name)


def path_of(method) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


# ---- plausible messages ------------------------------------------------------------------------
class Names:
    """Resource names the generated messages refer to (real ones where the fuzzer made them)."""

    def __init__(self, dataset: str = "", obj: str = ""):
        self.dataset = dataset or f"datasets/{uuid.uuid4()}"
        self.object = obj or f"{self.dataset}/objects/forcing/cat-1.csv"

    def for_field(self, where: str, field: str, rng: random.Random) -> str:
        """A value for `field` of a request of `where` ("Service/Method")."""
        service, _, method = where.partition("/")
        resource = {"DatasetService": "datasets", "JobService": "jobs", "EvaluationService": "evaluations"}
        if method in ("DeleteDataset", "DeleteObject") and field == "name":
            return f"datasets/{uuid.uuid4()}" + ("/objects/x.csv" if method == "DeleteObject" else "")
        if method in ("DownloadObject", "CreateDownloadUrl") and field == "name":
            return self.object if rng.random() < 0.7 else f"{self.dataset}/objects/missing.csv"
        if field in ("name", "parent"):
            if service == "DatasetService" or field == "parent":
                return self.dataset if rng.random() < 0.7 else f"datasets/{uuid.uuid4()}"
            return f"{resource.get(service, 'jobs')}/{uuid.uuid4()}"
        if field.endswith("_dataset") or field == "dataset":
            return self.dataset if rng.random() < 0.5 else f"datasets/{uuid.uuid4()}"
        if field == "job":
            return f"jobs/{uuid.uuid4()}"
        if field in ("request_id", "upload_id"):
            return str(uuid.uuid4())
        if field in ("sha256", "final_sha256"):
            return "ab" * 32
        if field == "path":
            return "dir/file.csv"
        if field == "page_token":
            return ""
        if field == "username":
            return f"fuzz{rng.randrange(10**6)}"
        if field == "password":
            return "correct horse battery"
        if field == "paths":
            return "description"
        if field == "content_type":
            return "text/csv"
        return rng.choice(["x", "cat-1", "2015-12-01T00:00:00Z", "nex-2", "kge"])


def _is_map(fd) -> bool:
    return fd.message_type is not None and fd.message_type.GetOptions().map_entry


def fill(msg, service: str, names: Names, rng: random.Random, depth: int = 0, choice: dict | None = None) -> None:
    """Set every field (one member of each oneof, `choice` names some) to a plausible value."""
    chosen = {o.name: rng.choice(o.fields).name for o in msg.DESCRIPTOR.oneofs}
    chosen.update(choice or {})
    for fd in msg.DESCRIPTOR.fields:
        oneof = fd.containing_oneof
        if oneof is not None and chosen.get(oneof.name) != fd.name:
            continue
        if _is_map(fd):
            container = getattr(msg, fd.name)
            key_fd, value_fd = fd.message_type.fields_by_name["key"], fd.message_type.fields_by_name["value"]
            key = _scalar(key_fd, service, names, rng) if key_fd.type != FieldDescriptor.TYPE_STRING else "k1"
            if value_fd.type == FieldDescriptor.TYPE_MESSAGE:
                if depth < 3:
                    fill(container[key], service, names, rng, depth + 1)
            else:
                container[key] = _scalar(value_fd, service, names, rng)
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 3:
                continue
            if fd.is_repeated:
                fill(getattr(msg, fd.name).add(), service, names, rng, depth + 1)
            else:
                sub = getattr(msg, fd.name)
                if sub.DESCRIPTOR.full_name == "google.protobuf.Timestamp":
                    sub.seconds, sub.nanos = 1448928000 + rng.randrange(86400 * 3), 0
                elif sub.DESCRIPTOR.full_name == "google.protobuf.Duration":
                    sub.seconds = 60
                else:
                    fill(sub, service, names, rng, depth + 1)
                    sub.SetInParent()
        elif fd.is_repeated:
            getattr(msg, fd.name).append(_scalar(fd, service, names, rng))
        else:
            setattr(msg, fd.name, _scalar(fd, service, names, rng))


def _scalar(fd, service: str, names: Names, rng: random.Random):
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        return names.for_field(service, fd.name, rng)
    if t == FieldDescriptor.TYPE_BYTES:
        return rng.randbytes(rng.randrange(1, 64))
    if t == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if t == FieldDescriptor.TYPE_ENUM:
        values = [v.number for v in fd.enum_type.values if v.number] or [0]
        return rng.choice(values)
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rng.choice([0.5, 1.0, 2.0])
    return rng.randrange(1, 5)


# ---- slots: every place a bad value can go -----------------------------------------------------
def _nav(root, steps):
    node = root
    for kind, value in steps:
        node = getattr(node, value) if kind == "f" else node[value]
    return node


def slots(msg, steps: tuple = (), label: str = "") -> Iterator[tuple[str, str, Callable]]:
    """(kind, field label, apply(root, value)) for every string, enum, Timestamp/Duration, int."""
    for fd in msg.DESCRIPTOR.fields:
        if fd.containing_oneof is not None and msg.WhichOneof(fd.containing_oneof.name) != fd.name:
            continue
        if fd.type == FieldDescriptor.TYPE_MESSAGE and not fd.is_repeated and not msg.HasField(fd.name):
            continue
        value = getattr(msg, fd.name)
        here = f"{label}.{fd.name}" if label else fd.name
        fsteps = steps + (("f", fd.name),)
        if _is_map(fd):
            value_fd = fd.message_type.fields_by_name["value"]
            for key in list(value):
                if isinstance(key, str):
                    def rekey(root, new, fsteps=fsteps, key=key):
                        container = _nav(root, fsteps)
                        if key not in container:
                            return
                        old = container[key]
                        if hasattr(old, "CopyFrom"):
                            saved = type(old)()
                            saved.CopyFrom(old)
                            del container[key]
                            container[new].CopyFrom(saved)
                        else:
                            del container[key]
                            container[new] = old
                    yield "string", f"{here}[key]", rekey
                if value_fd.type == FieldDescriptor.TYPE_MESSAGE:
                    yield from slots(value[key], fsteps + (("k", key),), f"{here}[{key!r}]")
                elif value_fd.type == FieldDescriptor.TYPE_STRING:
                    def set_value(root, new, fsteps=fsteps, key=key):
                        _nav(root, fsteps)[key] = new
                    yield "string", f"{here}[{key!r}]", set_value
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            items = list(enumerate(value)) if fd.is_repeated else [(None, value)]
            for index, sub in items:
                sub_steps = fsteps + ((("i", index),) if index is not None else ())
                sub_label = f"{here}[{index}]" if index is not None else here
                name = sub.DESCRIPTOR.full_name
                if name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
                    def set_time(root, new, sub_steps=sub_steps):
                        node = _nav(root, sub_steps)
                        node.seconds, node.nanos = new
                    yield ("timestamp" if name.endswith("Timestamp") else "duration"), sub_label, set_time
                else:
                    yield from slots(sub, sub_steps, sub_label)
        elif fd.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_ENUM) or fd.cpp_type in (
                FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT32,
                FieldDescriptor.CPPTYPE_UINT64, FieldDescriptor.CPPTYPE_DOUBLE):
            kind = {FieldDescriptor.TYPE_STRING: "string", FieldDescriptor.TYPE_ENUM: "enum"}.get(fd.type, "number")
            if kind == "number":
                kind = {FieldDescriptor.CPPTYPE_INT32: "int32", FieldDescriptor.CPPTYPE_INT64: "int64",
                        FieldDescriptor.CPPTYPE_UINT32: "uint32", FieldDescriptor.CPPTYPE_UINT64: "uint64",
                        FieldDescriptor.CPPTYPE_DOUBLE: "double"}[fd.cpp_type]
            if fd.is_repeated:
                for index in range(len(value)):
                    def set_item(root, new, fsteps=fsteps, index=index):
                        _nav(root, fsteps)[index] = new
                    yield kind, f"{here}[{index}]", set_item
            else:
                def set_field(root, new, steps=steps, name=fd.name):
                    setattr(_nav(root, steps), name, new)
                yield kind, here, set_field


# ---- wire helpers ------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    tag = _varint(number << 3 | wire)
    return tag + (_varint(len(payload)) + payload if wire == 2 else payload)


def _b64(raw: bytes | str) -> str:
    raw = raw.encode() if isinstance(raw, str) else raw
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def crafted_page_tokens() -> list[str]:
    """Tokens no server issued: garbage, wrong shapes, overflowing numbers, missing keys, and tokens
    made by the services' own encoders for impossible positions or for another filter."""
    zero = "00000000-0000-0000-0000-000000000000"
    tokens = ["!!!", "%%%%", "AAAA", "A", "=", "😀", "a" * 1000, _b64(b"\xff\xfe\x00\x01"), _b64("null"),
              _b64("[]"), _b64("{}"), _b64("1"), _b64('"x"'), _b64('{"k":1}'), _b64('{"f":"x"}'),
              _b64('{"k":[],"f":""}'), _b64('{"k":["x","y"],"f":"0"}'),
              _b64(f'[1e400, "{zero}"]'), _b64(f'[1e30, "{zero}"]'), _b64(f'[{"9" * 400}, "{zero}"]'),
              _b64(f'[-1e308, "{zero}"]'), _b64('[1.5, "not-a-uuid"]'), _b64("[1.5]"), _b64('[1.5, 7]'),
              _b64('[NaN, "x"]'), _b64(f'[Infinity, "{zero}"]'),
              _b64('{"t":"9999-12-31T23:59:59.999999+00:00","i":"x","f":"x"}'),
              _b64('{"t":"not a time","i":"x","f":"x"}'), _b64('{"t":1,"i":[],"f":{}}'),
              _b64(json.dumps({"k": ["0001-01-01T00:00:00", "nope"], "f": "x"})),
              _b64("[" * 5000 + "]" * 5000)]
    try:  # whitebox: the services' own encoders, for positions no row can have
        import datetime as dt

        from dmod.services.datasets import pagination as dp
        from dmod.services.jobs import pagination as jp
        empty = {"category": 0, "data_format": 0, "owner": "", "labels": {}, "state": 0}
        for key in (["9999-12-31T23:59:59+00:00", "nope"], ["x", zero], [1e300, zero], ["0001-01-01T00:00:00"],
                    [None, None], [["nested"], {"a": 1}], [2 ** 70, 2 ** 70]):
            tokens.append(dp.encode(key, empty))
            tokens.append(dp.encode(key, {"parent": "datasets/x", "prefix": ""}))
        tokens.append(dp.encode(["2015-01-01T00:00:00+00:00", zero], {**empty, "owner": "someone-else"}))
        for digest in (jp.filter_digest("", [], []), jp.filter_digest("local", [], []), "x"):
            tokens.append(jp.encode(dt.datetime(1, 1, 1, tzinfo=dt.UTC), "not-a-uuid", digest))
            tokens.append(jp.encode(dt.datetime(9999, 12, 31, tzinfo=dt.UTC), zero, digest))
    except ImportError:  # the modules moved: black-box tokens only
        return tokens
    return tokens


# ---- generation ---------------------------------------------------------------------------------
BAD_TIMESTAMPS = [(-62135596801, 0), (253402300800, 0), (0, -1), (0, 1_000_000_000), (2 ** 62, 0),
                  (-(2 ** 62), 0), (1448928000, -999_999_999), (1448928000, 2 ** 31 - 1)]
BAD_DURATIONS = [(315_576_000_001, 0), (-315_576_000_001, 0), (1, -1), (-1, 1), (0, 1_000_000_000),
                 (2 ** 62, 0), (0, -(2 ** 31))]
EXTREME_INTS = {"int32": [-(2 ** 31), 2 ** 31 - 1, -1], "int64": [-(2 ** 63), 2 ** 63 - 1, -1],
                "uint32": [2 ** 32 - 1], "uint64": [2 ** 64 - 1], "double": [float("nan"), float("inf"), -1e308]}


def generate(method, count: int, names: Names, seed: int = 0) -> list[tuple[str, bytes]]:
    """At least `count` (case, body) pairs for `method` (all targeted cases, then random ones up to
    `count`); deterministic for a seed."""
    rng = random.Random(f"{method.full_name}:{seed}")
    cls = message_factory.GetMessageClass(method.input_type)
    service = f"{method.containing_service.name}/{method.name}"

    def template():
        msg = cls()
        fill(msg, service, names, rng)
        return msg

    cases: list[tuple[str, bytes]] = []
    # One template per member of the top-level oneof (client-stream messages are oneofs), so that
    # every field of every member gets its bad values.
    oneof = method.input_type.oneofs[0] if method.input_type.oneofs else None
    bases = []
    for member in (oneof.fields if oneof else [None]):
        msg = cls()
        fill(msg, service, names, rng, choice={oneof.name: member.name} if member else None)
        bases.append(msg)
    base = bases[0]
    base_raw = base.SerializeToString()
    slot_list = [(kind, label, apply, b) for b in bases for kind, label, apply in slots(b)]

    def mutated(apply, value, base):
        msg = cls()
        msg.CopyFrom(base)
        try:
            apply(msg, value)
        except (TypeError, ValueError, KeyError, IndexError):
            return None
        return msg.SerializeToString()

    # Targeted cases: every slot gets each of its bad values once.
    one_mib_done = False
    for kind, label, apply, slot_base in slot_list:
        bad: list[tuple[str, object]] = []
        if kind == "string":
            bad += [("nul", "a\x00b"), ("nul-only", "\x00"), ("control", "\x01\x7f\x1b[31m")]
            bad += [(f"long-{n}", "n" * n) for n in SLOT_SIZES]
            if not one_mib_done:
                bad.append(("long-1MiB", "m" * BIG))
                one_mib_done = True
            if label.endswith("page_token"):
                bad += [("page-token", t) for t in crafted_page_tokens()]
        elif kind == "timestamp":
            bad += [(f"timestamp{v}", v) for v in BAD_TIMESTAMPS]
        elif kind == "duration":
            bad += [(f"duration{v}", v) for v in BAD_DURATIONS]
        elif kind == "enum":
            bad += [("enum-unknown", 12345), ("enum-negative", -1)]
        else:
            bad += [(f"{kind}-{v}", v) for v in EXTREME_INTS[kind]]
        for what, value in bad:
            raw = mutated(apply, value, slot_base)
            if raw is not None:
                cases.append((f"{label}:{what}", raw))

    # Wire-level cases: undecodable and odd encodings.
    string_numbers = [fd.number for fd in method.input_type.fields if fd.type == FieldDescriptor.TYPE_STRING]
    for number in string_numbers:
        cases.append((f"field{number}:bad-utf8", base_raw + _field(number, 2, b"\xc3\x28\xff")))
    for fd in method.input_type.fields:
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            cases.append((f"{fd.name}:bad-submessage", base_raw + _field(fd.number, 2, b"\xff\xff\xff")))
            cases.append((f"{fd.name}:wrong-wire-type", base_raw + _field(fd.number, 0, _varint(7))))
    cases += [("empty", b""), ("unknown-fields", base_raw + _field(999, 2, b"zz") + _field(1000, 0, _varint(1))),
              ("length-overflow", b"\x0a\xff\xff\xff\xff\x0f"), ("bad-tag", b"\x00\x01"),
              ("group-start", b"\x0b"), ("deep-nesting", b"\x0a\x02" * 200)]

    # Fill up with random ones: random bytes, truncations and bit flips of fresh templates.
    while len(cases) < count:
        roll = rng.random()
        if roll < 0.3:
            cases.append(("random-bytes", rng.randbytes(rng.randrange(1, 300))))
        elif roll < 0.6:
            raw = template().SerializeToString() or b"\x08\x01"
            cases.append(("truncated", raw[: rng.randrange(0, len(raw))]))
        elif roll < 0.8:
            raw = bytearray(template().SerializeToString() or b"\x08\x01")
            for _ in range(rng.randrange(1, 4)):
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            cases.append(("bit-flip", bytes(raw)))
        elif slot_list:
            kind, label, apply, slot_base = rng.choice(slot_list)
            value = {"string": lambda: "".join(chr(rng.choice([0, 0x7f, 0x2028, 0xfeff, 0x1F600, 97]))
                                               for _ in range(rng.randrange(1, 40))),
                     "timestamp": lambda: (rng.randrange(-(2 ** 40), 2 ** 40), rng.randrange(-(2 ** 31), 2 ** 31)),
                     "duration": lambda: (rng.randrange(-(2 ** 40), 2 ** 40), rng.randrange(-(2 ** 31), 2 ** 31)),
                     "enum": lambda: rng.randrange(-(2 ** 31), 2 ** 31)}.get(
                kind, lambda kind=kind: rng.choice(EXTREME_INTS[kind]))()
            raw = mutated(apply, value, slot_base)
            if raw is not None:
                cases.append((f"{label}:random", raw))
        else:
            cases.append(("random-bytes", rng.randbytes(rng.randrange(1, 300))))
    return cases  # every targeted case, then random ones up to `count`


# ---- sending -----------------------------------------------------------------------------------
async def _send(channel: grpc.aio.Channel, method, body: bytes, first: bytes | None, metadata,
                timeout: float) -> tuple[str, str]:
    path = path_of(method)
    try:
        if method.client_streaming:
            messages = [body] if first is None else [first, body]
            stub = channel.stream_unary(path, request_serializer=None, response_deserializer=None)
            await stub(iter(messages), timeout=timeout, metadata=metadata)
        elif method.server_streaming:
            stub = channel.unary_stream(path, request_serializer=None, response_deserializer=None)
            call = stub(body, timeout=min(timeout, 3.0), metadata=metadata)
            try:
                async for _ in call:
                    break  # the stream opened: what matters is how the request was taken
            finally:
                call.cancel()
        else:
            stub = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
            await stub(body, timeout=timeout, metadata=metadata)
        return "OK", ""
    except grpc.aio.AioRpcError as exc:
        if method.server_streaming and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return "OK", ""  # a watch that waits for events: the request was accepted
        return exc.code().name, (exc.details() or "")[:200]
    except asyncio.CancelledError:
        return "OK", ""


async def _canary(gateway: str, stop: asyncio.Event, stats: dict) -> None:
    """Unrelated calls on their own connection while the fuzz runs: none may fail."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    async with grpc.aio.insecure_channel(gateway) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while not stop.is_set():
            try:
                await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
                stats["canary_ok"] += 1
            except grpc.aio.AioRpcError as exc:
                stats["canary_failures"] += 1
                stats.setdefault("canary_errors", []).append(exc.code().name)
            await asyncio.sleep(0.05)


async def _seed(channel, metadata) -> Names:
    """A real dataset holding one object, which the generated names point at (so that requests get
    past NOT_FOUND into the code behind it); random names when the caller may not create one."""
    from dmod.v1 import datasets_pb2, datasets_pb2_grpc, domain_pb2
    stub = datasets_pb2_grpc.DatasetServiceStub(channel)
    try:
        reply = await stub.CreateDataset(datasets_pb2.CreateDatasetRequest(dataset=datasets_pb2.Dataset(
            display_name=f"fuzz-{uuid.uuid4().hex[:10]}", data_format=domain_pb2.DATA_FORMAT_AORC_CSV)),
            timeout=15, metadata=metadata)
        data = b"time,APCP_surface\n2015-12-01 00:00:00,0.5\n"
        path = "forcing/cat-1.csv"
        await stub.UploadObject(iter([
            datasets_pb2.UploadObjectRequest(metadata=datasets_pb2.UploadMetadata(
                parent=reply.dataset.name, path=path, size_bytes=len(data))),
            datasets_pb2.UploadObjectRequest(chunk=data)]), timeout=30, metadata=metadata)
        return Names(reply.dataset.name, f"{reply.dataset.name}/objects/{path}")
    except grpc.aio.AioRpcError:
        return Names()


async def run_fuzz_async(gateway: str, messages_per_rpc: int = DEFAULT_MESSAGES, token: str | None = None,
                         concurrency: int = 16, timeout: float = 15.0, only: Callable[[str], bool] | None = None,
                         seed: int = 0) -> dict:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    started = time.monotonic()
    summary: dict = {"gateway": gateway, "messages_per_rpc": messages_per_rpc, "rpcs": {}, "codes": {},
                     "bad": [], "canary_ok": 0, "canary_failures": 0}
    options = [("grpc.max_send_message_length", 8 << 20), ("grpc.max_receive_message_length", 8 << 20)]
    async with grpc.aio.insecure_channel(gateway, options=options) as channel:
        names = await _seed(channel, metadata)
        stop = asyncio.Event()
        canary = asyncio.ensure_future(_canary(gateway, stop, summary))
        gate = asyncio.Semaphore(concurrency)
        totals: collections.Counter = collections.Counter()

        async def one(method, case: str, body: bytes, first: bytes | None, codes: collections.Counter,
                      seen: collections.Counter):
            async with gate:
                code, details = await _send(channel, method, body, first, metadata, timeout)
            codes[code] += 1
            totals[code] += 1
            if code in BAD_CODES or code == "UNAVAILABLE":
                seen[code] += 1
                if seen[code] <= 40:  # examples, up to 40 per RPC and code
                    summary["bad"].append({"rpc": path_of(method), "case": case, "code": code, "details": details,
                                           "stream": "after a good first message" if first else ""})

        try:
            for method in rpcs():
                path = path_of(method)
                if only is not None and not only(path):
                    continue
                codes: collections.Counter = collections.Counter()
                cases = generate(method, messages_per_rpc, names, seed)
                first = None
                if method.client_streaming:
                    first_msg = message_factory.GetMessageClass(method.input_type)()
                    fill(first_msg, f"{method.containing_service.name}/{method.name}", names, random.Random(seed))
                    first = first_msg.SerializeToString()
                jobs, seen = [], collections.Counter()
                for i, (case, body) in enumerate(cases):
                    # client streams: the bad body first, or after a plausible first message
                    jobs.append(one(method, case, body, first if (first is not None and i % 2) else None, codes,
                                    seen))
                await asyncio.gather(*jobs)
                summary["rpcs"][path] = dict(codes)
        finally:
            stop.set()
            await canary
        summary["codes"] = dict(totals)
        # The stack still answers real requests afterwards.
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            summary["healthy_after"] = reply.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.aio.AioRpcError:
            summary["healthy_after"] = False
    summary["total"] = sum(totals.values())
    summary["internal_or_unknown"] = sum(totals[c] for c in BAD_CODES)
    summary["seconds"] = round(time.monotonic() - started, 1)
    return summary


def run_fuzz(gateway: str, messages_per_rpc: int = DEFAULT_MESSAGES, token: str | None = None, **kw) -> dict:
    """Synchronous entry point (for `make chaos`): the summary dict of `run_fuzz_async`."""
    return asyncio.run(run_fuzz_async(gateway, messages_per_rpc, token, **kw))


if __name__ == "__main__":
    import sys
    target = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DMOD_GATEWAY", "127.0.0.1:8780")
    count = int(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_MESSAGES
    print(json.dumps(run_fuzz(target, count, os.environ.get("DMOD_FUZZ_TOKEN")), indent=1))
