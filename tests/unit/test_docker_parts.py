"""The pure parts of the Docker support: argument parsing, the gateway image plan, its lockdown spec."""

from __future__ import annotations

import io
import os
import pathlib
import tarfile

import pytest

from netns_vault import expose
from netns_vault.docker import attach, gateway, gateway_image
from netns_vault.errors import UsageError
from netns_vault.names import VaultNames

REPO = pathlib.Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ vault docker run / expose


def test_parse_env():
    assert attach.parse_env(["A=1", "B=", "C=x=y"]) == {"A": "1", "B": "", "C": "x=y"}
    for bad in ("NOEQUALS", "=v", "A B=1"):
        with pytest.raises(UsageError):
            attach.parse_env([bad])


def test_network_mode_is_only_ever_the_vault():
    assert attach.network_mode(VaultNames.of("media")) == "container:vault-media"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:8080", ("::1", 8080)),
        ("192.168.1.5:443", ("192.168.1.5", 443)),
    ],
)
def test_parse_listen(text, expected):
    assert expose.parse_listen(text) == expected


@pytest.mark.parametrize(
    "bad", ["localhost:80", "127.0.0.1", "127.0.0.1:", ":80", "127.0.0.1:65536", "[::1]80", "x:y"]
)
def test_parse_listen_refuses(bad):
    with pytest.raises(UsageError):
        expose.parse_listen(bad)


def test_parse_port():
    assert expose.parse_port("80", "p") == 80
    for bad in ("0", "65536", "http", "-1"):
        with pytest.raises(UsageError):
            expose.parse_port(bad, "p")
    assert expose.parse_port("0", "p", allow_zero=True) == 0


def test_loopback():
    assert expose.is_loopback("127.0.0.1") and expose.is_loopback("::1")
    assert not expose.is_loopback("0.0.0.0") and not expose.is_loopback("192.0.2.2")


# ------------------------------------------------------------------ the gateway image


