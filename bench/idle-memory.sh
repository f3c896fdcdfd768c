#!/usr/bin/env bash
# bench/idle-memory.sh — what an idle keep-alive client connection costs in
# memory: sluice beside nginx and HAProxy, in one run.
#
# For each proxy (one worker each, in front of sluice-upstream) it opens N
# client connections (default 10000), then sends one GET on each and reads
# the answer, keeping every connection open and idle. It prints the
# proxy's resident memory (VmRSS of the processes holding the connections:
# nginx's workers, not its master) before any connection, with N idle
# connections that never sent a request, and after one request on each, and
# the bytes per connection of both. Kernel socket memory is not counted
# (it is the same for every proxy).
#
# Usage: bench/idle-memory.sh   (env: N=10000 TARGETS="sluice nginx haproxy")
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-build}
N=${N:-10000}
# HAProxy wants two descriptors per connection (client and server side)
fdmax=$(ulimit -Hn)
[ "$fdmax" = unlimited ] || [ $((2 * N + 300)) -le "$fdmax" ] || N=$(((fdmax - 300) / 2))
TARGETS=${TARGETS:-"sluice nginx haproxy"}
WORKERS=1
SCRIPT=idle-memory.sh
. "$ROOT/bench/lib.sh"

need_tools
make -s -j2 BUILD="$BUILD" all
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((N + 200)) ] || die "open-file limit $(ulimit -n) is too low for $N connections"
MAXCONN=$((N + 100))
SLUICE_EXTRA=(--client-idle-timeout 600 --client-header-timeout 600)

UP_PORT=$(free_port)
start upstream "$UP_PORT" "$ROOT/$BUILD/sluice-upstream" --port "$UP_PORT" --workers 1

rss_kb() { # pids... -> summed VmRSS in kB
	local total=0 p
	for p in "$@"; do total=$((total + $(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status"))); done
	echo "$total"
}

holders() { # name -> the pids that hold client connections
	case $1 in
	nginx) pgrep -P "${PID[nginx]}" ;; # the workers
	*) echo "${PID[$1]}" ;;
	esac
}

# Opens N connections to port $1; with $2 = "request", one GET on each
# (answer read). Prints "ready" when done, then holds them until stdin closes.
cat >"$TMP/hold.py" <<'PY'
import socket, sys
port, n, request = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "request"
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    if request:
        s.sendall(b"GET /?size=20 HTTP/1.1\r\nHost: t\r\n\r\n")
        got = b""
        while b"\r\n\r\n" not in got or len(got.split(b"\r\n\r\n", 1)[1]) < 20:
            b = s.recv(4096)
            if not b:
                raise SystemExit("connection %d closed" % i)
            got += b
    socks.append(s)
print("ready", flush=True)
sys.stdin.read()
PY

hold() { # port mode -> starts the holder; waits until it is ready
	coproc HOLDER { python3 "$TMP/hold.py" "$1" "$N" "$2"; }
	read -r line <&"${HOLDER[0]}" || die "holder failed"
	[ "$line" = ready ] || die "holder said: $line"
	sleep 1 # let the proxy finish with the last ones
}
release() {
	exec {HOLDER[1]}>&-
	wait "$HOLDER_PID" 2>/dev/null || true
	sleep 1
}

printf '%-8s %10s %14s %12s %16s %12s\n' proxy base_kB idle_kB B/conn after_req_kB B/conn
for t in $TARGETS; do
	start_proxy "$t"
	# warm up: the first requests allocate buffers and pools once
	python3 "$TMP/hold.py" "${PORT[$t]}" 20 request </dev/null >/dev/null
	sleep 1
	# shellcheck disable=SC2046
	base=$(rss_kb $(holders "$t"))
	hold "${PORT[$t]}" connect
	# shellcheck disable=SC2046
	idle=$(rss_kb $(holders "$t"))
	release
	hold "${PORT[$t]}" request
	# shellcheck disable=SC2046
	after=$(rss_kb $(holders "$t"))
	release
	awk -v t="$t" -v b="$base" -v i="$idle" -v a="$after" -v n="$N" 'BEGIN {
		printf "%-8s %10d %14d %12.0f %16d %12.0f\n", t, b, i, (i - b) * 1024 / n, a, (a - b) * 1024 / n }'
	kill -TERM "${PID[$t]}" 2>/dev/null || true
done
