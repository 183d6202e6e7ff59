"""VALIDATING: everything that can be checked before a job takes CPUs.

- each input dataset resolves (given, or found by SearchDatasets from the job's requirement)
  and has the right category;
- the engine: the one asked for, or (auto) ngen when the installed binary can run every
  formulation of the realization, else the embedded engine; a formulation no allowed engine can
  run fails naming it and the missing capability (ENGINE_UNSUPPORTED);
- the realization parses as that engine runs it (schema errors name the field), with the job's
  time range;
- the hydrofabric loads, is dendritic with resolvable ids; the catchment subset exists in it;
- every simulated catchment has forcing covering the time range (CSV: a file matching the
  pattern whose first/last rows span it, read with ranged downloads; NetCDF: ids and Time);
- every relative BMI init_config and library_file a catchment needs exists in the realization,
  BMI config or BMI library datasets (laid at the job directory root, paths kept);
- a given partition file is valid for N ranks (all of ngen's silent failure classes);
- the request can ever be allocated in the pool.

Errors name the catchment/field: `ValidationFailed(message, field)`.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from dmod.services.jobs.datasets import DatasetError, Datasets
from dmod.services.worker.agent import layout
from dmod.v1 import datasets_pb2, domain_pb2, jobs_pb2

ROLE_FIELD = {"hydrofabric": "hydrofabric_dataset", "realization": "realization_dataset",
              "forcing": "forcing_dataset", "partition": "partition_dataset", "bmi_config": "bmi_config_dataset",
              "bmi_library": "bmi_library_dataset"}
ROLE_CATEGORY = {"hydrofabric": domain_pb2.DATA_CATEGORY_HYDROFABRIC, "realization": domain_pb2.DATA_CATEGORY_CONFIG,
                 "forcing": domain_pb2.DATA_CATEGORY_FORCING, "partition": domain_pb2.DATA_CATEGORY_CONFIG,
                 "bmi_config": domain_pb2.DATA_CATEGORY_CONFIG, "bmi_library": domain_pb2.DATA_CATEGORY_CONFIG}
GIVEN_ONLY = ("bmi_config", "bmi_library")  # roles never searched for
MAX_ERRORS = 20
_TIME = "%Y-%m-%d %H:%M:%S"


class ValidationFailed(Exception):
    def __init__(self, message: str, field: str = "", reason: str = "VALIDATION_FAILED"):
        super().__init__(message)
        self.field = field
        self.reason = reason


@dataclass
class Result:
    resolved: dict[str, str] = field(default_factory=dict)  # role -> datasets/{id}
    staged: dict = field(default_factory=dict)  # role -> [{path, sha256, size}], expected outputs
    warnings: list[str] = field(default_factory=list)
    engine: str = ""  # "ngen" | "embedded" (what the worker runs); "" for noop
    engine_detail: str = ""


def _dt(ts: Timestamp) -> dt.datetime:
    return ts.ToDatetime(tzinfo=dt.UTC)


def _requirement(role: str, spec: jobs_pb2.JobSpec, n_ranks: int,
                 hydrofabric_id: str = "") -> domain_pb2.DataRequirement:
    req = domain_pb2.DataRequirement(category=ROLE_CATEGORY[role])
    if role == "realization":
        req.data_format = domain_pb2.DATA_FORMAT_NGEN_REALIZATION_CONFIG
    if role == "partition":
        # Only a partitioning made the same way (method, parameters), for as many ranks, of the same
        # hydrofabric is reused (partitioner/identity.py); hand-made ones are used when named.
        from dmod.services.partitioner import identity

        req.data_format = domain_pb2.DATA_FORMAT_NGEN_PARTITION_CONFIG
        method = identity.METHODS.get(spec.partition_method or identity.JOB_DEFAULT_METHOD, "DFS_CHUNK")
        req.domain.CopyFrom(identity.partition_domain(method, n_ranks, hydrofabric_id, spec.catchment_ids))
    if role == "forcing" and spec.HasField("start_time"):
        req.domain.continuous.add(index=domain_pb2.STANDARD_INDEX_TIME, begin_time=spec.start_time,
                                  end_time=spec.end_time)
    if role in ("forcing", "hydrofabric") and spec.catchment_ids:
        req.domain.discrete.add(index=domain_pb2.STANDARD_INDEX_CATCHMENT_ID, values=list(spec.catchment_ids))
    return req


class Preflight:
    def __init__(self, datasets: Datasets, scratch: Path, job_id: str, spec: jobs_pb2.JobSpec, feasible):
        self.ds = datasets
        self.scratch = scratch
        self.job_id = job_id
        self.spec = spec
        self.feasible = feasible  # callable(spec) -> str | None (why it can never be allocated)
        self.objects: dict[str, list[datasets_pb2.DataObject]] = {}

    async def run(self) -> Result:
        spec = self.spec
        result = Result()
        why = await self.feasible(spec)
        if why:
            raise ValidationFailed(why, "spec.cpu_count", reason="UNSATISFIABLE_ALLOCATION")
        if spec.engine == "noop":  # no model, no inputs: only the allocation matters
            result.staged["expected_outputs"] = {"count": 0, "digest": _digest([])}
            return result
        await self._resolve(result)
        for role, name in result.resolved.items():
            self.objects[role] = await self.ds.objects(name)
            if not self.objects[role]:
                raise ValidationFailed(f"{name} ({role}) has no objects", f"spec.{ROLE_FIELD[role]}")
            result.staged[role] = [{"path": o.path, "sha256": o.sha256, "size": o.size_bytes}
                                   for o in self.objects[role]]
        real, _ = await self._realization(result)
        network = await self._hydrofabric(result)
        simulated = await self._simulated(result, network)
        await self._forcing(result, real, simulated)
        self._init_configs(real, simulated, result.warnings)
        expected = layout.expected_outputs(network, simulated if simulated is not None else None,
                                           real.output.catchment_enabled)
        result.staged["expected_outputs"] = {"count": len(expected), "digest": _digest(expected)}
        result.staged["catchments"] = network.n_catchments if simulated is None else len(simulated)
        result.staged["steps"] = real.time.n_steps
        return result

    # ---- datasets -----------------------------------------------------------------------------
    async def _resolve(self, result: Result) -> None:
        spec = self.spec
        n = spec.cpu_count or 1
        for role in ("hydrofabric", "realization", "forcing", "bmi_config", "bmi_library", "partition"):
            given = getattr(spec, ROLE_FIELD[role])
            if given:
                try:
                    dataset = await self.ds.get(given)
                except DatasetError as exc:
                    if exc.transient:
                        raise
                    raise ValidationFailed(f"{given}: {exc}", f"spec.{ROLE_FIELD[role]}") from None
                if dataset.category != ROLE_CATEGORY[role]:
                    raise ValidationFailed(
                        f"{given} is a {domain_pb2.DataCategory.Name(dataset.category)} dataset, "
                        f"not {domain_pb2.DataCategory.Name(ROLE_CATEGORY[role])}", f"spec.{ROLE_FIELD[role]}")
                result.resolved[role] = given
                if role == "partition":
                    from dmod.services.partitioner import identity

                    result.staged["partition_note"] = f"given {given} ({identity.describe(dataset)})"
                continue
            if role in GIVEN_ONLY or (role == "partition" and n == 1):
                continue
            hf_id = ""
            if role == "partition":
                from dmod.services.partitioner import identity

                hf_id = identity.hydrofabric_id_of(await self.ds.get(result.resolved["hydrofabric"]))
                if not hf_id:
                    continue  # the hydrofabric's id is unknown: nothing can be proven to match; PARTITIONING makes one
            found = await self.ds.search(_requirement(role, spec, n, hf_id))
            if found.best.name:
                result.resolved[role] = found.best.name
                if role == "partition":
                    result.staged["partition_note"] = f"reused {found.best.name} ({identity.describe(found.best)})"
                continue
            if role == "partition":
                continue  # PARTITIONING makes one
            rejected = "; ".join(f"{c.dataset}: {', '.join(c.reasons)}" for c in found.candidates[:5])
            raise ValidationFailed(f"no {role} dataset fulfils the job's requirement"
                                   + (f" (rejected: {rejected})" if rejected else ""), f"spec.{ROLE_FIELD[role]}",
                                   reason="DATA_UNAVAILABLE")

    def _paths(self, role: str) -> list[str]:
        return [o.path for o in self.objects.get(role, [])]

    def _object(self, role: str, path: str) -> datasets_pb2.DataObject:
        return next(o for o in self.objects[role] if o.path == path)

    async def _fetch(self, role: str, path: str) -> Path:
        """A whole object in the scratch cache (keyed by content hash)."""
        obj = self._object(role, path)
        key = obj.sha256 or hashlib.sha256(obj.name.encode()).hexdigest()
        dest = self.scratch / "cache" / key[:2] / key / posixpath.basename(path)
        if not dest.exists():
            await self.ds.download(obj, dest)
        return dest

    # ---- realization ------------------------------------------------------------------------
    async def _engine(self, result: Result, doc: dict):
        """The engine this job runs on (see engine_caps.choose_engine), recorded in `result`."""
        from dmod.services.worker.engine_caps import (
            EngineUnsupported,
            choose_engine,
            find_ngen,
            needs_of,
            ngen_capabilities,
        )

        spec = self.spec
        try:
            geopackage = layout.pick_hydrofabric(self._paths("hydrofabric"))[0].endswith("gpkg")
        except layout.LayoutError:
            geopackage = False  # reported by the hydrofabric check
        needs = needs_of(doc, spec.cpu_count or 1, geopackage)
        path = find_ngen() if spec.engine in ("", "auto", "ngen") else None
        ngen = await asyncio.to_thread(ngen_capabilities, path) if path else None
        try:
            chosen = choose_engine(spec.engine or "auto", needs, ngen)
        except EngineUnsupported as exc:
            raise ValidationFailed(str(exc), exc.field or "spec.engine", reason=exc.reason) from None
        result.engine, result.engine_detail = chosen.name, chosen.describe()
        return chosen

    async def _realization(self, result: Result):
        from dmod.services.worker.engine.errors import ConfigError
        from dmod.services.worker.engine.realization import parse_realization

        try:
            path = layout.pick_json(self._paths("realization"), layout.REALIZATION_FILE, "realization")
        except layout.LayoutError as exc:
            raise ValidationFailed(str(exc), f"spec.{exc.field}") from None
        raw = await self.ds.read(self._object("realization", path))
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise ValidationFailed(f"realization {path} is not valid JSON: {exc}", "realization") from None
        if not isinstance(doc, dict):
            raise ValidationFailed("realization config must be a JSON object", "realization")
        spec = self.spec
        start = _dt(spec.start_time) if spec.HasField("start_time") else None
        end = _dt(spec.end_time) if spec.HasField("end_time") else None
        try:
            doc = layout.rewrite_realization(doc, forcing_paths=self._paths("forcing"), start=start, end=end)
            engine = await self._engine(result, doc)
            real = parse_realization(doc, engine=engine.name)
        except layout.LayoutError as exc:
            raise ValidationFailed(str(exc), f"spec.{exc.field}") from None
        except ConfigError as exc:
            raise ValidationFailed(f"realization: {exc}", f"realization.{exc.field or ''}".rstrip(".")) from None
        result.warnings.extend(real.warnings)
        return real, doc

    # ---- hydrofabric ------------------------------------------------------------------------
    async def _hydrofabric(self, result: Result):
        from dmod.services.hydrofabric import load_network
        from dmod.services.hydrofabric.validate import errors_only, validate_network

        try:
            cat_path, nex_path = layout.pick_hydrofabric(self._paths("hydrofabric"))
        except layout.LayoutError as exc:
            raise ValidationFailed(str(exc), f"spec.{exc.field}") from None
        cat_file = await self._fetch("hydrofabric", cat_path)
        nex_file = cat_file if nex_path == cat_path else await self._fetch("hydrofabric", nex_path)
        try:
            network = await asyncio.to_thread(load_network, str(cat_file), str(nex_file))
        except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
            raise ValidationFailed(f"hydrofabric {cat_path} cannot be read: {exc}", "hydrofabric") from None
        issues = errors_only(await asyncio.to_thread(validate_network, network))
        if issues:
            text = "; ".join(f"{i.code} {i.id}: {i.message}".replace("  ", " ") for i in issues[:MAX_ERRORS])
            raise ValidationFailed(f"hydrofabric: {text}", f"hydrofabric.{issues[0].id or issues[0].code}")
        self.network = network
        return network

    async def _simulated(self, result: Result, network) -> list[str] | None:
        from dmod.services.hydrofabric.partition_validate import validate_partitioning

        spec = self.spec
        index = network.catchment_index
        missing = [c for c in spec.catchment_ids if c not in index]
        if missing:
            raise ValidationFailed(f"catchment {missing[0]} is not in the hydrofabric"
                                   + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                                   f"spec.catchment_ids[{list(spec.catchment_ids).index(missing[0])}]")
        simulated = list(spec.catchment_ids) or None
        n = spec.cpu_count or 1
        if "partition" in result.resolved and n > 1:
            path = layout.pick_json(self._paths("partition"), layout.PARTITION_FILE, "partition")
            raw = await self.ds.read(self._object("partition", path))
            try:
                doc = json.loads(raw)
            except ValueError as exc:
                raise ValidationFailed(f"partition file is not valid JSON: {exc}", "spec.partition_dataset") from None
            issues = await asyncio.to_thread(validate_partitioning, network, doc, n,
                                             "embedded" if result.engine == "embedded" else "ngen")
            errors = [i for i in issues if i.severity == "error"]
            if errors:
                if not self.spec.partition_dataset:  # a found one that does not fit: make a new one
                    del result.resolved["partition"]
                    result.staged.pop("partition", None)
                    result.staged.pop("partition_note", None)
                    return simulated
                text = "; ".join(f"{i.code} {i.id}: {i.message}" for i in errors[:MAX_ERRORS])
                raise ValidationFailed(f"partition file: {text}", "spec.partition_dataset")
            simulated = layout.partition_catchments(doc)
        return simulated

    # ---- forcing ----------------------------------------------------------------------------
    async def _forcing(self, result: Result, real, simulated: list[str] | None) -> None:
        from dmod.services.worker.engine.errors import ConfigError

        network = self.network
        ids = simulated if simulated is not None else network.catchment_ids.tolist()
        start, end = real.time.start, real.time.end
        by_dir: dict[str, list[str]] = {}
        for p in self._paths("forcing"):
            by_dir.setdefault(posixpath.dirname(p), []).append(p)
        csv_checks: dict[str, list[str]] = {}  # object path -> catchments
        nc_checks: dict[str, list[str]] = {}
        errors: list[tuple[str, str]] = []
        for cid in ids:
            try:
                fspec = real.forcing_for(cid)
            except ConfigError as exc:
                errors.append((f"catchment {cid}: {exc}", f"realization.{exc.field or 'forcing'}"))
                continue
            if fspec.provider == "NullForcingProvider":
                continue
            rel = posixpath.normpath(fspec.path.removeprefix("./")) if fspec.path else ""
            if not rel.startswith("forcing"):
                continue  # points outside the forcing dataset: cannot be checked here
            inside = posixpath.relpath(rel, "forcing") if rel != "forcing" else "."
            if fspec.provider == "NetCDF":
                if inside not in self._paths("forcing"):
                    errors.append(((f"catchment {cid}: NetCDF forcing file {inside} is not in "
                                    f"{result.resolved.get('forcing')}"), f"catchments.{cid}.forcing"))
                else:
                    nc_checks.setdefault(inside, []).append(cid)
                continue
            if inside in self._paths("forcing"):  # one CSV for every catchment
                csv_checks.setdefault(inside, []).append(cid)
                continue
            folder = "" if inside == "." else inside.rstrip("/")
            hit = _match(by_dir.get(folder, []), cid, fspec.file_pattern or r".*{{id}}.*\.csv")
            if hit is None:
                errors.append(((f"catchment {cid}: no forcing file for it in {result.resolved.get('forcing')} "
                                f"(pattern {fspec.file_pattern or '.*{{id}}.*.csv'!r})"), f"catchments.{cid}.forcing"))
            elif hit == "":
                errors.append((f"catchment {cid}: forcing file pattern is ambiguous", f"catchments.{cid}.forcing"))
            else:
                csv_checks.setdefault(hit, []).append(cid)
            if len(errors) >= MAX_ERRORS:
                break
        if not errors:
            errors += await self._csv_coverage(csv_checks, start, end)
        if not errors:
            for path, cids in nc_checks.items():
                errors += await self._netcdf_coverage(path, cids, start, end)
        if errors:
            more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
            raise ValidationFailed("; ".join(m for m, _ in errors[:5]) + more, errors[0][1],
                                   reason="FORCING_INCOMPLETE")

    async def _csv_coverage(self, checks: dict[str, list[str]], start: int, end: int) -> list[tuple[str, str]]:
        sem = asyncio.Semaphore(16)
        errors: list[tuple[str, str]] = []

        async def check(path: str, cids: list[str]) -> None:
            obj = self._object("forcing", path)
            async with sem:
                head = await self.ds.read(obj, 0, min(obj.size_bytes, 4096) or 4096)
                tail_len = min(obj.size_bytes, 4096)
                tail = await self.ds.read(obj, max(0, obj.size_bytes - tail_len), tail_len) if tail_len else b""
            problem = _csv_span_problem(head, tail, start, end)
            if problem:
                errors.append((f"catchment {cids[0]}: forcing file {path} {problem}", f"catchments.{cids[0]}.forcing"))

        await asyncio.gather(*(check(p, c) for p, c in checks.items()))
        return sorted(errors)

    async def _netcdf_coverage(self, path: str, cids: list[str], start: int, end: int) -> list[tuple[str, str]]:
        local = await self._fetch("forcing", path)
        return await asyncio.to_thread(_netcdf_problems, str(local), cids, start, end)

    # ---- BMI init configs -------------------------------------------------------------------
    def _init_configs(self, real, simulated: list[str] | None, warnings: list[str] | None = None) -> None:
        from dmod.services.worker.engine.errors import ConfigError

        warnings = warnings if warnings is not None else []
        available = {posixpath.normpath(p) for p in self._paths("realization") + self._paths("bmi_config")
                     + self._paths("bmi_library")}
        ids = simulated if simulated is not None else self.network.catchment_ids.tolist()
        libraries_checked: set[str] = set()
        for cid in ids:
            try:
                form = real.formulation_for(cid)
            except ConfigError as exc:
                raise ValidationFailed(f"catchment {cid}: {exc}", f"catchments.{cid}") from None
            for module in form.modules:
                lib = module.library_file
                if lib and lib not in libraries_checked:
                    libraries_checked.add(lib)
                    if posixpath.isabs(lib):
                        warnings.append(f"{module.field}: library_file {lib} is an absolute path: only the worker "
                                        f"can check it exists")
                    elif posixpath.normpath(lib.removeprefix("./")) not in available:
                        raise ValidationFailed(
                            f"catchment {cid}: library_file {lib} is in neither the BMI library, the BMI config nor "
                            f"the realization dataset", f"realization.{module.field}.params.library_file",
                            reason="BMI_LIBRARY_MISSING")
                cfg = module.init_config_for(cid)
                if not cfg or posixpath.isabs(cfg):
                    continue
                rel = posixpath.normpath(cfg.removeprefix("./"))
                if rel not in available:
                    raise ValidationFailed(f"catchment {cid}: init_config {cfg} is in neither the realization, "
                                           f"the BMI config nor the BMI library dataset",
                                           f"realization.{module.field}.params.init_config",
                                           reason="BMI_CONFIG_MISSING")


def _digest(names: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()


def _match(paths: list[str], cid: str, pattern: str) -> str | None:
    """The forcing file of `cid` ('' when ambiguous, None when none), as ngen/the engine match."""
    regex = re.compile(pattern.replace("{{id}}", re.escape(cid)))
    hits = [p for p in paths if regex.fullmatch(posixpath.basename(p))]
    if len(hits) > 1:
        delimited = [p for p in hits if re.search(rf"(?<![A-Za-z0-9]){re.escape(cid)}(?![A-Za-z0-9])",
                                                  posixpath.basename(p))]
        hits = delimited or hits
    if len(hits) > 1:
        return ""
    return hits[0] if hits else None


def _epoch(text: str) -> int:
    return int(dt.datetime.strptime(text.strip().strip('"')[:19], _TIME).replace(tzinfo=dt.UTC).timestamp())


def _label(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime(_TIME)


def _csv_span_problem(head: bytes, tail: bytes, start: int, end: int) -> str | None:
    lines = head.decode("utf-8", "replace").splitlines()
    if len(lines) < 2:
        return "has no data rows"
    header = [c.strip().lower() for c in lines[0].split(",")]
    if "time" not in header:
        return "has no time/Time column"
    col = header.index("time")
    last_lines = [ln for ln in tail.decode("utf-8", "replace").splitlines() if ln.strip()]
    try:
        first = _epoch(lines[1].split(",")[col])
        last = _epoch(last_lines[-1].split(",")[col])
    except (ValueError, IndexError):
        return "has a malformed time value"
    if first > start or last < end:
        return (f"covers {_label(first)} .. {_label(last)}, the job needs {_label(start)} .. {_label(end)}")
    return None


def _netcdf_problems(path: str, cids: list[str], start: int, end: int) -> list[tuple[str, str]]:
    import netCDF4
    import numpy as np

    from dmod.services.worker.engine.forcing_netcdf import _read_ids, time_units_to_epoch

    out = []
    with netCDF4.Dataset(path, "r") as ds:
        ids = _read_ids(ds)
        index = {c: i for i, c in enumerate(ids)}
        var = ds.variables.get("Time")
        if var is None:
            return [(f"NetCDF forcing {posixpath.basename(path)} has no Time variable", "forcing")]
        scale, ref = time_units_to_epoch(getattr(var, "units", ""))
        times = np.asarray(var[:], dtype=np.float64) * scale + ref
        for cid in cids:
            i = index.get(cid)
            if i is None:
                out.append((f"catchment {cid}: not in NetCDF forcing {posixpath.basename(path)}",
                            f"catchments.{cid}.forcing"))
                continue
            row = times[i] if times.ndim == 2 else times
            if row.size == 0 or row.min() > start or row.max() < end:
                out.append((f"catchment {cid}: NetCDF forcing does not cover {_label(start)} .. {_label(end)}",
                            f"catchments.{cid}.forcing"))
            if len(out) >= MAX_ERRORS:
                break
    return out
