#!/usr/bin/env bash
# `make run`: sluice on :8080 in front of a bundled sluice-upstream on :8000,
# in the foreground; Ctrl-C stops both. Override with environment variables:
#   SLUICE_PORT=8080 UPSTREAM_PORT=8000 SLUICE_ARGS="--max-concurrent-requests 100"
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SLUICE_BUILD:-build}
sluice_port=${SLUICE_PORT:-8080}
upstream_port=${UPSTREAM_PORT:-8000}

"$build/sluice-upstream" --host 127.0.0.1 --port "$upstream_port" --workers 1 &
upstream_pid=$!
# shellcheck disable=SC2086
"$build/sluice" --listen-port "$sluice_port" --target-host 127.0.0.1 --target-port "$upstream_port" \
	${SLUICE_ARGS:-} &
sluice_pid=$!
stop() {
	kill -TERM "$sluice_pid" 2>/dev/null || true
	wait "$sluice_pid" 2>/dev/null || true
	kill -TERM "$upstream_pid" 2>/dev/null || true
	wait "$upstream_pid" 2>/dev/null || true
}
trap stop EXIT INT TERM
echo "sluice on http://localhost:$sluice_port/ -> sluice-upstream on 127.0.0.1:$upstream_port"
echo "try: curl localhost:$sluice_port/   curl 'localhost:$sluice_port/?delay_ms=500&size=100'   curl localhost:$sluice_port/proxy-health"
wait "$sluice_pid"
