#!/bin/sh
# Install the Docker engine and docker-compose v1 from Debian and start
# dockerd by hand (no systemd on our machines). Idempotent: does nothing
# that is already done, and exits 0 once `docker info` answers.
#
#   scripts/start-docker.sh            # as root
#   DOCKERD_LOG=/path/log scripts/start-docker.sh
set -eu

log=${DOCKERD_LOG:-/tmp/dockerd.log}
wait_secs=${DOCKERD_WAIT:-60}

if docker info >/dev/null 2>&1; then
    echo "docker: already running"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "start-docker.sh: must run as root (installs packages, starts dockerd)" >&2
    exit 1
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1; then
    echo "docker: installing docker.io docker-compose"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends docker.io docker-compose; then
        apt-get update
        apt-get install -y --no-install-recommends docker.io docker-compose
    fi
fi

# Start dockerd unless one is already starting (its pid file names a live
# process); a pid file left by a dead daemon would stop a new one.
pidfile=/var/run/docker.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "docker: dockerd $(cat "$pidfile") already started, waiting for it"
else
    rm -f "$pidfile"
    echo "docker: starting dockerd (log: $log)"
    nohup dockerd >"$log" 2>&1 </dev/null &
fi

i=0
while ! docker info >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt "$((wait_secs * 5))" ]; then
        echo "start-docker.sh: dockerd did not answer within ${wait_secs}s; last lines of $log:" >&2
        tail -n 20 "$log" >&2 || true
        exit 1
    fi
    sleep 0.2
done
echo "docker: ready ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
