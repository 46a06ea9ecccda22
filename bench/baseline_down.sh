#!/bin/bash
# Hand-written equivalent of `vault down NAME` for what baseline_up.sh made:
# stop wireguard-go (and wait until it is gone), delete the namespace, remove /etc/netns/NS.
#
#   baseline_down.sh NS IFNAME RUNDIR
#
# Idempotent: anything already gone is skipped. wireguard-go is signalled only if the recorded
# pid still is a wireguard-go (pids are reused).
set -uo pipefail

ns=$1 ifname=$2 rundir=$3
pidfile=$rundir/$ifname.pid

if [[ -f $pidfile ]]; then
    read -r pid <"$pidfile"
    comm=
    read -r comm 2>/dev/null </proc/"$pid"/comm || true
    if [[ $comm == wireguard-go ]]; then
        kill "$pid" 2>/dev/null
        # wait until it has exited (a zombie counts as exited)
        for _ in $(seq 600); do
            read -r stat 2>/dev/null </proc/"$pid"/stat || break
            state=${stat##*) }
            [[ ${state%% *} == Z ]] && break
            sleep 0.005
        done
        if read -r stat 2>/dev/null </proc/"$pid"/stat; then
            state=${stat##*) }
            [[ ${state%% *} == Z ]] || kill -KILL "$pid" 2>/dev/null
        fi
    fi
fi
[[ -e /run/netns/$ns ]] && ip netns del "$ns"
rm -rf "/etc/netns/$ns"
rm -f "/var/run/wireguard/$ifname.sock" "$pidfile" "$rundir/$ifname.log"
exit 0
