"""Cost of the request guard (services/runtime/request_guard.py) per incoming message.

    .venv/bin/python bench/request_guard.py

Prints µs per message for typical requests; the guard runs once per unary request and once per
message of a client stream (upload chunks parsed as views are not walked at all).
"""
from __future__ import annotations

import timeit

from dmod.services.datasets.transfer.wire import parse_upload_request
from dmod.services.runtime import request_guard
from dmod.v1 import datasets_pb2, jobs_pb2


def cases() -> dict:
    create = datasets_pb2.CreateDatasetRequest(dataset=datasets_pb2.Dataset(
        display_name="forcing-2015", description="AORC forcing for the demo domain " * 4,
        labels={"project": "demo", "region": "01"}, derived_from=["datasets/0b5d3f9e-6d8e-4b3e-9a39-1a1c1e1f1a1b"],
        data_format=1), request_id="5f0b1c1e-3c43-4a49-9a9e-8f4c2f7e1d3a")
    create.dataset.domain.time.begin.GetCurrentTime() if hasattr(create.dataset.domain, "time") else None
    job = jobs_pb2.CreateJobRequest(spec=jobs_pb2.JobSpec(
        hydrofabric_dataset="datasets/0b5d3f9e-6d8e-4b3e-9a39-1a1c1e1f1a1b",
        realization_dataset="datasets/1b5d3f9e-6d8e-4b3e-9a39-1a1c1e1f1a1b",
        forcing_dataset="datasets/2b5d3f9e-6d8e-4b3e-9a39-1a1c1e1f1a1b", cpu_count=2,
        catchment_ids=[f"cat-{i}" for i in range(20)]), labels={"run": "a"}, request_id="r-1")
    job.spec.start_time.FromSeconds(1448928000)
    job.spec.end_time.FromSeconds(1449187200)
    log = jobs_pb2.ReportWorkerEventsRequest(job="jobs/0b5d3f9e-6d8e-4b3e-9a39-1a1c1e1f1a1b", attempt=1)
    log.log.text = "[rank 0] step 42 of 720 " * 3
    chunk = datasets_pb2.UploadObjectRequest(chunk=b"x" * (1 << 20)).SerializeToString()
    return {"GetDatasetRequest": datasets_pb2.GetDatasetRequest(name="datasets/0b5d3f9e-6d8e-4b3e-9a39-1a1c1e1f1a1b"),
            "CreateDatasetRequest": create, "CreateJobRequest (20 catchment ids)": job,
            "ReportWorkerEventsRequest (log line)": log,
            "UploadObjectRequest chunk (1 MiB, view)": parse_upload_request(chunk)}


def main() -> None:
    for name, message in cases().items():
        assert not request_guard.violations(message), name
        n = 20000
        best = min(timeit.repeat(lambda m=message: request_guard.check(m), number=n, repeat=5)) / n
        print(f"{name:45s} {best * 1e6:6.2f} µs")


if __name__ == "__main__":
    main()
