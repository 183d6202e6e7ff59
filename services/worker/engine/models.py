"""Build and advance the BMI models of the local catchments.

Catchments sharing one formulation block form a `FormulationGroup`. For every module of the
formulation (one for bmi_python, several for bmi_multi) the group holds BMI instances: when the
model class offers `initialize_batch` (see dmod.services.worker.models.array_bmi) and batching is
on, ONE instance advances every catchment of the group with array arithmetic; otherwise one
instance per catchment, exactly as ngen does. Both paths give identical numbers.

Inputs are wired by name: a module input `v` reads `variables_names_map.get(v, v)` from the outputs
of an earlier module of the same bmi_multi (published under their own name and their mapped name),
else from forcing. Parameters from `model_params` are set with SetValue after Initialize.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError
from .realization import FormulationSpec, HydrofabricParam, ModuleSpec, Realization, resolve

_TIME_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "min": 60.0, "minute": 60.0,
               "minutes": 60.0, "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0, "d": 86400.0,
               "day": 86400.0, "days": 86400.0}


def import_type(python_type: str, where: str, catchment: str):
    module_name, _, cls_name = python_type.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import python_type {python_type!r}: {exc}", catchment=catchment,
                          field=f"{where}.params.python_type") from None
    if not isinstance(cls, type):
        raise ConfigError(f"python_type {python_type!r} is not a class", catchment=catchment,
                          field=f"{where}.params.python_type")
    return cls


@dataclass
class ModuleRuntime:
    """One module of a formulation for the catchments of a group."""
    spec: ModuleSpec
    instances: list  # BMI objects
    positions: list[np.ndarray]  # per instance, indices into the group's members
    inputs: list[tuple[str, str, bool]] = field(default_factory=list)  # (model var, source, from_forcing)
    outputs: dict[str, str] = field(default_factory=dict)  # published name -> model var
    step_seconds: float = 0.0
    time_scale: float = 1.0  # seconds per model time unit
    start_time: float = 0.0


class FormulationGroup:
    """Catchments (local indices `members`) that run the same formulation."""

    def __init__(self, spec: FormulationSpec, members: np.ndarray, ids: list[str]):
        self.spec = spec
        self.members = members
        self.ids = ids  # catchment id per member
        self.m = len(members)
        self.modules: list[ModuleRuntime] = []
        self.chain: dict[str, np.ndarray] = {}  # published outputs of earlier modules
        self.record: list[tuple[int, str]] = []  # (module index, var) of each output column
        self.headers: list[str] = []
        self.main: tuple[int, str] = (0, "")
        self.full_range = False  # members == arange(n_local): forcing rows need no gather
        self.chain_names: list[str] = []  # outputs published by the modules built so far
        self.consumed: set[str] = set()  # published outputs some later module takes as input

    # ---- setup ---------------------------------------------------------------------------------
    def forcing_needs(self) -> tuple[str, ...]:
        return tuple(sorted({src for mod in self.modules for _, src, forced in mod.inputs if forced}))

    def _resolve_output(self, name: str, where: str) -> tuple[int, str]:
        for i in range(len(self.modules) - 1, -1, -1):
            if name in self.modules[i].outputs:
                return i, self.modules[i].outputs[name]
        known = sorted({n for mod in self.modules for n in mod.outputs})
        raise ConfigError(f"{name!r} is not an output of the formulation (outputs: {', '.join(known)})",
                          catchment=self.ids[0], field=where)

    def finish_wiring(self) -> None:
        spec = self.spec
        pw = f"{spec.field}.params"
        self.main = self._resolve_output(spec.main_output_variable, f"{pw}.main_output_variable")
        names = spec.output_variables
        if names is None:  # ngen default: every output of the (last) model
            last = self.modules[-1]
            names = tuple(last.instances[0].get_output_var_names())
        self.record = [self._resolve_output(n, f"{pw}.output_variables") for n in names]
        self.headers = list(spec.output_header_fields or names)

    # ---- time stepping -------------------------------------------------------------------------
    def advance(self, k: int, forcing: dict[str, np.ndarray], grid_interval: int) -> None:
        """Run every module of every member through step k (0-based)."""
        for mod in self.modules:
            for var, src, forced in mod.inputs:
                if forced:
                    row = forcing[src][k]
                    values = row if self.full_range else row[self.members]
                else:
                    values = self.chain[src]
                for inst, pos in zip(mod.instances, mod.positions):
                    inst.set_value(var, values if len(mod.instances) == 1 else values[pos])
            for inst in mod.instances:
                if mod.step_seconds == grid_interval:
                    inst.update()
                else:
                    inst.update_until(mod.start_time + (k + 1) * grid_interval / mod.time_scale)
            for name, var in mod.outputs.items():
                if name in self.consumed:  # only what a later module reads
                    self.chain[name] = self.gather(mod, var)

    def gather(self, mod: ModuleRuntime, var: str) -> np.ndarray:
        """Current values of `var` for every member (a copy)."""
        if len(mod.instances) == 1:  # one (batched or single-catchment) instance
            return np.array(_read(mod.instances[0], var, self.m), dtype=np.float64).reshape(self.m)
        out = np.empty(self.m)
        for inst, pos in zip(mod.instances, mod.positions):
            out[pos] = _read(inst, var, 1).reshape(-1)[0]
        return out

    def values(self, slot: tuple[int, str]) -> np.ndarray:
        mod_index, var = slot
        return self.gather(self.modules[mod_index], var)

    def finalize(self) -> None:
        for mod in self.modules:
            for inst in mod.instances:
                inst.finalize()


def _read(inst, var: str, size: int) -> np.ndarray:
    """A BMI variable's values: the pointer when the model offers one, else a copy."""
    try:
        return np.asarray(inst.get_value_ptr(var))
    except (NotImplementedError, AttributeError):
        return inst.get_value(var, np.empty(size, dtype=np.float64))


