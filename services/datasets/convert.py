"""Database rows → `dmod.v1` messages."""
from __future__ import annotations

import collections
import datetime as dt

from google.protobuf import timestamp_pb2

from dmod.services.datasets import domain_codec, names
from dmod.services.datasets.store import loads
from dmod.v1 import datasets_pb2


def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(dt.UTC))
    return ts


def dataset_domain(row):
    return domain_codec.from_json(loads(row["domain"]))


def dataset(row, max_values: int = domain_codec.MAX_VALUES) -> datasets_pb2.Dataset:
    pb = datasets_pb2.Dataset(
        name=names.dataset_name(row["id"]), display_name=row["display_name"], owner=row["owner"],
        category=row["category"], data_format=row["data_format"],
        domain=domain_codec.json_to_proto(loads(row["domain"]), max_values),
        description=row["description"], labels=loads(row["labels"]), state=row["state"],
        size_bytes=row["size_bytes"], object_count=row["object_count"], derived_from=list(row["derived_from"]),
        create_time=timestamp(row["create_time"]), update_time=timestamp(row["update_time"]),
        visibility=row["visibility"], readers=list(row["readers"]))
    if row["seal_time"] is not None:
        pb.seal_time.CopyFrom(timestamp(row["seal_time"]))
    return pb


_LISTED: collections.OrderedDict = collections.OrderedDict()
_LISTED_MAX = 20_000


def listed(row, max_values: int) -> datasets_pb2.Dataset:
    """`dataset(row, max_values)` for listings, cached by row version (Postgres xmin, which every
    update changes): a catalogue polled by many clients is converted once per change, not per
    call (the conversion was most of ListDatasets' CPU)."""
    key = (row["id"], row["row_version"], max_values)
    pb = _LISTED.get(key)
    if pb is None:
        pb = _LISTED[key] = dataset(row, max_values)
        if len(_LISTED) > _LISTED_MAX:
            _LISTED.popitem(last=False)
    else:
        _LISTED.move_to_end(key)
    return pb


def data_object(row) -> datasets_pb2.DataObject:
    return datasets_pb2.DataObject(
        name=names.object_name(row["dataset_id"], row["path"]), path=row["path"], size_bytes=row["size_bytes"],
        sha256=row["sha256"], content_type=row["content_type"], create_time=timestamp(row["create_time"]))
