#!/usr/bin/env bash
# bench/cluster.sh — one limit for several replicas (issue 14): what the
# upstream sees, what it costs in Redis commands, and how fast slots follow
# the load.
#
#   upstream  build/sluice-upstream --workers 2, every answer delayed
#             DELAY_MS (50): the ideal is LIMIT / DELAY = 2,000 req/s
#   redis     a redis-server of its own (no persistence)
#   replicas  REPLICAS (3) sluice processes, --workers 1 each,
#             --max-concurrent-requests LIMIT (100) for all of them together,
#             --redis-url to that Redis
#   load      one sluice-load per replica, CONNS (60) connections each, closed
#             loop, DURATION (10) s
#
# It prints: served requests per second (sum) and its share of the ideal, the
# upstream's peak of requests in flight (must stay <= LIMIT), Redis commands
# per second (INFO commandstats: EVAL calls; and the replicas' own count in
# /proxy-metrics cluster.redis_commands), the replicas' CPU per request, and
# each replica's lease at the end. Then a second run moves all the load to
# replica 1 and prints how long it takes to hold 80 % of the slots.
#
# Usage: bench/cluster.sh   (env: BUILD=build REPLICAS=3 LIMIT=100 CONNS=60
#                            DURATION=10 DELAY_MS=50)
# Everything it starts is stopped on exit (trap EXIT, by PID).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BUILD=${BUILD:-build}
REPLICAS=${REPLICAS:-3}
LIMIT=${LIMIT:-100}
CONNS=${CONNS:-60}
DURATION=${DURATION:-10}
DELAY_MS=${DELAY_MS:-50}

SCRIPT=cluster.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

command -v redis-server >/dev/null || die "redis-server is not installed (Debian package redis-server)"
command -v redis-cli >/dev/null || die "redis-cli is not installed (Debian package redis-tools)"
for p in sluice sluice-upstream sluice-load; do
	[ -x "$BUILD/$p" ] || make -s BUILD="$BUILD" "$BUILD/$p" || die "cannot build $BUILD/$p"
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

UP_PORT=$(free_port)
start upstream "$UP_PORT" "$ROOT/$BUILD/sluice-upstream" --port "$UP_PORT" --workers 2
R_PORT=$(free_port)
start redis "$R_PORT" redis-server --port "$R_PORT" --bind 127.0.0.1 --save '' --appendonly no
declare -a SP
for i in $(seq 1 "$REPLICAS"); do
	SP[i]=$(free_port)
	start "sluice$i" "${SP[i]}" "$ROOT/$BUILD/sluice" --listen-host 127.0.0.1 --listen-port "${SP[i]}" \
		--target-host 127.0.0.1 --target-port "$UP_PORT" --workers 1 --log-level warn \
		--max-concurrent-requests "$LIMIT" --max-queue-size 1000 --queue-timeout 30 --pool-maxsize "$LIMIT" \
		--redis-url "redis://127.0.0.1:$R_PORT"
done

metric() { # port jq-path
	curl -s "http://127.0.0.1:$1/proxy-metrics" | python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d' + ''.join('[%r]' % k for k in sys.argv[1].split('.'))))" "$2"
}
evals() { redis-cli -p "$R_PORT" info commandstats | awk -F'[=,:]' '/^cmdstat_eval:/ {print $3}'; }

URL_PATH="/?delay_ms=$DELAY_MS"
LOADS=()
# warm-up: pools, leases
for i in $(seq 1 "$REPLICAS"); do
	"$ROOT/$BUILD/sluice-load" -c "$CONNS" -z 1s -j "http://127.0.0.1:${SP[i]}$URL_PATH" >/dev/null &
	LOADS+=($!)
done
wait "${LOADS[@]}" # not a bare wait: the servers are children too
LOADS=()
curl -s -X POST "http://127.0.0.1:$UP_PORT/__reset" >/dev/null
e0=$(evals)
declare -A C0
for i in $(seq 1 "$REPLICAS"); do C0[$i]=$(cpu_ticks "${PID[sluice$i]}"); done
log "steady: $REPLICAS replicas x $CONNS connections, ${DURATION}s"
for i in $(seq 1 "$REPLICAS"); do
	"$ROOT/$BUILD/sluice-load" -c "$CONNS" -z "${DURATION}s" -j "http://127.0.0.1:${SP[i]}$URL_PATH" >"$TMP/load$i.json" &
	LOADS+=($!)
done
wait "${LOADS[@]}"
e1=$(evals)
ticks=0
for i in $(seq 1 "$REPLICAS"); do ticks=$((ticks + $(cpu_ticks "${PID[sluice$i]}") - C0[$i])); done
served=0
for i in $(seq 1 "$REPLICAS"); do
	served=$((served + $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['success'])" "$TMP/load$i.json")))
done
peak=$(curl -s "http://127.0.0.1:$UP_PORT/__stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['peak_inflight'])")
ideal=$(awk -v l="$LIMIT" -v d="$DELAY_MS" 'BEGIN {printf "%.0f", l * 1000 / d}')

echo
echo "sluice bench/cluster.sh — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs; $(redis-server --version | awk '{print $1, $2, $3}')"
echo "$REPLICAS replicas (--workers 1), limit $LIMIT for all, upstream delay ${DELAY_MS} ms (ideal $ideal req/s)," \
	"$CONNS connections per replica, ${DURATION}s"
echo
awk -v n="$served" -v d="$DURATION" -v i="$ideal" 'BEGIN {printf "served            %8.0f req/s  (%.1f%% of the ideal)\n", n / d, 100 * n / d / i}'
echo "upstream peak     $(printf '%8s' "$peak") in flight  (limit $LIMIT)"
awk -v e=$((e1 - e0)) -v d="$DURATION" -v n="$served" 'BEGIN {printf "redis EVAL        %8.1f /s      (%.2f per 1,000 requests)\n", e / d, 1000 * e / n}'
awk -v t="$ticks" -v hz="$HZ" -v n="$served" 'BEGIN {printf "sluice CPU        %8.2f us/request (all replicas)\n", t / hz / n * 1e6}'
for i in $(seq 1 "$REPLICAS"); do
	echo "replica $i          lease $(metric "${SP[i]}" cluster.lease), redis_commands $(metric "${SP[i]}" cluster.redis_commands), state $(metric "${SP[i]}" cluster.state)"
done

# the load moves to replica 1
log "move: all load to replica 1"
"$ROOT/$BUILD/sluice-load" -c $((CONNS * REPLICAS)) -z 4s -j "http://127.0.0.1:${SP[1]}$URL_PATH" >/dev/null &
loadpid=$!
t0=$(date +%s.%N)
moved=""
while kill -0 "$loadpid" 2>/dev/null; do
	l=$(metric "${SP[1]}" cluster.lease)
	if [ "$l" -ge $((LIMIT * 8 / 10)) ]; then
		moved=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
		break
	fi
	sleep 0.05
done
wait "$loadpid" || true
echo "after the move    replica 1 held >= 80 % of the slots after ${moved:-never} s"
