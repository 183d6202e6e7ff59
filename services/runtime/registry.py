"""Every DMOD gRPC service: its short name, full name and generated module.

A service is implemented by `dmod.services.<name>.service`, which defines
`create_servicer(app) -> servicer` (the servicer may have async `start()`/`stop()`), and keeps
SQL migrations in `services/<name>/migrations/`. A service not built yet is served by the
generated base class and answers UNIMPLEMENTED, but starts, reports health and is reachable.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

SERVICES_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ServiceInfo:
    name: str  # short name: folder under services/, route/cluster name in Envoy
    service: str  # proto service name, e.g. "DatasetService"
    proto_module: str  # generated module stem, e.g. "datasets"

    @property
    def full_name(self) -> str:
        return f"dmod.v1.{self.service}"

    @property
    def grpc_module(self) -> ModuleType:
        return importlib.import_module(f"dmod.v1.{self.proto_module}_pb2_grpc")

    @property
    def migrations(self) -> Path:
        return SERVICES_ROOT / self.name / "migrations"

    def implementation(self) -> ModuleType | None:
        module_name = f"dmod.services.{self.name}.service"
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise

    def add_to_server(self, servicer, server) -> None:
        getattr(self.grpc_module, f"add_{self.service}Servicer_to_server")(servicer, server)

    def unimplemented_servicer(self):
        return getattr(self.grpc_module, f"{self.service}Servicer")()


SERVICES: dict[str, ServiceInfo] = {s.name: s for s in (
    ServiceInfo("auth", "AuthService", "auth"),
    ServiceInfo("datasets", "DatasetService", "datasets"),
    ServiceInfo("jobs", "JobService", "jobs"),
    ServiceInfo("partitioner", "PartitionerService", "partitioner"),
    ServiceInfo("subset", "SubsetService", "subset"),
    ServiceInfo("evaluation", "EvaluationService", "evaluation"),
    ServiceInfo("monitor", "MonitorService", "monitor"),
)}


def resolve(names: list[str]) -> list[ServiceInfo]:
    if names == ["all"]:
        return list(SERVICES.values())
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise ValueError(f"unknown service(s) {unknown}; known: {sorted(SERVICES)}")
    return [SERVICES[n] for n in names]
