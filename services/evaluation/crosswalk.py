"""Gage ↔ nexus crosswalk: which simulated nexus is compared with which observed gage.

Accepted sources (all yield an ordered ``{gage_id: nexus_id}`` dict):

* a mapping ``{"01013500": "nex-1001", ...}``;
* an iterable of ``(gage_id, nexus_id)`` pairs, or a DataFrame with a gage and a nexus column;
* a JSON file holding either such an object or a list of ``{"gage_id": ..., "nexus_id": ...}``;
* a CSV file with a header naming a gage column and a nexus column.

Column / key names recognised: gage ``gage_id, gage, site_no, usgs_id, hl_link``; nexus
``nexus_id, nexus, nex_id, id``. Ids are kept as strings (USGS ids have leading zeros; CSVs are
read as text so "01013500" survives). Nexus ids lose a trailing ``_output``/``_output.csv`` so a
file name works as an id. Observation columns are matched to crosswalk gages exactly, or failing
that by `gage_key` (leading zeros / "USGS-" prefix ignored). One gage maps to exactly one nexus; several gages may share a nexus.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

GAGE_KEYS = ("gage_id", "gage", "site_no", "usgs_id", "hl_link")
NEXUS_KEYS = ("nexus_id", "nexus", "nex_id", "id")


def normalize_nexus_id(nexus_id) -> str:
    """"nex-12_output.csv" / " nex-12 " → "nex-12"."""
    text = str(nexus_id).strip()
    for suffix in (".csv", "_output"):
        text = text.removesuffix(suffix)
    return text


def gage_key(gage_id) -> str:
    """Loose form of a gage id for fallback matching: no "USGS-"/"Gages-" prefix, no leading zeros
    (spreadsheets routinely turn "01013500" into 1013500)."""
    text = str(gage_id).strip()
    low = text.lower()
    for prefix in ("usgs-", "usgs:", "gages-", "gage-"):
        if low.startswith(prefix):
            text = text[len(prefix):]
            break
    return text.lstrip("0") or "0"


def match_gages(wanted: Iterable[str], available: Iterable[str]) -> dict[str, str]:
    """Crosswalk gage id → observation column: exact match first, else a unique `gage_key` match.
    Gages with no (or an ambiguous) match are left out."""
    available = list(available)
    exact = set(available)
    out = {g: g for g in wanted if g in exact}
    rest = [g for g in wanted if g not in exact]
    if rest:  # loose keys only when needed (10k+ columns is common)
        by_key: dict[str, list[str]] = {}
        for col in available:
            by_key.setdefault(gage_key(col), []).append(col)
        for g in rest:
            hits = by_key.get(gage_key(g), [])
            if len(hits) == 1:
                out[g] = hits[0]
    return out


def _pick(columns: Iterable[str], names: tuple[str, ...], what: str, source: str) -> str:
    lowered = {str(c).strip().lower(): c for c in columns}
    for name in names:
        if name in lowered:
            return lowered[name]
    raise ValueError(f"crosswalk {source}: no {what} column (expected one of {', '.join(names)})")


def _from_pairs(pairs: Iterable[tuple], source: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for gage, nexus in pairs:
        if gage is None or nexus is None or (isinstance(nexus, float) and pd.isna(nexus)):
            raise ValueError(f"crosswalk {source}: empty id in pair ({gage!r}, {nexus!r})")
        g, n = str(gage).strip(), normalize_nexus_id(nexus)
        if not g or not n:
            raise ValueError(f"crosswalk {source}: empty id in pair ({gage!r}, {nexus!r})")
        if g in out and out[g] != n:
            raise ValueError(f"crosswalk {source}: gage {g} maps to both {out[g]} and {n}")
        out[g] = n
    if not out:
        raise ValueError(f"crosswalk {source}: no gage/nexus pairs")
    return out


def _from_frame(frame: pd.DataFrame, source: str) -> dict[str, str]:
    gcol = _pick(frame.columns, GAGE_KEYS, "gage", source)
    ncol = _pick(frame.columns, NEXUS_KEYS, "nexus", source)
    return _from_pairs(zip(frame[gcol], frame[ncol]), source)


def _from_json(path: Path) -> dict[str, str]:
    data = json.loads(path.read_text())
    if isinstance(data, Mapping):
        return _from_pairs(data.items(), str(path))
    if isinstance(data, list) and all(isinstance(r, Mapping) for r in data):
        # Keys are looked up per record, so records may name their fields differently.
        return _from_pairs(((r[_pick(r, GAGE_KEYS, "gage", str(path))], r[_pick(r, NEXUS_KEYS, "nexus", str(path))])
                            for r in data), str(path))
    raise ValueError(f"crosswalk {path}: expected an object {{gage: nexus}} or a list of records")


def load_crosswalk(source) -> dict[str, str]:
    """Crosswalk ``{gage_id: nexus_id}`` from any accepted source (see module docstring)."""
    if isinstance(source, pd.DataFrame):
        return _from_frame(source, "frame")
    if isinstance(source, Mapping):
        return _from_pairs(source.items(), "mapping")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"crosswalk file not found: {path}")
        if path.suffix.lower() == ".json":
            return _from_json(path)
        # Text dtype keeps leading zeros of gage ids.
        return _from_frame(pd.read_csv(path, dtype=str, skipinitialspace=True), str(path))
    if isinstance(source, Iterable):
        return _from_pairs(source, "pairs")
    raise TypeError(f"unsupported crosswalk source type {type(source).__name__}")
