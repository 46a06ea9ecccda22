"""The generated holder executable, and the offline build inputs made from it."""

import io
import os
import platform
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from netns_vault.docker import holder_binary, images
from netns_vault.docker.holder_binary import (
    EM_AARCH64,
    EM_X86_64,
    PF_W,
    PF_X,
    PT_GNU_STACK,
    PT_LOAD,
    holder_elf,
    parse_elf,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("machine", "e_machine"), [("x86_64", EM_X86_64), ("aarch64", EM_AARCH64)])
def test_elf_header_is_valid(machine, e_machine):
    data = holder_elf(machine)
    assert data[:4] == b"\x7fELF"
    assert data[4:7] == bytes([2, 1, 1])  # ELFCLASS64, little-endian, EV_CURRENT
    info = parse_elf(data)
    assert info.machine == e_machine
    assert info.elf_type == 2  # ET_EXEC
    assert info.is_static
    assert info.entry_in_executable_segment()
    loads = [s for s in info.segments if s[0] == PT_LOAD]
    assert len(loads) == 1 and loads[0][4] == len(data)  # the whole file, mapped once
    stacks = [s for s in info.segments if s[0] == PT_GNU_STACK]
    assert len(stacks) == 1 and not stacks[0][1] & PF_X  # non-executable stack
    assert not loads[0][1] & PF_W  # code is not writable
    assert len(data) <= 256


def test_code_loops_on_the_waiting_syscall():
    x86 = holder_elf("x86_64")
    assert x86.endswith(bytes.fromhex("b822000000 0f05 ebf7"))  # mov eax,34; syscall; jmp -9
    a64 = holder_elf("aarch64")
    assert a64[-8:-4] == bytes.fromhex("010000d4")  # svc #0
    assert bytes.fromhex("280980d2") in a64  # mov x8, #73 (ppoll)
    assert a64[-4:] == bytes.fromhex("faffff17")  # b -24


def test_machine_names():
    assert holder_binary.normalize_machine("amd64") == "x86_64"
    assert holder_binary.normalize_machine("ARM64") == "aarch64"
    with pytest.raises(ValueError, match="no holder binary"):
        holder_elf("riscv64")


def test_parse_elf_rejects_garbage():
    with pytest.raises(ValueError):
        parse_elf(b"#!/bin/sh\n")
    with pytest.raises(ValueError):
        parse_elf(holder_elf("x86_64")[:100])  # program headers cut off


@pytest.mark.skipif(platform.machine() != "x86_64", reason="runs the x86_64 binary")
def test_holder_process_waits_until_sigkill(tmp_path):
    path = holder_binary.write_holder(str(tmp_path / "holder"))
    assert os.stat(path).st_mode & 0o777 == 0o755
    proc = subprocess.Popen([path])
    try:
        time.sleep(0.3)
        assert proc.poll() is None
        assert _state(proc.pid) == "S"  # asleep in pause(), not spinning
        # stop/continue makes pause() return EINTR: the loop must go back to waiting
        os.kill(proc.pid, signal.SIGSTOP)
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.2)
        assert proc.poll() is None
        assert _state(proc.pid) == "S"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=5) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_dockerfile_in_repo_matches_the_in_memory_one():
    text = (REPO / "images" / "holder" / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines == images.HOLDER_DOCKERFILE.splitlines()


def test_holder_build_context():
    with tarfile.open(fileobj=io.BytesIO(images.holder_build_context("x86_64"))) as tar:
        assert sorted(tar.getnames()) == ["Dockerfile", "holder"]
        member = tar.getmember("holder")
        assert member.mode == 0o755
        f = tar.extractfile(member)
        assert f is not None and f.read() == holder_elf("x86_64")
        df = tar.extractfile("Dockerfile")
        assert df is not None and df.read().decode().startswith("FROM scratch\n")
    assert images.holder_digest("x86_64") != images.holder_digest("aarch64")


@pytest.mark.skipif(not os.path.exists(images.BUSYBOX), reason="needs busybox-static")
def test_busybox_rootfs():
    with tarfile.open(fileobj=io.BytesIO(images.busybox_rootfs())) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["bin/busybox"].isfile() and members["bin/busybox"].mode == 0o755
    for applet in ("bin/sh", "bin/cat", "bin/sleep", "bin/ping", "usr/bin/wget", "usr/bin/nc"):
        m = members[applet]
        assert m.issym()
        resolved = os.path.normpath(os.path.join(os.path.dirname(applet), m.linkname))
        assert resolved == "bin/busybox", applet
    assert members["etc/passwd"].isfile() and members["etc/group"].isfile()
    assert members["tmp"].mode == 0o1777


def test_rootfs_refuses_a_dynamic_busybox(tmp_path):
    fake = tmp_path / "busybox"
    fake.write_bytes(b"not an elf")
    from netns_vault.errors import SystemFailure

    with pytest.raises(SystemFailure):
        images.busybox_rootfs(str(fake))


def test_importing_the_provider_does_not_import_the_sdk():
    code = (
        "import sys, netns_vault.docker.holder, netns_vault.docker.images; "
        "sys.exit(1 if 'docker' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
