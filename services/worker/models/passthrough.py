"""Pass-through "model" for tests: runoff equals precipitation.

python_type: `dmod.services.worker.models.passthrough.PassThrough`

    Q_OUT [m h⁻¹] = precipitation rate [mm s⁻¹] · scale · 3600 s h⁻¹ / 1000 mm m⁻¹

Input  atmosphere_water__liquid_equivalent_precipitation_rate  mm s⁻¹
Output Q_OUT m h⁻¹, and PRECIP_RATE (the input echoed, mm s⁻¹).
Init config (optional; may be an empty string): `scale` (1.0), `time_step_seconds` (3600).
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from .array_bmi import ArrayBmi

PRECIP = "atmosphere_water__liquid_equivalent_precipitation_rate"


class PassThrough(ArrayBmi):
    _component_name = "DMOD pass-through"
    _outputs: ClassVar[dict[str, str]] = {"Q_OUT": "m h-1", "PRECIP_RATE": "mm s-1"}
    _params: ClassVar[dict[str, tuple[str, object]]] = {"scale": ("1", 1.0)}

    def _inputs(self) -> dict[str, str]:
        return {PRECIP: "mm s-1"}

    def _configure(self, configs: list[dict]) -> None:
        self.check_keys(configs, {"time_step_seconds"})
        self.set_time_step(configs)
        self._v = {"scale": self.param_array(configs, "scale"), PRECIP: np.zeros(self.n),
                   "Q_OUT": np.zeros(self.n), "PRECIP_RATE": np.zeros(self.n)}

    def _advance(self, dt: float) -> None:
        v = self._v
        v["PRECIP_RATE"][:] = v[PRECIP]
        v["Q_OUT"][:] = v[PRECIP] * v["scale"] * 3600.0 / 1000.0
