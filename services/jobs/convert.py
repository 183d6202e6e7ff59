"""Database rows <-> protobuf messages."""
from __future__ import annotations

import datetime as dt
import json

from google.protobuf.timestamp_pb2 import Timestamp

from dmod.v1 import jobs_pb2


def ts(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    out = Timestamp()
    out.FromDatetime(value)
    return out


def job_name(job_id: str) -> str:
    return f"jobs/{job_id}"


def _json(value) -> dict:
    if isinstance(value, str):
        return json.loads(value)
    return dict(value or {})


def job_message(row, allocations=()) -> jobs_pb2.Job:
    spec = jobs_pb2.JobSpec.FromString(row["spec"])
    job = jobs_pb2.Job(
        name=job_name(row["id"]), owner=row["owner"], spec=spec, labels=_json(row["labels"]),
        state=row["state"], state_reason=row["state_reason"], state_message=row["state_message"],
        attempt=row["attempt"], progress=jobs_pb2.Progress(step=row["progress_step"], total_steps=row["progress_total"]),
        output_dataset=row["output_dataset"], resolved_datasets=_json(row["resolved"]), launcher=row["launcher"],
        last_event_seq=row["last_event_seq"], request_id=row["request_id"], evaluation=row["evaluation"],
        engine=row.get("engine") or "", engine_detail=row.get("engine_detail") or "",
        allocations=[jobs_pb2.Allocation(node=a["hostname"] or a["node"], cpus=a["cpus"], memory_bytes=a["memory_bytes"])
                     for a in allocations])
    for field in ("create_time", "update_time", "start_time", "end_time"):
        value = ts(row[field])
        if value is not None:
            getattr(job, field).CopyFrom(value)
    return job


def event_message(row, job_id: str | None = None) -> jobs_pb2.JobEvent:
    event = jobs_pb2.JobEvent(job=job_name(job_id or row["job_id"]), seq=row["seq"], state=row["state"],
                              reason=row["reason"], message=row["message"], attempt=row["attempt"],
                              progress=jobs_pb2.Progress(step=row["progress_step"], total_steps=row["progress_total"]))
    event.time.CopyFrom(ts(row["time"]))
    return event


def log_message(row) -> jobs_pb2.LogLine:
    line = jobs_pb2.LogLine(seq=row["id"], stream=row["stream"], rank=row["rank"], text=row["text"])
    line.time.CopyFrom(ts(row["time"]))
    return line
