"""A small ELF reader (pure Python): header (class, byte order, type, machine), DT_NEEDED entries
and the defined, exported function symbols of the dynamic symbol table.

Reads through `read(offset, length) -> bytes`, so a file in S3 is read with a few ranged reads
(header, section table, .dynsym/.dynstr/.dynamic) instead of whole. Anything that is not an
ELF file, or an ELF file whose tables point outside it, raises `NotElf`/`ElfError`.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

MAGIC = b"\x7fELF"
ET_NAMES = {1: "relocatable", 2: "executable", 3: "shared object", 4: "core"}
MACHINES = {3: "x86", 8: "mips", 20: "ppc", 21: "ppc64", 22: "s390x", 40: "arm", 62: "x86-64", 183: "aarch64",
            243: "riscv"}
SHT_DYNSYM, SHT_DYNAMIC = 11, 6
DT_NEEDED, DT_SONAME = 1, 14
STT_FUNC, STB_GLOBAL, STB_WEAK = 2, 1, 2
MAX_TABLE = 64 << 20  # a section table or symbol table larger than this is not believed


class ElfError(ValueError):
    """Not an ELF file we can read (message says why)."""


class NotElf(ElfError):
    pass


@dataclass(frozen=True)
class ElfInfo:
    bits: int  # 32 | 64
    little_endian: bool
    type: str  # shared object, executable, ...
    machine: str  # x86-64, aarch64, ... (e_machine number when unknown)
    needed: tuple[str, ...] = ()
    soname: str = ""
    functions: tuple[str, ...] = field(default=(), repr=False)  # defined, global/weak FUNC symbols

    @property
    def is_shared_object(self) -> bool:
        return self.type == "shared object"


def is_elf(head: bytes) -> bool:
    return head[:4] == MAGIC


def _cstr(table: bytes, offset: int) -> str:
    if offset >= len(table):
        return ""
    end = table.find(b"\0", offset)
    return table[offset:end if end >= 0 else len(table)].decode("utf-8", "replace")


def read_elf(read: Callable[[int, int], bytes], size: int | None = None, *, symbols: bool = True) -> ElfInfo:
    """Parse an ELF file given a ranged reader. `size` (when known) bounds every table."""
    head = read(0, 64)
    if not is_elf(head):
        raise NotElf("not an ELF file (no \\x7fELF magic)")
    if len(head) < 52:
        raise ElfError("truncated ELF header")
    cls, data = head[4], head[5]
    if cls not in (1, 2) or data not in (1, 2):
        raise ElfError(f"unknown ELF class {cls} / data encoding {data}")
    bits, le = (32 if cls == 1 else 64), data == 1
    e = "<" if le else ">"
    if bits == 64:
        if len(head) < 64:
            raise ElfError("truncated ELF header")
        e_type, e_machine = struct.unpack_from(e + "HH", head, 16)
        e_shoff, = struct.unpack_from(e + "Q", head, 40)
        e_shentsize, e_shnum, _ = struct.unpack_from(e + "HHH", head, 58)
    else:
        e_type, e_machine = struct.unpack_from(e + "HH", head, 16)
        e_shoff, = struct.unpack_from(e + "I", head, 32)
        e_shentsize, e_shnum, _ = struct.unpack_from(e + "HHH", head, 46)
    info = {"bits": bits, "little_endian": le, "type": ET_NAMES.get(e_type, f"type {e_type}"),
            "machine": MACHINES.get(e_machine, f"machine {e_machine}")}
    if not e_shoff or not e_shnum:
        return ElfInfo(**info)  # stripped of section headers: header facts only

    def chunk(offset: int, length: int, what: str) -> bytes:
        if length < 0 or length > MAX_TABLE or (size is not None and offset + length > size):
            raise ElfError(f"{what} lies outside the file")
        out = read(offset, length) if length else b""
        if len(out) != length:
            raise ElfError(f"{what} is truncated")
        return out

    expected = 64 if bits == 64 else 40
    if e_shentsize < expected:
        raise ElfError(f"section header size {e_shentsize} is too small")
    table = chunk(e_shoff, e_shentsize * e_shnum, "section header table")
    sections = []  # (type, offset, size, link, entsize)
    for i in range(e_shnum):
        base = i * e_shentsize
        if bits == 64:
            _, sh_type, _, _, off, sz, link, _, _, entsize = struct.unpack_from(e + "IIQQQQIIQQ", table, base)
        else:
            _, sh_type, _, _, off, sz, link, _, _, entsize = struct.unpack_from(e + "IIIIIIIIII", table, base)
        sections.append((sh_type, off, sz, link, entsize))

    def strtab(index: int) -> bytes:
        if not 0 <= index < len(sections):
            raise ElfError("string table index out of range")
        _, off, sz, _, _ = sections[index]
        return chunk(off, sz, "string table")

    needed, soname = [], ""
    for sh_type, off, sz, link, _ in sections:
        if sh_type != SHT_DYNAMIC:
            continue
        raw, names = chunk(off, sz, ".dynamic"), strtab(link)
        step = 16 if bits == 64 else 8
        fmt = e + ("qQ" if bits == 64 else "iI")
        for pos in range(0, len(raw) - step + 1, step):
            tag, val = struct.unpack_from(fmt, raw, pos)
            if tag == 0:
                break
            if tag == DT_NEEDED:
                needed.append(_cstr(names, val))
            elif tag == DT_SONAME:
                soname = _cstr(names, val)
    functions: list[str] = []
    if symbols:
        for sh_type, off, sz, link, entsize in sections:
            if sh_type != SHT_DYNSYM:
                continue
            raw, names = chunk(off, sz, ".dynsym"), strtab(link)
            step = entsize or (24 if bits == 64 else 16)
            for pos in range(0, len(raw) - step + 1, step):
                if bits == 64:
                    name, st_info, _, shndx = struct.unpack_from(e + "IBBH", raw, pos)
                else:
                    name, = struct.unpack_from(e + "I", raw, pos)
                    st_info, _, shndx = struct.unpack_from(e + "BBH", raw, pos + 12)
                if shndx == 0 or st_info & 0xF != STT_FUNC or st_info >> 4 not in (STB_GLOBAL, STB_WEAK):
                    continue
                text = _cstr(names, name)
                if text:
                    functions.append(text)
    return ElfInfo(**info, needed=tuple(needed), soname=soname, functions=tuple(sorted(set(functions))))


def read_elf_file(path: str, *, symbols: bool = True) -> ElfInfo:
    import os

    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size

        def read(offset: int, length: int) -> bytes:
            fh.seek(offset)
            return fh.read(length)

        return read_elf(read, size, symbols=symbols)
