"""Domain detection (DetectDomain, and on seal) on small generated fixtures of every kind."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path

import grpc
import pytest

from dmod.datasets_client import OPEN, reason
from dmod.errors import error_details
from dmod.services.hydrofabric import hydrofabric_id, load_network
from dmod.v1 import domain_pb2 as d

START = dt.datetime(2015, 12, 1, tzinfo=dt.UTC)
END = START + dt.timedelta(hours=48)  # 48 hourly steps: the last step ends at +48 h


async def make(ds, data_format: int, files: dict[str, bytes | Path], category: int = 0) -> str:
    created = await ds.create_dataset(f"det-{uuid.uuid4().hex[:10]}", category, data_format)
    for path, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        await ds.upload_bytes(created.name, path, data)
    return created.name


def time_of(domain) -> tuple[dt.datetime, dt.datetime]:
    (c,) = domain.continuous
    assert c.index == d.STANDARD_INDEX_TIME
    return c.begin_time.ToDatetime(tzinfo=dt.UTC), c.end_time.ToDatetime(tzinfo=dt.UTC)


def values(domain, index) -> list[str]:
    found = [r for r in domain.discrete if r.index == index]
    assert len(found) == 1, f"no restriction on {index}"
    return list(found[0].values)


def catchments(synth_dir: Path) -> set[str]:
    return set(load_network(synth_dir / "hydrofabric.gpkg").catchment_ids.tolist())


async def detect(ds, name: str, data_format: int = 0):
    return await ds.detect_domain(name, data_format)


async def test_csv_forcing(ds, synth_dir):
    files = {f"forcing/{p.name}": p for p in sorted((synth_dir / "forcing").glob("*.csv"))}
    reply = await detect(ds, await make(ds, d.DATA_FORMAT_AORC_CSV, files))
    assert time_of(reply.domain) == (START, END)
    assert set(values(reply.domain, d.STANDARD_INDEX_CATCHMENT_ID)) == catchments(synth_dir)


async def test_csv_forcing_long_format_and_common_range(ds):
    long = "catchment_id,time,precip_rate\n" + "".join(
        f"cat-{c},2015-12-01 {h:02d}:00:00,0\n" for c in (1, 2) for h in range(6))
    short = "time,precip_rate\n2015-12-01 02:00:00,0\n2015-12-01 03:00:00,0\n"  # cat-3 covers less
    reply = await detect(ds, await make(ds, d.DATA_FORMAT_AORC_CSV, {"all.csv": long.encode(),
                                                                     "cat-3_forcing.csv": short.encode()}))
    assert time_of(reply.domain) == (START + dt.timedelta(hours=2), START + dt.timedelta(hours=4))
    assert values(reply.domain, d.STANDARD_INDEX_CATCHMENT_ID) == ["cat-1", "cat-2", "cat-3"]


async def test_netcdf_forcing(ds, synth_dir):
    name = await make(ds, d.DATA_FORMAT_NETCDF_FORCING, {"forcing.nc": synth_dir / "forcing" / "forcing.nc"})
    reply = await detect(ds, name)
    assert time_of(reply.domain) == (START, END)
    assert set(values(reply.domain, d.STANDARD_INDEX_CATCHMENT_ID)) == catchments(synth_dir)


async def test_geopackage_hydrofabric(ds, synth_dir):
    gpkg = synth_dir / "hydrofabric.gpkg"
    name = await make(ds, 0, {"hf/hydrofabric.gpkg": gpkg}, category=d.DATA_CATEGORY_HYDROFABRIC)
    reply = await detect(ds, name)  # format unspecified: guessed from the files
    assert reply.data_format == d.DATA_FORMAT_NGEN_GEOPACKAGE_HYDROFABRIC
    assert values(reply.domain, d.STANDARD_INDEX_HYDROFABRIC_ID) == [hashlib.sha256(gpkg.read_bytes()).hexdigest()]
    assert set(values(reply.domain, d.STANDARD_INDEX_CATCHMENT_ID)) == catchments(synth_dir)
    assert values(reply.domain, d.STANDARD_INDEX_VPU) == [load_network(gpkg).vpu]


async def test_geojson_hydrofabric(ds, synth_dir):
    cat, nex = synth_dir / "catchments.geojson", synth_dir / "nexus.geojson"
    name = await make(ds, d.DATA_FORMAT_NGEN_GEOJSON_HYDROFABRIC, {"catchment_data.geojson": cat,
                                                                   "nexus_data.geojson": nex})
    reply = await detect(ds, name)
    assert set(values(reply.domain, d.STANDARD_INDEX_CATCHMENT_ID)) == catchments(synth_dir)
    assert values(reply.domain, d.STANDARD_INDEX_HYDROFABRIC_ID) == [hydrofabric_id(cat, nex)]


async def test_realization_config(ds):
    listed = {"time": {"start_time": "2015-12-01 00:00:00", "end_time": "2015-12-30 23:00:00",
                       "output_interval": 3600},
              "catchments": {"cat-27": {}, "cat-52": {}}}
    reply = await detect(ds, await make(ds, d.DATA_FORMAT_NGEN_REALIZATION_CONFIG,
                                        {"realization.json": json.dumps(listed).encode(), "cfe/x.ini": b"a=1"}))
    assert time_of(reply.domain) == (START, dt.datetime(2015, 12, 31, tzinfo=dt.UTC))
    assert values(reply.domain, d.STANDARD_INDEX_CATCHMENT_ID) == ["cat-27", "cat-52"]
    globally = {**listed, "global": {"formulations": []}}
    reply = await detect(ds, await make(ds, d.DATA_FORMAT_NGEN_REALIZATION_CONFIG,
                                        {"realization.json": json.dumps(globally).encode()}))
    assert values(reply.domain, d.STANDARD_INDEX_CATCHMENT_ID) == []  # every catchment


async def test_partition_config(ds):
    doc = {"hydrofabric_id": "abc123",
           "partitions": [{"id": 0, "cat-ids": ["cat-1", "cat-2", "wb-TERMINAL_SENTINEL-nex-9"], "nex-ids": []},
                          {"id": 1, "cat-ids": ["cat-3"], "nex-ids": []},
                          {"id": 2, "cat-ids": ["cat-4"], "nex-ids": []}]}
    reply = await detect(ds, await make(ds, d.DATA_FORMAT_NGEN_PARTITION_CONFIG,
                                        {"partitions_3.json": json.dumps(doc).encode()}))
    assert values(reply.domain, d.STANDARD_INDEX_LENGTH) == ["3"]
    assert values(reply.domain, d.STANDARD_INDEX_CATCHMENT_ID) == ["cat-1", "cat-2", "cat-3", "cat-4"]
    assert values(reply.domain, d.STANDARD_INDEX_HYDROFABRIC_ID) == ["abc123"]


async def test_observations(ds, synth_dir):
    gages = sorted(json.loads((synth_dir / "crosswalk.json").read_text()))
    assert gages, "the fixture should have gages"
    reply = await detect(ds, await make(ds, d.DATA_FORMAT_OBSERVATION_CSV,
                                        {"observations.csv": synth_dir / "observations.csv"}))
    assert values(reply.domain, d.STANDARD_INDEX_GAGE_ID) == gages
    assert time_of(reply.domain) == (START, END)
    per_gage = {f"usgs/{p.name}": p for p in sorted((synth_dir / "observations").glob("*.csv"))}
    reply = await detect(ds, await make(ds, 0, per_gage, category=d.DATA_CATEGORY_OBSERVATION))
    assert reply.data_format == d.DATA_FORMAT_OBSERVATION_CSV
    assert values(reply.domain, d.STANDARD_INDEX_GAGE_ID) == gages


async def _bad(ds, data_format: int, files: dict[str, bytes]) -> tuple[str, str]:
    name = await make(ds, data_format, files)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await detect(ds, name)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and reason(err.value) == "UNREADABLE_DATA"
    (violation,) = error_details(err.value)["BadRequest"].field_violations
    return violation.field, violation.description


async def test_bad_files_are_named(ds):
    assert await _bad(ds, d.DATA_FORMAT_AORC_CSV, {"forcing/cat-1.csv": b"date,rain\n2015-12-01,1\n"}) == (
        "objects/forcing/cat-1.csv", "no time column in the header (date, rain)")
    field, problem = await _bad(ds, d.DATA_FORMAT_AORC_CSV, {"cat-1.csv": b"time,rain\nyesterday,1\n"})
    assert field == "objects/cat-1.csv" and "'yesterday' is not a time" in problem
    field, problem = await _bad(ds, d.DATA_FORMAT_NGEN_GEOPACKAGE_HYDROFABRIC, {"hf.gpkg": b"not sqlite" * 100})
    assert field == "objects/hf.gpkg" and problem.startswith("not a readable hydrofabric")
    field, problem = await _bad(ds, d.DATA_FORMAT_NETCDF_FORCING, {"f.nc": b"\x89HDF garbage"})
    assert field == "objects/f.nc" and "not a NetCDF file" in problem
    realization = {"time": {"start_time": "2015-12-01 00:00:00", "output_interval": 3600}, "global": {}}
    assert await _bad(ds, d.DATA_FORMAT_NGEN_REALIZATION_CONFIG,
                      {"real.json": json.dumps(realization).encode()}) == (
        "objects/real.json", "time.end_time is missing")
    assert await _bad(ds, d.DATA_FORMAT_NGEN_PARTITION_CONFIG, {"p.json": b'{"partitions": [{"id": 0}]}'}) == (
        "objects/p.json", "partitions[0] has no 'cat-ids' list")
    field, problem = await _bad(ds, d.DATA_FORMAT_NGEN_PARTITION_CONFIG, {"p.json": b'{"partitions": [}'})
    assert field == "objects/p.json" and problem.startswith("not valid JSON")


async def test_seal_fails_on_a_bad_file_and_stays_open(ds):
    name = await make(ds, d.DATA_FORMAT_AORC_CSV, {"cat-1.csv": b"no,time,here\n"})
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ds.seal_dataset(name)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await ds.get_dataset(name)).state == OPEN
