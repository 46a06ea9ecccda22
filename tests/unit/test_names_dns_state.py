import os

import pytest

from netns_vault import dns, paths, state
from netns_vault.errors import ConflictError, UsageError
from netns_vault.names import VaultNames, validate_name


@pytest.mark.parametrize("name", ["a", "home", "vpn-2", "x" * 12, "0day"])
def test_good_names(name):
    names = VaultNames.of(name)
    assert names.netns == f"vault-{name}"
    assert len(names.iface) <= 15


@pytest.mark.parametrize("name", ["", "x" * 13, "Home", "a_b", "-a", "a/b", "..", "a b", "é", "a\n"])
def test_bad_names(name):
    with pytest.raises(UsageError):
        validate_name(name)


def test_resolv_conf_pins_the_servers_or_fails_closed():
    text = dns.resolv_conf_text(["198.51.100.53", "198.51.100.54"], ["corp.example"])
    assert [line for line in text.splitlines() if not line.startswith("#")] == [
        "nameserver 198.51.100.53", "nameserver 198.51.100.54", "search corp.example",
        "options edns0"]
    closed = dns.resolv_conf_text([], [])
    assert "nameserver" not in closed.replace("# No DNS", "")


def test_nsswitch_drops_resolvers_that_talk_to_host_daemons():
    host = ("passwd: files systemd\n"
            "hosts: files mdns4_minimal [NOTFOUND=return] resolve [!UNAVAIL=return] myhostname dns\n"
            "networks: files dns\n# comment\n")
    out = dns.nsswitch_conf_text(host)
    assert "hosts: files dns" in out.splitlines()
    assert "passwd: files systemd" in out.splitlines()
    assert "networks: files" in out.splitlines()
    body = "\n".join(line for line in out.splitlines() if not line.startswith("#"))
    assert "resolve" not in body and "mdns" not in body and "myhostname" not in body
    assert "hosts: files dns" in dns.nsswitch_conf_text(None)


def test_dns_files_written_and_removed(tmp_path):
    marker = str(tmp_path / "run" / "made")
    etc, other = tmp_path / "netns" / "vault-x", tmp_path / "netns" / "vault-y"
    assert dns.write_dns_files(str(etc), ["198.51.100.53"], [], marker) is True
    assert dns.write_dns_files(str(other), [], [], marker) is False
    assert dns.read_nameservers(str(etc)) == ["198.51.100.53"]
    with pytest.raises(FileExistsError):
        dns.write_dns_files(str(etc), [], [], marker)
    # The vault that made /etc/netns goes first; the last one out removes it.
    dns.remove_dns_files(str(etc), marker)
    assert (tmp_path / "netns").exists()
    dns.remove_dns_files(str(other), marker)
    assert not (tmp_path / "netns").exists() and not os.path.exists(marker)


def test_an_etc_netns_that_was_there_stays(tmp_path):
    marker = str(tmp_path / "made")
    (tmp_path / "netns").mkdir()
    etc = tmp_path / "netns" / "vault-x"
    assert dns.write_dns_files(str(etc), [], [], marker) is False
    dns.remove_dns_files(str(etc), marker)
    assert (tmp_path / "netns").is_dir()


def test_state_is_atomic_private_and_locked(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "STATE_DIR", str(tmp_path / "run"))
    state.write_state("a", {"x": 1})
    path = tmp_path / "run" / "a.json"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert state.read_state("a") == {"x": 1}
    assert state.state_names() == ["a"]
    path.write_text("{torn")
    assert state.read_state("a") is None
    with state.vault_lock("a", remove_after=True), \
            pytest.raises(ConflictError, match="busy"), state.vault_lock("a"):
        pass
    assert not (tmp_path / "run" / "a.lock").exists()
    state.remove_state("a")
    assert state.state_names() == []


def test_files_of_a_supervisor_killed_outright_are_removed_only_when_no_supervisor_holds_them(
        tmp_path, monkeypatch):
    import fcntl
    import os

    from netns_vault import paths, state

    monkeypatch.setattr(paths, "STATE_DIR", str(tmp_path))
    lock, view = state.supervisor_paths("sv")
    for path in (lock, view):
        with open(path, "w") as f:
            f.write("123\n")
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a live supervisor (flock is per open file description)
    try:
        assert state.remove_stale_supervisor_files("sv") is False
        assert os.path.exists(lock) and os.path.exists(view)
    finally:
        os.close(fd)  # ... killed outright: the lock is free, the files stay
    assert state.remove_stale_supervisor_files("sv") is True
    assert not os.path.exists(lock) and not os.path.exists(view)
    assert state.remove_stale_supervisor_files("sv") is False  # idempotent
