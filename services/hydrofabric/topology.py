"""Raw edge tables as read from a hydrofabric, and their resolution into a `Network`.

Readers keep the tables unresolved (duplicates, dangling toids and all) so validation can
report exactly what is wrong in the file; `build_network` resolves what can be resolved.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .ids import lookup, to_arrow_str, to_object_array, wb_to_cat
from .network import Network


@dataclass
class Topology:
    cat_ids: pa.Array  # one row per catchment record, file order
    cat_toids: pa.Array  # downstream nexus id per record (may be null)
    cat_area: np.ndarray  # float64, NaN where missing
    nex_ids: pa.Array  # one row per nexus record
    nex_toids: pa.Array  # downstream catchment/waterbody id per record (may be null)
    cat_alt_ids: pa.Array | None = None  # divides.id (wb-N), an alternate catchment name
    attributes: dict[str, np.ndarray] = field(default_factory=dict)  # per catchment record
    vpu: str = ""


def _first_rows(ids: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Unique ids in first-occurrence order and the row index of each first occurrence."""
    ids = to_arrow_str(ids)
    valid = pc.is_valid(ids).to_numpy(zero_copy_only=False)
    if not valid.all():
        ids = ids.filter(pa.array(valid))
    rows_all = np.flatnonzero(valid)
    uniq = pc.unique(ids)
    if len(uniq) == len(ids):  # the common case: no duplicate records
        return ids, rows_all
    first = lookup(ids, uniq)  # index_in returns the first match
    return uniq, rows_all[first]


def resolve_catchment_refs(topo: Topology, cat_ids: pa.Array, refs) -> np.ndarray:
    """Map ids naming catchments (`wb-N` → `cat-N`, `cat-N`, or an alternate divides id) to
    indices; -1 when none matches."""
    refs = to_arrow_str(refs)
    idx = lookup(cat_ids, wb_to_cat(refs))  # toids are usually wb-N: one hash pass
    miss = np.flatnonzero(idx < 0)
    if len(miss):
        sub = refs.take(pa.array(miss))
        alt = np.full(len(miss), -1, dtype=np.int64)
        if topo.cat_alt_ids is not None:
            rec = lookup(topo.cat_alt_ids, sub)
            if (rec >= 0).any():
                # alternate ids were read per record; map record → unique catchment index
                rec_cat = lookup(cat_ids, to_arrow_str(topo.cat_ids).take(pa.array(np.maximum(rec, 0))))
                alt = np.where(rec >= 0, rec_cat, -1)
        idx[miss] = alt
    return idx


def build_network(topo: Topology, hydrofabric_id: str = "") -> Network:
    """Resolve raw tables: first record of a duplicated id wins; a catchment toid that is not a
    nexus gives -1 (validation reports it); a nexus toid that is no catchment makes it terminal."""
    cat_ids, cat_rows = _first_rows(topo.cat_ids)
    nex_ids, nex_rows = _first_rows(topo.nex_ids)
    cat_toids = to_arrow_str(topo.cat_toids).take(pa.array(cat_rows))
    nex_toids = to_arrow_str(topo.nex_toids).take(pa.array(nex_rows))
    cat_to_nex = lookup(nex_ids, cat_toids)
    nex_to_cat = resolve_catchment_refs(topo, cat_ids, nex_toids)
    area = np.asarray(topo.cat_area, dtype=np.float64)[cat_rows]
    attrs = {k: np.asarray(v)[cat_rows] for k, v in topo.attributes.items()}
    return Network(
        catchment_ids=to_object_array(cat_ids),
        nexus_ids=to_object_array(nex_ids),
        cat_to_nex=cat_to_nex,
        nex_to_cat=nex_to_cat,
        area_sqkm=area,
        hydrofabric_id=hydrofabric_id,
        vpu=topo.vpu,
        attributes=attrs,
    )
