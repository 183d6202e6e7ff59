"""Parse and check an ngen realization config (JSON) into plain dataclasses.

Everything is checked here, before any model is built, and every error names its field as a path
into the document (e.g. `global.formulations[0].params.python_type`). Per catchment, a
`catchments.<id>` block replaces the global formulation and overrides keys of the global forcing.
Only the first global formulation is used (ngen's rule).

`engine="embedded"` (default) accepts what the embedded engine runs (bmi_python, bmi_multi of
bmi_python modules); `engine="ngen"` accepts every type ngen knows (bmi_c, bmi_c++, bmi_fortran,
bmi_python, bmi_multi) and checks the parameters ngen requires of each module.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .errors import ConfigError, UnsupportedFormulation
from .timegrid import TimeGrid, parse_time

NATIVE_TYPES = ("bmi_c", "bmi_c++", "bmi_fortran")
PYTHON_TYPES = ("bmi_python", "bmi_multi")
ENGINES = ("embedded", "ngen")
# Parameters ngen requires of every BMI module (Bmi_Formulation's REQ__ parameters).
NGEN_REQUIRED = ("model_type_name", "init_config", "main_output_variable", "uses_forcing_file")
FORCING_PROVIDERS = ("CsvPerFeature", "NetCDF", "NullForcingProvider")


@dataclass(frozen=True)
class HydrofabricParam:
    """`{"source": "hydrofabric", "from": "<column>"}`: a per-catchment hydrofabric attribute."""
    column: str


@dataclass(frozen=True)
class ModuleSpec:
    """One BMI model (a formulation of its own, or a module of bmi_multi): bmi_python for the
    embedded engine; any type when parsed for ngen."""
    field: str
    python_type: str
    init_config: str  # may contain {{id}}; "" when the model takes none
    main_output_variable: str | None
    variables_names_map: dict[str, str]
    output_variables: tuple[str, ...] | None
    uses_forcing_file: bool
    model_params: dict[str, object]  # value or HydrofabricParam
    model_type_name: str = ""
    kind: str = "bmi_python"
    library_file: str = ""  # native types: the shared library ngen dlopens

    def init_config_for(self, catchment_id: str) -> str:
        return self.init_config.replace("{{id}}", catchment_id)


@dataclass(frozen=True)
class FormulationSpec:
    field: str
    kind: str  # bmi_python | bmi_multi (| bmi_c | bmi_c++ | bmi_fortran when parsed for ngen)
    modules: tuple[ModuleSpec, ...]
    main_output_variable: str
    output_variables: tuple[str, ...] | None
    output_header_fields: tuple[str, ...] | None


@dataclass(frozen=True)
class ForcingSpec:
    field: str
    provider: str
    path: str
    file_pattern: str | None


@dataclass(frozen=True)
class OutputSpec:
    root: str
    catchment_enabled: bool
    nexus_format: str = "csv"


@dataclass
class Realization:
    time: TimeGrid
    global_formulation: FormulationSpec | None
    global_forcing: dict | None
    catchment_formulations: dict[str, FormulationSpec] = field(default_factory=dict)
    catchment_forcing: dict[str, dict] = field(default_factory=dict)
    output: OutputSpec = OutputSpec(root=".", catchment_enabled=True)
    warnings: list[str] = field(default_factory=list)

    def formulation_for(self, catchment_id: str) -> FormulationSpec:
        spec = self.catchment_formulations.get(catchment_id, self.global_formulation)
        if spec is None:
            raise ConfigError("no formulation: not listed under `catchments` and no `global` formulation",
                              catchment=catchment_id, field="formulations")
        return spec

    def forcing_for(self, catchment_id: str) -> ForcingSpec:
        raw = dict(self.global_forcing or {})
        where = "global.forcing"
        if catchment_id in self.catchment_forcing:
            raw.update(self.catchment_forcing[catchment_id])
            where = f"catchments.{catchment_id}.forcing"
        if not raw:
            raise ConfigError("no forcing block (global.forcing or catchments.<id>.forcing)",
                              catchment=catchment_id, field="forcing")
        return parse_forcing(raw, where)


# ---- small typed getters ---------------------------------------------------------------------
def _req(obj: dict, key: str, where: str):
    if key not in obj:
        raise ConfigError("missing required key", field=f"{where}.{key}")
    return obj[key]


def _str(obj: dict, key: str, where: str, required: bool = True, default: str | None = None) -> str | None:
    if key not in obj:
        if required:
            raise ConfigError("missing required key", field=f"{where}.{key}")
        return default
    value = obj[key]
    if not isinstance(value, str):
        raise ConfigError(f"must be a string, got {json.dumps(value)}", field=f"{where}.{key}")
    return value


def _dict(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"must be an object, got {type(value).__name__}", field=where)
    return value


def _str_list(obj: dict, key: str, where: str) -> tuple[str, ...] | None:
    if key not in obj:
        return None
    value = obj[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError("must be a list of strings", field=f"{where}.{key}")
    return tuple(value)


# ---- sections --------------------------------------------------------------------------------
def parse_time_block(doc: dict) -> TimeGrid:
    block = _dict(_req(doc, "time", "realization"), "time")
    start_s = _str(block, "start_time", "time")
    end_s = _str(block, "end_time", "time")
    interval = _req(block, "output_interval", "time")
    try:
        start = parse_time(start_s)
    except ValueError:
        raise ConfigError(f"{start_s!r} is not 'YYYY-MM-DD HH:MM:SS'", field="time.start_time") from None
    try:
        end = parse_time(end_s)
    except ValueError:
        raise ConfigError(f"{end_s!r} is not 'YYYY-MM-DD HH:MM:SS'", field="time.end_time") from None
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0 \
            or interval != int(interval):
        raise ConfigError(f"must be a positive whole number of seconds, got {json.dumps(interval)}",
                          field="time.output_interval")
    if end < start:
        raise ConfigError(f"end_time {end_s} is before start_time {start_s}", field="time.end_time")
    return TimeGrid(start=start, interval=int(interval), n_steps=(end - start) // int(interval) + 1)


def _model_params(params: dict, where: str) -> dict[str, object]:
    raw = params.get("model_params", {})
    raw = _dict(raw, f"{where}.model_params")
    out: dict[str, object] = {}
    for name, value in raw.items():
        f = f"{where}.model_params.{name}"
        if isinstance(value, dict):
            if value.get("source") != "hydrofabric":
                raise ConfigError('object values need "source": "hydrofabric"', field=f)
            col = value.get("from")
            if not isinstance(col, str) or not col:
                raise ConfigError('needs "from": "<hydrofabric column>"', field=f)
            out[name] = HydrofabricParam(col)
        elif isinstance(value, bool) or not isinstance(value, (int, float, list)):
            raise ConfigError(f"must be a number, a list of numbers or a hydrofabric source, got {json.dumps(value)}",
                              field=f)
        else:
            out[name] = value
    return out


def parse_module(formulation: dict, where: str, engine: str = "embedded") -> ModuleSpec:
    name = _str(formulation, "name", where)
    native = name in NATIVE_TYPES
    if native and engine != "ngen":
        raise UnsupportedFormulation(
            f"formulation type {name!r} needs the ngen binary (compiled BMI libraries); the embedded "
            f"engine runs only bmi_python and bmi_multi of bmi_python modules", field=f"{where}.name")
    if name != "bmi_python" and not native:
        raise ConfigError(f"unknown formulation type {name!r} (expected one of "
                          f"{', '.join(PYTHON_TYPES + NATIVE_TYPES)})", field=f"{where}.name")
    pw = f"{where}.params"
    params = _dict(_req(formulation, "params", where), pw)
    library = ""
    python_type = ""
    if engine == "ngen":
        for key in NGEN_REQUIRED:
            _req(params, key, pw)
    if native:
        library = _str(params, "library_file", pw)
        if not library:
            raise ConfigError("must name the model's shared library", field=f"{pw}.library_file")
        for key in ("registration_function", "create_function", "destroy_function"):
            _str(params, key, pw, required=False)
    else:
        python_type = _str(params, "python_type", pw)
        if "." not in python_type:
            raise ConfigError(f"must be 'package.module.ClassName', got {python_type!r}", field=f"{pw}.python_type")
    names_map = _dict(params.get("variables_names_map", {}), f"{pw}.variables_names_map")
    for k, v in names_map.items():
        if not isinstance(v, str):
            raise ConfigError("must map to a variable name string", field=f"{pw}.variables_names_map.{k}")
    uses_file = params.get("uses_forcing_file", False)
    if not isinstance(uses_file, bool):
        raise ConfigError("must be true or false", field=f"{pw}.uses_forcing_file")
    return ModuleSpec(
        field=where,
        python_type=python_type,
        init_config=_str(params, "init_config", pw, required=False, default="") or "",
        main_output_variable=_str(params, "main_output_variable", pw, required=False),
        variables_names_map=dict(names_map),
        output_variables=_str_list(params, "output_variables", pw),
        uses_forcing_file=uses_file,
        model_params=_model_params(params, pw),
        model_type_name=_str(params, "model_type_name", pw, required=False, default="") or "",
        kind=name,
        library_file=library,
    )


def parse_formulation(formulation, where: str, engine: str = "embedded") -> FormulationSpec:
    formulation = _dict(formulation, where)
    name = _str(formulation, "name", where)
    pw = f"{where}.params"
    if name == "bmi_multi":
        params = _dict(_req(formulation, "params", where), pw)
        modules = params.get("modules")
        if not isinstance(modules, list) or not modules:
            raise ConfigError("bmi_multi needs a non-empty list of modules", field=f"{pw}.modules")
        specs = tuple(parse_module(_dict(m, f"{pw}.modules[{i}]"), f"{pw}.modules[{i}]", engine)
                      for i, m in enumerate(modules))
        main = _str(params, "main_output_variable", pw)
    else:
        spec = parse_module(formulation, where, engine)
        specs = (spec,)
        main = spec.main_output_variable
        if main is None:
            raise ConfigError("missing required key", field=f"{pw}.main_output_variable")
        params = formulation["params"]
    outputs = _str_list(params, "output_variables", pw)
    headers = _str_list(params, "output_header_fields", pw)
    if headers is not None and outputs is not None and len(headers) != len(outputs):
        raise ConfigError(f"has {len(headers)} names for {len(outputs)} output_variables",
                          field=f"{pw}.output_header_fields")
    return FormulationSpec(field=where, kind=name, modules=specs, main_output_variable=main,
                           output_variables=outputs, output_header_fields=headers)


def _first_formulation(block: dict, where: str, engine: str = "embedded") -> FormulationSpec | None:
    forms = block.get("formulations")
    if forms is None:
        return None
    if not isinstance(forms, list) or not forms:
        raise ConfigError("must be a non-empty list", field=f"{where}.formulations")
    return parse_formulation(forms[0], f"{where}.formulations[0]", engine)


def parse_forcing(raw: dict, where: str) -> ForcingSpec:
    provider = _str(raw, "provider", where, required=False, default="CsvPerFeature")
    if provider not in FORCING_PROVIDERS:
        raise ConfigError(f"unknown provider {provider!r} (expected one of {', '.join(FORCING_PROVIDERS)})",
                          field=f"{where}.provider")
    path = _str(raw, "path", where, required=provider != "NullForcingProvider", default="")
    pattern = _str(raw, "file_pattern", where, required=False)
    return ForcingSpec(field=where, provider=provider, path=path or "", file_pattern=pattern)


def parse_output(doc: dict) -> OutputSpec:
    if "output" in doc:
        block = _dict(doc["output"], "output")
        root = _str(block, "root", "output", required=False, default=".")
        cat = _dict(block.get("catchment", {}), "output.catchment")
        enabled = cat.get("enable", True)
        if not isinstance(enabled, bool):
            raise ConfigError("must be true or false", field="output.catchment.enable")
        nex = _dict(block.get("nexus", {}), "output.nexus")
        fmt = _str(nex, "format", "output.nexus", required=False, default="csv")
        if fmt != "csv":
            raise ConfigError(f"nexus output format {fmt!r} is not supported (only 'csv')", field="output.nexus.format")
        return OutputSpec(root=root or ".", catchment_enabled=enabled, nexus_format=fmt)
    root = _str(doc, "output_root", "realization", required=False, default=".")
    disabled = doc.get("disable_catchment_output", False)
    if not isinstance(disabled, bool):
        raise ConfigError("must be true or false", field="disable_catchment_output")
    return OutputSpec(root=root or ".", catchment_enabled=not disabled)


def parse_realization(doc: dict, engine: str = "embedded") -> Realization:
    """The realization as `engine` ("embedded" or "ngen") would run it."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}")
    doc = _dict(doc, "realization")
    time = parse_time_block(doc)
    glob = _dict(doc.get("global", {}), "global")
    global_form = _first_formulation(glob, "global", engine)
    global_forcing = _dict(glob["forcing"], "global.forcing") if "forcing" in glob else None
    if global_forcing is not None:
        parse_forcing(global_forcing, "global.forcing")  # fail early on a bad provider
    real = Realization(time=time, global_formulation=global_form, global_forcing=global_forcing,
                       output=parse_output(doc))
    cats = _dict(doc.get("catchments", {}), "catchments")
    for cid, block in cats.items():
        where = f"catchments.{cid}"
        block = _dict(block, where)
        form = _first_formulation(block, where, engine)
        if form is not None:
            real.catchment_formulations[cid] = form
        if "forcing" in block:
            forcing = _dict(block["forcing"], f"{where}.forcing")
            parse_forcing({**(global_forcing or {}), **forcing}, f"{where}.forcing")
            real.catchment_forcing[cid] = forcing
    if global_form is None and not cats:
        raise ConfigError("missing: needs global.formulations or a `catchments` block", field="global")
    if "routing" in doc and engine == "embedded":
        real.warnings.append("routing block ignored: the embedded engine does not run t-route")
    return real


