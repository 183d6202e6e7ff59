"""ListObjects and DeleteObject."""
from __future__ import annotations

from dmod.services.datasets import access, convert, names, pagination, store
from dmod.services.datasets.transfer import upload_rows
from dmod.services.datasets.transfer.commit import REPLACED_GRACE_SECONDS, check_writable
from dmod.services.runtime.errors import NotFound
from dmod.v1 import datasets_pb2


async def list_objects(pool, request: datasets_pb2.ListObjectsRequest) -> datasets_pb2.ListObjectsResponse:
    dataset_id = names.parse_dataset_name(request.parent, "parent")
    size = pagination.page_size(request.page_size, default=1000)
    filters = {"parent": request.parent, "prefix": request.prefix}
    key = pagination.decode(request.page_token, filters, schema=(pagination.text,))
    async with pool.acquire() as conn:
        if await store.get_dataset(conn, dataset_id) is None:
            raise NotFound(f"{request.parent} does not exist", reason="DATASET_NOT_FOUND")
        rows = await store.list_objects(conn, dataset_id, prefix=request.prefix, after=key[0] if key else None,
                                        limit=size + 1)
    page = rows[:size]
    token = pagination.encode([page[-1]["path"]], filters) if len(rows) > size else ""
    return datasets_pb2.ListObjectsResponse(objects=[convert.data_object(r) for r in page], next_page_token=token)


async def delete_object(pool, request: datasets_pb2.DeleteObjectRequest) -> datasets_pb2.DeleteObjectResponse:
    dataset_id, path = names.parse_object_name(request.name)
    async with pool.acquire() as conn, conn.transaction():
        dataset = await store.get_dataset(conn, dataset_id, lock=True)
        if dataset is None:
            raise NotFound(f"{names.dataset_name(dataset_id)} does not exist", reason="DATASET_NOT_FOUND")
        access.require_owner(dataset)
        await check_writable(conn, dataset_id)
        row = await store.delete_object(conn, dataset_id, path)
        if row is None:
            raise NotFound(f"{request.name} does not exist", reason="OBJECT_NOT_FOUND")
        # Removed after a grace period: a download that already started can finish.
        await upload_rows.add_garbage(conn, row["s3_key"], delay_seconds=REPLACED_GRACE_SECONDS)
    return datasets_pb2.DeleteObjectResponse()
