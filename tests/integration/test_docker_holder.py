"""The Docker holder provider against a real engine (scripts/start-dockerd.sh; never pulls).

Every vault here has a throwaway name (dk + pid + counter); every container a test makes carries
the label netns-vault.test=NAME, and the fixture removes them, the holder and the /run/netns entry
even when the test fails. Containers only ever get network_mode none or container:vault-NAME.
"""

import contextlib
import itertools
import os
import subprocess
import time

import pytest

from netns_vault import namespace
from netns_vault.docker import images
from netns_vault.docker.engine import connect
from netns_vault.docker.holder import (
    LABEL_ROLE,
    LABEL_VAULT,
    DockerHolderProvider,
    network_mode_refers_to,
)
from netns_vault.errors import ConflictError, SystemFailure
from netns_vault.names import VaultNames
from netns_vault.rollback import Rollback

TEST_LABEL = "netns-vault.test"
_counter = itertools.count()


@pytest.fixture
def names(client):
    n = VaultNames.of(f"dk{os.getpid()}{next(_counter)}")
    _cleanup(client, n)
    yield n
    _cleanup(client, n)


@pytest.fixture
def provider(client):
    return DockerHolderProvider(client, stop_timeout=1)


def _cleanup(client, names):
    import docker

    found = {}
    for label in (f"{LABEL_VAULT}={names.name}", f"{TEST_LABEL}={names.name}"):
        for c in client.containers.list(all=True, filters={"label": label}):
            found[c.id] = c
    for c in found.values():
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)
    namespace.remove_netns(names.netns)


def _leftovers(client, names):
    left = [
        c.name
        for c in client.containers.list(all=True, filters={"label": f"{LABEL_VAULT}={names.name}"})
    ]
    if os.path.lexists(names.netns_path):
        left.append(names.netns_path)
    return left


def _links_in(netns_path):
    out = subprocess.run(
        ["nsenter", f"--net={netns_path}", "cat", "/proc/net/dev"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return _ifaces(out)


def _ifaces(proc_net_dev: str) -> list[str]:
    return sorted(ln.split(":")[0].strip() for ln in proc_net_dev.splitlines() if ":" in ln)


def _up(provider, names, dns=("10.64.0.1",), search=("vault.test",)):
    with Rollback() as rb:
        provider.create(names, rb, list(dns), list(search))
        rb.commit()
    holder = provider.holder(names)
    assert holder is not None and holder.pid
    return holder


def _attached(client, names, base_image, cmd, **kw):
    return client.containers.run(
        base_image,
        cmd,
        network_mode=f"container:{names.container}",
        labels={TEST_LABEL: names.name},
        **kw,
    )


# ---------------------------------------------------------------------- no engine needed


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("container:vault-a", True),
        ("container:/vault-a", True),
        ("container:abc123def4567890", True),
        ("container:abc123", True),
        ("container:vault-b", False),
        ("container:ffff", False),
        ("none", False),
        ("host", False),
        ("default", False),
        ("", False),
    ],
)
def test_network_mode_refers_to(mode, expected):
    assert network_mode_refers_to(mode, "vault-a", "abc123def4567890") is expected


def test_unreachable_engine_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    with pytest.raises(SystemFailure, match="start dockerd"):
        connect(timeout=2)
    with pytest.raises(SystemFailure, match="start dockerd"), Rollback() as rb:
        DockerHolderProvider().create(VaultNames.of("dkx"), rb, [], [])


# ---------------------------------------------------------------------- engine


@pytest.mark.docker
def test_images_build_offline(client, base_image):
    tag = images.ensure_holder_image(client)
    assert tag == images.HOLDER_TAG
    image = client.images.get(tag)
    assert image.labels[images.HOLDER_DIGEST_LABEL] == images.holder_digest()
    assert images.ensure_holder_image(client) == tag
    assert client.images.get(tag).id == image.id  # present and current: not rebuilt
    assert base_image == images.BASE_TAG
    out = client.containers.run(
        base_image, ["sh", "-c", "echo ok"], network_mode="none", remove=True
    )
    assert out.strip() == b"ok"


