"""CreateJob request validation: every problem as a (field, description) violation."""
from __future__ import annotations

import re

from dmod.services.runtime.errors import quote
from dmod.v1 import jobs_pb2, partitioner_pb2

DATASET_NAME = re.compile(r"^datasets/[A-Za-z0-9._-]{1,128}$")
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_.\-/]{0,62}$")
ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*-[A-Za-z0-9_.\-]+$")
ENGINES = ("", "auto", "ngen", "embedded", "noop")
MODELS = ("", "ngen")
MAX_CPUS = 4096
DATASET_ROLES = ("hydrofabric_dataset", "realization_dataset", "forcing_dataset", "partition_dataset",
                 "bmi_config_dataset", "bmi_library_dataset")


def validate_create(request: jobs_pb2.CreateJobRequest) -> list[tuple[str, str]]:
    spec = request.spec
    v: list[tuple[str, str]] = []
    if spec.model not in MODELS:
        v.append(("spec.model", f"unknown model {quote(spec.model)} (supported: ngen)"))
    if spec.engine not in ENGINES:
        v.append(("spec.engine", f"unknown engine {quote(spec.engine)} (auto, ngen, embedded, noop)"))
    if spec.cpu_count < 0:
        v.append(("spec.cpu_count", "must be positive"))
    elif spec.cpu_count > MAX_CPUS:
        v.append(("spec.cpu_count", f"at most {MAX_CPUS}"))
    if spec.memory_bytes < 0:
        v.append(("spec.memory_bytes", "must not be negative"))
    has_start, has_end = spec.HasField("start_time"), spec.HasField("end_time")
    if has_start != has_end:
        missing = "spec.end_time" if has_start else "spec.start_time"
        v.append((missing, "start_time and end_time are given together (or both omitted)"))
    elif has_start and spec.end_time.ToNanoseconds() <= spec.start_time.ToNanoseconds():
        v.append(("spec.end_time", "must be after spec.start_time"))
    for role in DATASET_ROLES:
        value = getattr(spec, role)
        if value and not DATASET_NAME.match(value):
            v.append((f"spec.{role}", f"must look like datasets/{{id}}, got {quote(value)}"))
    if spec.bmi_library_dataset and spec.engine == "embedded":
        v.append(("spec.bmi_library_dataset", ("compiled BMI libraries run only under ngen; the embedded engine "
                                               "runs bmi_python models (use engine auto or ngen)")))
    if spec.allocation_paradigm not in jobs_pb2.AllocationParadigm.values():
        v.append(("spec.allocation_paradigm", "unknown allocation paradigm"))
    if spec.partition_method not in partitioner_pb2.PartitionMethod.values():
        v.append(("spec.partition_method", "unknown partition method"))
    for i, cid in enumerate(spec.catchment_ids):
        if not ID.match(cid):
            v.append((f"spec.catchment_ids[{i}]", f"not a catchment id: {quote(cid)}"))
    if len(set(spec.catchment_ids)) != len(spec.catchment_ids):
        v.append(("spec.catchment_ids", "duplicate ids"))
    if not -1000 <= spec.priority <= 1000:
        v.append(("spec.priority", "must be between -1000 and 1000"))
    if spec.HasField("timeout") and spec.timeout.ToNanoseconds() < 0:
        v.append(("spec.timeout", "must not be negative"))
    if spec.HasField("retry_policy"):
        rp = spec.retry_policy
        if not 0 <= rp.max_attempts <= 10:
            v.append(("spec.retry_policy.max_attempts", "must be between 0 and 10"))
        if rp.initial_backoff.ToNanoseconds() < 0:
            v.append(("spec.retry_policy.initial_backoff", "must not be negative"))
        if rp.backoff_multiplier and rp.backoff_multiplier < 1.0:
            v.append(("spec.retry_policy.backoff_multiplier", "must be at least 1"))
    if spec.HasField("evaluation") and spec.evaluation.observation_dataset and \
            not DATASET_NAME.match(spec.evaluation.observation_dataset):
        v.append(("spec.evaluation.observation_dataset", "must look like datasets/{id}"))
    for key, value in request.labels.items():
        if not LABEL_KEY.match(key):
            v.append((f"labels[{key}]", "keys: lower case letters, digits, _ . - /, at most 63 chars"))
        if len(value) > 256:
            v.append((f"labels[{key}]", "value longer than 256 characters"))
    if len(request.request_id) > 128:
        v.append(("request_id", "at most 128 characters"))
    return v


def normalized(spec: jobs_pb2.JobSpec) -> jobs_pb2.JobSpec:
    """Defaults made explicit, so that an equal request hashes equally."""
    out = jobs_pb2.JobSpec()
    out.CopyFrom(spec)
    out.model = out.model or "ngen"
    out.engine = out.engine or "auto"
    out.cpu_count = out.cpu_count or 1
    if not out.allocation_paradigm:
        out.allocation_paradigm = jobs_pb2.ALLOCATION_PARADIGM_ROUND_ROBIN
    if not out.partition_method and out.cpu_count > 1:
        out.partition_method = partitioner_pb2.PARTITION_METHOD_DFS_CHUNK
    return out
