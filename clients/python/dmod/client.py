"""Connecting to DMOD: a gRPC channel to the gateway, with the caller's token if any.

Gateway address: DMOD_GATEWAY, else the local stack recorded in $DMOD_HOME (`dmod up`) — never a
guess: on a shared host a default port may be someone else's stack.
"""
from __future__ import annotations

import os
from pathlib import Path

import grpc

from dmod.services.runtime.settings import default_home


class NoStack(LookupError):
    """Neither DMOD_GATEWAY nor a stack of $DMOD_HOME says where DMOD is."""


def gateway_address() -> str:
    if os.environ.get("DMOD_GATEWAY"):
        return os.environ["DMOD_GATEWAY"]
    from dmod.local.stack import load_state

    home = default_home()
    state = load_state(home)
    if state is None:
        raise NoStack(f"no DMOD stack at {home} — run `dmod up` or set DMOD_GATEWAY")
    return state.gateway


def token() -> str | None:
    if os.environ.get("DMOD_TOKEN"):
        return os.environ["DMOD_TOKEN"]
    path = Path(default_home()) / "token"
    return path.read_text().strip() if path.exists() else None


class _BearerAuth(grpc.AuthMetadataPlugin):
    def __init__(self, value: str):
        self._value = value

    def __call__(self, context, callback):
        callback((("authorization", f"Bearer {self._value}"),), None)


CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 8 << 20), ("grpc.keepalive_time_ms", 30_000)]


def metadata() -> tuple[tuple[str, str], ...]:
    value = token()
    return (("authorization", f"Bearer {value}"),) if value else ()


def aio_channel(target: str | None = None) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target or gateway_address(), options=CHANNEL_OPTIONS)


def channel(target: str | None = None) -> grpc.Channel:
    return grpc.insecure_channel(target or gateway_address(), options=CHANNEL_OPTIONS)
