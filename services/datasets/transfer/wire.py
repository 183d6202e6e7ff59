"""UploadObject requests read without protobuf for the bulk of them.

A chunk message is field 2 (length-delimited) and nothing else. Parsed by protobuf, its bytes
would be copied out of the received message once more; here the chunk is a memoryview into it.
Anything else (metadata, the trailing checksum, a message with fields this server does not know)
goes through protobuf as usual.
"""
from __future__ import annotations

from dmod.protowire import read_varint
from dmod.v1 import datasets_pb2

_CHUNK_TAG = 0x12  # field 2, wire type 2


class UploadChunk:
    """Looks like UploadObjectRequest(chunk=...) to the upload code."""

    __slots__ = ("chunk",)

    def __init__(self, chunk: memoryview):
        self.chunk = chunk

    @staticmethod
    def WhichOneof(group: str) -> str:  # protobuf's name
        return "chunk"


def _chunk_view(raw: bytes, tag: int) -> UploadChunk | None:
    """The message as a chunk view when it is exactly one length-delimited field `tag`."""
    if raw[:1] == bytes((tag,)):
        try:
            length, start = read_varint(raw, 1)
        except (IndexError, ValueError):
            return None
        if start + length == len(raw):
            return UploadChunk(memoryview(raw)[start:])
    return None


def parse_upload_request(raw: bytes):
    return _chunk_view(raw, _CHUNK_TAG) or datasets_pb2.UploadObjectRequest.FromString(raw)


_BATCH_CHUNK_TAG = 0x1A  # UploadObjectsRequest.chunk: field 3, wire type 2


def parse_batch_request(raw: bytes):
    """UploadObjectsRequest: chunks as views (like `parse_upload_request`), the rest by protobuf."""
    return _chunk_view(raw, _BATCH_CHUNK_TAG) or datasets_pb2.UploadObjectsRequest.FromString(raw)
