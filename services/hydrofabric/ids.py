"""Hydrofabric id conventions: `<prefix>-<integer>` strings, vectorised with pyarrow.

Nexus-like prefixes carry the MPI message tag in their integer; catchment-like prefixes name
the same feature in different layers (`wb-N` in flowpaths/nexus toids is catchment `cat-N`).
"""
from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NEXUS_PREFIXES = ("nex", "tnx", "cnx", "inx")
CATCHMENT_PREFIXES = ("cat", "agg", "wb")
TERMINAL_SENTINEL = "wb-TERMINAL_SENTINEL-"

_ID_RE = re.compile(r"^([A-Za-z]+)-(\d+)$")


def split_id(s: str) -> tuple[str, int] | None:
    """`"nex-12"` → `("nex", 12)`; None when the id is not `<prefix>-<int>`."""
    m = _ID_RE.match(s)
    return (m.group(1), int(m.group(2))) if m else None


def id_number(s: str) -> int | None:
    p = split_id(s)
    return p[1] if p else None


def is_nexus_id(s: str) -> bool:
    p = split_id(s)
    return p is not None and p[0] in NEXUS_PREFIXES


def is_catchment_id(s: str) -> bool:
    p = split_id(s)
    return p is not None and p[0] in CATCHMENT_PREFIXES


def to_arrow_str(values) -> pa.Array:
    """Any 1-D sequence of ids as an arrow string array (nulls kept)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values.cast(pa.string()) if values.type != pa.string() else values
    return pa.array(np.asarray(values, dtype=object), type=pa.string(), from_pandas=True)


def parse_ids(values) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised split: (prefix object array, int64 numbers; -1 where not `<prefix>-<int>`)."""
    arr = to_arrow_str(values)
    parts = pc.extract_regex(arr, r"^(?P<prefix>[A-Za-z]+)-(?P<num>\d{1,18})$")
    valid = pc.is_valid(parts).to_numpy(zero_copy_only=False)
    prefix = pc.struct_field(parts, "prefix").to_numpy(zero_copy_only=False).astype(object)
    num = pc.struct_field(parts, "num")
    nums = np.full(len(arr), -1, dtype=np.int64)
    if valid.any():
        nums[valid] = pc.cast(pc.filter(num, pa.array(valid)), pa.int64()).to_numpy()
    prefix[~valid] = None
    return prefix, nums


def wb_to_cat(values) -> pa.Array:
    """Rewrite `wb-N` to `cat-N` (a nexus' downstream waterbody is catchment N)."""
    return pc.replace_substring_regex(to_arrow_str(values), r"^wb-", "cat-")


def to_object_array(values) -> np.ndarray:
    """Ids as a numpy object array of Python str (the Network's id representation)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return np.asarray(values.to_pylist(), dtype=object)
    return np.asarray(list(values), dtype=object)


def lookup(keys, values) -> np.ndarray:
    """Index of each value in `keys` (first occurrence), -1 when absent or null."""
    idx = pc.index_in(to_arrow_str(values), value_set=to_arrow_str(keys))
    return pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64)
