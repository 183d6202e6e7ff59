"""DatasetService clients for services: on behalf of the caller, or of a resource's owner."""
from __future__ import annotations

from dmod.datasets_client import DatasetsClient
from dmod.services.runtime.app import App
from dmod.services.runtime.auth import forward_metadata
from dmod.services.runtime.deadlines import downstream_timeout


def caller_datasets(app: App, timeout: float = 300.0) -> DatasetsClient:
    """Calls made while handling an RPC: the caller's token, within the caller's deadline."""
    return DatasetsClient(app.channel(), metadata=forward_metadata(), timeout=downstream_timeout(timeout))


def owner_datasets(app: App, owner: str, timeout: float = 600.0) -> DatasetsClient:
    """Background work for `owner` (no caller to forward)."""
    return DatasetsClient(app.channel(), metadata=app.on_behalf_of(owner), timeout=timeout)
