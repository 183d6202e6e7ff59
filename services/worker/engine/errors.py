"""Errors the engine reports before (configuration) or during (runtime) a run.

Configuration errors are detected before the first time step and name the file, catchment and
field at fault; they exit with code 2. Runtime failures exit with code 1.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_CONFIG = 2


class EngineError(Exception):
    """Base class: a message meant for the user and the process exit code."""

    exit_code = EXIT_RUNTIME


class ConfigError(EngineError):
    """Bad command line, realization, hydrofabric, forcing, model config or partition file."""

    exit_code = EXIT_CONFIG

    def __init__(self, message: str, *, field: str | None = None, catchment: str | None = None):
        prefix = []
        if catchment:
            prefix.append(f"catchment {catchment}")
        if field:
            prefix.append(field)
        super().__init__(f"{': '.join(prefix)}: {message}" if prefix else message)
        self.field = field
        self.catchment = catchment


class UnsupportedFormulation(ConfigError):
    """A formulation type only the real ngen binary can run (bmi_c, bmi_c++, bmi_fortran)."""
