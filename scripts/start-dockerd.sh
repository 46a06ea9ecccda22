#!/bin/sh
# Start a Docker engine for netns-vault's tests and CI, unless one already answers.
#
#   --bridge=none                  no docker0: a container can only get a network we give it
#                                  (network_mode=none / container:vault-NAME), never a NATed one
#   --iptables=false --ip6tables=false
#                                  dockerd leaves the root namespace firewall alone
#
# Idempotent: exits 0 at once when `docker info` already answers. Waits up to
# DOCKERD_TIMEOUT seconds (default 60) for the engine. Log: /var/log/dockerd-netns-vault.log.
#
# `start-dockerd.sh restart` stops the running engine first (SIGTERM, as a service manager does:
# dockerd stops its containers, and brings back those with a restart policy when it starts
# again), waits for it to exit, then starts it as above. The supervisor's tests use it.
set -eu

LOG=${DOCKERD_LOG:-/var/log/dockerd-netns-vault.log}
TIMEOUT=${DOCKERD_TIMEOUT:-60}
MODE=${1:-start}

case "$MODE" in
    start | restart) ;;
    *)
        echo "usage: start-dockerd.sh [start|restart]" >&2
        exit 2
        ;;
esac

if [ "$MODE" = restart ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "start-dockerd.sh must run as root" >&2
        exit 3
    fi
    if [ -s /var/run/docker.pid ] && pid=$(cat /var/run/docker.pid) && kill -0 "$pid" 2>/dev/null
    then
        echo "stopping dockerd (pid $pid)"
        kill -TERM "$pid"
        i=0
        while kill -0 "$pid" 2>/dev/null; do
            if [ "$i" -ge "$TIMEOUT" ]; then
                echo "dockerd (pid $pid) did not exit within ${TIMEOUT}s" >&2
                exit 3
            fi
            sleep 1
            i=$((i + 1))
        done
        echo "dockerd stopped after ${i}s"
    fi
fi

if docker info >/dev/null 2>&1; then
    echo "dockerd already running"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    echo "dockerd not found: install docker.io (apt-get install docker.io)" >&2
    exit 3
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "start-dockerd.sh must run as root" >&2
    exit 3
fi

# A dockerd may be running but still starting (a second call racing the first): wait for it
# rather than starting another one, which would fail on the pid file anyway.
if [ -s /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    echo "dockerd (pid $(cat /var/run/docker.pid)) is starting; waiting"
else
    rm -f /var/run/docker.pid
    echo "starting dockerd (log: $LOG)"
    # setsid + nohup: the engine outlives this shell and the CI step that ran it.
    setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false \
        >>"$LOG" 2>&1 </dev/null &
fi

i=0
while [ "$i" -lt "$TIMEOUT" ]; do
    if docker info >/dev/null 2>&1; then
        echo "dockerd is up after ${i}s"
        exit 0
    fi
    sleep 1
    i=$((i + 1))
done

echo "dockerd did not answer within ${TIMEOUT}s; last lines of $LOG:" >&2
tail -n 30 "$LOG" >&2 || true
exit 3
