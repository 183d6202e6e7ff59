"""Import pyogrio without its optional pandas/geopandas integration.

pyogrio imports pandas and geopandas at import time only to find out whether they exist; the
engine reads hydrofabrics through pyogrio's arrow path and needs neither. Every MPI rank pays
that import (~0.4 s of CPU each), so pyogrio is imported once with both hidden, then they are
un-hidden: a BMI model that imports pandas later still gets it.
"""
from __future__ import annotations

import sys

_OPTIONAL = ("pandas", "geopandas")
_ABSENT = object()


def import_pyogrio_lean() -> None:
    if "pyogrio" in sys.modules or any(m in sys.modules for m in _OPTIONAL):
        return  # already imported (or pandas is loaded anyway): nothing to save
    saved = {m: sys.modules.get(m, _ABSENT) for m in _OPTIONAL}
    for m in _OPTIONAL:
        sys.modules[m] = None  # makes `import m` raise ImportError
    try:
        import pyogrio  # noqa: F401
    except ImportError:  # a pyogrio that insists on pandas: forget the attempt, import normally later
        for name in [k for k in sys.modules if k == "pyogrio" or k.startswith("pyogrio.")]:
            del sys.modules[name]
    finally:
        for m, value in saved.items():
            if value is _ABSENT:
                sys.modules.pop(m, None)
            else:
                sys.modules[m] = value
