"""Every service is reachable through Envoy, over native gRPC and grpc-web; reflection lists all."""
import struct
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dmod.errors import error_details
from dmod.services.runtime.registry import SERVICES
from dmod.v1 import auth_pb2, auth_pb2_grpc, jobs_pb2, jobs_pb2_grpc

ALL = [info.full_name for info in SERVICES.values()]


@pytest.mark.parametrize("service", ALL)
async def test_health_serving_via_native_grpc(channel, service):
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _grpc_web_frames(body: bytes) -> tuple[list[bytes], dict[str, str]]:
    messages, trailers, i = [], {}, 0
    while i < len(body):
        flag, length = body[i], struct.unpack(">I", body[i + 1:i + 5])[0]
        payload = body[i + 5:i + 5 + length]
        if flag & 0x80:
            for line in payload.decode().strip().split("\r\n"):
                key, _, value = line.partition(":")
                trailers[key.strip().lower()] = value.strip()
        else:
            messages.append(payload)
        i += 5 + length
    return messages, trailers


@pytest.mark.parametrize("service", ALL)
def test_health_serving_via_grpc_web(gateway, service):
    request = health_pb2.HealthCheckRequest(service=service).SerializeToString()
    response = httpx.post(f"http://{gateway}/grpc.health.v1.Health/Check",
                          content=b"\x00" + struct.pack(">I", len(request)) + request,
                          headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1",
                                   "origin": "http://localhost:3000"}, timeout=5)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    messages, trailers = _grpc_web_frames(response.content)
    assert trailers.get("grpc-status") == "0"
    assert health_pb2.HealthCheckResponse.FromString(messages[0]).status == health_pb2.HealthCheckResponse.SERVING


def test_cors_preflight_allows_grpc_web(gateway):
    response = httpx.options(f"http://{gateway}/dmod.v1.JobService/GetJob", headers={
        "origin": "http://localhost:3000", "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-grpc-web,authorization"}, timeout=5)
    assert response.status_code == 200
    assert "grpc-status-details-bin" in response.headers["access-control-expose-headers"]


def test_reflection_lists_every_service(gateway):
    grpcurl = Path(sys.executable).parent / "grpcurl"
    listed = subprocess.run([str(grpcurl), "-plaintext", gateway, "list"], capture_output=True, text=True,
                            timeout=20, check=True).stdout.split()
    assert set(ALL) | {"grpc.health.v1.Health"} <= set(listed)
    described = subprocess.run([str(grpcurl), "-plaintext", gateway, "describe", "dmod.v1.JobService"],
                               capture_output=True, text=True, timeout=20, check=True).stdout
    assert "rpc WatchJob" in described


async def test_invalid_request_yields_bad_request_details(channel):
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateUser(auth_pb2.CreateUserRequest(username="X!", password="short"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error_details(caught.value)
    fields = {v.field: v.description for v in details["BadRequest"].field_violations}
    assert set(fields) == {"username", "password"}
    assert details["ErrorInfo"].reason == "INVALID_ARGUMENT"


async def test_login_issues_a_token_services_accept(channel):
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    await stub.CreateUser(auth_pb2.CreateUserRequest(username="ada", password="correct horse", roles=["user"]))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Login(auth_pb2.LoginRequest(username="ada", password="wrong password"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    token = (await stub.Login(auth_pb2.LoginRequest(username="ada", password="correct horse"))).access_token
    me = await stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=(("authorization", f"Bearer {token}"),))
    assert me.user.username == "ada" and list(me.user.roles) == ["user"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=(("authorization", "Bearer forged"),))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_not_found_is_not_internal(channel):
    """Whatever state JobService is in, asking for a missing job never yields INTERNAL/UNKNOWN."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs_pb2_grpc.JobServiceStub(channel).GetJob(jobs_pb2.GetJobRequest(name="jobs/does-not-exist"))
    assert caught.value.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