@pytest.mark.docker
def test_holder_namespace_and_attached_containers(client, provider, names, base_image):
    holder = _up(provider, names)
    assert namespace.netns_exists(names.netns)
    assert namespace.netns_inode(names.netns) == os.stat(f"/proc/{holder.pid}/ns/net").st_ino
    assert _links_in(names.netns_path) == ["lo"]
    assert provider.own_pids(names) == [holder.pid]

    attrs = client.api.inspect_container(names.container)
    assert attrs["HostConfig"]["NetworkMode"] == "none"
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert attrs["Config"]["Labels"][LABEL_VAULT] == names.name
    assert attrs["Config"]["Labels"][LABEL_ROLE] == "holder"
    assert attrs["Config"]["StopSignal"] == "SIGKILL"

    # a container joining the vault sees only lo, and the vault's DNS settings
    out = _attached(
        client,
        names,
        base_image,
        ["sh", "-c", "cat /proc/net/dev; echo ---; cat /etc/resolv.conf; echo ---; ip -o link"],
        remove=True,
    ).decode()
    net_dev, resolv, ip_link = out.split("---\n")
    assert _ifaces(net_dev) == ["lo"]
    assert "nameserver 10.64.0.1" in resolv and "search vault.test" in resolv
    assert [ln.split(":")[1].strip() for ln in ip_link.splitlines()] == ["lo"]

    sleeper = _attached(
        client, names, base_image, ["sleep", "600"], detach=True, name=f"{names.container}-app"
    )
    assert provider.attached_containers(names) == [sleeper.name]
    sleeper_pid = client.api.inspect_container(sleeper.id)["State"]["Pid"]
    assert sleeper_pid in namespace.pids_in_netns(names.netns)

    with pytest.raises(ConflictError, match=sleeper.name):
        provider.check_detachable(names)
    with pytest.raises(ConflictError, match=sleeper.name):
        provider.destroy(names, force=False)
    # the refusal changed nothing
    assert namespace.netns_exists(names.netns)
    assert provider.holder(names).pid == holder.pid
    sleeper.reload()
    assert sleeper.status == "running"

    provider.destroy(names, force=True)
    sleeper.reload()
    assert sleeper.status == "exited"  # stopped, not removed
    assert provider.attached_containers(names) == []
    assert provider.holder(names) is None
    assert _leftovers(client, names) == []
    provider.destroy(names, force=False)  # idempotent


@pytest.mark.docker
def test_failure_after_create_rolls_everything_back(client, provider, names):
    with pytest.raises(RuntimeError), Rollback() as rb:
        provider.create(names, rb, [], [])
        assert namespace.netns_exists(names.netns)
        raise RuntimeError("a later step of vault up failed")
    assert _leftovers(client, names) == []


@pytest.mark.docker
def test_conflicts(client, provider, names, base_image):
    holder = _up(provider, names)
    # the same vault again: refused before anything is made, the first one untouched
    with pytest.raises(ConflictError), Rollback() as rb:
        provider.create(names, rb, [], [])
    assert provider.holder(names).pid == holder.pid
    assert namespace.netns_inode(names.netns) == os.stat(f"/proc/{holder.pid}/ns/net").st_ino
    provider.destroy(names)
    assert _leftovers(client, names) == []

    # someone else's container named vault-NAME: refused, and never touched
    foreign = client.containers.run(
        base_image,
        ["sleep", "600"],
        name=names.container,
        network_mode="none",
        labels={TEST_LABEL: names.name},
        detach=True,
    )
    with pytest.raises(ConflictError, match="already exists"), Rollback() as rb:
        provider.create(names, rb, [], [])
    assert not os.path.lexists(names.netns_path)
    with pytest.raises(ConflictError, match="not the netns-vault holder"):
        provider.destroy(names, force=True)
    foreign.reload()
    assert foreign.status == "running"


@pytest.mark.docker
def test_rebind_after_the_holder_restarts(client, provider, names):
    holder = _up(provider, names)
    old_inode = namespace.netns_inode(names.netns)
    assert provider.rebind(names) is False  # nothing to do

    # a process still in the old namespace: rebinding would lose it, so it is refused
    squatter = subprocess.Popen(["nsenter", f"--net={names.netns_path}", "sleep", "600"])
    try:
        _wait_for(lambda: squatter.pid in namespace.pids_in_netns(names.netns))
        client.api.restart(names.container, timeout=1)
        new = provider.holder(names)
        assert new is not None and new.pid and new.pid != holder.pid
        new_inode = os.stat(f"/proc/{new.pid}/ns/net").st_ino
        assert new_inode != old_inode  # docker gave the restarted holder a new namespace
        with pytest.raises(ConflictError, match="old namespace"):
            provider.rebind(names)
        assert namespace.netns_inode(names.netns) == old_inode
    finally:
        squatter.kill()
        squatter.wait()

    assert provider.rebind(names) is True
    assert namespace.netns_inode(names.netns) == new_inode
    assert _links_in(names.netns_path) == ["lo"]  # the new namespace is empty
    assert provider.rebind(names) is False

    # a stopped holder is started again
    client.api.stop(names.container, timeout=1)
    assert provider.rebind(names) is True
    assert (
        namespace.netns_inode(names.netns)
        == os.stat(f"/proc/{provider.holder(names).pid}/ns/net").st_ino
    )

    provider.destroy(names)
    assert _leftovers(client, names) == []


def _wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
