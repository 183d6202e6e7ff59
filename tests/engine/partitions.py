"""Test helper: ngen partition JSON for a given catchment → rank assignment.

Used to build deliberately good and bad partition files for the engine tests (the production
partitioners live in the hydrofabric library).
"""
from __future__ import annotations

import json

import numpy as np

SENTINEL = "wb-TERMINAL_SENTINEL-"


def partition_doc(net, rank_of: np.ndarray, n_ranks: int) -> dict:
    cids = [str(c) for c in net.catchment_ids.tolist()]
    nids = [str(n) for n in net.nexus_ids.tolist()]
    parts = [{"id": r, "cat-ids": [], "nex-ids": set(), "remote-connections": []} for r in range(n_ranks)]
    for c, r in enumerate(rank_of.tolist()):
        parts[r]["cat-ids"].append(cids[c])
        if net.cat_to_nex[c] >= 0:
            parts[r]["nex-ids"].add(nids[net.cat_to_nex[c]])
    for n in range(net.n_nexuses):
        down = net.nex_to_cat[n]
        feeders = np.flatnonzero(net.cat_to_nex == n)
        if down >= 0:
            owner, dest = int(rank_of[down]), cids[down]
            parts[owner]["nex-ids"].add(nids[n])
        elif feeders.size:
            owner, dest = int(rank_of[feeders[0]]), SENTINEL + nids[n]
            parts[owner]["cat-ids"].append(dest)
        else:
            continue
        senders = set()
        for c in feeders.tolist():
            r = int(rank_of[c])
            if r == owner:
                continue
            parts[owner]["remote-connections"].append(
                {"mpi-rank": r, "nex-id": nids[n], "cat-id": cids[c], "cat-direction": "orig_cat-to-nex"})
            if r not in senders:
                senders.add(r)
                parts[r]["remote-connections"].append(
                    {"mpi-rank": owner, "nex-id": nids[n], "cat-id": dest, "cat-direction": "nex-to-dest_cat"})
    for p in parts:
        p["nex-ids"] = sorted(p["nex-ids"])
    return {"partitions": parts}


def write_partition(path, net, rank_of, n_ranks) -> dict:
    doc = partition_doc(net, np.asarray(rank_of), n_ranks)
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=1)
    return doc


def chunk_assignment(net, n_ranks: int) -> np.ndarray:
    """Contiguous chunks of the depth-first catchment order (like ngen's generator)."""
    order = net.tour.order if hasattr(net.tour, "order") else np.arange(net.n_catchments)
    rank_of = np.empty(net.n_catchments, dtype=np.int64)
    for r, chunk in enumerate(np.array_split(np.asarray(order), n_ranks)):
        rank_of[chunk] = r
    return rank_of
