"""`vault supervise --docker`: the vault heals itself when Docker restarts its holder, after
`docker restart vault-NAME` and after a restart of dockerd itself, with no user command.

Every capture is on the world host's eth0 (tcpdump --immediate-mode), after a positive control
showing it does see a packet that leaves outside the tunnel. `Capture.leaks` counts everything
but WireGuard with the endpoint (and the kernel's ICMP errors quoting such WireGuard datagrams):
an ICMP packet about anything else is a leak.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time

import pytest

from netns_vault import sandbox

from .supervise_helpers import Supervised
from .test_docker_vault import REPO, VAULT_INDEX, dvaults, fetch, wait_for  # noqa: F401

pytestmark = pytest.mark.docker

START_DOCKERD = os.path.join(REPO, "scripts", "start-dockerd.sh")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def positive_control(world) -> None:
    """The capture on the host's eth0 sees a fetch that does not go through a tunnel."""
    endpoint = (world.ENDPOINT_ADDR, world.ENDPOINT_PORT)
    with world.capture() as control:
        assert sandbox.http_get(world.host_ns, world.WEB_URL) == f"client={world.HOST_ADDR}\n"
    assert control.leaks(endpoint, src=world.HOST_ADDR), control.summary()


def test_joined_container_fetches_again_after_docker_restarts_the_holder(
        world, vault_cli, dvaults, client, base_image):  # noqa: F811
    name = dvaults.up()  # up with --docker, then supervised (it adopts the running vault)
    sup = Supervised(vault_cli, name, "--docker")
    try:
        sup.wait_view(lambda v: v.get("state") == "connected", 30, "connected")
        app = client.containers.run(base_image, ["sleep", "3600"], detach=True,
                                    network_mode=f"container:vault-{name}",
                                    restart_policy={"Name": "unless-stopped"},
                                    labels={"netns-vault.test": name})
        addr = world.client_address(VAULT_INDEX)
        assert fetch(app, world.WEB_URL) == f"client={addr}"
        endpoint = (world.ENDPOINT_ADDR, world.ENDPOINT_PORT)
        positive_control(world)
        with world.capture() as cap:
            client.containers.get(f"vault-{name}").restart(timeout=1)
            sup.wait_line("holder restarted", 30)
            sup.wait_line("healed: holder", 60)
            assert wait_for(lambda: fetch(client.containers.get(app.id), world.WEB_URL)
                            == f"client={addr}", 30, "the container back on the tunnel")
        leaks = cap.leaks(endpoint, src=world.HOST_ADDR)
        assert leaks == [], cap.summary()
        assert cap.wireguard_packets(endpoint), "no tunnel traffic at all: " + cap.summary()
        print(f"\ndocker restart vault-{name}: leaks {len(leaks)} of {len(cap.packets)} packets")
        assert vault_cli("check", name).returncode == 0
    finally:
        sup.stop(signal.SIGINT)


# ------------------------------------------------------------------------- dockerd restart

# The app fetches in a loop by itself (nothing from the test once it runs): one line per try,
# "ok <epoch> <answer>" or "fail <epoch>", in its Docker log, which survives the restarts.
FETCH_LOOP = ("while true; do if r=$(timeout 3 wget -qO- {url}); then echo \"ok $(date +%s) $r\"; "
              "else echo \"fail $(date +%s)\"; fi; sleep 0.3; done")


