"""Protobuf varints, for the bulk messages (upload and download chunks) that DMOD encodes and
decodes by hand on both sides: chunks are most of the bytes, and protobuf would copy each one."""
from __future__ import annotations


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(buf, i: int) -> tuple[int, int]:
    """(value, index after it) of the varint at `buf[i]`; IndexError if cut short, ValueError if
    longer than 64 bits."""
    shift = result = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")
