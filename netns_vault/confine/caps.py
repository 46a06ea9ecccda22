"""No way out by privilege: no_new_privs and the capabilities that could leave the vault.

Dropped from the bounding, permitted, effective, inheritable and ambient sets of every program
`vault run` starts, root included (`--privileged` opts out). Why each one:

  CAP_SYS_ADMIN        setns/unshare/mount: join the host's network namespace, undo the hides
  CAP_NET_ADMIN        rewire the vault's own network (routes, iptables, move links)
  CAP_SYS_MODULE       load kernel code
  CAP_SYS_PTRACE       drive a process outside the vault (its network is the host's)
  CAP_BPF, CAP_PERFMON load BPF programs / read kernel memory through perf
  CAP_SYS_RAWIO        /dev/mem, ioperm: the whole machine
  CAP_DAC_READ_SEARCH  open_by_handle_at: open files beneath a --hide mount (the "shocker" escape)
  CAP_MKNOD            make device nodes (raw disks) that bypass the hides
  CAP_SYS_CHROOT       chroot games around the private mount namespace; no program here needs it
  CAP_SYS_BOOT         kexec/reboot the host
  CAP_CHECKPOINT_RESTORE  choose PIDs, restore processes
  CAP_SETPCAP          so a root program cannot re-shape capability sets it was left with
  CAP_SETFCAP          give a file capabilities that would apply outside the vault
  CAP_MAC_ADMIN, CAP_MAC_OVERRIDE, CAP_AUDIT_CONTROL, CAP_SYSLOG: host-wide policy and logs

Kept for root (judgement): CAP_NET_RAW and CAP_NET_BIND_SERVICE act only on the vault's own
interfaces (lo and the tunnel) and ping needs the first; CAP_DAC_OVERRIDE, CAP_CHOWN, CAP_FOWNER,
CAP_SETUID/SETGID and CAP_KILL are root's file and process rights, which `--user root` asks for
(what stays open through files is written in the README, "Confinement").
For a non-root program the drop to its uid empties the other sets; the bounding set is dropped
first anyway, so no file capability or setuid program can bring the dropped ones back, and
no_new_privs makes setuid bits and file capabilities inert.
"""

from __future__ import annotations

import ctypes
import os

from ..nsexec import libc

PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

DROPPED = {
    "CAP_DAC_READ_SEARCH": 2, "CAP_SETPCAP": 8, "CAP_NET_ADMIN": 12, "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22, "CAP_MKNOD": 27, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_PERFMON": 38,
    "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
}
DROPPED_MASK = sum(1 << bit for bit in DROPPED.values())


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _prctl(option: int, arg: int = 0, what: str = "prctl") -> int:
    rv = libc().prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                      ctypes.c_ulong(0))
    if rv < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rv


def drop_bounding() -> None:
    """Needs CAP_SETPCAP (root before the drop). Capabilities the kernel lacks are skipped."""
    for bit in DROPPED.values():
        if libc().prctl(PR_CAPBSET_READ, ctypes.c_ulong(bit), 0, 0, 0) == 1:
            _prctl(PR_CAPBSET_DROP, bit, "dropping a capability from the bounding set")


def set_no_new_privs() -> None:
    _prctl(PR_SET_NO_NEW_PRIVS, 1, "setting no_new_privs")


def drop_process_sets() -> None:
    """Clear the dropped capabilities from the effective, permitted, inheritable sets and
    clear the ambient set. For a uid-0 program (a non-root one has none left)."""
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    if libc().capget(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capget: {os.strerror(err)}")
    for i in (0, 1):
        keep = ~(DROPPED_MASK >> (32 * i)) & 0xFFFFFFFF
        data[i].effective &= keep
        data[i].permitted &= keep
        data[i].inheritable &= keep
    if libc().capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, "clearing the ambient capabilities")