def start_dockerd(*mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([START_DOCKERD, *mode], capture_output=True, text=True, timeout=300,
                          env={"PATH": SYSTEM_PATH, "DOCKERD_TIMEOUT": "120"})


@contextlib.contextmanager
def dockerd_running_afterwards():
    """Whatever happens in the block, dockerd answers again after it (other tests use it)."""
    try:
        yield
    finally:
        res = start_dockerd()
        assert res.returncode == 0, res.stdout + res.stderr


def fetch_log(client, cid: str) -> list[tuple[str, int, str]]:
    out = client.api.logs(cid, stdout=True, stderr=True).decode(errors="replace")
    rows = []
    for line in out.splitlines():
        m = re.match(r"(ok|fail) (\d+)\s*(.*)$", line.strip())
        if m:
            rows.append((m.group(1), int(m.group(2)), m.group(3)))
    return rows


def test_joined_container_keeps_fetching_across_a_dockerd_restart(
        world, vault_cli, dvaults, client, base_image):  # noqa: F811
    import docker

    name = dvaults.up()
    holder_name = f"vault-{name}"
    addr = world.client_address(VAULT_INDEX)
    endpoint = (world.ENDPOINT_ADDR, world.ENDPOINT_PORT)
    sup = Supervised(vault_cli, name, "--docker")
    with dockerd_running_afterwards():
        try:
            sup.wait_view(lambda v: v.get("state") == "connected", 30, "connected")
            app = client.containers.run(
                base_image, ["sh", "-c", FETCH_LOOP.format(url=world.WEB_URL)], detach=True,
                network_mode=f"container:{holder_name}",
                restart_policy={"Name": "unless-stopped"},
                labels={"netns-vault.test": name})
            assert wait_for(lambda: any(r[0] == "ok" for r in fetch_log(client, app.id)), 30,
                            "the app's first fetch")
            assert all(r[2] == f"client={addr}" for r in fetch_log(client, app.id) if r[0] == "ok")
            holder_pid = client.api.inspect_container(holder_name)["State"]["Pid"]
            positive_control(world)
            with world.capture() as cap:
                t0 = time.time()
                res = start_dockerd("restart")
                assert res.returncode == 0, res.stdout + res.stderr
                back = time.time()
                fresh = docker.from_env(timeout=30)  # the old client's connections are gone
                try:
                    def healed() -> bool:
                        return any(r[0] == "ok" and r[1] >= int(back)
                                   for r in fetch_log(fresh, app.id))

                    assert wait_for(healed, 90, "the app fetching again after dockerd came "
                                    "back\n" + "\n".join(sup.lines), poll=0.2)
                    healed_at = time.time()
                    after = fresh.api.inspect_container(holder_name)["State"]
                    app_state = fresh.api.inspect_container(app.id)["State"]
                    rows = fetch_log(fresh, app.id)
                finally:
                    fresh.close()
            leaks = cap.leaks(endpoint, src=world.HOST_ADDR)
            assert leaks == [], cap.summary()
            assert cap.wireguard_packets(endpoint), "no tunnel traffic at all: " + cap.summary()
            # Every answer the app ever got came through the tunnel (the world's web server
            # names the client's address): before, during and after the restart.
            oks = [r for r in rows if r[0] == "ok"]
            assert all(r[2] == f"client={addr}" for r in oks), oks
            assert after["Running"] and after["Pid"] != holder_pid, after  # a new holder
            assert app_state["Running"], app_state
            sup.wait_line("healed: holder", 30)
            # One line when the wait for Docker starts, not one per check (never an unbounded
            # log; dockerd was away for several of the supervisor's 5 s holder checks).
            waits = [ln for ln in sup.lines if "Docker is not answering" in ln]
            assert 1 <= len(waits) <= 2, "\n".join(sup.lines)
            first_ok = min(r[1] for r in oks if r[1] >= int(back))
            print(f"\ndockerd restart: dockerd away for {back - t0:.1f} s; the app fetched "
                  f"through the tunnel again {healed_at - back:.1f} s after dockerd answered "
                  f"(its log, 1 s resolution: first ok in second {first_ok - int(back):+d}); "
                  f"leaks {len(leaks)} of {len(cap.packets)} packets captured; "
                  f"{sum(r[0] == 'fail' for r in rows)} failed fetches in the app's log")
            print("\n".join(ln for ln in sup.lines if "vault" in ln)[-3000:])
            assert vault_cli("check", name).returncode == 0
        finally:
            sup.stop(signal.SIGINT)
