"""Format blocks of output rows: `<prefix><v1>,<v2>...\n` with printf `%.<p>g` values.

`BlockFormatter(prefixes, n_vars, precision)` is built once per block of steps and then formats
the rows of every file of that block: one C-level `%` call per file with a cached row template.
"""
from __future__ import annotations

import numpy as np


class BlockFormatter:
    def __init__(self, prefixes: list[str], n_vars: int, precision: int):
        row = ",".join([f"%.{precision}g"] * n_vars) + "\n"
        self.template = "".join(p.replace("%", "%%") + row for p in prefixes)
        self.rows = len(prefixes)
        self.n_vars = n_vars

    def __call__(self, values: np.ndarray) -> str:
        """values: (rows, n_vars) float64 → text."""
        return self.template % tuple(values.ravel().tolist())
