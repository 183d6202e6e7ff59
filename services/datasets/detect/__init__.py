"""Domain auto-detection: which detector reads which format, and guessing the format of a
dataset that does not say. Detectors are synchronous and run in a worker thread; a file they
cannot read becomes INVALID_ARGUMENT naming the file and the problem."""
from __future__ import annotations

import asyncio
import json
import logging

from minio.error import S3Error

from dmod.services.datasets.detect import bmi_library, configs, forcing, hydrofabric, observations
from dmod.services.datasets.detect.context import DATASET, BadFile, DetectionContext
from dmod.services.datasets.domains import Domain
from dmod.services.datasets.formats import format_name
from dmod.services.datasets.transfer.blobs import is_missing
from dmod.services.runtime.errors import DataLoss, InvalidArgument, Unavailable
from dmod.v1 import domain_pb2 as d

__all__ = ["DETECTORS", "DetectionContext", "detect_domain", "guess_format"]

log = logging.getLogger("dmod.datasets.detect")

DETECTORS = {
    d.DATA_FORMAT_AORC_CSV: forcing.detect_csv,
    d.DATA_FORMAT_NETCDF_FORCING: forcing.detect_netcdf,
    d.DATA_FORMAT_NGEN_GEOPACKAGE_HYDROFABRIC: hydrofabric.detect_geopackage,
    d.DATA_FORMAT_NGEN_GEOJSON_HYDROFABRIC: hydrofabric.detect_geojson,
    d.DATA_FORMAT_NGEN_REALIZATION_CONFIG: configs.detect_realization,
    d.DATA_FORMAT_NGEN_PARTITION_CONFIG: configs.detect_partitioning,
    d.DATA_FORMAT_OBSERVATION_CSV: observations.detect_observations,
    d.DATA_FORMAT_NGEN_CSV_OUTPUT: observations.detect_ngen_output,
    d.DATA_FORMAT_BMI_LIBRARY: bmi_library.detect_bmi_library,
}


def guess_format(ctx: DetectionContext) -> int:
    """The format a dataset's files look like (UNSPECIFIED when they do not say)."""
    suffixes = {o.suffix for o in ctx.objects}
    if any(o.path.endswith("gpkg") for o in ctx.objects):
        return d.DATA_FORMAT_NGEN_GEOPACKAGE_HYDROFABRIC
    if suffixes & {".nc", ".nc4", ".netcdf"}:
        return d.DATA_FORMAT_NETCDF_FORCING
    if ".geojson" in suffixes:
        return d.DATA_FORMAT_NGEN_GEOJSON_HYDROFABRIC
    if bmi_library.looks_like_library(ctx):
        return d.DATA_FORMAT_BMI_LIBRARY
    for obj in ctx.with_suffix(".json"):
        try:
            doc = json.loads(ctx.read(obj)) if obj.size <= configs.MAX_CONFIG_BYTES else None
        except (ValueError, UnicodeDecodeError):
            continue
        if configs.is_partitioning(doc):
            return d.DATA_FORMAT_NGEN_PARTITION_CONFIG
        if configs.is_realization(doc):
            return d.DATA_FORMAT_NGEN_REALIZATION_CONFIG
        if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
            return d.DATA_FORMAT_NGEN_GEOJSON_HYDROFABRIC
    csvs = ctx.with_suffix(".csv")
    if csvs:
        first = csvs[0]
        header = ctx.head(first, 4096).decode("utf-8", errors="replace").splitlines()[:1]
        columns = [c.strip().lower() for c in header[0].split(",")] if header else []
        if columns[:2] == ["time step", "time"] or first.stem.endswith("_output"):
            return d.DATA_FORMAT_NGEN_CSV_OUTPUT
        if any(c in columns for c in observations.GAGE_COLUMNS if c != "id") or \
                observations.GAGE_IN_NAME.search(first.stem):
            return d.DATA_FORMAT_OBSERVATION_CSV
        if "time" in columns:
            return d.DATA_FORMAT_AORC_CSV
    return d.DATA_FORMAT_UNSPECIFIED


def _detect_sync(ctx: DetectionContext, data_format: int, required: bool) -> tuple[Domain, int]:
    try:
        if data_format in (d.DATA_FORMAT_UNSPECIFIED,):
            data_format = guess_format(ctx)
            if data_format == d.DATA_FORMAT_UNSPECIFIED:
                if required:
                    raise BadFile(DATASET, "cannot tell the data format from the files; set data_format")
                return Domain(), data_format
        detector = DETECTORS.get(data_format)
        if detector is None:
            if required:
                raise InvalidArgument(("data_format", f"no domain detection for {format_name(data_format)}"),
                                      reason="DETECTION_UNSUPPORTED")
            return Domain(), data_format
        if not ctx.objects:
            raise BadFile(DATASET, "has no objects")
        try:
            return detector(ctx), data_format
        except (BadFile, InvalidArgument):
            raise
        except (ValueError, TypeError, KeyError, IndexError, OSError, UnicodeError) as exc:
            # A reader tripped over content it did not expect: still the file's problem.
            log.warning("detection failed unexpectedly", exc_info=exc)
            raise BadFile(ctx.current or DATASET, f"cannot be read as {format_name(data_format)}: "
                                                  f"{exc.__class__.__name__}: {exc}") from None
    finally:
        ctx.close()


async def detect_domain(ctx: DetectionContext, data_format: int, *, required: bool = True) -> tuple[Domain, int]:
    """(domain, format detected as). `required=False` (sealing): formats without a detector
    give an empty domain instead of an error."""
    try:
        return await asyncio.to_thread(_detect_sync, ctx, data_format, required)
    except BadFile as exc:
        raise InvalidArgument((exc.path if exc.path == DATASET else f"objects/{exc.path}", exc.problem),
                              reason="UNREADABLE_DATA") from None
    except S3Error as exc:
        if is_missing(exc):
            raise DataLoss(f"objects/{ctx.current}: the stored bytes are missing", reason="OBJECT_MISSING") from None
        raise Unavailable(f"object store read failed: {exc.code}", reason="STORAGE_UNAVAILABLE") from None
