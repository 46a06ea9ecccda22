"""Podman containers in a vault, against the closed world and Debian's real podman (rootful).

`vault podman run` runs inside the world's host namespace (the vault_cli fixture), and so does
every podman command here (`nsenter --net=`, never `ip netns exec`: its private mount namespace
would hide /run/netns/vault-NAME). Podman joins the vault's namespace directly (`--network ns:`).
The image is a `podman import` of the busybox rootfs that netns_vault.docker.images builds for
Docker: nothing is pulled. Every container carries the label netns-vault.vault=<vault name> and
is removed, and the image is removed at the end, even when a test fails. dockerd is not used.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from netns_vault import namespace, sandbox
from netns_vault.names import VaultNames
from netns_vault.podman import LABEL_VAULT

from .waiting import wait_for

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPOSE_PODMAN = os.path.join(REPO, "compose", "podman", "podman-compose.yml")
INDEX = 3  # the world's client 3: 100.96.0.5 (0: plain vaults, 1: Docker vaults, 2: gateway)


class Podman:
    """Podman in the world's host namespace; removes what the tests made."""

    def __init__(self, world):
        self.world = world
        self.vaults: list[str] = []

    def argv(self, *args: str) -> list[str]:
        return sandbox.nsenter_argv(f"/run/netns/{self.world.host_ns}", ["podman", *args])

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), capture_output=True, text=True,
                              timeout=timeout, env=sandbox.clean_env())

    def sh(self, cid: str, script: str, timeout: int = 5) -> subprocess.CompletedProcess:
        """A shell command in a running container, bounded by busybox `timeout`."""
        return self("exec", cid, "timeout", str(timeout), "sh", "-c", script,
                    timeout=timeout + 30)

    def fetch(self, cid: str, url: str, timeout: int = 5) -> str | None:
        res = self.sh(cid, f"wget -qO- {url}", timeout)
        return res.stdout.strip() if res.returncode == 0 else None

    def inspect(self, cid: str) -> dict:
        res = self("inspect", cid)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)[0]

    def labelled(self, vault: str) -> list[str]:
        res = self("ps", "-a", "-q", "--filter", f"label={LABEL_VAULT}={vault}")
        assert res.returncode == 0, res.stderr
        return res.stdout.split()

    def cleanup(self) -> None:
        for vault in self.vaults:
            for cid in self.labelled(vault):
                self("rm", "-f", "-t", "0", cid)


@pytest.fixture(scope="module")
def podman_image(tmp_path_factory):
    """netns-vault's busybox rootfs, `podman import`ed under a name unique to this run."""
    if shutil.which("podman") is None:
        pytest.skip("podman not installed (scripts/setup.sh --tests)")
    from netns_vault.docker import images

    if not os.path.exists(images.BUSYBOX):
        pytest.skip("needs busybox-static")
    tar = tmp_path_factory.mktemp("podman") / "busybox-rootfs.tar"
    tar.write_bytes(images.busybox_rootfs())
    tag = f"localhost/netns-vault-test/busybox:{os.getpid()}"
    res = subprocess.run(["podman", "import", "--change", 'CMD ["sh"]', str(tar), tag],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    try:
        yield tag
    finally:
        subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, timeout=120)


@pytest.fixture
def podman(world):
    p = Podman(world)
    try:
        yield p
    finally:
        p.cleanup()


def up(vault_cli, podman, *extra: str) -> str:
    name = vault_cli.new_name()
    podman.vaults.append(name)
    vault_cli.up(name, *extra, index=INDEX)
    return name


