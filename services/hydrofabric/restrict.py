"""A network restricted to a set of catchments (e.g. partitioning only part of a hydrofabric)."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .arrays import unique
from .network import Network


def restrict(net: Network, catchment_ids: Iterable[str]) -> Network:
    """Keep the given catchments and their downstream nexuses; a nexus whose downstream catchment
    is dropped becomes terminal. Unknown ids raise KeyError naming them all."""
    ids = list(dict.fromkeys(catchment_ids))
    index = net.catchment_index
    unknown = [i for i in ids if i not in index]
    if unknown:
        raise KeyError("unknown catchment id(s): " + ", ".join(unknown[:20]) + (" ..." if len(unknown) > 20 else ""))
    cats = np.sort(np.fromiter((index[i] for i in ids), dtype=np.int64, count=len(ids)))
    down = net.cat_to_nex[cats]
    nexs = unique(down[down >= 0])  # sort-based: np.unique is slow on large int arrays in numpy 2.4
    cat_map = np.full(net.n_catchments, -1, dtype=np.int64)
    cat_map[cats] = np.arange(len(cats))
    nex_map = np.full(net.n_nexuses, -1, dtype=np.int64)
    nex_map[nexs] = np.arange(len(nexs))
    nex_down = net.nex_to_cat[nexs]
    return Network(
        catchment_ids=net.catchment_ids[cats],
        nexus_ids=net.nexus_ids[nexs],
        cat_to_nex=np.where(down >= 0, nex_map[np.maximum(down, 0)], -1),
        nex_to_cat=np.where(nex_down >= 0, cat_map[np.maximum(nex_down, 0)], -1),
        area_sqkm=net.area_sqkm[cats],
        hydrofabric_id=net.hydrofabric_id,
        vpu=net.vpu,
        attributes={k: v[cats] for k, v in net.attributes.items()},
    )
