"""Sum boundary and local contributions into the nexus flows this rank writes.

Slot column d of every owned nexus is added in turn (`flow + value` for the nexuses that have a
d-th contributor), so each nexus is summed strictly left to right in catchment-id order
whatever rank its contributors ran on — the same float64 operations as a serial run.
"""
from __future__ import annotations

import numpy as np

from .domain import Domain


def nexus_flows(dom: Domain, contributions: np.ndarray, received: np.ndarray, recv_offsets: np.ndarray) -> np.ndarray:
    """contributions: (B, n_local) m³/s of local catchments for B steps; received: (B, total)
    remote values for the same steps. Returns (B, n_owned) flows in m³/s."""
    steps = contributions.shape[0]
    flow = np.zeros((steps, len(dom.out_nexus)))
    for d in range(len(dom.slot_kind)):
        active = np.flatnonzero(d < dom.degree)  # nexuses with a d-th contributor
        kind, src, pos = dom.slot_kind[d][active], dom.slot_src[d][active], dom.slot_pos[d][active]
        values = np.empty((steps, active.size))
        local = kind == 0
        values[:, local] = contributions[:, src[local]]
        if not local.all():
            remote = ~local
            values[:, remote] = received[:, recv_offsets[src[remote]] + pos[remote]]
        flow[:, active] = flow[:, active] + values
    return flow
