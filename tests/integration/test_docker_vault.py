"""Docker vaults against the closed world and a real engine (scripts/start-dockerd.sh; never pulls).

`vault up NAME --docker` runs inside the world's host namespace (the vault_cli fixture), so the
tunnel's UDP socket lives there; the holder is created by dockerd with network_mode none. Every
container here has network_mode none or container:<holder>; no Docker network is ever created.
Vault names start with "dk"; every container a test makes is labelled and removed, every vault
taken down with --force, even when the test fails.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import time

import pytest

from netns_vault import namespace, sandbox
from netns_vault.docker import attach
from netns_vault.names import VaultNames

from .waiting import wait_for

pytestmark = pytest.mark.docker

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPOSE_VAULT = os.path.join(REPO, "compose", "vault", "docker-compose.yml")
COMPOSE_GATEWAY = os.path.join(REPO, "compose", "gateway", "docker-compose.yml")
TEST_LABEL = "netns-vault.test"
VAULT_INDEX = 1  # the world's client 1: 100.96.0.3 (client 0 is for plain vaults)
GATEWAY_INDEX = 2  # 100.96.0.4
GW_ISP_ADDR = "198.18.64.1"  # the isp side of the gateway container's uplink
GW_ADDR = "198.18.64.2"  # the gateway container's eth0
_counter = itertools.count()


# --------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def gateway_image(client, base_image):
    from netns_vault.docker.gateway_image import ensure_gateway_image

    return ensure_gateway_image(client)


class DockerVaults:
    """Makes Docker vaults through the real CLI and removes everything they left."""

    def __init__(self, world, cli, client):
        self.world, self.cli, self.client = world, cli, client
        self.names: list[str] = []
        self.projects: list[tuple[str, list[str], dict]] = []

    def up(self, index: int = VAULT_INDEX) -> str:
        name = f"dk{os.getpid() % 10000}x{next(_counter)}"
        self.names.append(name)
        res = self.cli("up", name, "--config", self.cli.config(index), "--docker")
        assert res.returncode == 0, res.stderr
        return name

    def sleeper(self, name: str, image: str, cname: str | None = None):
        return self.client.containers.run(
            image,
            ["sleep", "3600"],
            name=cname,
            network_mode=f"container:vault-{name}",
            labels={TEST_LABEL: name},
            detach=True,
        )

    def compose(
        self, project: str, files: list[str], env: dict, *args: str, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        if not any(p == project for p, _f, _e in self.projects):
            self.projects.append((project, files, env))
        argv = ["docker-compose", "-p", project]
        for f in files:
            argv += ["-f", f]
        return subprocess.run(
            [*argv, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=sandbox.clean_env(**env),
        )

    def cleanup(self) -> None:
        import docker

        for project, files, env in self.projects:
            with contextlib.suppress(Exception):
                self.compose(project, files, env, "down", "-t", "2")
            for c in self.client.containers.list(
                all=True, filters={"label": f"com.docker.compose.project={project}"}
            ):
                with contextlib.suppress(docker.errors.NotFound):
                    c.remove(force=True)
        for name in self.names:
            for label in (f"{TEST_LABEL}={name}", f"{attach.LABEL_ATTACHED_TO}={name}"):
                for c in self.client.containers.list(all=True, filters={"label": label}):
                    with contextlib.suppress(docker.errors.NotFound):
                        c.remove(force=True)
            self.cli("down", name, "--force", "--kill")
            names = VaultNames.of(name)
            with contextlib.suppress(docker.errors.NotFound):
                self.client.containers.get(names.container).remove(force=True)
            namespace.remove_netns(names.netns)


@pytest.fixture
def dvaults(world, vault_cli, client):
    made = DockerVaults(world, vault_cli, client)
    try:
        yield made
    finally:
        made.cleanup()


# --------------------------------------------------------------------------------- helpers


def run_in(container, argv: list[str], timeout: int = 5) -> tuple[int, str]:
    """argv in a running container, bounded by busybox `timeout` (busybox wget -T crashes)."""
    res = container.exec_run(["timeout", str(timeout), *argv])
    return res.exit_code, res.output.decode(errors="replace")


def fetch(container, url: str, timeout: int = 5) -> str | None:
    code, out = run_in(container, ["wget", "-qO-", url], timeout)
    return out.strip() if code == 0 else None


def started_at(client, container) -> tuple[str, int, str, int]:
    attrs = client.api.inspect_container(container.id)
    return (attrs["Id"], attrs["State"]["Pid"], attrs["State"]["StartedAt"], attrs["RestartCount"])


def netns_of(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def links_in(container) -> list[str]:
    _code, out = run_in(container, ["cat", "/proc/net/dev"])
    return sorted(ln.split(":")[0].strip() for ln in out.splitlines() if ":" in ln)


# --------------------------------------------------------------------------------- holder vaults


def test_a_joined_container_uses_only_the_tunnel(world, vault_cli, dvaults, client, base_image):
    name = dvaults.up()
    app = dvaults.sleeper(name, base_image)
    addr = world.client_address(VAULT_INDEX)

    assert links_in(app) == sorted(["lo", VaultNames.of(name).iface])
    assert fetch(app, world.WEB_URL) == f"client={addr}"

    # DNS: the holder's resolver (the config's DNS), asked through the tunnel
    qname = f"{name}.web.demo"
    code, out = run_in(app, ["nslookup", qname])
    queries = [(c, q) for c, q in world.wait_dns_query(qname) if q == qname]
    assert queries, f"dnsmasq never saw {qname}: {out}"
    assert {c for c, _q in queries} == {addr}
    assert fetch(app, f"http://{world.WEB_NAME}/") == f"client={addr}"

    # Nothing but the tunnel: the host's gateway, the host itself and the LAN are out of reach,
    # and the host's uplink carries WireGuard only.
    with world.capture() as cap:
        for target in (world.GATEWAY, world.HOST_ADDR, world.LAN_HOST_ADDR, world.LAN_PEER_ADDR):
            assert run_in(app, ["ping", "-c", "1", "-W", "1", target])[0] != 0, target
            assert fetch(app, f"http://{target}/", timeout=2) is None, target
    endpoint = (world.ENDPOINT_ADDR, world.ENDPOINT_PORT)
    assert cap.leaks(endpoint) == [], cap.summary()

    res = vault_cli("docker", "ls", name, "--json")
    assert res.returncode == 0, res.stderr
    assert [c["name"] for c in json.loads(res.stdout)] == [app.name]
    assert vault_cli("check", name).returncode == 0
    # the holder's namespace is a vault like any other: host programs join it with `vault run`
    res = vault_cli("run", "-n", name, "--", "curl", "-sS", "--max-time", "5", world.WEB_URL)
    assert res.stdout.strip() == f"client={addr}", res.stderr


def test_tunnel_death_leaks_nothing_and_reload_keeps_the_container(
    world, vault_cli, dvaults, client, base_image
):
    name = dvaults.up()
    names = VaultNames.of(name)
    app = dvaults.sleeper(name, base_image)
    addr = world.client_address(VAULT_INDEX)
    assert fetch(app, world.WEB_URL) == f"client={addr}"
    before = started_at(client, app)
    holder_before = started_at(client, client.containers.get(names.container))
    ns_before = netns_of(before[1])
    endpoint = (world.ENDPOINT_ADDR, world.ENDPOINT_PORT)

    # Positive control: a fetch that does leave outside the tunnel is seen by the capture.
    with world.capture() as control:
        assert sandbox.http_get(world.host_ns, world.WEB_URL) == f"client={world.HOST_ADDR}\n"
    assert control.leaks(endpoint, src=world.HOST_ADDR), control.summary()

    def all_fail() -> None:
        assert fetch(app, world.WEB_URL, timeout=2) is None
        assert fetch(app, f"http://{world.WEB_NAME}/", timeout=3) is None
        assert run_in(app, ["ping", "-c", "1", "-W", "1", world.GATEWAY])[0] != 0

    world.server_down()
    try:
        with world.capture() as cap:
            all_fail()
        # The endpoint's "port unreachable" answers come back; what the host SENDS is the point.
        assert cap.leaks(endpoint, src=world.HOST_ADDR) == [], cap.summary()
        assert cap.wireguard_packets(endpoint), "the tunnel should still try: " + cap.summary()

        # Re-create only the tunnel while the server is still away: still nothing leaks.
        res = vault_cli("reload", name)
        assert res.returncode == 0, res.stderr
        with world.capture() as cap:
            all_fail()
        assert cap.leaks(endpoint, src=world.HOST_ADDR) == [], cap.summary()
    finally:
        world.server_up()

    # The same container, never restarted, in the same namespace, works again.
    assert wait_for(
        lambda: fetch(app, world.WEB_URL) == f"client={addr}", 30, "the container reconnecting"
    )
    assert started_at(client, app) == before
    assert netns_of(before[1]) == ns_before
    assert started_at(client, client.containers.get(names.container)) == holder_before
    assert namespace.netns_inode(names.netns) == ns_before
    check = vault_cli("check", name)
    assert check.returncode == 0, check.stdout + check.stderr


def test_down_refuses_while_containers_are_attached(world, vault_cli, dvaults, client, base_image):
    import docker

    name = dvaults.up()
    names = VaultNames.of(name)
    app = dvaults.sleeper(name, base_image, cname=f"{name}-app")

    res = vault_cli("down", name)
    assert res.returncode == 4, res.stdout + res.stderr
    assert f"{name}-app" in res.stderr and "--force" in res.stderr
    # the refusal changed nothing
    app.reload()
    assert app.status == "running"
    assert namespace.netns_exists(names.netns)
    assert vault_cli("check", name).returncode == 0

    res = vault_cli("down", name, "--force")
    assert res.returncode == 0, res.stderr
    assert "still running" not in res.stdout, res.stdout  # its processes were stopped
    app.reload()
    assert app.status == "exited"  # stopped, not removed; it can never start on another network
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(names.container)
    assert not os.path.lexists(names.netns_path)
    assert not os.path.lexists(f"/var/run/wireguard/{names.iface}.sock")
    assert vault_cli("status", name).returncode == 2


def test_vault_docker_run(world, vault_cli, dvaults, client, base_image):
    name = dvaults.up()
    names = VaultNames.of(name)
    addr = world.client_address(VAULT_INDEX)
    before = {c.id for c in client.containers.list(all=True)}

    res = vault_cli("docker", "run", name, "--rm", "--", base_image, "wget", "-qO-", world.WEB_URL)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"client={addr}"
    res = vault_cli(
        "docker",
        "run",
        name,
        "--rm",
        "--",
        base_image,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    )
    assert res.returncode == 7, res.stderr
    assert res.stdout.strip() == "out" and res.stderr.strip() == "err"
    assert {c.id for c in client.containers.list(all=True)} == before  # --rm removed them

    res = vault_cli(
        "docker",
        "run",
        name,
        "-d",
        "--name",
        f"{name}-bg",
        "-e",
        "GREETING=hi",
        "--",
        base_image,
        "sleep",
        "600",
    )
    assert res.returncode == 0, res.stderr
    cid = res.stdout.strip()
    attrs = client.api.inspect_container(cid)
    holder = client.containers.get(names.container)
    assert attrs["HostConfig"]["NetworkMode"] in (
        f"container:{holder.id}",
        f"container:{names.container}",
    )
    assert attrs["Config"]["Labels"][attach.LABEL_ATTACHED_TO] == name
    assert "GREETING=hi" in attrs["Config"]["Env"]
    assert fetch(client.containers.get(cid), world.WEB_URL) == f"client={addr}"
    res = vault_cli("docker", "ls", name, "--json")
    assert [c["name"] for c in json.loads(res.stdout)] == [f"{name}-bg"]

    res = vault_cli("docker", "run", name, "--", "netns-vault/no-such-image:x", "true")
    assert res.returncode == 2 and "never pulls" in res.stderr, res.stderr
    res = vault_cli("docker", "run", name, "-e", "NOVALUE", "--", base_image, "true")
    assert res.returncode == 2, res.stderr

    plain = vault_cli.new_name()
    vault_cli.up(plain)  # client 0, no --docker
    res = vault_cli("docker", "run", plain, "--", base_image, "true")
    assert res.returncode == 2 and "without --docker" in res.stderr, res.stderr
    assert vault_cli("down", plain).returncode == 0


def test_compose_example_through_a_vault_and_expose(world, vault_cli, dvaults, client, base_image):
    name = dvaults.up()
    names = VaultNames.of(name)
    addr = world.client_address(VAULT_INDEX)
    project = f"{name}c"
    env = {"VAULT_NAME": name, "APP_IMAGE": base_image, "CHECK_URL": world.WEB_URL}
    networks_before = sorted(n.name for n in client.networks.list())

    res = dvaults.compose(project, [COMPOSE_VAULT], env, "up", "-d")
    assert res.returncode == 0, res.stderr
    services = {
        c.labels["com.docker.compose.service"]: c
        for c in client.containers.list(filters={"label": f"com.docker.compose.project={project}"})
    }
    assert sorted(services) == ["fetcher", "web-ui"]
    holder = client.containers.get(names.container)
    for c in services.values():
        attrs = client.api.inspect_container(c.id)
        assert attrs["HostConfig"]["NetworkMode"] in (
            f"container:{holder.id}",
            f"container:{names.container}",
        )
        assert links_in(c) == sorted(["lo", names.iface])
    assert sorted(n.name for n in client.networks.list()) == networks_before

    fetcher = services["fetcher"]
    wait_for(lambda: f"client={addr}" in fetcher.logs().decode(), 20, "the fetcher's answer")
    assert fetch(fetcher, world.WEB_URL) == f"client={addr}"

    # The web UI inside the vault, published on the host's loopback by `vault docker expose`.
    fwd, port, _ = vault_cli.expose(name, 8080)
    try:
        for _ in range(3):  # several connections, one child each
            res = world.host_run(["curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{port}/"])
            assert res.stdout.strip() == f"web-ui in vault {name}", res.stderr
        # the forwarder is not a process in the vault
        assert fwd.pid not in namespace.pids_in_netns(names.netns)

        res = vault_cli("down", name)
        assert res.returncode == 4
        assert "fetcher" in res.stderr and "web-ui" in res.stderr, res.stderr
    finally:
        fwd.send_signal(signal.SIGTERM)
        assert fwd.wait(timeout=10) == 0
    res = dvaults.compose(project, [COMPOSE_VAULT], env, "down", "-t", "2")
    assert res.returncode == 0, res.stderr
    assert vault_cli("down", name).returncode == 0


# --------------------------------------------------------------------------------- the gateway


class GatewayUplink:
    """A veth from the world's isp namespace into a container's namespace, as its eth0."""

    def __init__(self, world, pid: int):
        self.world = world
        self.pid = pid
        self.isp_iface = f"{world.id}g"
        self.ns = f"/proc/{pid}/ns/net"

    def _in_gw(self, *args: str) -> None:
        res = sandbox.ns_run(self.ns, ["ip", *args])
        assert res.returncode == 0, res.stderr

    def _in_isp(self, *args: str) -> None:
        res = self.world.isp_run(["ip", *args])
        assert res.returncode == 0, res.stderr

    def plug(self) -> None:
        self._in_isp(
            "link",
            "add",
            self.isp_iface,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            str(self.pid),
        )
        self._in_isp("addr", "add", f"{GW_ISP_ADDR}/24", "dev", self.isp_iface)
        self._in_isp("link", "set", self.isp_iface, "up")
        self._in_gw("addr", "add", f"{GW_ADDR}/24", "dev", "eth0")
        self._in_gw("link", "set", "eth0", "up")

    def unplug(self) -> None:
        self.world.isp_run(["ip", "link", "del", self.isp_iface])


def test_gateway_image_behind_compose(world, dvaults, client, base_image, gateway_image, tmp_path):
    project = f"dkgw{os.getpid() % 10000}"
    config = world.write_client_config(str(tmp_path / "wg0.conf"), GATEWAY_INDEX)
    override = tmp_path / "no-docker-network.yml"
    # The test world gives the gateway its uplink (a veth into the isp namespace), not Docker.
    override.write_text('services:\n  gateway:\n    network_mode: "none"\n')
    files = [COMPOSE_GATEWAY, str(override)]
    env = {
        "WG_CONFIG": config,
        "GATEWAY_IMAGE": gateway_image,
        "APP_IMAGE": base_image,
        "CHECK_URL": world.WEB_URL,
    }
    addr = world.client_address(GATEWAY_INDEX)
    endpoint = (world.ENDPOINT_ADDR, world.ENDPOINT_PORT)
    networks_before = sorted(n.name for n in client.networks.list())

    res = dvaults.compose(project, files, env, "up", "-d")
    assert res.returncode == 0, res.stderr
    services = {
        c.labels["com.docker.compose.service"]: c
        for c in client.containers.list(filters={"label": f"com.docker.compose.project={project}"})
    }
    gw, app = services["gateway"], services["app"]
    assert sorted(n.name for n in client.networks.list()) == networks_before
    pid = client.api.inspect_container(gw.id)["State"]["Pid"]
    uplink = GatewayUplink(world, pid)
    try:
        uplink.plug()
        # Positive control, before the gateway has its default route (it waits for one):
        # a packet leaving by eth0 outside the tunnel is seen by the capture on the veth.
        uplink._in_gw("route", "add", f"{world.WEB_ADDR}/32", "via", GW_ISP_ADDR)
        with world.capture(ns=world.isp_ns, iface=uplink.isp_iface) as control:
            assert sandbox.http_get(uplink.ns, world.WEB_URL) == f"client={GW_ADDR}\n"
        assert control.leaks(endpoint, src=GW_ADDR), control.summary()
        uplink._in_gw("route", "del", f"{world.WEB_ADDR}/32")
        uplink._in_gw("route", "add", "default", "via", GW_ISP_ADDR)

        from netns_vault.docker.gateway import READY_LINE

        wait_for(
            lambda: READY_LINE in gw.logs().decode(),
            30,
            "the gateway",
        )
        assert wait_for(
            lambda: fetch(app, world.WEB_URL) == f"client={addr}", 15, "the app through the gateway"
        )
        qname = f"{project}.web.demo"
        run_in(app, ["nslookup", qname])
        assert {c for c, q in world.wait_dns_query(qname) if q == qname} == {addr}
        code, out = run_in(gw, ["python3", "-m", "netns_vault.docker.gateway", "--health"], 20)
        assert code == 0, out

        # Everything, even a packet for the uplink's own gateway, goes into the tunnel.
        with world.capture(ns=world.isp_ns, iface=uplink.isp_iface) as cap:
            run_in(app, ["ping", "-c", "1", "-W", "1", GW_ISP_ADDR])
            assert fetch(app, f"http://{world.GATEWAY}/", timeout=2) is None
        assert cap.leaks(endpoint) == [], cap.summary()

        before = started_at(client, app)
        world.server_down()
        try:
            with world.capture(ns=world.isp_ns, iface=uplink.isp_iface) as cap:
                assert fetch(app, world.WEB_URL, timeout=2) is None
                assert fetch(app, f"http://{world.WEB_NAME}/", timeout=3) is None
                assert run_in(app, ["ping", "-c", "1", "-W", "1", GW_ISP_ADDR])[0] != 0
            assert cap.leaks(endpoint, src=GW_ADDR) == [], cap.summary()
            assert cap.wireguard_packets(endpoint), cap.summary()
        finally:
            world.server_up()
        assert wait_for(
            lambda: fetch(app, world.WEB_URL) == f"client={addr}", 30, "the app reconnecting"
        )

        # wireguard-go dies: the gateway makes only the tunnel again; the app stays put.
        code, out = run_in(gw, ["cat", "/run/netns-vault/gateway/gateway.json"])
        wg_pid = json.loads(out)["tunnel"]["pid"]
        assert run_in(gw, ["kill", "-9", str(wg_pid)])[0] == 0
        wait_for(lambda: "making it again" in gw.logs().decode(), 20, "the watchdog")
        assert wait_for(
            lambda: fetch(app, world.WEB_URL) == f"client={addr}",
            30,
            "the app after the tunnel was re-made",
        )

        # SIGHUP: the config is read again and only the tunnel re-made.
        gw.kill(signal="SIGHUP")
        wait_for(lambda: gw.logs().decode().count("tunnel wg0 up") >= 3, 20, "the reload")
        assert wait_for(
            lambda: fetch(app, world.WEB_URL) == f"client={addr}", 30, "the app after the reload"
        )
        assert started_at(client, app) == before
        assert client.api.inspect_container(gw.id)["RestartCount"] == 0
        code, out = run_in(gw, ["python3", "-m", "netns_vault.docker.gateway", "--health"], 20)
        assert code == 0, out
    finally:
        res = dvaults.compose(project, files, env, "down", "-t", "5")
        uplink.unplug()
    assert res.returncode == 0, res.stderr


def test_gateway_stops_at_once_while_waiting_for_its_uplink(client, gateway_image, world, tmp_path):
    config = world.write_client_config(str(tmp_path / "wg0.conf"), GATEWAY_INDEX)
    gw = client.containers.run(
        gateway_image,
        network_mode="none",
        cap_add=["NET_ADMIN"],
        detach=True,
        labels={TEST_LABEL: "gateway-stop"},
        volumes={config: {"bind": "/config/wg0.conf", "mode": "ro"}},
    )
    try:
        wait_for(lambda: "waiting up to" in gw.logs().decode(), 20, "the gateway waiting")
        t0 = time.monotonic()
        gw.stop(timeout=20)
        assert time.monotonic() - t0 < 5
        assert client.api.inspect_container(gw.id)["State"]["ExitCode"] == 0
        assert "stopped before the gateway was up" in gw.logs().decode()
    finally:
        gw.remove(force=True)