def formulation_types(doc) -> dict[str, str]:
    """Formulation type -> field of its first use, over the formulations a run uses (the first of
    `global` and of each catchment, and bmi_multi's modules). Tolerant: malformed parts are
    skipped (parse_realization reports them)."""
    found: dict[str, str] = {}

    def visit(form, where: str) -> None:
        if not isinstance(form, dict) or not isinstance(form.get("name"), str):
            return
        found.setdefault(form["name"], f"{where}.name")
        params = form.get("params")
        if form["name"] == "bmi_multi" and isinstance(params, dict) and isinstance(params.get("modules"), list):
            for i, module in enumerate(params["modules"]):
                visit(module, f"{where}.params.modules[{i}]")

    if not isinstance(doc, dict):
        return found
    blocks = [("global", doc.get("global"))]
    if isinstance(doc.get("catchments"), dict):
        blocks += [(f"catchments.{cid}", b) for cid, b in doc["catchments"].items()]
    for where, block in blocks:
        forms = block.get("formulations") if isinstance(block, dict) else None
        if isinstance(forms, list) and forms:
            visit(forms[0], f"{where}.formulations[0]")
    return found


def load_realization(path: str) -> Realization:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read realization config: {exc.strerror}", field=path) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", field=path) from None
    return parse_realization(doc)


def resolve(path: str, cwd: str) -> str:
    """Relative paths in a realization are relative to the working directory (ngen's rule)."""
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(cwd, path))