def test_a_podman_container_sees_the_tunnel_address_and_its_dns_goes_through_it(
    world, vault_cli, podman, podman_image
):
    name = up(vault_cli, podman)
    names = VaultNames.of(name)
    addr = world.client_address(INDEX)

    res = vault_cli("podman", "run", name, "--rm", podman_image, "wget", "-qO-", world.WEB_URL)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"client={addr}"

    # Only lo and the tunnel; the vault's resolver, read-only; the limits this host allows.
    script = ("cat /proc/net/dev; echo ==; cat /etc/resolv.conf; echo ==; "
              "ulimit -n; ulimit -u; (echo x >> /etc/resolv.conf) 2>/dev/null && echo WRITABLE; true")
    res = vault_cli("podman", "run", name, "--rm", podman_image, "sh", "-c", script)
    assert res.returncode == 0, res.stderr
    dev, resolv, limits = res.stdout.split("==\n")
    assert sorted(ln.split(":")[0].strip() for ln in dev.splitlines() if ":" in ln) == sorted(
        ["lo", names.iface])
    assert [ln.split()[1] for ln in resolv.splitlines() if ln.startswith("nameserver")] == [
        sandbox.DNS_ADDR]
    assert "WRITABLE" not in limits
    from netns_vault.podman import default_ulimits

    wanted = default_ulimits()
    assert limits.split()[:2] == [str(wanted["nofile"][0]), str(wanted["nproc"][0])]

    # DNS: asked of the config's server, through the tunnel (dnsmasq sees the tunnel address)
    qname = f"{name}.web.demo"
    res = vault_cli("podman", "run", name, "--rm", podman_image, "sh", "-c",
                    f"nslookup {qname}; wget -qO- http://{world.WEB_NAME}/")
    queries = [(c, q) for c, q in world.wait_dns_query(qname) if q == qname]
    assert queries, f"dnsmasq never saw {qname}: {res.stdout} {res.stderr}"
    assert {c for c, _q in queries} == {addr}
    assert res.stdout.strip().endswith(f"client={addr}"), res.stdout + res.stderr

    # the user's own limit wins; exit codes are the container's
    res = vault_cli("podman", "run", name, "--rm", "--ulimit", "nofile=512:512", podman_image,
                    "sh", "-c", "ulimit -n; exit 7")
    assert res.returncode == 7, res.stderr
    assert res.stdout.strip() == "512"
    assert podman.labelled(name) == []  # --rm removed them all
    assert vault_cli("check", name).returncode == 0


def test_tunnel_down_leaks_nothing_and_reload_keeps_the_same_container(
    world, vault_cli, podman, podman_image
):
    name = up(vault_cli, podman)
    names = VaultNames.of(name)
    addr = world.client_address(INDEX)
    endpoint = (world.ENDPOINT_ADDR, world.ENDPOINT_PORT)
    res = vault_cli("podman", "run", name, "-d", "--name", f"{name}-app", podman_image,
                    "sleep", "3600")
    assert res.returncode == 0, res.stderr
    cid = res.stdout.strip().splitlines()[-1]
    app = podman.inspect(cid)
    assert app["HostConfig"]["NetworkMode"] == f"ns:{names.netns_path}"
    assert app["Config"]["Labels"][LABEL_VAULT] == name
    pid = app["State"]["Pid"]
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == namespace.netns_inode(names.netns)
    assert podman.fetch(cid, world.WEB_URL) == f"client={addr}"

    # Positive control: a fetch that leaves outside the tunnel is seen by this capture.
    with world.capture() as control:
        assert sandbox.http_get(world.host_ns, world.WEB_URL) == f"client={world.HOST_ADDR}\n"
    assert control.leaks(endpoint, src=world.HOST_ADDR), control.summary()

    def all_fail() -> None:
        assert podman.fetch(cid, world.WEB_URL, timeout=2) is None
        assert podman.fetch(cid, f"http://{world.WEB_NAME}/", timeout=3) is None
        assert podman.sh(cid, f"ping -c 1 -W 1 {world.GATEWAY}").returncode != 0
        assert podman.sh(cid, f"nslookup leak.{name}.demo {world.DNS_ADDR}", 3).returncode != 0

    world.server_down()
    try:
        with world.capture() as cap:
            all_fail()
        assert cap.leaks(endpoint, src=world.HOST_ADDR) == [], cap.summary()
        assert cap.wireguard_packets(endpoint), "the tunnel should still try: " + cap.summary()

        res = vault_cli("reload", name)  # only the tunnel is re-created
        assert res.returncode == 0, res.stderr
        with world.capture() as cap:
            all_fail()
        assert cap.leaks(endpoint, src=world.HOST_ADDR) == [], cap.summary()
    finally:
        world.server_up()

    assert wait_for(lambda: podman.fetch(cid, world.WEB_URL) == f"client={addr}", 30,
                    "the container reconnecting")
    after = podman.inspect(cid)
    assert (after["Id"], after["State"]["Pid"], after["State"]["StartedAt"]) == (
        app["Id"], pid, app["State"]["StartedAt"])
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == namespace.netns_inode(names.netns)
    check = vault_cli("check", name)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("bad", [
    ["--privileged"], ["--cap-add", "NET_ADMIN"], ["--cap-add=SYS_ADMIN"], ["--network", "host"],
    ["--net=bridge"], ["-p", "8080:80"], ["-dp", "80:80"], ["--dns", "192.0.2.9"],
    ["--pod", "x"], ["-P"],
])
def test_vault_podman_run_refuses_a_way_out(world, vault_cli, podman, podman_image, bad):
    name = up(vault_cli, podman)
    before = podman("ps", "-a", "-q").stdout
    res = vault_cli("podman", "run", name, "--rm", *bad, podman_image, "true")
    assert res.returncode == 2, res.stdout + res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "not allowed" in res.stderr
    assert podman("ps", "-a", "-q").stdout == before


