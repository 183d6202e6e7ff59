"""Process settings from the environment (`DMOD_*`), identical for every service."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    return Path(os.environ.get("DMOD_HOME") or Path.home() / ".local/share/dmod")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DMOD_", extra="ignore")

    home: Path = default_home()
    listen: str = "127.0.0.1:0"  # gRPC listen address of this process
    gateway: str = "127.0.0.1:8080"  # Envoy listener (clients connect here)
    metrics_port: int = 0  # Prometheus /metrics; 0 = disabled
    log_level: str = "INFO"
    log_json: bool = True

    database_url: str = "postgresql://dmod@127.0.0.1:5432/dmod"
    db_pool_min: int = 2
    db_pool_max: int = 10
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Key authenticating the monitor events the services pass each other over Redis (HMAC-SHA256;
    # every service process needs the same one). Empty: derived from database_url, a secret every
    # service holds and Redis does not. Job events need none: Redis only says which job has new
    # events, WatchJob reads them from Postgres.
    events_key_file: Path | None = None

    s3_endpoint: str = "127.0.0.1:8333"
    s3_access_key: str = "dmod"
    s3_secret_key: str = "dmod-secret"
    s3_bucket: str = "dmod"
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    # S3 as clients reach it, for presigned URLs (e.g. https://s3.example.org); empty = s3_endpoint
    s3_public_url: str = ""

    # Auth: Ed25519 key pair for JWTs; off in the local default (single user).
    auth_required: bool = False
    jwt_private_key_file: Path | None = None
    jwt_public_key_file: Path | None = None
    token_ttl_seconds: int = 3600
    default_user: str = "local"

    # Graceful shutdown: how long in-flight calls may finish after SIGTERM.
    shutdown_grace_seconds: float = 10.0

    # Scheduler / launcher.
    launcher: str = "local"  # local | swarm
    node_cpus: int = 0  # local node CPUs (0 = os.cpu_count())
    node_memory_bytes: int = 0  # 0 = physical memory
    ngen_path: str = ""  # path to a real ngen binary; empty = search PATH, else embedded engine
    worker_image: str = ""  # swarm: worker image id
    docker_url: str = ""  # swarm: docker daemon socket (unix://...)
    # Where this process reaches other DMOD services; empty = itself (one-process local stack).
    services_target: str = ""
    # Write the bound gRPC port here once serving (used when listening on port 0).
    port_file: Path | None = None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