def _time_scale(inst, where: str, catchment: str) -> float:
    units = str(inst.get_time_units()).strip().lower()
    if units not in _TIME_UNITS:
        raise ConfigError(f"model time units {units!r} are not supported", catchment=catchment, field=where)
    return _TIME_UNITS[units]


def _param_values(spec: ModuleSpec, name: str, value, group: FormulationGroup, cat_index: np.ndarray,
                  attributes: dict[str, np.ndarray]) -> np.ndarray:
    where = f"{spec.field}.params.model_params.{name}"
    if isinstance(value, HydrofabricParam):
        if value.column not in attributes:
            raise ConfigError(f"hydrofabric has no column {value.column!r}", catchment=group.ids[0], field=where)
        col = np.asarray(attributes[value.column])[cat_index]
        try:
            out = col.astype(np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"hydrofabric column {value.column!r} is not numeric", catchment=group.ids[0],
                              field=where) from None
        bad = np.flatnonzero(~np.isfinite(out))
        if bad.size:
            raise ConfigError(f"hydrofabric column {value.column!r} has no value", catchment=group.ids[int(bad[0])],
                              field=where)
        return out
    if isinstance(value, list):
        if len(value) != 1:
            raise ConfigError("lumped models take one value per catchment", catchment=group.ids[0], field=where)
        value = value[0]
    return np.full(group.m, float(value))


def _build_module(spec: ModuleSpec, group: FormulationGroup, cat_index: np.ndarray, attributes: dict,
                  cwd: str, batch: bool, grid_interval: int) -> ModuleRuntime:
    cls = import_type(spec.python_type, spec.field, group.ids[0])
    configs = [resolve(spec.init_config_for(cid), cwd) if spec.init_config else "" for cid in group.ids]
    where = f"{spec.field}.params.init_config"
    use_batch = batch and getattr(cls, "supports_batch", False) and hasattr(cls, "initialize_batch")
    try:
        if use_batch:
            inst = cls()
            inst.initialize_batch(configs)
            instances, positions = [inst], [np.arange(group.m)]
        else:
            instances, positions = [], []
            for i, cfg in enumerate(configs):
                inst = cls()
                inst.initialize(cfg)
                instances.append(inst)
                positions.append(np.array([i]))
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any model failure at Initialize is a configuration problem
        raise ConfigError(f"{spec.python_type} failed to initialize: {exc}", catchment=group.ids[0],
                          field=where) from None
    for name, value in spec.model_params.items():
        values = _param_values(spec, name, value, group, cat_index, attributes)
        for inst, pos in zip(instances, positions):
            try:
                inst.set_value(name, values[pos])
            except Exception as exc:  # noqa: BLE001 - third-party models raise anything
                raise ConfigError(f"model rejected parameter: {exc}", catchment=group.ids[int(pos[0])],
                                  field=f"{spec.field}.params.model_params.{name}") from None
    first = instances[0]
    scale = _time_scale(first, spec.field, group.ids[0])
    mod = ModuleRuntime(spec=spec, instances=instances, positions=positions,
                        step_seconds=float(first.get_time_step()) * scale, time_scale=scale,
                        start_time=float(first.get_start_time()))
    if mod.step_seconds <= 0 or grid_interval % mod.step_seconds > 1e-9 * grid_interval:
        raise ConfigError(f"model time step {mod.step_seconds:g} s does not divide output_interval "
                          f"{grid_interval} s", catchment=group.ids[0], field=spec.field)
    for out in first.get_output_var_names():
        mod.outputs[out] = out
        alias = spec.variables_names_map.get(out)
        if alias:
            mod.outputs[alias] = out
    return mod


def _wire_inputs(group: FormulationGroup, mod: ModuleRuntime) -> None:
    published = set(group.chain_names)
    for var in mod.instances[0].get_input_var_names():
        src = mod.spec.variables_names_map.get(var, var)
        if src in published:
            mod.inputs.append((var, src, False))
        elif not mod.spec.uses_forcing_file:
            mod.inputs.append((var, src, True))


def build_groups(catchment_ids: list[str], cat_index: np.ndarray, realization: Realization,
                 attributes: dict[str, np.ndarray], cwd: str, grid_interval: int,
                 batch: bool = True) -> list[FormulationGroup]:
    """Instantiate the models of the local catchments (`cat_index`: their network indices)."""
    by_spec: dict[int, tuple[FormulationSpec, list[int]]] = {}
    for j, cid in enumerate(catchment_ids):
        spec = realization.formulation_for(cid)
        by_spec.setdefault(id(spec), (spec, []))[1].append(j)
    groups = []
    for spec, members in by_spec.values():
        members_arr = np.asarray(members, dtype=np.int64)
        group = FormulationGroup(spec, members_arr, [catchment_ids[j] for j in members])
        group.full_range = len(members) == len(catchment_ids)
        for mspec in spec.modules:
            mod = _build_module(mspec, group, cat_index[members_arr], attributes, cwd, batch, grid_interval)
            _wire_inputs(group, mod)
            group.modules.append(mod)
            group.chain_names.extend(mod.outputs)
        group.consumed = {src for mod in group.modules for _, src, forced in mod.inputs if not forced}
        group.finish_wiring()
        groups.append(group)
    return groups
