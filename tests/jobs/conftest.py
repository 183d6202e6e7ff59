"""Fixtures for job tests: one uploaded synthetic domain per session, a JobService stub."""
from __future__ import annotations

import pytest

from dmod.v1 import jobs_pb2_grpc

from .helpers import make_domain, upload_domain


@pytest.fixture(scope="session")
def domain_files(tmp_path_factory):
    return make_domain(tmp_path_factory.mktemp("domain"))


@pytest.fixture(scope="session")
async def domain(stack, domain_files):
    import grpc

    async with grpc.aio.insecure_channel(stack.gateway) as ch:
        return await upload_domain(ch, domain_files)


@pytest.fixture
def jobs(channel):
    return jobs_pb2_grpc.JobServiceStub(channel)
