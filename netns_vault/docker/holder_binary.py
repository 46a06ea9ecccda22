"""The holder container's only program: a static ELF that waits forever, written without a compiler.

The holder exists to keep a network namespace alive under Docker's management; its process must do
nothing at all. The program is a hand-assembled ELF64 executable (one PT_LOAD segment, a
non-executable stack, no libc, no sections) of about 200 bytes:

x86_64::

    loop: mov  eax, 34        ; __NR_pause
          syscall
          jmp  loop           ; a signal without a handler never returns from pause, but a
                              ; stop/continue does (EINTR): go back to waiting

aarch64 (there is no pause syscall; ppoll with no fds and no timeout blocks until a signal)::

    loop: mov  x0, #0         ; fds = NULL
          mov  x1, #0         ; nfds = 0
          mov  x2, #0         ; timeout = NULL (forever)
          mov  x3, #0         ; sigmask = NULL
          mov  x8, #73        ; __NR_ppoll
          svc  #0
          b    loop

As PID 1 of its container, the process ignores every signal it has no handler for (SIGTERM
included), so the container is stopped with SIGKILL.

`python -m netns_vault.docker.holder_binary PATH [MACHINE]` writes the file (mode 0755).
"""

from __future__ import annotations

import os
import platform
import struct
import sys
from dataclasses import dataclass

BASE_ADDR = 0x400000

EM_X86_64 = 62
EM_AARCH64 = 183

_ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")  # 64 bytes
_PROGRAM_HEADER = struct.Struct("<IIQQQQQQ")  # 56 bytes

PT_LOAD = 1
PT_INTERP = 3
PT_GNU_STACK = 0x6474E551
PF_X, PF_W, PF_R = 1, 2, 4


def _a64(*words: int) -> bytes:
    return b"".join(struct.pack("<I", w) for w in words)


# machine (as platform.machine() spells it) -> (e_machine, code)
_CODE: dict[str, tuple[int, bytes]] = {
    "x86_64": (
        EM_X86_64,
        bytes.fromhex("b822000000")  # mov eax, 34 (pause)
        + bytes.fromhex("0f05")  # syscall
        + bytes.fromhex("ebf7"),  # jmp -9 (back to mov)
    ),
    "aarch64": (
        EM_AARCH64,
        _a64(
            0xD2800000,  # mov x0, #0
            0xD2800001,  # mov x1, #0
            0xD2800002,  # mov x2, #0
            0xD2800003,  # mov x3, #0
            0xD2800928,  # mov x8, #73 (ppoll)
            0xD4000001,  # svc #0
            0x17FFFFFA,  # b -24 (back to the first mov)
        ),
    ),
}
_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "armv8": "aarch64"}

SUPPORTED_MACHINES = tuple(_CODE)


def normalize_machine(machine: str | None = None) -> str:
    """`platform.machine()` (or the given name) as one of SUPPORTED_MACHINES; ValueError if none."""
    m = (machine or platform.machine()).lower()
    m = _ALIASES.get(m, m)
    if m not in _CODE:
        raise ValueError(
            f"no holder binary for machine {m!r}; supported: {', '.join(SUPPORTED_MACHINES)}"
        )
    return m


def holder_elf(machine: str | None = None) -> bytes:
    """The bytes of the holder executable for `machine` (default: this host's)."""
    e_machine, code = _CODE[normalize_machine(machine)]
    phnum = 2
    code_off = _ELF_HEADER.size + phnum * _PROGRAM_HEADER.size
    size = code_off + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0])  # 64-bit, little-endian, version 1, SysV ABI
    header = _ELF_HEADER.pack(
        ident.ljust(16, b"\0"),
        2,  # e_type: ET_EXEC
        e_machine,
        1,  # e_version
        BASE_ADDR + code_off,  # e_entry
        _ELF_HEADER.size,  # e_phoff
        0,  # e_shoff: no section headers
        0,  # e_flags
        _ELF_HEADER.size,  # e_ehsize
        _PROGRAM_HEADER.size,  # e_phentsize
        phnum,
        64,  # e_shentsize
        0,  # e_shnum
        0,  # e_shstrndx
    )
    load = _PROGRAM_HEADER.pack(PT_LOAD, PF_R | PF_X, 0, BASE_ADDR, BASE_ADDR, size, size, 0x1000)
    stack = _PROGRAM_HEADER.pack(PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 0, 0, 16)
    return header + load + stack + code


@dataclass(frozen=True)
class ElfInfo:
    """What `parse_elf` reads back: enough to check an executable is static and well formed."""

    machine: int
    elf_type: int
    entry: int
    segments: list[tuple[int, int, int, int, int]]  # (p_type, p_flags, p_offset, p_vaddr, p_filesz)

    @property
    def is_static(self) -> bool:
        return all(seg[0] != PT_INTERP for seg in self.segments)

    def entry_in_executable_segment(self) -> bool:
        return any(
            seg[0] == PT_LOAD and seg[1] & PF_X and seg[3] <= self.entry < seg[3] + seg[4]
            for seg in self.segments
        )


def parse_elf(data: bytes) -> ElfInfo:
    """Parse an ELF64 little-endian header and its program headers; ValueError if it is not one."""
    if len(data) < _ELF_HEADER.size or data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    (_, e_type, e_machine, _, e_entry, e_phoff, _, _, _, e_phentsize, e_phnum, *_rest) = (
        _ELF_HEADER.unpack_from(data)
    )
    if e_phentsize != _PROGRAM_HEADER.size or e_phoff + e_phnum * e_phentsize > len(data):
        raise ValueError("program headers out of range")
    segments = []
    for i in range(e_phnum):
        p_type, p_flags, p_offset, p_vaddr, _, p_filesz, _, _ = _PROGRAM_HEADER.unpack_from(
            data, e_phoff + i * e_phentsize
        )
        if p_type == PT_LOAD and p_offset + p_filesz > len(data):
            raise ValueError(f"segment {i} runs past the end of the file")
        segments.append((p_type, p_flags, p_offset, p_vaddr, p_filesz))
    return ElfInfo(e_machine, e_type, e_entry, segments)


def write_holder(path: str, machine: str | None = None) -> str:
    """Write the holder executable to `path` (mode 0755, replaced atomically). Returns `path`."""
    data = holder_elf(machine)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m netns_vault.docker.holder_binary PATH [x86_64|aarch64]")
    print(write_holder(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None))
