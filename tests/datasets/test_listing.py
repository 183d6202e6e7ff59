"""ListDatasets caches converted rows by row version: every change shows at once."""
from __future__ import annotations

from dmod.datasets_client import FORCING


async def listed(ds, name: str):
    return next(d for d in await ds.list_datasets(labels={"listing": "test"}) if d.name == name)


async def test_listing_follows_every_change(ds):
    import uuid

    dataset = await ds.create_dataset(f"listing-{uuid.uuid4().hex[:8]}", FORCING, 1, labels={"listing": "test"})
    first = await listed(ds, dataset.name)
    assert first.object_count == 0 and first.description == ""
    assert await listed(ds, dataset.name) == first  # served again (from the cache)

    await ds.update_dataset(dataset.name, description="now described")
    assert (await listed(ds, dataset.name)).description == "now described"
    await ds.upload_bytes(dataset.name, "a.csv", b"time,x\n")
    after_upload = await listed(ds, dataset.name)
    assert (after_upload.object_count, after_upload.size_bytes) == (1, 7)
    await ds.delete_object(f"{dataset.name}/objects/a.csv")
    assert (await listed(ds, dataset.name)).object_count == 0