def test_dockerfile_in_repo_matches_the_in_memory_one():
    text = (REPO / "images" / "gateway" / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines == gateway_image.GATEWAY_DOCKERFILE.splitlines()


def test_build_context_is_the_dockerfile_alone():
    with tarfile.open(fileobj=io.BytesIO(gateway_image.gateway_build_context())) as tar:
        assert tar.getnames() == ["Dockerfile"]


def test_parse_ldd():
    text = """/usr/bin/a:
\tlinux-vdso.so.1 (0x00007ffd)
\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f01)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f02)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f03)
/usr/bin/b:
\tnot a dynamic executable
/usr/bin/c:
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f02)
\tlibmissing.so.1 => not found
"""
    assert gateway_image.parse_ldd(text) == [
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2",
    ]


@pytest.mark.parametrize(
    ("req", "name"),
    [
        ("pyroute2<0.10,>=0.9", "pyroute2"),
        ("rich (>=13)", "rich"),
        ("typing_extensions>=4; python_version < '3.13'", "typing_extensions"),
        ('colorama; platform_system == "Windows"', None),
        ('pytest>=8; extra == "test"', None),
        ("docker[ssh]>=7", "docker"),
    ],
)
def test_requirement_name(req, name):
    assert gateway_image._requirement_name(req) == name


def test_runtime_distributions_leave_out_the_docker_sdk():
    names = {gateway_image._norm(d.metadata["Name"]) for d in gateway_image.runtime_distributions()}
    assert {"pyroute2", "python-iptables", "typer", "rich"} <= names
    assert "docker" not in names and "requests" not in names and "netns-vault" not in names


def test_canonical_in_rootfs():
    assert gateway_image.canonical_in_rootfs("/bin/sh") == "usr/bin/sh"
    assert gateway_image.canonical_in_rootfs("sbin/ip") == "usr/sbin/ip"
    assert gateway_image.canonical_in_rootfs("usr/bin/wget") == "usr/bin/wget"
    assert gateway_image.canonical_in_rootfs("bin") == "bin"


def test_plan_follows_symlink_chains(tmp_path):
    real = tmp_path / "lib" / "libx.so.1.2.3"
    real.parent.mkdir()
    real.write_bytes(b"\x7fELF...")
    (tmp_path / "lib" / "libx.so.1").symlink_to("libx.so.1.2.3")
    (tmp_path / "libdir").symlink_to("lib")
    plan = gateway_image.RootfsPlan()
    plan.add_host_path(str(tmp_path / "libdir" / "libx.so.1"))
    base = str(tmp_path / "lib").lstrip("/")
    assert plan.symlinks == {f"{base}/libx.so.1": "libx.so.1.2.3"}
    assert plan.files == {f"{base}/libx.so.1.2.3": str(real)}
    fp = plan.fingerprint()
    real.write_bytes(b"\x7fELF... changed")
    os.utime(real, ns=(1, 1))
    assert plan.fingerprint() != fp
    dirs = plan.all_dirs()
    assert base in dirs and os.path.dirname(base) in dirs


def test_rootfs_tar_has_parents_before_children(tmp_path):
    f = tmp_path / "tool"
    f.write_bytes(b"#!/bin/sh\n")
    f.chmod(0o755)
    plan = gateway_image.RootfsPlan()
    plan.add_file(str(f), "usr/bin/tool")
    plan.symlinks["bin"] = "usr/bin"
    plan.add_generated("etc/passwd", b"root:x:0:0::/:/bin/sh\n")
    buf = io.BytesIO()
    gateway_image.write_rootfs(plan, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        names = tar.getnames()
        assert names.index("usr") < names.index("usr/bin") < names.index("usr/bin/tool")
        assert tar.getmember("usr/bin/tool").mode == 0o755
        assert tar.getmember("bin").issym() and tar.getmember("bin").linkname == "usr/bin"
        assert tar.getmember("usr/bin/tool").uid == 0


# ------------------------------------------------------------------ the gateway entrypoint


def test_lockdown_spec_for_the_gateway():
    spec = gateway.lockdown_spec(
        "wg0", [("198.51.100.1", 51820)], "eth0", ("192.168.1.0/24",), ["100.96.0.4/32"]
    )
    assert spec.tunnel == "wg0"
    assert [(e.ip, e.port, e.iface) for e in spec.endpoints] == [("198.51.100.1", 51820, "eth0")]
    assert spec.ssh_port is None  # nothing comes in by eth0
    assert spec.allow_dhcp is False  # Docker/the CNI configured eth0 statically
    assert spec.allow_lan == ("192.168.1.0/24",)
    assert spec.tunnel_addresses == ("100.96.0.4",)


def test_lockdown_spec_refuses_an_endpoint_through_the_tunnel():
    with pytest.raises(UsageError):
        gateway.lockdown_spec("wg0", [("198.51.100.1", 51820)], "wg0", (), [])


def test_resolv_text():
    assert gateway.resolv_text(["10.64.0.1"], ["vpn"]) == (
        "# netns-vault gateway: DNS only through the tunnel\nsearch vpn\nnameserver 10.64.0.1\n"
    )


def test_health_without_a_gateway(tmp_path):
    results = gateway.health(str(tmp_path))
    assert results == [("started", False, "the gateway is not up (yet)")]


def test_docker_run_adds_no_capabilities():
    """`vault docker run` must not give a container what `vault run` takes away."""
    from netns_vault.docker import attach
    from netns_vault.names import VaultNames

    seen: dict = {}

    class Containers:
        def create(self, image, command, **kwargs):
            seen.update(kwargs)
            return object()

    class Client:
        containers = Containers()

    attach.create(Client(), VaultNames.of("x"), attach.RunRequest(vault="x", image="busybox"))
    assert seen["privileged"] is False
    for key in ("cap_add", "devices", "pid_mode", "userns_mode", "security_opt"):
        assert not seen.get(key), key
    assert seen["network_mode"] == "container:vault-x"
