"""The vault against the closed world: real namespaces, wireguard-go, iptables, dnsmasq, tcpdump."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from netns_vault import sandbox
from netns_vault.names import VaultNames
from netns_vault.vault import UP_STEPS

from .snapshot import host_snapshot
from .test_interrupts import stepper

pytestmark = pytest.mark.integration


def read(path: str, mode: str = "r"):
    with open(path, mode) as f:
        return f.read()


def inside(name: str) -> str:
    return VaultNames.of(name).netns


def test_web_through_the_vault_reports_the_tunnel_address(world, vault_cli):
    name = vault_cli.new_name()
    vault_cli.up(name)
    res = vault_cli("run", "-n", name, "--", "curl", "-sS", "--max-time", "5", world.WEB_URL)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"client={world.client_address(0)}"


def test_dns_goes_to_the_configured_server_through_the_tunnel(world, vault_cli):
    name = vault_cli.new_name()
    vault_cli.up(name)
    qname = f"{name}.web.demo"  # unique, so the query in the log is ours
    res = vault_cli("run", "-n", name, "--", "busybox", "nslookup", qname)
    queries = world.wait_dns_query(qname)
    assert queries, f"dnsmasq never saw {qname}: {res.stdout} {res.stderr}"
    assert {client for client, q in queries if q == qname} == {world.client_address(0)}
    named = vault_cli("run", "-n", name, "--", "curl", "-sS", "--max-time", "5",
                      f"http://{world.WEB_NAME}/")
    assert named.stdout.strip() == f"client={world.client_address(0)}", named.stderr


FIREWALLS = ["iptables", "nftables"]
BROKEN_IPTC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "broken_iptc")


@pytest.mark.parametrize("firewall", FIREWALLS)
def test_host_network_and_ipv6_are_unreachable_from_inside(world, vault_cli, firewall):
    name = vault_cli.new_name()
    assert f"{firewall} firewall" in vault_cli.up(name, "--firewall", firewall).stdout
    ns = inside(name)
    with world.capture() as cap:
        for addr in (world.GATEWAY, world.HOST_ADDR, world.LAN_HOST_ADDR, world.LAN_PEER_ADDR):
            assert not sandbox.ping(ns, addr, timeout=1), f"{addr} answered from inside the vault"
            assert not sandbox.http_probe(ns, f"http://{addr}/", timeout=1)
    assert cap.leaks((world.ENDPOINT_ADDR, world.ENDPOINT_PORT)) == [], cap.summary()
    links = world.ns_run(ns, ["ip", "-o", "link"]).stdout
    assert sorted(line.split(":")[1].strip() for line in links.splitlines()) == \
        ["lo", VaultNames.of(name).iface]
    v6 = world.ns_run(ns, ["ip", "-6", "-o", "addr"]).stdout
    assert v6.strip() == ""
    probe = world.ns_run(ns, ["python3", "-c", (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
        "try:\n  s.sendto(b'x', ('2001:db8::1', 53)); print('sent')\n"
        "except OSError as e: print('blocked', e.errno)\n")])
    assert "blocked" in probe.stdout, probe.stdout + probe.stderr


@pytest.mark.parametrize("firewall", FIREWALLS)
def test_nothing_leaks_when_the_tunnel_dies(world, vault_cli, firewall):
    name = vault_cli.new_name()
    vault_cli.up(name, "--firewall", firewall)
    ns = inside(name)
    assert sandbox.http_get(ns, world.WEB_URL) == f"client={world.client_address(0)}\n"
    endpoint = (world.ENDPOINT_ADDR, world.ENDPOINT_PORT)

    # Positive control: the capture does see a packet that leaves outside the tunnel.
    with world.capture() as control:
        assert sandbox.http_get(world.host_ns, world.WEB_URL) == f"client={world.HOST_ADDR}\n"
    assert control.leaks(endpoint, src=world.HOST_ADDR), control.summary()

    def probes_all_fail() -> None:
        assert not sandbox.http_probe(ns, world.WEB_URL, timeout=1.5)
        assert not sandbox.http_probe(ns, f"http://{world.WEB_NAME}/", timeout=1.5)
        assert sandbox.dns_lookup(ns, world.WEB_NAME, timeout=1.5) is None
        assert not sandbox.ping(ns, world.GATEWAY, timeout=1)
        assert not sandbox.ping(ns, world.DNS_ADDR, timeout=1)

    world.server_down()
    try:
        with world.capture() as cap:
            probes_all_fail()
        # The endpoint's "port unreachable" answers come back; what the host SENDS is the point.
        assert cap.leaks(endpoint, src=world.HOST_ADDR) == [], cap.summary()
        assert cap.wireguard_packets(endpoint), "the tunnel should still be trying: " + cap.summary()
    finally:
        world.server_up()

    # The tunnel link itself deleted: wireguard-go goes, the vault keeps only lo.
    world.ns_run(ns, ["ip", "link", "del", VaultNames.of(name).iface])
    with world.capture() as cap:
        probes_all_fail()
    assert cap.leaks(endpoint) == [], cap.summary()
    check = vault_cli("check", name)
    assert check.returncode == 1 and "interfaces" in check.stderr


def test_down_leaves_the_host_exactly_as_it_was(world, vault_cli):
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    vault_cli.up(name)
    during = host_snapshot(world, name)
    assert during["netns"] and during["wireguard_go"] and during["etc_netns"]
    res = vault_cli("down", name)
    assert res.returncode == 0, res.stderr
    assert host_snapshot(world, name) == before


@pytest.mark.parametrize("step", UP_STEPS)
def test_a_failed_up_rolls_back_everything(world, vault_cli, step):
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    # The failure comes from the core API's step hook (tests/integration/stepper.py).
    res = stepper(world, "at", "fail", step, "--", "up", name, "--config", vault_cli.config())
    assert res.returncode == 3, res.stdout + res.stderr
    assert f"injected failure after step '{step}'" in res.stderr
    assert host_snapshot(world, name) == before


def test_config_errors_exit_2_with_file_and_line_and_change_nothing(world, vault_cli, tmp_path):
    name = vault_cli.new_name()
    good = read(vault_cli.config())
    cases = {
        "bad-key": (good.replace("PrivateKey = ", "PrivateKey = x"), 2, "PrivateKey"),
        "bad-address": (good.replace(f"Address = {world.client_address(0)}/32",
                                     "Address = 100.96.0.300/32"), 3, "100.96.0.300"),
        "bad-port": (good.replace(":51820", ":70000"), None, "port"),
        "unknown-section": (good + "\n[Peers]\n", None, "Peers"),
        "hook": (good.replace("[Interface]", "[Interface]\nPostUp = iptables -F"), 2, "PostUp"),
    }
    before = host_snapshot(world, name)
    for label, (text, line, word) in cases.items():
        path = tmp_path / f"{label}.conf"
        path.write_text(text)
        res = vault_cli("up", name, "--config", str(path))
        assert res.returncode == 2, (label, res.stderr)
        first = res.stderr.strip().splitlines()
        assert len(first) == 1, (label, res.stderr)
        assert first[0].startswith(f"vault: {path}:"), (label, res.stderr)
        if line is not None:
            assert first[0].startswith(f"vault: {path}:{line}: "), (label, res.stderr)
        assert word in first[0], (label, res.stderr)
        assert "PrivateKey = " not in res.stderr
    assert host_snapshot(world, name) == before


@pytest.mark.parametrize("bad", ["", "UPPER", "a/b", "../etc", "x" * 13, "-lead", "a b",
                                 "semi;colon", "uni\u00e9"])
def test_hostile_names_are_refused_before_anything_is_touched(world, vault_cli, bad):
    cfg = vault_cli.config()
    before = _global_view(world, bad)
    res = vault_cli("up", bad, "--config", cfg)
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert _global_view(world, bad) == before


def _global_view(world, name: str) -> dict:
    """Everything an `up` of NAME could touch, spelled the way the name would spell it: the
    host's links, the namespace, state files, /etc/netns, the UAPI socket and wireguard-go.
    (Only paths derived from NAME: other test runs may use the machine at the same time.)"""
    paths = [f"/run/netns/vault-{name}", f"/etc/netns/vault-{name}",
             f"/run/netns-vault/{name}.json", f"/run/netns-vault/{name}.lock",
             f"/var/run/wireguard/vw-{name}.sock"]
    wg_go = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"wireguard-go") and f"vw-{name}".encode() in argv:
            wg_go.append(entry)
    return {
        "links": world.host_run(["ip", "-o", "link"]).stdout,
        "paths": {p: os.path.lexists(p) for p in paths},
        "wireguard_go": wg_go,
        "iptables": world.host_run(["iptables-legacy-save"]).stdout.count("\n-A"),
    }


def test_two_racing_ups_one_wins(world, vault_cli):
    name = vault_cli.new_name()
    cfg = vault_cli.config()
    procs = [vault_cli.popen("up", name, "--config", cfg, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 4], results
    loser = next(err for code, err in results if code == 4)
    assert "already exists" in loser or "busy" in loser
    assert vault_cli("check", name).returncode == 0


def test_down_without_state_finds_the_vault_by_name(world, vault_cli):
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    vault_cli.up(name)
    os.unlink(f"/run/netns-vault/{name}.json")
    res = vault_cli("down", name)
    assert res.returncode == 0, res.stderr
    after = host_snapshot(world, name)
    # /etc/netns itself may stay when state (which recorded who made it) was lost.
    after["etc_netns_dir"] = before["etc_netns_dir"]
    assert after == before


def test_down_lists_processes_inside_which_lose_network_and_kill_ends_them(world, vault_cli):
    name = vault_cli.new_name()
    vault_cli.up(name)
    sleeper = vault_cli.popen("run", "-n", name, "--", "sleep", "300",
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            status = json.loads(vault_cli("status", name, "--json").stdout)
            if status["processes"]:
                break
            time.sleep(0.1)
        assert any("sleep" in p["command"] for p in status["processes"]), status
        pid = status["processes"][0]["pid"]
        # A link someone else put in the vault: with a process inside, `down` must clear it too
        # (it skips that helper only when nothing is inside, when the namespace dies anyway).
        subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "tuntap", "add", "dev",
                        "extra0", "mode", "tun"], check=True)
        res = vault_cli("down", name)
        assert res.returncode == 0 and f"pid {pid}" in res.stdout, res.stdout
        # Still alive, in a namespace with nothing but lo.
        links = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-o", "link"],
                               capture_output=True, text=True).stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
    finally:
        sleeper.kill()
        sleeper.wait()
    name2 = vault_cli.new_name()
    vault_cli.up(name2)
    sleeper = vault_cli.popen("run", "-n", name2, "--", "sleep", "300")
    time.sleep(0.5)
    res = vault_cli("down", name2, "--kill")
    assert res.returncode == 0 and "ended" in res.stdout, res.stdout
    assert sleeper.wait(timeout=10) is not None


@pytest.mark.parametrize("firewall", FIREWALLS)
def test_check_names_each_broken_invariant(world, vault_cli, firewall):
    name = vault_cli.new_name()
    vault_cli.up(name, "--firewall", firewall)
    ok = vault_cli("check", name, "--json")
    assert ok.returncode == 0, ok.stdout
    assert all(inv["ok"] for inv in json.loads(ok.stdout)["invariants"])
    ns = inside(name)
    if firewall == "iptables":
        world.ns_run(ns, ["iptables-legacy", "-P", "OUTPUT", "ACCEPT"])
    else:  # one rule more than ours: check reads the table back and compares it exactly
        world.ns_run(ns, ["nft", "add", "rule", "inet", "netns-vault", "output", "accept"])
    world.ns_run(ns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0"])
    bad = vault_cli("check", name, "--json")
    assert bad.returncode == 1
    failed = {inv["name"] for inv in json.loads(bad.stdout)["invariants"] if not inv["ok"]}
    # Turning IPv6 on gives lo its ::1 at once, so that invariant breaks too.
    assert failed == {firewall, "ipv6-sysctl", "ipv6-addresses"}


def _legacy_rules(world, ns: str | None) -> list[str]:
    """Every legacy xtables rule/chain line in a namespace (the world's host if ns is None)."""
    lines = []
    for tool in ("iptables-legacy-save", "ip6tables-legacy-save"):
        res = world.ns_run(ns or world.host_ns, [tool])
        lines += [ln for ln in res.stdout.splitlines() if ln.startswith(("-A", "-N"))]
    return lines


def test_a_nftables_vault_has_no_legacy_xtables_rule_anywhere(world, vault_cli):
    name = vault_cli.new_name()
    host_before = _legacy_rules(world, None)
    vault_cli.up(name, "--firewall", "nftables")
    ns = inside(name)
    assert _legacy_rules(world, ns) == []
    assert world.ns_run(ns, ["iptables-legacy-save"]).stdout.strip() == ""  # not even a table
    assert _legacy_rules(world, None) == host_before
    listed = world.ns_run(ns, ["nft", "list", "tables"]).stdout.split()
    assert listed == ["table", "inet", "netns-vault"]
    assert vault_cli("check", name).returncode == 0
    reload = vault_cli("reload", name)
    assert reload.returncode == 0, reload.stderr
    assert vault_cli("check", name).returncode == 0  # check uses the recorded backend


def test_auto_picks_nftables_where_python_iptables_cannot_load(world, vault_cli):
    """Simulated: a python-iptables whose import fails as it does without libiptc (a module
    first on PYTHONPATH; nothing in netns_vault knows about it)."""
    name = vault_cli.new_name()
    env = {"PYTHONPATH": BROKEN_IPTC}
    res = vault_cli("up", name, "--config", vault_cli.config(), "--firewall", "auto", env=env)
    assert res.returncode == 0, res.stderr
    assert "nftables firewall (auto)" in res.stdout, res.stdout
    assert _legacy_rules(world, inside(name)) == []
    assert vault_cli("check", name, env=env).returncode == 0
    # asked for explicitly, the broken backend is refused before anything is made
    other = vault_cli.new_name()
    res = vault_cli("up", other, "--config", vault_cli.config(), "--firewall", "iptables",
                    env=env)
    assert res.returncode == 3 and "python-iptables" in res.stderr, res.stderr
    assert not os.path.exists(f"/run/netns/vault-{other}")


def test_run_hides_host_resolver_sockets_and_pins_nsswitch(world, vault_cli):
    name = vault_cli.new_name()
    vault_cli.up(name)
    created = not os.path.exists("/run/systemd/resolve")
    os.makedirs("/run/systemd/resolve", exist_ok=True)
    stub = "/run/systemd/resolve/io.systemd.Resolve"
    made_stub = not os.path.exists(stub)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if made_stub:
            sock.bind(stub)
        res = vault_cli("run", "-n", name, "--", "sh", "-c",
                        f"test -e {stub} && echo visible || echo hidden; "
                        "grep '^hosts:' /etc/nsswitch.conf")
        assert res.stdout.splitlines() == ["hidden", "hosts: files dns"], res.stdout + res.stderr
        assert os.path.exists(stub), "the host's socket must be untouched"
    finally:
        sock.close()
        if made_stub:
            os.unlink(stub)
        if created:
            os.rmdir("/run/systemd/resolve")
            if not os.listdir("/run/systemd"):
                os.rmdir("/run/systemd")


def test_run_is_the_program_as_the_invoking_user(world, vault_cli):
    name = vault_cli.new_name()
    vault_cli.up(name)
    res = vault_cli("run", "-n", name, "--", "sh", "-c", "exit 7")
    assert res.returncode == 7
    res = vault_cli("run", "-n", name, "--", "sh", "-c", "kill -TERM $$")
    assert res.returncode == -signal.SIGTERM
    res = vault_cli("run", "-n", name, "--user", "nobody", "--", "id", "-u")
    assert res.stdout.strip() == "65534", res.stderr
    res = vault_cli("run", "-n", name, "--", "sh", "-c", 'id -u; id -G; echo "$HOME $DISPLAY"',
                    env={"SUDO_UID": "65534", "SUDO_GID": "65534", "DISPLAY": ":7"})
    lines = res.stdout.splitlines()
    assert lines[0] == "65534", res.stderr
    assert lines[2].endswith(" :7")
    # -n can be left out only when exactly one vault is up.
    others = [e for e in os.listdir("/run/netns") if e.startswith("vault-")]
    res = vault_cli("run", "--", "true")
    assert res.returncode == (0 if len(others) == 1 else 2), res.stderr
    res = vault_cli("run", "-n", name, "--", "no-such-program-xyz")
    assert res.returncode == 2 and "command not found" in res.stderr


def test_config_without_dns_fails_closed_with_a_warning(world, vault_cli):
    name = vault_cli.new_name()
    res = vault_cli("up", name, "--config", vault_cli.config(dns=False))
    assert res.returncode == 0, res.stderr
    assert "no DNS" in res.stderr
    ns = inside(name)
    assert sandbox.http_get(ns, world.WEB_URL) == f"client={world.client_address(0)}\n"
    res = vault_cli("run", "-n", name, "--", "curl", "-sS", "--max-time", "3",
                    f"http://{world.WEB_NAME}/")
    assert res.returncode != 0


def test_missing_wireguard_go_is_one_line_exit_3_and_changes_nothing(world, vault_cli, tmp_path):
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    res = vault_cli("up", name, "--config", vault_cli.config(), "--driver", "userspace",
                    env={"PATH": f"{bindir}:/usr/sbin:/sbin"})
    assert res.returncode == 3, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "wireguard-go" in res.stderr
    assert host_snapshot(world, name) == before


def test_private_key_never_on_a_command_line_in_state_or_logs(world, vault_cli):
    name = vault_cli.new_name()
    path = vault_cli.config()
    key = next(line.split("=", 1)[1].strip() for line in read(path).splitlines()
               if line.startswith("PrivateKey"))
    res = vault_cli("-v", "up", name, "--config", path)
    assert res.returncode == 0
    assert key not in res.stdout + res.stderr
    names = VaultNames.of(name)
    for entry in os.listdir("/run/netns-vault"):
        if entry.startswith(name + "."):
            assert key not in read(os.path.join("/run/netns-vault", entry))
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = read(f"/proc/{pid}/cmdline", "rb").decode(errors="replace")
            except OSError:
                continue
            assert key not in cmdline
    status = vault_cli("status", name, "--json")
    assert key not in status.stdout
    assert names.iface in status.stdout


def test_endpoint_hostname_is_resolved_on_the_host_and_recorded(world, vault_cli, tmp_path):
    # "localhost" resolves from /etc/hosts: no query leaves even the simulated host.
    name = vault_cli.new_name()
    text = world.client_config_text(0).replace(f"{world.ENDPOINT_ADDR}:", "localhost:")
    conf = tmp_path / "byname.conf"
    conf.write_text(text)
    res = vault_cli("up", name, "--config", str(conf))
    assert res.returncode == 0, res.stderr
    status = json.loads(vault_cli("status", name, "--json").stdout)
    assert status["peers"][0]["endpoint"] == f"localhost:{world.ENDPOINT_PORT}"
    assert status["peers"][0]["resolved"] == f"127.0.0.1:{world.ENDPOINT_PORT}"
    check = json.loads(vault_cli("check", name, "--json").stdout)
    endpoint = next(i for i in check["invariants"] if i["name"] == "endpoint")
    assert endpoint["ok"], endpoint


def test_an_endpoint_that_does_not_resolve_changes_nothing(world, vault_cli, tmp_path):
    # The query can only go to the closed world (the host namespace routes nowhere else).
    name = vault_cli.new_name()
    before = host_snapshot(world, name)
    text = world.client_config_text(0).replace(f"{world.ENDPOINT_ADDR}:", "no-such-host.invalid:")
    conf = tmp_path / "unresolvable.conf"
    conf.write_text(text)
    res = vault_cli("up", name, "--config", str(conf), env={"RES_OPTIONS": "timeout:1 attempts:1"})
    assert res.returncode == 3, res.stderr
    assert "does not resolve" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert host_snapshot(world, name) == before


def test_reload_recreates_only_the_tunnel(world, vault_cli):
    name = vault_cli.new_name()
    vault_cli.up(name)
    ns_inode = os.stat(VaultNames.of(name).netns_path).st_ino
    sleeper = vault_cli.popen("run", "-n", name, "--", "sleep", "60")
    try:
        before = json.loads(vault_cli("status", name, "--json").stdout)
        res = vault_cli("reload", name)
        assert res.returncode == 0, res.stderr
        assert os.stat(VaultNames.of(name).netns_path).st_ino == ns_inode
        assert sleeper.poll() is None
        after = json.loads(vault_cli("status", name, "--json").stdout)
        assert after["processes"] and before["addresses"] == after["addresses"]
        assert sandbox.http_get(inside(name), world.WEB_URL) == \
            f"client={world.client_address(0)}\n"
        assert vault_cli("check", name).returncode == 0
    finally:
        sleeper.kill()
        sleeper.wait()


def test_up_wait_reports_the_handshake_and_ls_shows_the_vault(world, vault_cli):
    name = vault_cli.new_name()
    res = vault_cli("up", name, "--config", vault_cli.config(), "--wait", "--timeout", "10")
    assert res.returncode == 0, res.stderr
    assert "handshake done" in res.stdout
    listing = vault_cli("ls", "--json")
    row = next(r for r in json.loads(listing.stdout) if r["name"] == name)
    assert row["driver"] == "userspace" and row["addresses"] == [f"{world.client_address(0)}/32"]
    assert row["peers"][0]["last_handshake"] and row["peers"][0]["tx_bytes"] > 0
    table = vault_cli("ls", env={"COLUMNS": "200"})
    line = next(line for line in table.stdout.splitlines() if f" {name} " in line)
    assert "userspace" in line and f"{world.ENDPOINT_ADDR}:{world.ENDPOINT_PORT}" in line


def test_up_wait_fails_with_exit_1_when_the_server_is_gone(world, vault_cli):
    name = vault_cli.new_name()
    world.server_down()
    try:
        res = vault_cli("up", name, "--config", vault_cli.config(), "--wait", "--timeout", "2")
    finally:
        world.server_up()
    assert res.returncode == 1 and "no handshake" in res.stderr, res.stderr
    assert vault_cli("check", name).returncode == 0  # up, walled, just not connected
