"""Compiled BMI model libraries: ELF shared objects exporting a BMI create/registration function
(`register_bmi*` of C/Fortran models, `bmi_model_create`/`bmi_model_destroy` of C++ models, ...).

Each library is read with ranged reads (header, section table, dynamic symbol table); what was
found goes into the domain as DATA_ID values, one per library:
`lib/libcfebmi.so: ELF64 x86-64; register_bmi_cfe`. Other objects (init configs) are allowed.
"""
from __future__ import annotations

import re

from dmod.services.datasets.detect.context import DATASET, BadFile, DetectionContext, Obj
from dmod.services.datasets.domains import DATA_ID, Domain
from dmod.services.runtime.elf import ElfError, is_elf, read_elf

BMI_FUNCTION = re.compile(r"^(register_bmi\w*|\w*bmi\w*_(create|destroy)\w*|(create|destroy|new)_bmi\w*)$", re.IGNORECASE)
MAX_FUNCTIONS = 6


def bmi_functions(functions) -> list[str]:
    """Exported functions that look like BMI entry points (C linkage names)."""
    return sorted(f for f in functions if BMI_FUNCTION.match(f))


def describe(obj: Obj, ctx: DetectionContext) -> str | None:
    """`<path>: ELF64 x86-64; <functions>` for a BMI library, None for a non-ELF object."""
    head = ctx.head(obj, 64)
    if not is_elf(head):
        return None
    try:
        info = read_elf(lambda off, n: head[off:off + n] if off + n <= len(head) else ctx.read(obj, off, n), obj.size)
    except ElfError as exc:
        raise BadFile(obj.path, f"unreadable ELF file: {exc}") from None
    if not info.is_shared_object:
        raise BadFile(obj.path, f"is an ELF {info.type}, not a shared library")
    found = bmi_functions(info.functions)
    if not found:
        raise BadFile(obj.path, "exports no BMI create/registration function (register_bmi*, bmi_model_create, "
                                "*_create, ...)")
    shown = ", ".join(found[:MAX_FUNCTIONS]) + (f" (+{len(found) - MAX_FUNCTIONS})" if len(found) > MAX_FUNCTIONS
                                                 else "")
    return f"{obj.path}: ELF{info.bits} {info.machine}; {shown}"


def detect_bmi_library(ctx: DetectionContext) -> Domain:
    found = [d for d in ctx.map(lambda o: describe(o, ctx), ctx.objects) if d]
    if not found:
        raise BadFile(DATASET, "no ELF shared library (a compiled BMI model, e.g. lib/libmodel.so)")
    return Domain({}, {DATA_ID: frozenset(found)})


def looks_like_library(ctx: DetectionContext) -> bool:
    """For format guessing: any .so / .so.N object starting with the ELF magic."""
    for obj in ctx.objects:
        name = obj.path.rsplit("/", 1)[-1]
        if (name.endswith((".so", ".dylib")) or ".so." in name) and is_elf(ctx.head(obj, 4)):
            return True
    return False
