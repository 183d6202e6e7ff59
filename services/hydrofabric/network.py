"""The compact catchment → nexus → catchment graph every DMOD component shares.

Readers (GeoPackage, GeoJSON) produce a `Network`; subsetting, partitioning, validation and the
engine consume it. Arrays, not per-feature objects, so a CONUS-size network (~1M catchments)
fits in memory and loads in seconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Network:
    catchment_ids: np.ndarray  # str (object/unicode), e.g. "cat-12"; index = catchment number
    nexus_ids: np.ndarray  # str, e.g. "nex-13", "tnx-1000"
    cat_to_nex: np.ndarray  # int64, index into nexus_ids of each catchment's downstream nexus; -1 none
    nex_to_cat: np.ndarray  # int64, index into catchment_ids of each nexus' downstream catchment; -1 terminal
    area_sqkm: np.ndarray  # float64 per catchment; NaN where the source had none
    hydrofabric_id: str = ""  # content hash of the source file(s)
    vpu: str = ""  # vector processing unit, when the source names one
    # Extra per-catchment columns (e.g. for bmi model_params {"source": "hydrofabric", "from": col}).
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    # ---- sizes and id lookups -------------------------------------------------------------
    @property
    def n_catchments(self) -> int:
        return len(self.catchment_ids)

    @property
    def n_nexuses(self) -> int:
        return len(self.nexus_ids)

    @cached_property
    def catchment_index(self) -> dict[str, int]:
        """Catchment id → index. Built once on first use (a dict of 1M entries is ~0.3 s)."""
        return {c: i for i, c in enumerate(self.catchment_ids.tolist())}

    @cached_property
    def nexus_index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.nexus_ids.tolist())}

    # ---- adjacency (CSR, cached) ----------------------------------------------------------
    @cached_property
    def nexus_upstream(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (indptr, cats): catchments draining into each nexus, cats of nexus j are
        cats[indptr[j]:indptr[j+1]] in ascending catchment index."""
        return _csr(self.cat_to_nex, self.n_nexuses)

    @cached_property
    def catchment_upstream(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (indptr, cats): catchments directly upstream of each catchment, i.e. draining
        through one nexus into it."""
        return _csr(self.downstream_catchment, self.n_catchments)

    @cached_property
    def downstream_catchment(self) -> np.ndarray:
        """Per catchment: the catchment its nexus drains into, -1 at outlets."""
        down = np.full(self.n_catchments, -1, dtype=np.int64)
        has = self.cat_to_nex >= 0
        down[has] = self.nex_to_cat[self.cat_to_nex[has]]
        return down

    @cached_property
    def tour(self):
        """Depth-first pre-order of the catchment forest (see graph.euler_tour); cached."""
        from .graph import euler_tour

        return euler_tour(self.downstream_catchment)

    def terminal_nexuses(self) -> np.ndarray:
        """Indices of nexuses with no downstream catchment in this network."""
        return np.flatnonzero(self.nex_to_cat < 0)

    def outlet_catchments(self) -> np.ndarray:
        """Catchments whose water leaves the network (downstream nexus terminal or absent)."""
        return np.flatnonzero(self.downstream_catchment < 0)

    def summary(self) -> dict:
        up_cnt = np.bincount(self.cat_to_nex[self.cat_to_nex >= 0], minlength=self.n_nexuses)
        return {
            "hydrofabric_id": self.hydrofabric_id,
            "vpu": self.vpu,
            "catchments": self.n_catchments,
            "nexuses": self.n_nexuses,
            "terminal_nexuses": int((self.nex_to_cat < 0).sum()),
            "confluences": int((up_cnt >= 2).sum()),
            "headwater_catchments": int((np.diff(self.catchment_upstream[0]) == 0).sum()),
            "total_area_sqkm": float(np.nansum(self.area_sqkm)),
            "attributes": sorted(self.attributes),
        }


def _csr(parent: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Group children by parent index (parent -1 dropped) into CSR arrays."""
    parent = np.asarray(parent, dtype=np.int64)
    child = np.flatnonzero(parent >= 0)
    p = parent[child]
    order = np.argsort(p, kind="stable")
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(p, minlength=n), out=indptr[1:])
    return indptr, child[order].astype(np.int64)
