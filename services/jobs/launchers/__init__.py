"""Launcher backends behind one interface (`base.Launcher`).

A backend lives in `dmod.services.jobs.launchers.<name>` and defines
`def create(settings) -> Launcher`. `DMOD_LAUNCHER` picks the backend (default `local`).
"""
from __future__ import annotations

import importlib

from dmod.services.jobs.launchers.base import Launcher


def create_launcher(name: str, settings) -> Launcher:
    try:
        module = importlib.import_module(f"dmod.services.jobs.launchers.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"dmod.services.jobs.launchers.{name}":
            raise ValueError(f"unknown launcher {name!r}") from None
        raise
    return module.create(settings)
