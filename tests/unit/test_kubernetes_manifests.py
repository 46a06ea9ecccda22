"""deploy/kubernetes: the manifests are valid Kubernetes objects (the JSON schemas shipped by
kubernetes-validate, offline, strict: an unknown or misspelt field fails) and have the security
properties deploy/kubernetes/README.md claims."""

from __future__ import annotations

import glob
import os

import pytest

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(REPO, "deploy", "kubernetes")
# Native sidecars (init containers with restartPolicy: Always): beta and on by default in 1.29,
# GA in 1.33. Validated against both ends.
VERSIONS = ["1.29.0", "1.33.0"]
IPV6_SYSCTLS = {f"net.ipv6.conf.{i}.disable_ipv6": "1" for i in ("all", "default", "lo")}


def load_all() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(glob.glob(os.path.join(DEPLOY, "*.yaml"))):
        with open(path) as f:
            docs += [(os.path.basename(path), d) for d in yaml.safe_load_all(f) if d]
    return docs


def of_kind(kind: str) -> list[dict]:
    return [d for _f, d in load_all() if d["kind"] == kind]


def pod_spec() -> dict:
    (deployment,) = of_kind("Deployment")
    return deployment["spec"]["template"]["spec"]


def validate(doc: dict, version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_manifests_are_there():
    kinds = sorted(d["kind"] for _f, d in load_all())
    assert kinds == ["Deployment", "Namespace", "NetworkPolicy", "Secret"]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid(version):
    for name, doc in load_all():
        try:
            validate(doc, version)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']}: {exc.message} at {list(exc.path)}")


@pytest.mark.parametrize("breakage", [
    lambda d: d["spec"]["template"]["spec"]["initContainers"][0].update(restartPolicy=["Always"]),
    lambda d: d["spec"]["template"]["spec"]["initContainers"][0].update(restartpolicy="Always"),
    lambda d: d["spec"]["template"]["spec"]["securityContext"]["sysctls"][0].pop("value"),
    lambda d: d["spec"].update(replicas="one"),
])
def test_the_validation_catches_a_broken_manifest(breakage):
    (deployment,) = of_kind("Deployment")
    breakage(deployment)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, VERSIONS[-1])


def test_the_gateway_is_a_native_sidecar_with_net_admin_only():
    spec = pod_spec()
    (gateway,) = spec["initContainers"]
    assert gateway["restartPolicy"] == "Always"
    assert gateway["image"].startswith("netns-vault/gateway:")
    sc = gateway["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    # the workload starts only after the gateway's health check passed (startup probe)
    assert "--health" in gateway["startupProbe"]["exec"]["command"]


def test_no_workload_container_gets_a_capability_or_privilege():
    spec = pod_spec()
    assert spec["containers"]
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
        assert sc["runAsNonRoot"] is True
        assert not c.get("volumeMounts"), f"{c['name']} must not see the WireGuard config"
    assert spec["automountServiceAccountToken"] is False
    assert "hostNetwork" not in spec or spec["hostNetwork"] is False


def test_the_config_comes_from_a_secret_mounted_read_only_in_the_gateway_only():
    spec = pod_spec()
    (gateway,) = spec["initContainers"]
    mounts = {m["name"]: m for m in gateway["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    config = mounts["wg-config"]
    assert config["mountPath"] == "/config" and config["readOnly"] is True
    secret = volumes["wg-config"]["secret"]
    assert secret["defaultMode"] == 0o400
    assert any(d["metadata"]["name"] == secret["secretName"] for d in of_kind("Secret"))
    assert "/config/wg0.conf" in gateway["args"]


def test_ipv6_is_off_by_pod_sysctls_and_dns_is_the_vpns():
    spec = pod_spec()
    sysctls = {s["name"]: s["value"] for s in spec["securityContext"]["sysctls"]}
    assert sysctls == IPV6_SYSCTLS
    assert spec["dnsPolicy"] == "None" and spec["dnsConfig"]["nameservers"]


def test_the_network_policy_allows_only_wireguard_to_the_endpoint():
    (policy,) = of_kind("NetworkPolicy")
    spec = policy["spec"]
    (deployment,) = of_kind("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= labels.items()
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    assert spec["ingress"] == []
    (rule,) = spec["egress"]
    (peer,) = rule["to"]
    assert peer["ipBlock"]["cidr"].endswith("/32")
    assert rule["ports"] == [{"protocol": "UDP", "port": 51820}]
    (secret,) = of_kind("Secret")
    endpoint = next(ln.split("=", 1)[1].strip()
                    for ln in secret["stringData"]["wg0.conf"].splitlines()
                    if ln.startswith("Endpoint"))
    assert endpoint == f"{peer['ipBlock']['cidr'][:-3]}:51820"


def test_every_object_is_in_the_relaxed_namespace_only():
    (ns,) = of_kind("Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    for _f, d in load_all():
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == ns["metadata"]["name"]
