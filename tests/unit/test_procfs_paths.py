"""procfs: the one reader of /proc (alive, cmdline, netns) and paths: the one home of paths."""

import os
import subprocess
import sys
import time

from netns_vault import namespace, paths, procfs
from netns_vault.names import VaultNames


def test_stat_state_after_the_last_parenthesis():
    assert procfs.stat_state(b"12 (bash) S 1 12") == "S"
    # comm may hold ") " itself: the state is after the LAST ")"
    assert procfs.stat_state(b"12 (a) Z (b) R 1 12") == "R"
    assert procfs.stat_state(b"12 (x) Z 1") == "Z"
    assert procfs.stat_state(b"garbage") is None
    assert procfs.stat_state(b"12 (x)") is None


def test_alive_self_and_absent():
    assert procfs.alive(os.getpid())
    assert not procfs.alive(2**22 + 12345)  # beyond the default pid_max


def _state(pid: int) -> str | None:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return procfs.stat_state(f.read())


def test_a_zombie_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while _state(child.pid) != "Z":
        assert time.monotonic() < deadline, "child never became a zombie"
        time.sleep(0.01)
    try:
        assert os.path.exists(f"/proc/{child.pid}")  # it exists ...
        assert not procfs.alive(child.pid)  # ... but is not alive
    finally:
        child.wait()


def test_dead_states_are_not_alive(tmp_path, monkeypatch):
    for letter, alive in (("S", True), ("R", True), ("D", True), ("Z", False), ("X", False),
                          ("x", False)):
        (tmp_path / "7").mkdir(exist_ok=True)
        (tmp_path / "7" / "stat").write_bytes(f"7 (p) {letter} 1 7".encode())
        monkeypatch.setattr(procfs, "PROC", str(tmp_path))
        assert procfs.alive(7) is alive, letter


def test_cmdline():
    assert procfs.split_cmdline(b"wireguard-go\0-f\0vw-a\0") == ["wireguard-go", "-f", "vw-a"]
    assert procfs.split_cmdline(b"") == []
    assert procfs.split_cmdline(b"a\xff\0") == ["a\ufffd"]
    argv = [sys.executable, "-c", "import time; time.sleep(30)", "vw x"]
    child = subprocess.Popen(argv)
    try:
        deadline = time.monotonic() + 30
        while procfs.cmdline(child.pid) != argv:  # until it has exec'd
            assert procfs.alive(child.pid), "the child ended"
            assert time.monotonic() < deadline, procfs.cmdline(child.pid)
            time.sleep(0.01)
        assert procfs.command_line(child.pid) == " ".join(argv)
    finally:
        child.kill()
        child.wait()
    assert procfs.cmdline(2**22 + 12345) == []
    assert procfs.command_line(2**22 + 12345) == "?"


def test_find_pids_and_netns():
    me = os.getpid()
    assert me in procfs.find_pids(lambda argv: bool(argv))
    assert procfs.find_pids(lambda argv: False) == []
    mine = procfs.netns_id("self")
    assert mine is not None and procfs.netns_inode(me) == mine[1]
    assert me not in procfs.pids_in_netns(mine)  # not itself
    assert me in procfs.pids_in_netns(mine, exclude_self=False)
    assert procfs.netns_id(2**22 + 12345) is None


def test_paths_are_read_at_call_time(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "NETNS_DIR", str(tmp_path / "ns"))
    monkeypatch.setattr(paths, "ETC_NETNS_DIR", str(tmp_path / "etc"))
    names = VaultNames.of("a")
    assert names.netns == "vault-a" and names.iface == "vw-a"
    assert names.netns_path == f"{tmp_path}/ns/vault-a"
    assert names.etc_dir == f"{tmp_path}/etc/vault-a"
    assert namespace.netns_path("x") == f"{tmp_path}/ns/x"
    assert paths.netns_path("/proc/self/fd/3") == "/proc/self/fd/3"
    assert paths.vault_names_up() == []
    (tmp_path / "ns").mkdir()
    for entry in ("vault-b", "vault-a", "other"):
        (tmp_path / "ns" / entry).touch()
    assert paths.vault_names_up() == ["a", "b"]
