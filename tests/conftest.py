"""Session fixtures: one real local stack (PostgreSQL, Redis, S3, all services, Envoy) on free
ports in a temp dir, started exactly like `dmod up`, and stopped at the end."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import grpc
import pytest

from dmod.local.stack import Stack, StackState
from dmod.services.runtime.settings import Settings


@pytest.fixture(scope="session")
def stack_home() -> Path:
    return Path(tempfile.mkdtemp(prefix="dmod-test-"))


def ngen_path() -> str | None:
    """The real ngen binary the stack's jobs may use: DMOD_NGEN_PATH, else the shared test build at
    `../shared/ngen/ngen` next to the repository (None when neither exists)."""
    given = os.environ.get("DMOD_NGEN_PATH")
    path = Path(given) if given else Path(__file__).resolve().parents[1].parent / "shared" / "ngen" / "ngen"
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


@pytest.fixture(scope="session")
def stack(stack_home: Path) -> StackState:
    ngen = ngen_path()
    if ngen:  # the services (pre-flight) and their workers see the same binary
        os.environ["DMOD_NGEN_PATH"] = ngen
    # 4 CPU slots whatever the machine has (CI has 2 cores): 3-rank jobs (tests/ngen) must run, and
    # the local launcher lets MPI place more ranks than cores.
    os.environ.setdefault("DMOD_NODE_CPUS", "4")
    stack = Stack(stack_home, fixed_ports=False, log=lambda *a: None)
    try:
        state = stack.up()
        os.environ["DMOD_GATEWAY"] = state.gateway  # CLI and client helpers talk to this stack
        os.environ["DMOD_HOME"] = str(stack_home)
        yield state
    finally:
        stack.purge()


@pytest.fixture(scope="session")
def gateway(stack: StackState) -> str:
    return stack.gateway


@pytest.fixture(scope="session")
def settings(stack: StackState, tmp_path_factory) -> Settings:
    """Settings for an in-process server or store client against the stack's stores."""
    env = stack.service_env()
    return Settings(**{k[len("DMOD_"):].lower(): v for k, v in env.items() if k != "DMOD_LISTEN"},
                    listen="127.0.0.1:0")


@pytest.fixture
async def channel(gateway: str):
    async with grpc.aio.insecure_channel(gateway) as ch:
        yield ch

