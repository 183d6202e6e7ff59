"""Dataset lifecycle: create (idempotent), get, list, update, seal (OPEN → SEALED), delete."""
from __future__ import annotations

import logging
import uuid

import asyncpg

from dmod.services.datasets import access, convert, domain_codec, names, pagination, store, validation
from dmod.services.datasets.detect import DetectionContext, detect_domain
from dmod.services.datasets.domains import Domain
from dmod.services.datasets.formats import CATEGORY_OF
from dmod.services.runtime.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from dmod.v1 import datasets_pb2

log = logging.getLogger("dmod.datasets")

MUTABLE = ("display_name", "description", "labels", "domain", "visibility", "readers")
_VISIBILITIES = (access.PRIVATE, access.PUBLIC)


class Catalog:
    def __init__(self, pool: asyncpg.Pool, blobs):
        self.pool = pool
        self.blobs = blobs  # transfer.blobs.Blobs

    # ---- reads ---------------------------------------------------------------------------
    async def row(self, name: str, field: str = "name", *, conn=None, lock: bool = False, read: bool = True):
        """The dataset `name`; NOT_FOUND also when the caller may not read it (`read`)."""
        dataset_id = names.parse_dataset_name(name, field)
        if conn is None:
            async with self.pool.acquire() as c:
                row = await store.get_dataset(c, dataset_id)
                if row is not None and read:
                    await access.require_read(c, row, name=name)
        else:
            row = await store.get_dataset(conn, dataset_id, lock=lock)
            if row is not None and read:
                await access.require_read(conn, row, name=name)
        if row is None:
            raise NotFound(f"{name} does not exist", reason="DATASET_NOT_FOUND", metadata={"name": name})
        return row

    async def get(self, request: datasets_pb2.GetDatasetRequest) -> datasets_pb2.GetDatasetResponse:
        return datasets_pb2.GetDatasetResponse(dataset=convert.dataset(await self.row(request.name)))

    async def list(self, request: datasets_pb2.ListDatasetsRequest) -> datasets_pb2.ListDatasetsResponse:
        size = pagination.page_size(request.page_size)
        filters = {"category": request.category, "data_format": request.data_format, "owner": request.owner,
                   "labels": dict(request.labels), "state": request.state}
        key = pagination.decode(request.page_token, filters, schema=(pagination.timestamp, pagination.uuid_value))
        after = tuple(key) if key else None
        async with self.pool.acquire() as conn:
            viewer = await access.visible_filter(conn)
            rows = await store.list_datasets(conn, after=after, limit=size + 1, viewer=viewer, **filters)
        page, more = rows[:size], len(rows) > size
        token = pagination.encode([page[-1]["create_time"].isoformat(), str(page[-1]["id"])], filters) if more else ""
        return datasets_pb2.ListDatasetsResponse(datasets=[convert.listed(r, domain_codec.MAX_VALUES_IN_LISTS) for r in page], next_page_token=token)

    # ---- create / update -----------------------------------------------------------------
    async def create(self, request: datasets_pb2.CreateDatasetRequest) -> datasets_pb2.CreateDatasetResponse:
        ds = request.dataset
        category = ds.category or CATEGORY_OF.get(ds.data_format, 0)
        violations = validation.kind_violations(category, ds.data_format, "dataset")
        display_name = ds.display_name or f"dataset-{uuid.uuid4().hex[:12]}"
        problem = validation.display_name_problem(display_name)
        if problem:
            violations.append(("dataset.display_name", problem))
        violations += validation.label_violations(dict(ds.labels), "dataset.labels")
        violations += _sharing_violations(ds)
        for i, parent in enumerate(ds.derived_from):
            try:
                names.parse_dataset_name(parent, f"dataset.derived_from[{i}]")
            except InvalidArgument as exc:
                violations += exc.violations
        if len(request.request_id) > 128:
            violations.append(("request_id", "must be at most 128 characters"))
        try:
            domain = domain_codec.from_proto(ds.domain, "dataset.domain")
        except InvalidArgument as exc:
            violations += exc.violations
            domain = Domain()
        if violations:
            raise InvalidArgument(violations)
        owner = access.caller().user
        async with self.pool.acquire() as conn:
            try:
                row, created = await store.insert_dataset(
                    conn, owner=owner, display_name=display_name, category=category, data_format=ds.data_format,
                    domain=domain, description=ds.description, labels=dict(ds.labels),
                    derived_from=list(ds.derived_from), request_id=request.request_id or None,
                    visibility=_visibility(ds.visibility, dict(ds.labels)) or access.PRIVATE, readers=sorted(set(ds.readers)))
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(f"{owner} already has a dataset named {display_name!r}",
                                    reason="DISPLAY_NAME_TAKEN", metadata={"display_name": display_name}) from None
        if created:
            log.info("dataset created", extra={"dataset": str(row["id"]), "owner": owner})
        return datasets_pb2.CreateDatasetResponse(dataset=convert.dataset(row))

    async def update(self, request: datasets_pb2.UpdateDatasetRequest) -> datasets_pb2.UpdateDatasetResponse:
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument(("update_mask", f"name the fields to update: {', '.join(MUTABLE)}"))
        bad = [p for p in paths if p not in MUTABLE]
        if bad:
            raise InvalidArgument(("update_mask", f"cannot update {', '.join(bad)} (mutable: {', '.join(MUTABLE)})"))
        ds = request.dataset
        changes: dict = {}
        violations = []
        if "display_name" in paths:
            problem = validation.display_name_problem(ds.display_name)
            if problem:
                violations.append(("dataset.display_name", problem))
            changes["display_name"] = ds.display_name
        if "description" in paths:
            changes["description"] = ds.description
        if "labels" in paths:
            violations += validation.label_violations(dict(ds.labels), "dataset.labels")
            changes["labels"] = dict(ds.labels)
        if "visibility" in paths or "readers" in paths:
            violations += _sharing_violations(ds, "visibility" in paths)
        if "readers" in paths:
            changes["readers"] = sorted(set(ds.readers))
        if "visibility" in paths:  # in the mask and unset: PRIVATE
            changes["visibility"] = ds.visibility or access.PRIVATE
        elif _visibility(0, changes.get("labels", {})):
            changes["visibility"] = access.PUBLIC
        if "domain" in paths:
            try:
                changes["domain"] = domain_codec.from_proto(ds.domain, "dataset.domain")
            except InvalidArgument as exc:
                violations += exc.violations
        if violations:
            raise InvalidArgument(violations)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self.row(ds.name, "dataset.name", conn=conn, lock=True)
            access.require_owner(row)
            if "domain" in changes and row["state"] == store.SEALED:
                raise FailedPrecondition(f"{ds.name} is SEALED; its domain is immutable", reason="DATASET_SEALED")
            try:
                row = await store.update_dataset(conn, row["id"], **changes)
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(f"{row['owner']} already has a dataset named {ds.display_name!r}",
                                    reason="DISPLAY_NAME_TAKEN") from None
        return datasets_pb2.UpdateDatasetResponse(dataset=convert.dataset(row))

    # ---- seal / delete -------------------------------------------------------------------
    async def seal(self, request: datasets_pb2.SealDatasetRequest) -> datasets_pb2.SealDatasetResponse:
        row = await self.row(request.name)
        access.require_owner(row)
        if row["state"] != store.OPEN:
            raise FailedPrecondition(f"{request.name} is already SEALED", reason="DATASET_SEALED")
        detected, fingerprint = None, None
        if convert.dataset_domain(row).is_empty() and row["object_count"]:
            async with self.pool.acquire() as conn:
                objects = await store.list_objects(conn, row["id"], prefix="", after=None, limit=None)
            fingerprint = _fingerprint(objects)
            ctx = DetectionContext(self.blobs, objects)
            detected, _format = await detect_domain(ctx, row["data_format"], required=False)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self.row(request.name, conn=conn, lock=True)
            if row["state"] != store.OPEN:
                raise FailedPrecondition(f"{request.name} is already SEALED", reason="DATASET_SEALED")
            if fingerprint is not None:
                objects = await store.list_objects(conn, row["id"], prefix="", after=None, limit=None)
                if _fingerprint(objects) != fingerprint:
                    raise Aborted(f"{request.name} changed while its domain was detected; retry",
                                  reason="DATASET_CHANGED")
            row = await store.seal_dataset(conn, row["id"], detected if detected and not detected.is_empty() else None)
        log.info("dataset sealed", extra={"dataset": str(row["id"])})
        return datasets_pb2.SealDatasetResponse(dataset=convert.dataset(row))

    async def delete(self, request: datasets_pb2.DeleteDatasetRequest) -> datasets_pb2.DeleteDatasetResponse:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self.row(request.name, conn=conn, lock=True)
            access.require_owner(row)
            if row["state"] == store.SEALED and not request.force:
                raise FailedPrecondition(f"{request.name} is SEALED; pass force to delete it", reason="DATASET_SEALED")
            multiparts = await conn.fetch(
                "SELECT s3_key, multipart_id FROM dataset_uploads WHERE dataset_id = $1 AND state = 'ACTIVE' "
                "AND multipart_id IS NOT NULL", row["id"])
            await store.delete_dataset(conn, row["id"])
        await self.blobs.remove_dataset(row["id"], [(m["s3_key"], m["multipart_id"]) for m in multiparts])
        log.info("dataset deleted", extra={"dataset": str(row["id"])})
        return datasets_pb2.DeleteDatasetResponse()


def _visibility(requested: int, labels: dict) -> int:
    """The visibility to store (0: unchanged). The legacy label public=true still means PUBLIC."""
    if requested:
        return requested
    key, value = access.LEGACY_PUBLIC_LABEL
    return access.PUBLIC if labels.get(key) == value else 0


def _sharing_violations(ds: datasets_pb2.Dataset, visibility_given: bool = True) -> list[tuple[str, str]]:
    violations = access.reader_violations(ds.readers, "dataset.readers")
    if visibility_given and ds.visibility and ds.visibility not in _VISIBILITIES:
        violations.append(("dataset.visibility", f"unknown visibility {ds.visibility}"))
    return violations


def _fingerprint(objects) -> tuple:
    return tuple((o["path"], o["sha256"]) for o in objects)
