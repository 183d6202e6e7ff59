"""Small numpy helpers. numpy 2.4's hash-based `np.unique` (no return_* flags) can take
seconds on 1M wide-range int64s, and `np.isin` is slow too; sort-based versions are ~50× faster."""
from __future__ import annotations

import numpy as np


def unique(x) -> np.ndarray:
    """Sorted unique values (like np.unique(x) without extra outputs)."""
    s = np.sort(np.asarray(x).ravel())
    if len(s) == 0:
        return s
    return s[np.r_[True, s[1:] != s[:-1]]]


def isin(x, y) -> np.ndarray:
    """Boolean mask: which elements of x occur in y."""
    x = np.asarray(x)
    ys = unique(y)
    if len(ys) == 0:
        return np.zeros(x.shape, dtype=bool)
    idx = np.searchsorted(ys, x).clip(max=len(ys) - 1)
    return ys[idx] == x
