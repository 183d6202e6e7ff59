"""Data formats: which category each belongs to, and which formats satisfy a requirement."""
from __future__ import annotations

from dmod.v1 import domain_pb2 as d

C, F = d.DataCategory, d.DataFormat

CATEGORY_OF: dict[int, int] = {
    d.DATA_FORMAT_AORC_CSV: d.DATA_CATEGORY_FORCING,
    d.DATA_FORMAT_NETCDF_FORCING: d.DATA_CATEGORY_FORCING,
    d.DATA_FORMAT_NGEN_REALIZATION_CONFIG: d.DATA_CATEGORY_CONFIG,
    d.DATA_FORMAT_NGEN_PARTITION_CONFIG: d.DATA_CATEGORY_CONFIG,
    d.DATA_FORMAT_BMI_CONFIG: d.DATA_CATEGORY_CONFIG,
    d.DATA_FORMAT_BMI_LIBRARY: d.DATA_CATEGORY_CONFIG,
    d.DATA_FORMAT_NGEN_GEOPACKAGE_HYDROFABRIC: d.DATA_CATEGORY_HYDROFABRIC,
    d.DATA_FORMAT_NGEN_GEOJSON_HYDROFABRIC: d.DATA_CATEGORY_HYDROFABRIC,
    d.DATA_FORMAT_OBSERVATION_CSV: d.DATA_CATEGORY_OBSERVATION,
    d.DATA_FORMAT_NGEN_CSV_OUTPUT: d.DATA_CATEGORY_OUTPUT,
    d.DATA_FORMAT_EVALUATION_RESULT: d.DATA_CATEGORY_OUTPUT,
    # GENERIC: any category.
}

# A requirement naming one of these formats is also satisfied by the listed ones
# (same content, another encoding ngen reads equally).
EQUIVALENT: dict[int, frozenset[int]] = {
    d.DATA_FORMAT_AORC_CSV: frozenset({d.DATA_FORMAT_AORC_CSV}),
    d.DATA_FORMAT_NETCDF_FORCING: frozenset({d.DATA_FORMAT_NETCDF_FORCING}),
}


def format_name(value: int) -> str:
    return F.Name(value).removeprefix("DATA_FORMAT_") if value in F.values() else str(value)


def category_name(value: int) -> str:
    return C.Name(value).removeprefix("DATA_CATEGORY_") if value in C.values() else str(value)


def check_format_category(category: int, data_format: int) -> str | None:
    """None when the pair is consistent, else why not."""
    expected = CATEGORY_OF.get(data_format)
    if expected is None or category == expected:
        return None
    return f"format {format_name(data_format)} belongs to category {category_name(expected)}, not {category_name(category)}"


def format_satisfies(required: int, offered: int) -> bool:
    """UNSPECIFIED in a requirement accepts every format of the category; otherwise the same
    format (or an equivalent one) is needed."""
    if required == d.DATA_FORMAT_UNSPECIFIED:
        return True
    return offered == required or offered in EQUIVALENT.get(required, frozenset())
