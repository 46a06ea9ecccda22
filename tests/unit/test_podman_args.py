"""`vault podman run`'s argument handling (pure logic; the real podman runs in the integration test)."""

from __future__ import annotations

import resource

import pytest

from netns_vault import podman
from netns_vault.errors import UsageError


@pytest.mark.parametrize("args, options, rest", [
    (["alpine"], [], ["alpine"]),
    (["--rm", "-it", "alpine", "sh"], ["--rm", "-it"], ["alpine", "sh"]),
    (["-e", "A=1", "-eB=2", "--name", "x", "img", "-e", "C"],
     ["-e", "A=1", "-eB=2", "--name", "x"], ["img", "-e", "C"]),
    (["-d", "--env=K=V", "-v", "/a:/b", "img"], ["-d", "--env=K=V", "-v", "/a:/b"], ["img"]),
    (["--", "img", "--privileged"], ["--"], ["img", "--privileged"]),
    # a forbidden word after the image is the command's, not podman's
    (["img", "sh", "-c", "--network host"], [], ["img", "sh", "-c", "--network host"]),
    (["--privileged=false", "img"], ["--privileged=false"], ["img"]),
])
def test_split_at_the_image(args, options, rest):
    parsed = podman.parse_run_args(args)
    assert list(parsed.options) == options
    assert list(parsed.rest) == rest


@pytest.mark.parametrize("args", [
    ["--privileged", "img"], ["--privileged=true", "img"], ["--cap-add", "NET_ADMIN", "img"],
    ["--cap-add=ALL", "img"], ["--network", "host", "img"], ["--net=bridge", "img"],
    ["--network=ns:/run/netns/other", "img"], ["-p", "80:80", "img"], ["-dp", "80:80", "img"],
    ["-P", "img"], ["--publish-all", "img"], ["--dns", "1.1.1.1", "img"], ["--dns-search=x", "img"],
    ["--pod", "p", "img"], ["--rm", "-e", "A=1", "--privileged", "img"],
    # an unknown option is taken to have a value: the scan goes on and still finds the refusal
    ["--some-new-flag", "img", "--privileged", "img"],
])
def test_a_way_out_is_refused(args):
    with pytest.raises(UsageError, match="not allowed"):
        podman.parse_run_args(args)


@pytest.mark.parametrize("args", [[], ["--rm"], ["-e"], ["--name"]])
def test_no_image(args):
    with pytest.raises(UsageError):
        podman.parse_run_args(args)


def test_ulimits_fill_in_what_the_user_did_not_set():
    limits = {"nofile": (1024, 20000), "nproc": (32768, 32768)}
    both = ["--ulimit", "nofile=1024:20000", "--ulimit", "nproc=32768:32768"]
    assert podman.ulimit_args(frozenset(), limits) == both
    assert podman.ulimit_args(frozenset({"nofile"}), limits) == both[2:]
    assert podman.ulimit_args(frozenset({"nofile", "nproc"}), limits) == []
    assert podman.ulimit_args(frozenset({"host"}), limits) == []
    parsed = podman.parse_run_args(["--ulimit", "nproc=10:10", "--ulimit=core=0", "img"])
    assert parsed.ulimits == frozenset({"nproc", "core"})


def test_default_ulimits_stay_within_the_hard_limits(monkeypatch):
    table = {resource.RLIMIT_NOFILE: (1024, 20000),
             resource.RLIMIT_NPROC: (resource.RLIM_INFINITY, resource.RLIM_INFINITY)}
    monkeypatch.setattr(resource, "getrlimit", lambda kind: table[kind])
    assert podman.default_ulimits() == {"nofile": (1024, 20000),
                                        "nproc": (podman.NPROC_CAP, podman.NPROC_CAP)}
    table[resource.RLIMIT_NPROC] = (500, 1000)
    table[resource.RLIMIT_NOFILE] = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    assert podman.default_ulimits() == {"nofile": (podman.NOFILE_CAP, podman.NOFILE_CAP),
                                        "nproc": (500, 1000)}
