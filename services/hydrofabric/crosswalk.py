"""Gage ↔ nexus crosswalk from a GeoPackage: `hydrolocations` rows with hl_reference 'Gages'
(hl_link = gage, id = nexus at the gage) and `flowpath_attributes.rl_gages` (gage on flowpath
wb-N, whose outflow nexus is the flowpath's toid)."""
from __future__ import annotations

import numpy as np

from .ids import lookup, to_arrow_str, wb_to_cat
from .network import Network
from .readers import layer_fields, layer_names, read_table


def _split_gages(v) -> list[str]:
    # rl_gages may list several gages on one flowpath ("01234567,01234568")
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return []
    return [g.strip() for g in str(v).split(",") if g.strip()]


def read_gage_crosswalk(path, network: Network | None = None) -> tuple[dict[str, str], list]:
    """(gage id → nexus id, issues). Conflicting sources are reported, hydrolocations win."""
    from .validate import Issue

    layers = layer_names(path)
    issues: list[Issue] = []
    out: dict[str, str] = {}
    if "hydrolocations" in layers:
        f = layer_fields(path, "hydrolocations")
        if {"hl_reference", "hl_link", "id"} <= set(f):
            t = read_table(path, "hydrolocations", ["id", "hl_reference", "hl_link"])
            for nex, ref, link in zip(t["id"].to_pylist(), t["hl_reference"].to_pylist(), t["hl_link"].to_pylist()):
                if ref != "Gages" or not link or not nex:
                    continue
                link = str(link).strip()
                prev = out.get(link)
                if prev is not None and prev != nex:
                    issues.append(Issue("GAGE_CONFLICT", link, f"gage {link} is at nexus {prev} and {nex} in hydrolocations"))
                    continue
                out[link] = nex
    if "flowpath_attributes" in layers and "rl_gages" in layer_fields(path, "flowpath_attributes"):
        t = read_table(path, "flowpath_attributes", ["id", "rl_gages"])
        fp_ids = t["id"].to_pylist()
        gages = t["rl_gages"].to_pylist()
        keep = [i for i, g in enumerate(gages) if _split_gages(g)]
        if keep:
            wb = [fp_ids[i] for i in keep]
            nex = _flowpath_outflow(path, layers, wb, network)
            for i, n in zip(keep, nex):
                for g in _split_gages(gages[i]):
                    if n is None:
                        issues.append(Issue("GAGE_UNRESOLVED", g, f"gage {g} on flowpath {fp_ids[i]} has no outflow nexus",
                                            "warning"))
                        continue
                    prev = out.get(g)
                    if prev is None:
                        out[g] = n
                    elif prev != n:
                        issues.append(Issue("GAGE_CONFLICT", g, f"gage {g}: hydrolocations say nexus {prev}, "
                                            f"flowpath_attributes.rl_gages on {fp_ids[i]} implies {n}"))
    if network is not None:
        for g, n in out.items():
            if n not in network.nexus_index:
                issues.append(Issue("GAGE_UNKNOWN_NEXUS", g, f"gage {g} maps to nexus {n}, which is not in the network",
                                    "warning"))
    return out, issues


def _flowpath_outflow(path, layers, wb_ids: list[str], network: Network | None) -> list[str | None]:
    """Outflow nexus of each flowpath: its toid in `flowpaths`, else its catchment's toid."""
    if "flowpaths" in layers and {"id", "toid"} <= set(layer_fields(path, "flowpaths")):
        t = read_table(path, "flowpaths", ["id", "toid"])
        row = lookup(t["id"].combine_chunks(), wb_ids)
        toids = t["toid"].to_pylist()
        return [toids[r] if r >= 0 else None for r in row.tolist()]
    if network is None:
        from .readers import load_network
        network = load_network(path)
    cats = to_arrow_str(wb_to_cat(wb_ids)).to_pylist()
    res = []
    for c in cats:
        i = network.catchment_index.get(c)
        j = network.cat_to_nex[i] if i is not None else -1
        res.append(network.nexus_ids[j] if j >= 0 else None)
    return res


def gage_crosswalk(path, network: Network | None = None) -> dict[str, str]:
    """Gage id → nexus id (see `read_gage_crosswalk`)."""
    return read_gage_crosswalk(path, network)[0]
