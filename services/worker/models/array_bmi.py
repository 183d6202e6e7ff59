"""BMI boilerplate shared by DMOD's lumped Python models.

Every model here is a `bmipy.Bmi` whose variables are numpy arrays with one element per
catchment. Initialised the normal way (`initialize(config_file)`) an instance is one catchment,
exactly what ngen's `bmi_python` formulation expects. Initialised with
`initialize_batch([config_file, ...])` one instance holds many catchments and advances them all
with the same elementwise numpy arithmetic; the engine uses that to vectorise a domain. Because
every operation is elementwise, catchment i of a batch gets bit-for-bit the same numbers as a
single-catchment instance built from the same config.

Subclasses provide: `_configure(configs)` (allocate per-catchment arrays in `self._v`),
`_advance(dt_seconds)` (one time step), `_on_params_changed(names)` (re-derive after SetValue of
parameters), and the variable tables `_inputs()`, `_outputs`, `_params`.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import yaml
from bmipy import Bmi


class ModelConfigError(ValueError):
    """A model init config is unreadable or names an unknown/invalid key."""


def load_config(path: str | os.PathLike) -> dict:
    """Read one init config: JSON when the name ends in .json, otherwise YAML."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:  # bytes: json/yaml decode UTF-8 themselves, faster
            text = fh.read()
    except OSError as exc:
        raise ModelConfigError(f"cannot read init config {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.load(text, Loader=yaml.CSafeLoader)
    except (ValueError, yaml.YAMLError) as exc:
        raise ModelConfigError(f"init config {path} is not valid {'JSON' if path.endswith('.json') else 'YAML'}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ModelConfigError(f"init config {path} must be a mapping, got {type(data).__name__}")
    return data


class ArrayBmi(Bmi):
    """Lumped model over n catchments; one BMI grid (id 0) of n points."""

    #: the engine may call initialize_batch() on this class
    supports_batch = True
    _component_name = "array model"
    #: output name -> units
    _outputs: ClassVar[dict[str, str]] = {}
    #: parameter name -> (units, default); settable with set_value (ngen `model_params`)
    _params: ClassVar[dict[str, tuple[str, object]]] = {}
    #: informational config keys accepted and ignored
    _ignored_keys: frozenset[str] = frozenset({"catchment_id", "id", "area_sqkm", "comment"})

    def __init__(self) -> None:
        self.n = 0
        self._v: dict[str, np.ndarray] = {}
        self._time = 0.0
        self._dt = 3600.0
        self._config_paths: list[str] = []

    # ---- subclass hooks ------------------------------------------------------------------------
    def _inputs(self) -> dict[str, str]:
        """Input name -> units; may depend on the configuration (e.g. PET method)."""
        raise NotImplementedError

    def _configure(self, configs: list[dict]) -> None:
        raise NotImplementedError

    def _advance(self, dt: float) -> None:
        raise NotImplementedError

    def _on_params_changed(self, names: set[str]) -> None:
        pass

    # ---- initialisation ------------------------------------------------------------------------
    def initialize(self, config_file: str = "") -> None:
        self.initialize_batch([config_file])

    def initialize_batch(self, config_files: Sequence[str]) -> None:
        self._config_paths = [os.fspath(p) for p in config_files]
        configs = [load_config(p) if p else {} for p in self._config_paths]
        self.n = len(configs)
        self._time = 0.0
        self._configure(configs)

    def param_array(self, configs: list[dict], name: str) -> np.ndarray:
        """Per-catchment float array of parameter `name` (config value or the default)."""
        default = self._params[name][1]
        try:  # fast path for big batches
            out = np.array([cfg.get(name, default) for cfg in configs], dtype=np.float64)
            if np.isfinite(out).all():
                return out
        except (TypeError, ValueError):
            pass
        out = np.empty(len(configs), dtype=np.float64)
        for i, cfg in enumerate(configs):
            value = cfg.get(name, default)
            try:
                out[i] = float(value)
            except (TypeError, ValueError):
                raise ModelConfigError(
                    f"init config {self._config_paths[i] or '<none>'}: {name} must be a number, got {value!r}"
                ) from None
            if not math.isfinite(out[i]):
                raise ModelConfigError(f"init config {self._config_paths[i]}: {name} must be finite")
        return out

    def check_keys(self, configs: list[dict], allowed: set[str]) -> None:
        """Refuse unknown keys: a misspelt parameter would otherwise silently use its default."""
        allowed = allowed | set(self._params) | set(self._ignored_keys)
        for i, cfg in enumerate(configs):
            unknown = sorted(set(cfg) - allowed)
            if unknown:
                raise ModelConfigError(
                    f"init config {self._config_paths[i]}: unknown key(s) {', '.join(unknown)}")

    def set_time_step(self, configs: list[dict]) -> None:
        steps = {float(c.get("time_step_seconds", 3600)) for c in configs}
        if len(steps) != 1 or min(steps) <= 0:
            raise ModelConfigError("time_step_seconds must be positive and equal within a batch")
        self._dt = steps.pop()

    # ---- control -------------------------------------------------------------------------------
    def update(self) -> None:
        self._advance(self._dt)
        self._time += self._dt

    def update_until(self, time: float) -> None:
        # whole steps only, like most lumped ngen models
        while self._time + 1e-9 * self._dt < time:
            self.update()

    def finalize(self) -> None:
        self._v = {}

    # ---- info ----------------------------------------------------------------------------------
    def get_component_name(self) -> str:
        return self._component_name

    def get_input_item_count(self) -> int:
        return len(self._inputs())

    def get_output_item_count(self) -> int:
        return len(self._outputs)

    def get_input_var_names(self) -> tuple[str, ...]:
        return tuple(self._inputs())

    def get_output_var_names(self) -> tuple[str, ...]:
        return tuple(self._outputs)

    # ---- variables -----------------------------------------------------------------------------
    def _units(self, name: str) -> str:
        if name in self._outputs:
            return self._outputs[name]
        inputs = self._inputs()
        if name in inputs:
            return inputs[name]
        if name in self._params:
            return self._params[name][0]
        raise KeyError(f"{self._component_name}: unknown variable {name!r}")

    def get_var_grid(self, name: str) -> int:
        self._units(name)
        return 0

    def get_var_type(self, name: str) -> str:
        self._units(name)
        return "float64"

    def get_var_units(self, name: str) -> str:
        return self._units(name)

    def get_var_itemsize(self, name: str) -> int:
        return 8

    def get_var_nbytes(self, name: str) -> int:
        return 8 * self.n

    def get_var_location(self, name: str) -> str:
        return "node"

    def get_value_ptr(self, name: str) -> np.ndarray:
        try:
            return self._v[name]
        except KeyError:
            raise KeyError(f"{self._component_name}: unknown variable {name!r}") from None

    def get_value(self, name: str, dest: np.ndarray) -> np.ndarray:
        dest[:] = self.get_value_ptr(name)
        return dest

    def get_value_at_indices(self, name: str, dest: np.ndarray, inds: np.ndarray) -> np.ndarray:
        dest[:] = self.get_value_ptr(name)[inds]
        return dest

    def set_value(self, name: str, src: np.ndarray) -> None:
        self.get_value_ptr(name)[:] = src
        if name in self._params:
            self._on_params_changed({name})

    def set_value_at_indices(self, name: str, inds: np.ndarray, src: np.ndarray) -> None:
        self.get_value_ptr(name)[inds] = src
        if name in self._params:
            self._on_params_changed({name})

    # ---- time ----------------------------------------------------------------------------------
    def get_current_time(self) -> float:
        return self._time

    def get_start_time(self) -> float:
        return 0.0

    def get_end_time(self) -> float:
        return float(np.finfo(np.float64).max)

    def get_time_units(self) -> str:
        return "s"

    def get_time_step(self) -> float:
        return self._dt

    # ---- grid: n unconnected points (a lumped catchment is a scalar when n == 1) ---------------
    def get_grid_rank(self, grid: int) -> int:
        return 0 if self.n == 1 else 1

    def get_grid_size(self, grid: int) -> int:
        return self.n

    def get_grid_type(self, grid: int) -> str:
        return "scalar" if self.n == 1 else "points"

    def get_grid_shape(self, grid: int, shape: np.ndarray) -> np.ndarray:
        shape[:] = self.n
        return shape

    def get_grid_spacing(self, grid: int, spacing: np.ndarray) -> np.ndarray:
        raise NotImplementedError("lumped model: no grid spacing")

    def get_grid_origin(self, grid: int, origin: np.ndarray) -> np.ndarray:
        raise NotImplementedError("lumped model: no grid origin")

    def get_grid_x(self, grid: int, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError("lumped model: no coordinates")

    def get_grid_y(self, grid: int, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError("lumped model: no coordinates")

    def get_grid_z(self, grid: int, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError("lumped model: no coordinates")

    def get_grid_node_count(self, grid: int) -> int:
        return self.n

    def get_grid_edge_count(self, grid: int) -> int:
        return 0

    def get_grid_face_count(self, grid: int) -> int:
        return 0

    def get_grid_edge_nodes(self, grid: int, edge_nodes: np.ndarray) -> np.ndarray:
        return edge_nodes

    def get_grid_face_edges(self, grid: int, face_edges: np.ndarray) -> np.ndarray:
        return face_edges

    def get_grid_face_nodes(self, grid: int, face_nodes: np.ndarray) -> np.ndarray:
        return face_nodes

    def get_grid_nodes_per_face(self, grid: int, nodes_per_face: np.ndarray) -> np.ndarray:
        return nodes_per_face

