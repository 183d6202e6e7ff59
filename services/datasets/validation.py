"""Checks of user-supplied dataset fields (names, labels, category/format)."""
from __future__ import annotations

from dmod.services.datasets import formats
from dmod.v1 import domain_pb2

MAX_DISPLAY_NAME = 256
MAX_LABELS = 64


def display_name_problem(value: str) -> str | None:
    if not value.strip():
        return "must not be empty"
    if len(value) > MAX_DISPLAY_NAME:
        return f"must be at most {MAX_DISPLAY_NAME} characters"
    if any(ord(ch) < 0x20 for ch in value):
        return "must not contain control characters"
    return None


def label_violations(labels: dict[str, str], field: str) -> list[tuple[str, str]]:
    out = []
    if len(labels) > MAX_LABELS:
        out.append((field, f"at most {MAX_LABELS} labels"))
    for key, value in labels.items():
        if not key or len(key) > 128 or any(ord(ch) < 0x21 for ch in key):
            out.append((f"{field}[{key!r}]", "keys are 1-128 printable characters without spaces"))
        if len(value) > 1024:
            out.append((f"{field}[{key!r}]", "values are at most 1024 characters"))
    return out


def kind_violations(category: int, data_format: int, field: str) -> list[tuple[str, str]]:
    out = []
    if category not in domain_pb2.DataCategory.values():
        out.append((f"{field}.category", "unknown category"))
    if data_format not in domain_pb2.DataFormat.values():
        out.append((f"{field}.data_format", "unknown data format"))
    if out:
        return out
    if category == domain_pb2.DATA_CATEGORY_UNSPECIFIED:
        out.append((f"{field}.category", "is required (or a data_format that implies it)"))
        return out
    problem = formats.check_format_category(category, data_format)
    if problem:
        out.append((f"{field}.data_format", problem))
    return out
