"""The seccomp second wall: refuse the system calls that join, make or rewire namespaces.

The rules are built with libseccomp (through `pyseccomp`, a ctypes binding API-compatible with
libseccomp's own Python module) and compiled to classic BPF. Compiling costs `vault run` tens of
milliseconds (pyseccomp imports ctypes.util, which runs `ldconfig -p`), so the compiled program
is cached in a root-only directory under /run, keyed by the rules' digest: later launches read
~300 bytes and load them with one prctl, importing nothing.

Refused with EPERM (ENOSYS for clone3, whose flags a filter cannot read, so glibc falls back to
clone): setns; unshare/clone asking for a new network or mount namespace *without* a new user
namespace (a fresh user namespace with an empty network namespace is what Firefox's and
Chromium's own sandboxes make: harmless, it reaches nothing, so it stays allowed); every mount
call (mount, umount2, pivot_root, open_tree, move_mount, fsopen, fsconfig, fsmount, fspick,
mount_setattr); ptrace and process_vm_writev (a same-user process outside the vault must not be
driven from inside); bpf. The filter needs no_new_privs (set before it is loaded).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import zlib

from ..nsexec import CLONE_NEWNET, CLONE_NEWNS, libc

CLONE_NEWUSER = 0x10000000
CACHE_DIR = "/run/netns-vault-cache"

REFUSED = ("setns", "mount", "umount2", "pivot_root", "open_tree", "move_mount", "fsopen",
           "fsconfig", "fsmount", "fspick", "mount_setattr", "ptrace", "process_vm_writev", "bpf")
# (syscall, mask, value): refuse when flags & mask == value
FLAG_RULES = tuple((call, flag | CLONE_NEWUSER, flag)
                   for call in ("unshare", "clone") for flag in (CLONE_NEWNET, CLONE_NEWNS))
ENOSYS_CALLS = ("clone3",)
RULES_VERSION = "1"

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def _digest() -> str:
    text = repr((RULES_VERSION, REFUSED, FLAG_RULES, ENOSYS_CALLS, os.uname().machine))
    return f"{zlib.crc32(text.encode()):08x}"


def compile_filter() -> bytes:
    """The BPF program (struct sock_filter[]), built by libseccomp."""
    import tempfile

    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    for arch in (sc.Arch.X86, sc.Arch.X32):  # 32-bit syscalls on x86_64 get the same rules
        try:
            if os.uname().machine == "x86_64" and not f.exist_arch(arch):
                f.add_arch(arch)
        except (OSError, ValueError, AttributeError):
            pass
    for call in REFUSED:  # a call this libseccomp does not know cannot be made here either
        with contextlib.suppress(OSError, ValueError):
            f.add_rule(sc.ERRNO(errno.EPERM), call)
    for call, mask, value in FLAG_RULES:
        f.add_rule(sc.ERRNO(errno.EPERM), call, sc.Arg(0, sc.MASKED_EQ, mask, value))
    for call in ENOSYS_CALLS:
        with contextlib.suppress(OSError, ValueError):
            f.add_rule(sc.ERRNO(errno.ENOSYS), call)
    with tempfile.TemporaryFile() as out:
        f.export_bpf(out)
        out.seek(0)
        return out.read()


def filter_program() -> bytes:
    """The cached program, compiling (and caching) it on first use. Root only."""
    path = os.path.join(CACHE_DIR, f"seccomp-{_digest()}.bpf")
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid == 0 and not st.st_mode & 0o022:
                data = f.read()
                if data and len(data) % 8 == 0:
                    return data
    except OSError:
        pass
    data = compile_filter()
    try:
        os.makedirs(CACHE_DIR, mode=0o700, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass  # no cache: the next launch compiles again
    return data


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load(program: bytes) -> None:
    """Install the filter (an array of 8-byte sock_filter) on this thread (inherited across fork and exec). Needs no_new_privs."""
    if not program or len(program) % 8:
        raise OSError(errno.EINVAL, "seccomp: malformed filter program")
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc().prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"loading the seccomp filter: {os.strerror(err)}")
