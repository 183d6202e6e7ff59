"""pyogrio, imported without its optional geopandas front end.

pyogrio's package import tries geopandas, pandas and pyproj for `read_dataframe`,
which DMOD never uses (it reads and writes arrow tables). That costs ~0.45 s in every process
that reads a hydrofabric — each MPI rank of the engine pays it before its first time step.
Hiding the three modules while pyogrio initialises skips that; they stay importable afterwards.
"""
from __future__ import annotations

import sys


def _import_pyogrio():
    hidden = [name for name in ("geopandas", "pandas", "pyproj") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` raise ImportError
    try:
        import pyogrio
    finally:
        for name in hidden:
            del sys.modules[name]
    return pyogrio


pyogrio = _import_pyogrio()
