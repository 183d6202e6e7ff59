"""Prometheus metrics per process (RPC counts and latencies), served on DMOD_METRICS_PORT."""
from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

RPC_TOTAL = Counter("dmod_rpc_total", "RPCs handled", ["service", "method", "code"])
RPC_SECONDS = Histogram("dmod_rpc_seconds", "RPC handling time", ["service", "method"],
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))


def split_method(full_method: str) -> tuple[str, str]:
    """'/dmod.v1.JobService/CreateJob' -> ('dmod.v1.JobService', 'CreateJob')."""
    _, service, method = full_method.split("/", 2)
    return service, method


def serve_metrics(port: int) -> None:
    if port:
        start_http_server(port, addr="127.0.0.1")
