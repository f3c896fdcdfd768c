#!/usr/bin/env bash
# bench/load-vs-wrk.sh — sluice-load against wrk, on the same fast upstream,
# with the same connections, threads and duration, in alternating rounds.
#
# For each run it records requests/s and the tool's own CPU time (user +
# system, from /usr/bin/time) per request, then prints a table and the
# sluice-load/wrk ratios. The bar (issue 6): req/s ratio >= 1, CPU/request
# ratio <= 1.
#
# The upstream is build/sluice-upstream --workers 1 (built if missing),
# pinned to CPU 1 and the load tools to CPU 0 when there are two CPUs or
# more, so the tools do not compete with the server for a core.
#
# Environment: BUILD (build), CONNS (50), THREADS (1), DURATION (5 s),
# ROUNDS (3), URL (benchmark an already running server instead).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
CONNS=${CONNS:-50}
THREADS=${THREADS:-1}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
URL=${URL:-}
TMP=$(mktemp -d)
UP_PID=

cleanup() {
	if [ -n "$UP_PID" ]; then
		kill "$UP_PID" 2>/dev/null || true
		wait "$UP_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

if ! command -v wrk >/dev/null; then
	echo "installing wrk..." >&2
	SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get install -y wrk >/dev/null || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y wrk >/dev/null; }
fi
if [ ! -x /usr/bin/time ]; then
	SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get install -y time >/dev/null
fi

want=("$BUILD/sluice-load")
[ -n "$URL" ] || want+=("$BUILD/sluice-upstream")
for bin in "${want[@]}"; do
	[ -x "$bin" ] || make -s BUILD="$BUILD" "$bin"
done

PIN_UP=()
PIN_TOOL=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	PIN_UP=(taskset -c 1)
	PIN_TOOL=(taskset -c 0)
fi

if [ -z "$URL" ]; then
	PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	"${PIN_UP[@]}" "$BUILD/sluice-upstream" --port "$PORT" --workers 1 >/dev/null 2>"$TMP/upstream.err" &
	UP_PID=$!
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
		sleep 0.05
	done
	URL="http://127.0.0.1:$PORT/"
fi

# run_tool NAME ROUND: appends "name round requests rps cpu_s" to $TMP/results
run_tool() {
	local name=$1 round=$2 n rps cpu
	if [ "$name" = wrk ]; then
		/usr/bin/time -f '%U %S' -o "$TMP/time" "${PIN_TOOL[@]}" \
			wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" "$URL" >"$TMP/out" 2>&1
		n=$(awk '/requests in/ {print $1}' "$TMP/out")
		rps=$(awk '/Requests\/sec:/ {print $2}' "$TMP/out")
	else
		/usr/bin/time -f '%U %S' -o "$TMP/time" "${PIN_TOOL[@]}" \
			"$BUILD/sluice-load" --url "$URL" --threads "$THREADS" --concurrent "$CONNS" \
			--duration "$DURATION" --json >"$TMP/out" 2>"$TMP/err" || true
		n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"])' "$TMP/out")
		rps=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests_per_second"])' "$TMP/out")
	fi
	cpu=$(awk 'NR == 1 {print $1 + $2}' "$TMP/time")
	echo "$name $round $n $rps $cpu" >>"$TMP/results"
}

echo "target $URL, $CONNS connections, $THREADS thread(s), ${DURATION} s x $ROUNDS rounds" \
	"${PIN_TOOL:+(tools on CPU 0, upstream on CPU 1)}"
for round in $(seq "$ROUNDS"); do
	run_tool wrk "$round"
	run_tool sluice-load "$round"
done

awk '
	BEGIN { printf "\n%-12s %5s %10s %12s %8s %12s\n", "tool", "round", "requests", "req/s", "cpu s", "cpu us/req" }
	{
		printf "%-12s %5d %10d %12.0f %8.2f %12.2f\n", $1, $2, $3, $4, $5, $5 * 1e6 / $3
		rps[$1] += $4; cpu[$1] += $5; n[$1] += $3; runs[$1]++
	}
	END {
		printf "\n%-12s %12s %12s\n", "mean", "req/s", "cpu us/req"
		for (t in runs) printf "%-12s %12.0f %12.2f\n", t, rps[t] / runs[t], cpu[t] * 1e6 / n[t]
		r = (rps["sluice-load"] / runs["sluice-load"]) / (rps["wrk"] / runs["wrk"])
		c = (cpu["sluice-load"] / n["sluice-load"]) / (cpu["wrk"] / n["wrk"])
		printf "\nsluice-load / wrk: req/s x%.3f (want >= 1), cpu per request x%.3f (want <= 1)\n", r, c
	}
' "$TMP/results"
