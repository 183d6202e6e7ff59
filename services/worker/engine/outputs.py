"""ngen's CSV output files.

Catchment `<root>/<cat-id>.csv`:
    Time Step,Time,<var1>,<var2>...
    0,2015-12-01 00:00:00,0.00141766234
Values have 9 significant digits in C++ default float notation (`std::setprecision(9)`), which
is printf `%.9g`.

Nexus `<root>/<nex-id>_output.csv`, no header:
    0, 2015-12-01 00:00:00, 0.0123457
The flow (m³ s⁻¹) is written with a plain C++ `ostream <<` (default precision 6), i.e. `%.6g`.

Rows are buffered in blocks of steps and appended per block, so each file is opened once per
block rather than once per step.
"""
from __future__ import annotations

import os

import numpy as np

from .fastfmt import BlockFormatter

CATCHMENT_PRECISION = 9
NEXUS_PRECISION = 6


class CsvSeriesWriter:
    """Append blocks of rows `<step><sep><time><sep><v1>,<v2>...` to one file per feature."""

    def __init__(self, paths: list[str], header: str | None, separator: str, precision: int):
        self.paths = paths
        self.header = header
        self.sep = separator
        self.precision = precision
        self.started = False

    def prefixes(self, steps: range, labels: list[str]) -> list[str]:
        return [f"{k}{self.sep}{labels[k]}{self.sep}" for k in steps]

    def write_block(self, steps: range, labels: list[str], values: np.ndarray) -> None:
        """values: (n features, len(steps), n vars)."""
        fmt = BlockFormatter(self.prefixes(steps, labels), values.shape[2], self.precision)
        header = self.header.encode("ascii") if self.header is not None and not self.started else b""
        mode = "ab" if self.started else "wb"
        texts = fmt.many(values)
        for path, text in zip(self.paths, texts):
            with open(path, mode) as fh:
                fh.write(header + text if header else text)
        self.started = True

    def create(self, index: int) -> None:
        """Create (truncate) one file with its header ahead of the rows (see precreate.py)."""
        with open(self.paths[index], "wb") as fh:
            if self.header is not None:
                fh.write(self.header.encode("ascii"))

    def mark_created(self) -> None:
        """Every file exists with its header: blocks are appended from now on."""
        self.started = True


def catchment_writer(root: str, ids: list[str], headers: list[str]) -> CsvSeriesWriter:
    return CsvSeriesWriter([os.path.join(root, f"{cid}.csv") for cid in ids],
                           "Time Step,Time," + ",".join(headers) + "\n", ",", CATCHMENT_PRECISION)


def nexus_writer(root: str, ids: list[str]) -> CsvSeriesWriter:
    return CsvSeriesWriter([os.path.join(root, f"{nid}_output.csv") for nid in ids], None, ", ",
                           NEXUS_PRECISION)
