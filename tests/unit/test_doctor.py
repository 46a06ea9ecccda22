"""`vault doctor`: the verdict, the exact fixes, and the exit codes through the real entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from netns_vault import doctor
from netns_vault.cli.entry import main
from netns_vault.errors import EXIT_OK, EXIT_SYSTEM

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


@pytest.fixture
def no_kernel_wireguard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the kernel has no WireGuard, so wireguard-go is the only way (on any machine)."""
    monkeypatch.setattr(doctor, "_kernel_reason", lambda probe_ns: "module not loaded (test)")


def _netns_entries() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def test_without_wireguard_go_no_driver_is_usable_and_the_fix_is_given(
        tmp_path, no_kernel_wireguard) -> None:
    checks = doctor.run_checks(env={"PATH": str(tmp_path)})  # an empty directory
    by = _by_name(checks)
    driver = by["WireGuard driver"]
    assert driver.required and not driver.ok
    assert "no WireGuard driver is usable" in driver.detail
    assert driver.fix == "apt-get install wireguard-go"
    assert by["wireguard-go"].fix == "apt-get install wireguard-go"
    assert not doctor.can_make_vault(checks)
    assert driver in doctor.blocking(checks)
    assert "wireguard-go" in by["Demo tools"].fix and not by["Demo tools"].required


def test_cli_exits_3_and_names_the_fix_when_wireguard_go_is_hidden(
        tmp_path, monkeypatch, capsys, no_kernel_wireguard) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["doctor"]) == EXIT_SYSTEM
    captured = capsys.readouterr()
    assert "no WireGuard driver is usable" in captured.out
    assert "fix: apt-get install wireguard-go" in captured.out
    assert "vault: a vault cannot be made here; fix: " in captured.err
    assert "WireGuard driver" in captured.err


def test_cli_json_without_wireguard_go(tmp_path, monkeypatch, capsys,
                                       no_kernel_wireguard) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["doctor", "--json"]) == EXIT_SYSTEM
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    driver = next(c for c in data["checks"] if c["name"] == "WireGuard driver")
    assert driver == {"name": "WireGuard driver", "ok": False, "required": True,
                      "detail": driver["detail"], "fix": "apt-get install wireguard-go"}


@needs_root
@pytest.mark.skipif(shutil.which("wireguard-go") is None, reason="needs wireguard-go")
def test_everything_present_exits_0_and_leaves_nothing(capsys) -> None:
    before = _netns_entries()
    root_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert main(["doctor"]) == EXIT_OK, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "✔ a vault can be made here" in out
    assert not {n for n in _netns_entries() - before if n.startswith("nvdoctor-")}
    # the kernel-WireGuard probe link and the iptables reads happen in a throw-away namespace
    after = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert [line.split(":")[1] for line in after.splitlines()] == \
        [line.split(":")[1] for line in root_links.splitlines()]


@needs_root
def test_json_lists_every_check_in_order(capsys) -> None:
    main(["doctor", "--json"])
    data = json.loads(capsys.readouterr().out)
    names = [c["name"] for c in data["checks"]]
    assert names[:4] == ["root", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "Network namespaces"]
    for name in ("TUN device", "Kernel WireGuard", "wireguard-go", "WireGuard driver",
                 "iptables", "ip6tables", "Docker engine", "Host resolvers", "Demo tools"):
        assert name in names
    optional = {c["name"] for c in data["checks"] if not c["required"]}
    assert {"Docker engine", "Demo tools", "Host resolvers", "TUN device"} <= optional
    assert data["ok"] == all(c["ok"] for c in data["checks"] if c["required"])


def test_optional_failures_do_not_block() -> None:
    checks = [doctor.Check("root", True, True, "root"),
              doctor.Check("Docker engine", False, False, "down", "start dockerd")]
    assert doctor.can_make_vault(checks)
    checks.append(doctor.Check("iptables", False, True, "broken", "modprobe ip_tables"))
    assert not doctor.can_make_vault(checks)
    assert [c.name for c in doctor.blocking(checks)] == ["iptables"]


def test_capabilities_are_read_from_capeff(tmp_path, monkeypatch) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000000000001000\n")
    assert doctor._cap_eff(str(status)) == 1 << doctor.CAP_NET_ADMIN
    monkeypatch.setattr(doctor, "_cap_eff", lambda: 1 << doctor.CAP_NET_ADMIN)
    assert doctor.check_cap(doctor.CAP_NET_ADMIN, "CAP_NET_ADMIN", "x", "--cap-add X").ok
    missing = doctor.check_cap(doctor.CAP_SYS_ADMIN, "CAP_SYS_ADMIN", "x", "--cap-add SYS_ADMIN")
    assert not missing.ok and missing.required
    assert "--cap-add SYS_ADMIN" in missing.fix or "sudo" in missing.fix


def test_demo_tools_fix_names_the_debian_packages(tmp_path) -> None:
    check = doctor.demo_tools_check(str(tmp_path))
    assert not check.ok and not check.required
    for package in ("wireguard-go", "tcpdump", "curl", "busybox-static"):
        assert package in check.fix
    assert check.fix.startswith("apt-get install ")
