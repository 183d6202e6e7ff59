"""UploadObject requests parsed without protobuf for chunks: same meaning as protobuf's parse."""
from __future__ import annotations

from dmod.datasets_client import encode_chunk
from dmod.services.datasets.transfer.wire import UploadChunk, parse_upload_request
from dmod.v1 import datasets_pb2


def test_a_chunk_is_a_view_into_the_message():
    for payload in (b"", b"x", bytes(range(256)) * 4096):
        raw = datasets_pb2.UploadObjectRequest(chunk=payload).SerializeToString()
        assert raw == encode_chunk(payload)  # what the client sends
        parsed = parse_upload_request(raw)
        assert isinstance(parsed, UploadChunk) and parsed.WhichOneof("payload") == "chunk"
        assert isinstance(parsed.chunk, memoryview) and bytes(parsed.chunk) == payload


def test_everything_else_goes_through_protobuf():
    meta = datasets_pb2.UploadObjectRequest(metadata=datasets_pb2.UploadMetadata(path="a.csv", size_bytes=3))
    parsed = parse_upload_request(meta.SerializeToString())
    assert parsed.WhichOneof("payload") == "metadata" and parsed.metadata.path == "a.csv"
    final = datasets_pb2.UploadObjectRequest(final_sha256="ab" * 32)
    assert parse_upload_request(final.SerializeToString()).final_sha256 == "ab" * 32
    # A chunk followed by another field (a newer client): protobuf decides.
    raw = encode_chunk(b"abc") + datasets_pb2.UploadObjectRequest(final_sha256="cd" * 32).SerializeToString()
    parsed = parse_upload_request(raw)
    assert not isinstance(parsed, UploadChunk) and parsed.WhichOneof("payload") == "final_sha256"