def test_vault_podman_run_errors(world, vault_cli, podman, podman_image, tmp_path):
    res = vault_cli("podman", "run", "nosuchvault", podman_image, "true")
    assert res.returncode == 2 and "no vault named 'nosuchvault' is up" in res.stderr, res.stderr
    name = up(vault_cli, podman)
    # podman missing: a PATH without it
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    res = vault_cli("podman", "run", name, podman_image, "true", env={"PATH": str(bin_dir)})
    assert res.returncode == 3 and "podman is not installed" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = vault_cli("podman", "run", name)
    assert res.returncode == 2 and "usage" in res.stderr, res.stderr
    # after `vault down`, the namespace is gone: refused before podman is asked
    assert vault_cli("down", name).returncode == 0
    res = vault_cli("podman", "run", name, podman_image, "true")
    assert res.returncode == 2 and "is up" in res.stderr, res.stderr


def test_podman_compose_example(world, vault_cli, podman, podman_image):
    # podman-compose >= 1.0.6 from the test extras (Debian 12's 1.0.3 cannot do network_mode ns:)
    compose = os.path.join(os.path.dirname(sys.executable), "podman-compose")
    if not os.path.exists(compose):
        pytest.skip("podman-compose not in the venv (pip install -e '.[test]')")
    name = up(vault_cli, podman)
    names = VaultNames.of(name)
    addr = world.client_address(INDEX)
    project = f"{name}pc"
    env = sandbox.clean_env(VAULT_NAME=name, APP_IMAGE=podman_image, CHECK_URL=world.WEB_URL)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            sandbox.nsenter_argv(f"/run/netns/{world.host_ns}",
                                 [compose, "-p", project, "-f", COMPOSE_PODMAN, *args]),
            capture_output=True, text=True, timeout=180, env=env)

    try:
        res = run("up", "-d")
        assert res.returncode == 0, res.stdout + res.stderr
        cids = podman("ps", "-q", "--filter", f"label=io.podman.compose.project={project}")
        cids_list = cids.stdout.split()
        assert len(cids_list) == 1, cids.stdout + cids.stderr
        cid = cids_list[0]
        info = podman.inspect(cid)
        assert info["HostConfig"]["NetworkMode"] == f"ns:{names.netns_path}"
        pid = info["State"]["Pid"]
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == namespace.netns_inode(names.netns)
        wait_for(lambda: f"client={addr}" in podman("logs", cid).stdout, 30, "the fetcher")
        assert podman.fetch(cid, f"http://{world.WEB_NAME}/") == f"client={addr}"
    finally:
        res = run("down", "-t", "2")
        with contextlib.suppress(Exception):
            for cid in podman("ps", "-a", "-q", "--filter",
                              f"label=io.podman.compose.project={project}").stdout.split():
                podman("rm", "-f", cid)
    assert res.returncode == 0, res.stdout + res.stderr
