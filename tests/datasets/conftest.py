"""Fixtures for DatasetService tests: the client helper on the real stack's gateway, direct S3 and
PostgreSQL access (to inspect and damage what the service stored), and small generated data."""
from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest
from minio import Minio

from dmod.datasets_client import FORCING, DatasetsClient


@pytest.fixture
async def ds(gateway):
    async with DatasetsClient(target=gateway) as client:
        yield client


@pytest.fixture(scope="session")
def s3(settings) -> Minio:
    return Minio(settings.s3_endpoint, access_key=settings.s3_access_key, secret_key=settings.s3_secret_key,
                 secure=False)


@pytest.fixture
async def db(settings):
    conn = await asyncpg.connect(settings.database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def dataset(ds):
    """A fresh OPEN forcing dataset (AORC_CSV)."""
    return await ds.create_dataset(f"ds-{uuid.uuid4().hex[:10]}", FORCING, 1)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A small synthetic hydrofabric (GeoPackage + GeoJSON) with CSV and NetCDF forcing and
    gage observations, from dmod.services.hydrofabric.synth."""
    from dmod.services.hydrofabric import synth

    out = tmp_path_factory.mktemp("synth")
    synth(out, catchments=24, seed=7, geojson=True, forcing="both", hours=48, gage_fraction=0.25)
    return out
