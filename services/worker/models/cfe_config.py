"""Reader of NOAA-OWP CFE init config files (`*_bmi_config_cfe_pass.txt`).

The format, as the C CFE BMI reads it: one `key=value[units]` per line; the value ends at `[`,
the units (informational) sit between `[` and `]`. Lists (`giuh_ordinates`, `nash_storage`) are
comma-separated. This reader is stricter than the C one: every value must parse completely (no
silently truncated numbers), unknown keys are refused (a misspelt key would otherwise use a
default), and every error names the file, the line and the key.

`read_cfe_config(path)` returns a `CfeConfig` with every key mapped to a typed field; the model
(`cfe.CFE` in its OWP structure) turns it into parameters. Keys and their meaning:

    forcing_file                 must be BMI (forcing comes through the BMI; required)
    surface_partitioning_scheme  Schaake | Xinanjiang (also schaake/xinanjiang/1/2; required)
    soil_params.depth (or .D)    soil column depth D [m]
    soil_params.b (or .bb)       Clapp-Hornberger b [-]
    soil_params.satdk            saturated hydraulic conductivity [m s-1]
    soil_params.satpsi           saturated capillary head [m]
    soil_params.slop (or .slope) slope factor of percolation [-]
    soil_params.smcmax (.maxsmc) porosity [m/m]
    soil_params.wltsmc           wilting point water content [m/m]
    soil_params.expon            exponent of the soil percolation outlet (default 1)
    soil_params.expon_secondary  exponent of the soil lateral outlet (default 1)
    refkdt (soil_params.refkdt)  Schaake REFKDT (default 3.0)
    max_gw_storage               groundwater store capacity [m]
    Cgw                          groundwater outflow coefficient [m per hour step]
    expon                        groundwater exponent [-]
    gw_storage                   initial groundwater storage, fraction of max_gw_storage
    alpha_fc (soil_params.)      field-capacity suction as a fraction of 1 atm [-]
    soil_storage                 initial soil storage, fraction of smcmax·D
    K_nash                       Nash cascade (lateral flow) coefficient [per step]
    K_lf                         lateral flow coefficient [m per step]
    nash_storage                 initial Nash reservoir storages [m]; sets N_nash when ≥ 2 values
    N_nash (number_nash_reservoirs)  number of Nash reservoirs (default 2)
    giuh_ordinates               GIUH ordinates (required, ≥ 1)
    num_timesteps                informational with BMI forcing (integer)
    verbosity                    integer (required by CFE; not used here)
    a_Xinanjiang_inflection_point_parameter, b_Xinanjiang_shape_parameter,
    x_Xinanjiang_shape_parameter, urban_decimal_fraction   required with Xinanjiang
    is_sft_coupled               true/false: ice fractions come from a freeze-thaw model
    ice_content_threshold        required when is_sft_coupled with Schaake
    aet_rootzone, soil_layer_depths, max_rootzone_layer    refused when aet_rootzone is true
                                 (root-zone AET needs a soil moisture profile model)
    DEBUG, soil_params.mult      accepted and ignored
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

from .array_bmi import ModelConfigError

_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=")

#: config key -> canonical name (aliases of the C reader)
ALIASES = {
    "soil_params.D": "soil_params.depth", "soil_params.bb": "soil_params.b",
    "soil_params.slope": "soil_params.slop", "soil_params.maxsmc": "soil_params.smcmax",
    "soil_params.refkdt": "refkdt", "soil_params.alpha_fc": "alpha_fc",
    "number_nash_reservoirs": "N_nash",
}
FLOAT_KEYS = {
    "soil_params.depth", "soil_params.b", "soil_params.satdk", "soil_params.satpsi", "soil_params.slop",
    "soil_params.smcmax", "soil_params.wltsmc", "soil_params.expon", "soil_params.expon_secondary",
    "refkdt", "max_gw_storage", "Cgw", "expon", "gw_storage", "alpha_fc", "soil_storage", "K_nash", "K_lf",
    "a_Xinanjiang_inflection_point_parameter", "b_Xinanjiang_shape_parameter",
    "x_Xinanjiang_shape_parameter", "urban_decimal_fraction", "ice_content_threshold", "max_rootzone_layer",
}
INT_KEYS = {"N_nash", "num_timesteps", "verbosity"}
LIST_KEYS = {"giuh_ordinates", "nash_storage", "soil_layer_depths"}
BOOL_KEYS = {"is_sft_coupled", "aet_rootzone"}
TEXT_KEYS = {"forcing_file", "surface_partitioning_scheme"}
IGNORED_KEYS = {"DEBUG", "soil_params.mult"}
KNOWN_KEYS = FLOAT_KEYS | INT_KEYS | LIST_KEYS | BOOL_KEYS | TEXT_KEYS | IGNORED_KEYS

REQUIRED = ("forcing_file", "surface_partitioning_scheme", "soil_params.depth", "soil_params.b",
            "soil_params.satdk", "soil_params.satpsi", "soil_params.slop", "soil_params.smcmax",
            "soil_params.wltsmc", "max_gw_storage", "Cgw", "expon", "gw_storage", "alpha_fc", "soil_storage",
            "K_nash", "K_lf", "giuh_ordinates", "verbosity")
XINANJIANG_REQUIRED = ("a_Xinanjiang_inflection_point_parameter", "b_Xinanjiang_shape_parameter",
                       "x_Xinanjiang_shape_parameter", "urban_decimal_fraction")
SCHEMES = {"schaake": 1, "1": 1, "xinanjiang": 2, "2": 2}
MAX_NASH = 3  # the C model's static limit (MAX_NUM_NASH_CASCADE)


@dataclass
class CfeConfig:
    path: str
    values: dict[str, object] = field(default_factory=dict)  # canonical key -> typed value

    @property
    def scheme(self) -> int:
        """1 = Schaake, 2 = Xinanjiang."""
        return int(self.values["surface_partitioning_scheme"])  # type: ignore[arg-type]

    def get(self, key: str, default=None):
        return self.values.get(key, default)


def looks_like_cfe_config(path: str | os.PathLike) -> bool:
    """True when the file's first meaningful line is `key=value` (YAML uses `key: value`, JSON `{`)."""
    path = os.fspath(path)
    if not path or path.endswith((".json", ".yml", ".yaml")):
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                return bool(_LINE.match(text))
    except OSError:
        return False
    return False


