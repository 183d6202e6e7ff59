"""Time columns of CSV files read from their first and last bytes only (so thousands of forcing
files are examined with two small ranged reads each)."""
from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

from dmod.services.datasets.detect.context import BadFile, DetectionContext, Obj
from dmod.services.datasets.domains import TimeRange, utc

DEFAULT_STEP = dt.timedelta(hours=1)


def parse_time(value: str) -> dt.datetime:
    text = value.strip().strip('"')
    try:
        return utc(dt.datetime.fromisoformat(text))
    except ValueError:
        pass
    for fmt in ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%m/%d/%Y %H:%M"):
        try:
            return utc(dt.datetime.strptime(text, fmt))
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a time (expected YYYY-MM-DD HH:MM:SS)")


def _rows(text: str) -> list[list[str]]:
    return [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]


@dataclass
class CsvSpan:
    """What the first and last bytes of a CSV file say."""
    header: list[str] | None
    first: list[dt.datetime]  # the first (up to) two times
    last: list[dt.datetime]  # the last (up to) two times, in file order

    @property
    def step(self) -> dt.timedelta:
        for pair in (self.last, self.first):
            if len(pair) == 2 and pair[1] > pair[0]:
                return pair[1] - pair[0]
        return DEFAULT_STEP

    def range(self, path: str) -> TimeRange:
        begin, end = self.first[0], self.last[-1] + self.step
        if not begin < end:
            raise BadFile(path, f"times are not increasing ({begin:%Y-%m-%d %H:%M:%S} ... {self.last[-1]:%Y-%m-%d %H:%M:%S})")
        return TimeRange(begin, end)


def time_column(header: list[str], names=("time",)) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def read_span(ctx: DetectionContext, obj: Obj, *, has_header: bool = True, column: int | None = None,
              time_names=("time",)) -> CsvSpan:
    """Header and first/last times of a CSV. `column` is the time column when there is no header."""
    try:
        head = ctx.head(obj).decode("utf-8-sig")
        tail = ctx.tail(obj).decode("utf-8", errors="replace")
    except UnicodeDecodeError:
        raise BadFile(obj.path, "is not UTF-8 text") from None
    head_lines = head.splitlines()
    if obj.size > len(head.encode()):
        head_lines = head_lines[:-1]  # the last line may be cut
    tail_lines = tail.splitlines()
    if obj.size > len(tail.encode()):
        tail_lines = tail_lines[1:]
    rows = _rows("\n".join(head_lines))
    if not rows:
        raise BadFile(obj.path, "is empty")
    header = None
    if has_header:
        header = [h.strip() for h in rows[0]]
        rows = rows[1:]
        column = time_column(header, time_names)
        if column is None:
            raise BadFile(obj.path, f"no time column in the header ({', '.join(header[:8])})")
    last_rows = _rows("\n".join(tail_lines))
    if has_header and last_rows and [c.strip() for c in last_rows[0]] == header:
        last_rows = last_rows[1:]
    if not rows or not last_rows:
        raise BadFile(obj.path, "has no data rows")

    def times(selected: list[list[str]], where: str) -> list[dt.datetime]:
        out = []
        for row in selected:
            if column >= len(row):
                raise BadFile(obj.path, f"{where} row has {len(row)} columns, the time column is #{column + 1}")
            try:
                out.append(parse_time(row[column]))
            except ValueError as exc:
                raise BadFile(obj.path, str(exc)) from None
        return out

    return CsvSpan(header, times(rows[:2], "a"), times(last_rows[-2:], "a"))
