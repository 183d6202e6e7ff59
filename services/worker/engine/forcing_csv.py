"""ngen's `CsvPerFeature` forcing provider.

`path` is a directory searched with the regex `file_pattern` (`{{id}}` replaced by the
catchment id, matched against whole file names; default `.*{{id}}.*\\.csv`), or a single file
used for every catchment. A file has a header with a `time` or `Time` column
(`YYYY-MM-DD HH:MM:SS`) and one column per variable. Values are parsed by pyarrow (correctly
rounded, so a CSV written with shortest round-trip repr gives the same doubles as NetCDF).

When several files match a catchment's pattern (`.*cat-1.*` also matches `cat-10.csv`), files
where the id is not followed by another id character are preferred; a remaining tie is an error
rather than a silent guess.
"""
from __future__ import annotations

import os
import re
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .errors import ConfigError
from .timegrid import TimeGrid

DEFAULT_PATTERN = r".*{{id}}.*\.csv"
_ID_TOKEN = re.compile(r"[A-Za-z]+-\d+")
_ID_CHAR = re.compile(r"[A-Za-z0-9]")


class DirectoryIndex:
    """File names of one forcing directory, indexed by the `<prefix>-<n>` ids they contain, so
    matching 20,000 catchments does not cost 20,000 regex scans of the directory."""

    def __init__(self, directory: str):
        try:
            self.names = sorted(e.name for e in os.scandir(directory) if e.is_file())
        except OSError as exc:
            raise ConfigError(f"cannot list forcing directory {directory}: {exc.strerror}") from None
        self.directory = directory
        self.by_token: dict[str, list[str]] = {}
        for name in self.names:
            for token in set(_ID_TOKEN.findall(name)):
                self.by_token.setdefault(token, []).append(name)

    def match(self, catchment_id: str, pattern: str) -> str | None:
        regex = re.compile(pattern.replace("{{id}}", re.escape(catchment_id)))
        candidates = self.by_token.get(catchment_id)
        if candidates is None:  # ids that are not <prefix>-<n>: scan every name
            candidates = self.names
        hits = [n for n in candidates if regex.fullmatch(n)]
        if len(hits) > 1:
            delimited = [n for n in hits if _id_delimited(n, catchment_id)]
            hits = delimited or hits
        if len(hits) > 1:
            raise ConfigError(f"forcing file pattern {pattern!r} is ambiguous: {', '.join(hits[:5])}",
                              catchment=catchment_id, field="forcing.file_pattern")
        return os.path.join(self.directory, hits[0]) if hits else None


def _id_delimited(name: str, catchment_id: str) -> bool:
    """True when `catchment_id` occurs in `name` not glued to other letters/digits."""
    for m in re.finditer(re.escape(catchment_id), name):
        before = name[m.start() - 1: m.start()]
        after = name[m.end(): m.end() + 1]
        if not (before and _ID_CHAR.fullmatch(before)) and not (after and _ID_CHAR.fullmatch(after)):
            return True
    return False


def read_header(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            line = fh.readline()
    except OSError as exc:
        raise ConfigError(f"cannot read forcing file {path}: {exc.strerror}") from None
    return [c.strip() for c in line.strip().split(",")]


def _epochs(labels: list[str]) -> np.ndarray:
    out = np.empty(len(labels), dtype=np.int64)
    for i, s in enumerate(labels):
        d = datetime.fromisoformat(s.strip())
        out[i] = int((d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp())
    return out


def read_csv_forcing(path: str, variables: list[str], grid: TimeGrid, grid_labels: list[str],
                     catchment_id: str) -> dict[str, np.ndarray]:
    """Values of `variables` at every step of `grid` from one CSV file: {var: (K,) float64}."""
    header = read_header(path)
    time_col = "time" if "time" in header else ("Time" if "Time" in header else None)
    if time_col is None:
        raise ConfigError(f"forcing file {path} has no 'time' or 'Time' column", catchment=catchment_id,
                          field="forcing")
    missing = [v for v in variables if v not in header]
    if missing:
        raise ConfigError(f"forcing file {path} has no column(s) {', '.join(missing)} "
                          f"(columns: {', '.join(c for c in header if c != time_col)})",
                          catchment=catchment_id, field="forcing")
    try:
        table = pacsv.read_csv(
            path, read_options=pacsv.ReadOptions(use_threads=False),
            convert_options=pacsv.ConvertOptions(
                include_columns=[time_col, *variables],
                column_types={time_col: pa.string(), **{v: pa.float64() for v in variables}}),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise ConfigError(f"cannot parse forcing file {path}: {exc}", catchment=catchment_id, field="forcing") from None
    labels = [s.strip() for s in table.column(time_col).to_pylist()]
    first = _locate(labels, grid, grid_labels, path, catchment_id)
    rows = slice(first, first + grid.n_steps)
    out = {}
    for v in variables:
        col = table.column(v)
        if col.null_count:
            raise ConfigError(f"forcing file {path}: column {v} has empty values", catchment=catchment_id,
                              field="forcing")
        out[v] = col.to_numpy()[rows]
    return out


def _locate(labels: list[str], grid: TimeGrid, grid_labels: list[str], path: str, catchment_id: str) -> int:
    """Row of the run's first step; checks the file has every step of the run in order."""
    n = grid.n_steps
    try:
        first = labels.index(grid_labels[0])
        if labels[first: first + n] == grid_labels:
            return first
    except ValueError:
        pass
    # slower path: other spellings of the same instants (e.g. ISO 'T')
    try:
        epochs = _epochs(labels)
    except ValueError as exc:
        raise ConfigError(f"forcing file {path}: unreadable time value ({exc})", catchment=catchment_id,
                          field="forcing") from None
    hits = np.flatnonzero(epochs == grid.start)
    if hits.size and np.array_equal(epochs[hits[0]: hits[0] + n], grid.epochs):
        return int(hits[0])
    span = f"{labels[0]} .. {labels[-1]}" if labels else "no rows"
    raise ConfigError(f"forcing file {path} ({span}) does not cover the run {grid_labels[0]} .. "
                      f"{grid_labels[-1]} every {grid.interval} s", catchment=catchment_id, field="forcing")
