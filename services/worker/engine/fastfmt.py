"""Vectorised printf `%.<p>g` for output rows (the engine's hottest I/O path).

Formatting 20,000 catchments × 720 steps one `%` at a time costs ~2 µs a value; this builds the
text of whole blocks with numpy instead, byte-for-byte equal to Python/C `%.<p>g`:

1. e = ⌊log10|x|⌋, r = round-half-even(|x|·10^(p−1−e)) as a p-digit integer. The scaling uses
   an exact power of ten (|p−1−e| ≤ 22), so it carries one rounding (≤ 2⁻⁵³ relative); values
   whose scaled fraction is within 1e-6 of .5, whose e estimate is off, or that are 0/inf/nan
   or out of range are formatted by Python instead (rare, and exact).
2. C's %g rule picks fixed notation when −4 ≤ e < p, else d.ddde±XX; trailing zeros and a
   bare point are dropped.
3. Characters go into a zero-padded byte matrix, one row per line (prefix, values, separators,
   newline); dropping the zero padding (`M[M != 0]`) yields the file text in one pass.
"""
from __future__ import annotations

import numpy as np

_P10 = np.array([10.0 ** i for i in range(23)])
MAX_PRECISION = 9
MIN_PRECISION = 5  # digit tables split numbers into p-4 and 4 digits
CHUNK = 1 << 16
_DOT, _MINUS, _PLUS, _E, _ZERO, _COMMA, _NL = (ord(c) for c in ".-+e0,\n")


def value_width(precision: int) -> int:
    # sign, digits, point, 'e', exponent sign, 3 exponent digits (or sign, "0.000", digits);
    # 16 bytes for every fast-path precision so a cell can move as one 16-byte item
    return max(16, precision + 7)