def _split(raw: str) -> tuple[str, str, str]:
    key, _, rest = raw.partition("=")
    value, bracket, units = rest.partition("[")
    if bracket and "]" not in units:
        raise ValueError("units bracket '[' is not closed")
    return key.strip(), value.strip(), units.partition("]")[0].strip()


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value


def _int(text: str) -> int:
    value = float(text)
    if not math.isfinite(value) or value != int(value):
        raise ValueError("not an integer")
    return int(value)


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise ValueError("not true/false")


def _parse_value(key: str, text: str):
    if key in FLOAT_KEYS:
        return _float(text)
    if key in INT_KEYS:
        return _int(text)
    if key in LIST_KEYS:
        parts = [p.strip() for p in text.split(",")]
        if not text or any(not p for p in parts):
            raise ValueError("expected comma-separated numbers")
        return [_float(p) for p in parts]
    if key in BOOL_KEYS:
        return _bool(text)
    if key == "surface_partitioning_scheme":
        if text.lower() not in SCHEMES:
            raise ValueError("expected Schaake or Xinanjiang")
        return SCHEMES[text.lower()]
    return text


def key_value_lines(path: str, kind: str):
    """(where, key, value text) of each `key=value[units]` line of an OWP model config (CFE, PET);
    blank and `#` lines skipped; ModelConfigError names the file and line of a malformed one."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelConfigError(f"cannot read {kind} config {path}: {exc}") from exc
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or line.strip().startswith("#"):
            continue
        where = f"{kind} config {path} line {lineno}"
        if "=" not in line:
            raise ModelConfigError(f"{where}: expected key=value, got {line.strip()!r}")
        try:
            key, text, _units = _split(line)
        except ValueError as exc:
            raise ModelConfigError(f"{where}: {exc}") from None
        yield where, key, text


def read_cfe_config(path: str | os.PathLike) -> CfeConfig:
    """Parse and validate one CFE config file; ModelConfigError names the key of any problem."""
    path = os.fspath(path)
    cfg = CfeConfig(path)
    for where, key, text in key_value_lines(path, "CFE"):
        key = ALIASES.get(key, key)
        if key not in KNOWN_KEYS:
            raise ModelConfigError(f"{where}: unknown key {key!r}")
        if key in IGNORED_KEYS:
            continue
        try:
            cfg.values[key] = _parse_value(key, text)
        except ValueError as exc:
            raise ModelConfigError(f"{where}: bad value {text!r} for key {key}: {exc}") from None
    _validate(cfg)
    return cfg


def _validate(cfg: CfeConfig) -> None:
    v, where = cfg.values, f"CFE config {cfg.path}"
    missing = [k for k in REQUIRED if k not in v]
    if missing:
        raise ModelConfigError(f"{where}: missing key(s) {', '.join(missing)}")
    if str(v["forcing_file"]) != "BMI":
        raise ModelConfigError(f"{where}: forcing_file must be BMI (the embedded engine passes forcing through "
                               f"the BMI), got {v['forcing_file']!r}")
    if cfg.scheme == 2:
        missing = [k for k in XINANJIANG_REQUIRED if k not in v]
        if missing:
            raise ModelConfigError(f"{where}: surface_partitioning_scheme Xinanjiang needs {', '.join(missing)}")
    if v.get("is_sft_coupled") and cfg.scheme == 1 and "ice_content_threshold" not in v:
        raise ModelConfigError(f"{where}: is_sft_coupled with Schaake needs ice_content_threshold")
    if v.get("aet_rootzone"):
        raise ModelConfigError(f"{where}: aet_rootzone=true (root-zone AET from a soil moisture profile) is not "
                               "supported by the embedded CFE")
    nash = v.get("nash_storage")
    if isinstance(nash, list) and len(nash) >= 2:
        if len(nash) > MAX_NASH:
            raise ModelConfigError(f"{where}: key nash_storage has {len(nash)} values; CFE allows at most "
                                   f"{MAX_NASH} Nash reservoirs")
        v["N_nash"] = len(nash)  # as in CFE: the storage list sets the reservoir count
    else:
        v.pop("nash_storage", None)  # fewer than 2 values: ignored, reservoirs start empty
    n_nash = int(v.setdefault("N_nash", 2))  # type: ignore[arg-type]
    rules = [
        ("soil_params.depth", v["soil_params.depth"] > 0), ("soil_params.b", v["soil_params.b"] > 1),
        ("soil_params.satdk", v["soil_params.satdk"] >= 0), ("soil_params.satpsi", v["soil_params.satpsi"] > 0),
        ("soil_params.slop", v["soil_params.slop"] >= 0),
        ("soil_params.smcmax", 0 < v["soil_params.smcmax"] <= 1),
        ("soil_params.wltsmc", 0 <= v["soil_params.wltsmc"] < v["soil_params.smcmax"]),
        ("refkdt", v.get("refkdt", 3.0) >= 0), ("max_gw_storage", v["max_gw_storage"] > 0),
        ("Cgw", v["Cgw"] >= 0), ("expon", v["expon"] >= 0), ("gw_storage", 0 <= v["gw_storage"] <= 1),
        ("alpha_fc", v["alpha_fc"] > 0), ("soil_storage", v["soil_storage"] <= 1),
        ("K_nash", 0 <= v["K_nash"] <= 1), ("K_lf", v["K_lf"] >= 0),
        ("N_nash", 1 <= n_nash <= MAX_NASH),
        ("giuh_ordinates", all(o >= 0 for o in v["giuh_ordinates"])),  # type: ignore[union-attr]
    ]
    for key, ok in rules:
        if not ok:
            raise ModelConfigError(f"{where}: value {v.get(key)!r} of key {key} is out of range")
