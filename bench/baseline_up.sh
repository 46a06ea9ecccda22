#!/bin/bash
# Hand-written equivalent of `vault up NAME --config FILE` with the userspace (wireguard-go) driver:
# the reference the benchmark (bench_vault.py) compares `vault up` against.
#
#   baseline_up.sh NS IFNAME KEYFILE PEER_PUBKEY ENDPOINT ALLOWED_IPS ADDRESS MTU DNS RUNDIR
#
# KEYFILE holds the interface's private key (mode 0600); the key never appears in an argv.
# wireguard-go's pid goes to RUNDIR/IFNAME.pid and its log to RUNDIR/IFNAME.log, for
# baseline_down.sh. Run it where `vault up` would run (the benchmark uses the test world's host
# namespace), as root. On failure it stops; baseline_down.sh cleans up whatever was made.
set -euo pipefail

ns=$1 ifname=$2 keyfile=$3 peer=$4 endpoint=$5 allowed=$6 address=$7 mtu=$8 dns=$9 rundir=${10}
sock=/var/run/wireguard/$ifname.sock

# 1. the namespace, IPv6 off, lo up
ip netns add "$ns"
ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 \
    net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.lo.disable_ipv6=1
ip -n "$ns" link set lo up

# 2. the firewall walls: DROP policies, accept only lo and the tunnel; IPv6 DROP policies only
for chain in INPUT FORWARD OUTPUT; do
    ip netns exec "$ns" iptables-legacy -P "$chain" DROP
done
ip netns exec "$ns" iptables-legacy -A INPUT -i lo -j ACCEPT
ip netns exec "$ns" iptables-legacy -A OUTPUT -o lo -j ACCEPT
ip netns exec "$ns" iptables-legacy -A INPUT -i "$ifname" -j ACCEPT
ip netns exec "$ns" iptables-legacy -A OUTPUT -o "$ifname" -j ACCEPT
for chain in INPUT FORWARD OUTPUT; do
    ip netns exec "$ns" ip6tables-legacy -P "$chain" DROP
done

# 3. wireguard-go on the host side (its UDP socket stays here), wait for its UAPI socket
mkdir -p "$rundir"
WG_PROCESS_FOREGROUND=1 wireguard-go "$ifname" </dev/null >>"$rundir/$ifname.log" 2>&1 &
pid=$!
echo "$pid" >"$rundir/$ifname.pid"
for _ in $(seq 1000); do
    [[ -S $sock ]] && break
    kill -0 "$pid" 2>/dev/null || { echo "wireguard-go exited" >&2; exit 1; }
    sleep 0.005
done
[[ -S $sock ]] || { echo "wireguard-go: no UAPI socket $sock" >&2; exit 1; }

# 4. the tunnel into the namespace, configured, addressed, default route through it
ip link set "$ifname" netns "$ns"
wg set "$ifname" private-key "$keyfile" peer "$peer" endpoint "$endpoint" allowed-ips "$allowed"
ip -n "$ns" addr add "$address" dev "$ifname"
ip -n "$ns" link set "$ifname" mtu "$mtu"
ip -n "$ns" link set "$ifname" up
ip -n "$ns" route add default dev "$ifname"

# 5. DNS for programs started with `ip netns exec`
mkdir -p "/etc/netns/$ns"
printf 'nameserver %s\noptions edns0\n' "$dns" >"/etc/netns/$ns/resolv.conf"
