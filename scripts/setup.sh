#!/usr/bin/env bash
# Installs what netns-vault needs on a fresh Debian 12 / Ubuntu machine, then a venv with the
# package in it (.venv/bin/vault). Idempotent: packages already installed are not fetched again.
#
#   scripts/setup.sh            system packages for vaults and the demo
#   scripts/setup.sh --tests    also Docker (docker.io, docker-compose) and podman for the test suite
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (sudo): it installs packages with apt-get" >&2
    exit 3
fi

packages=(
    iproute2 iptables wireguard-go wireguard-tools   # namespaces, links, the firewall, WireGuard
    python3 python3-venv python3-dev gcc             # the venv; python-iptables builds a tiny C lib
    tcpdump dnsmasq-base curl busybox-static         # the demo's closed world and its probes
    conntrack procps util-linux kmod sudo            # lockdown, sysctl, nsenter/mount, vault run
    libseccomp2 xdg-dbus-proxy                       # vault run: seccomp wall, filtered D-Bus
    nftables python3-nftables                        # --firewall nftables (libnftables JSON)
)
if [ "${1:-}" = "--tests" ]; then
    packages+=(docker.io docker-compose)
    packages+=(mount)   # the attack tests' spoofed resolv.conf (a private bind mount)
    # confinement tests: a session bus, gdbus, Firefox ESR under Xvfb and a screen dump
    packages+=(dbus-daemon libglib2.0-bin firefox-esr xvfb x11-apps)
    packages+=(desktop-file-utils)   # menu-entry tests (gio comes with libglib2.0-bin)
    packages+=(podman)   # tests/integration/test_podman_vault.py
    packages+=(systemd)  # systemd-analyze verify of the units `vault enable`/`attach-unit` write
    packages+=(iperf3)   # bench/bench_throughput.py (a benchmark, not a test)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The venv uses the distribution's python3, so `sudo vault` works whatever pyenv or PATH say.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
    /usr/bin/python3 -m venv .venv
fi
extra=""
[ "${1:-}" = "--tests" ] && extra="[test]"
# Not editable: pip compiles the bytecode, so `vault run` starts fast even where
# PYTHONDONTWRITEBYTECODE is set. (Hacking on it? .venv/bin/pip install -e .)
.venv/bin/pip install -q --disable-pip-version-check ".${extra}"
echo "setup.sh: ready: $(pwd)/.venv/bin/vault"