def format_values(x: np.ndarray, precision: int, out: np.ndarray | None = None) -> np.ndarray:
    """(N,) float64 → (N, value_width) uint8 ASCII, zero-padded on the right (into `out` if
    given, which may be a strided view)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if out is None:
        out = np.empty((x.size, value_width(precision)), dtype=np.uint8)
    for i in range(0, x.size, CHUNK):  # cache-sized pieces
        out[i: i + CHUNK] = _format_chunk(x[i: i + CHUNK], precision)
    return out


class _DigitTable:
    """ASCII digits of every k-digit number (zero-padded, packed little-endian into one uint32
    or uint64 so a lookup is a scalar gather) and its trailing-zero count."""

    def __init__(self, k: int, itemsize: int):
        nums = np.arange(10 ** k)
        raw = np.zeros((10 ** k, itemsize), dtype=np.uint8)
        for j in range(k):
            raw[:, j] = (nums // 10 ** (k - 1 - j)) % 10 + _ZERO
        self.packed = raw.view(np.uint64 if itemsize == 8 else np.uint32).ravel()
        trailing = np.zeros(10 ** k, dtype=np.int8)
        for i in range(1, k + 1):
            trailing += (nums % 10 ** i) == 0
        trailing[0] = k
        self.trailing = trailing


_TABLES: dict[int, tuple[_DigitTable, _DigitTable]] = {}


def _tables(p: int) -> tuple[_DigitTable, _DigitTable]:
    """Tables for the leading p-4 (bytes 0-7 of a digit row) and trailing 4 digits (bytes 8-11)."""
    if p not in _TABLES:
        _TABLES[p] = (_DigitTable(p - 4, 8), _DigitTable(4, 4))
    return _TABLES[p]


def _digit_column(p: int, j: int) -> int:
    """Byte of significant digit j inside a digit row."""
    return j if j < p - 4 else 8 + j - (p - 4)


def _layout(p: int, neg: bool, e: int, nsig: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """Columns of one number class: (digit columns, digit indices, constant columns, chars)."""
    text: list[int | str] = ["-"] if neg else []  # ints are significant-digit indices
    if -4 <= e < p:
        if e >= 0:
            shown = max(nsig, e + 1)
            text += list(range(e + 1))
            if shown > e + 1:
                text += ["."] + list(range(e + 1, shown))
        else:
            text += ["0", "."] + ["0"] * (-e - 1) + list(range(nsig))
    else:
        text += [0] + (["."] + list(range(1, nsig)) if nsig > 1 else [])
        text += list(f"e{'-' if e < 0 else '+'}{abs(e):02d}")
    dcols = [c for c, t in enumerate(text) if isinstance(t, int)]
    ccols = [c for c, t in enumerate(text) if isinstance(t, str)]
    return dcols, [_digit_column(p, text[c]) for c in dcols], ccols, [ord(text[c]) for c in ccols]


def _format_chunk(x: np.ndarray, p: int) -> np.ndarray:
    n = x.size
    width = value_width(p)
    if not MIN_PRECISION <= p <= MAX_PRECISION:  # the error bound below needs p <= 9
        return _python_rows(x, np.arange(n), p, np.zeros((n, width), dtype=np.uint8))
    a = np.abs(x)
    with np.errstate(all="ignore"):
        finite = np.isfinite(a) & (a > 0)
        e = np.floor(np.log10(np.where(finite, a, 1.0))).astype(np.int64)
        s = np.clip((p - 1) - e, -22, 22)
        scaled = np.where(s >= 0, a * _P10[np.abs(s)], a / _P10[np.abs(s)])
        frac = scaled - np.floor(scaled)
    lo, hi = 10 ** (p - 1), 10 ** p
    ok = finite & (np.abs((p - 1) - e) <= 22) & (scaled >= lo) & (scaled < hi) & (np.abs(frac - 0.5) > 1e-6)
    r = np.rint(np.where(ok, scaled, lo)).astype(np.int32)
    carry = r >= hi
    r[carry] = lo
    e = np.where(carry, e + 1, e)

    # the p significant digits as ASCII (two table lookups), and how many are not trailing zeros
    hi_d, lo_d = _tables(p)
    top, low = np.divmod(r, 10_000)
    digits = np.zeros((n, 16), dtype=np.uint8)
    digits.view(np.uint64)[:, 0] = hi_d.packed[top]
    digits.view(np.uint32)[:, 2] = lo_d.packed[low]
    nsig = p - np.where(low == 0, 4 + hi_d.trailing[top], lo_d.trailing[low]).astype(np.int64)

    # numbers sharing (sign, exponent, significant digits) share one text layout: sort them
    # into classes (radix sort on a small key) and fill each class with two block copies
    neg = np.signbit(x) & ok
    key = np.where(ok, ((e + 400) * 10 + nsig) * 2 + neg, -1).astype(np.int16)  # < 2**15: radix sort
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    # rows of 16 bytes move as single complex128 items (a fast 1-D gather/scatter)
    sorted_digits = digits.view(np.complex128).ravel()[order].view(np.uint8).reshape(n, 16)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(sorted_key)) + 1, [n]])
    sorted_out = np.zeros((n, 16), dtype=np.uint8)
    for lo_i, hi_i in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        k = int(sorted_key[lo_i])
        if k < 0:
            continue
        dcols, didx, ccols, chars = _layout(p, bool(k & 1), (k >> 1) // 10 - 400, (k >> 1) % 10)
        block = sorted_out[lo_i:hi_i]
        block[:, dcols] = sorted_digits[lo_i:hi_i][:, didx]
        block[:, ccols] = chars
    out = np.empty_like(sorted_out)
    out.view(np.complex128).ravel()[order] = sorted_out.view(np.complex128).ravel()
    bad = np.flatnonzero(~ok)
    return _python_rows(x, bad, p, out) if bad.size else out


def _python_rows(x: np.ndarray, rows: np.ndarray, p: int, out: np.ndarray) -> np.ndarray:
    """Exact formatting of the rows the fast path cannot vouch for (0, ±inf, nan, near-ties)."""
    for i in rows.tolist():
        text = (f"%.{p}g" % x[i]).encode("ascii")
        out[i, :] = 0
        out[i, : len(text)] = np.frombuffer(text, dtype=np.uint8)
    return out


def prefix_matrix(prefixes: list[str]) -> np.ndarray:
    """Zero-padded uint8 matrix of ASCII prefixes (one per row)."""
    width = max((len(s) for s in prefixes), default=0)
    raw = np.frombuffer("".join(s.ljust(width, "\0") for s in prefixes).encode("ascii"), dtype=np.uint8)
    return raw.reshape(len(prefixes), width)


def compress(matrix: np.ndarray) -> bytes:
    return matrix[matrix != 0].tobytes()


class BlockFormatter:
    """Format the same block of steps for many files (the prefix matrix is built once)."""

    #: bytes of line matrix formatted at once
    BUDGET = 8 * 2**20

    def __init__(self, prefixes: list[str], n_vars: int, precision: int):
        self.prefix = prefix_matrix(prefixes)
        self.rows = len(prefixes)
        self.n_vars = n_vars
        self.precision = precision
        self.vw = value_width(precision)
        self.line = self.prefix.shape[1] + n_vars * (self.vw + 1)

    def many(self, values: np.ndarray) -> list[bytes]:
        """values: (files, rows, n_vars) → text of each file."""
        per = max(1, self.BUDGET // max(1, self.rows * self.line))
        texts: list[bytes] = []
        for i in range(0, values.shape[0], per):
            texts.extend(self._chunk(values[i: i + per]))
        return texts

    def _chunk(self, values: np.ndarray) -> list[bytes]:
        files, rows, nv = values.shape
        pw, vw = self.prefix.shape[1], self.vw
        mat = np.empty((files, rows, self.line), dtype=np.uint8)
        mat[:, :, :pw] = self.prefix
        for v in range(nv):
            c0 = pw + v * (vw + 1)
            cells = mat[:, :, c0: c0 + vw].reshape(files * rows, vw)  # a view: rows are evenly strided
            format_values(values[:, :, v], self.precision, out=cells)
            mat[:, :, c0 + vw] = _NL if v == nv - 1 else _COMMA
        mat = mat.reshape(files, rows * self.line)
        lengths = np.count_nonzero(mat, axis=1)
        flat = compress(mat)
        ends = np.cumsum(lengths).tolist()
        return [flat[end - ln: end] for ln, end in zip(lengths.tolist(), ends)]

    def __call__(self, values: np.ndarray) -> bytes:
        """values: (rows, n_vars) → text of one file."""
        return self.many(values[None])[0]
