#!/usr/bin/env bash
# A guided tour of sluice: starts sluice-upstream (a controllable test
# upstream) and a few sluice instances on free loopback ports, and walks
# through every feature with real commands and their (trimmed) output.
#
#   scripts/demo.sh                 # ~1 minute, with pauses to read
#   DEMO_FAST=1 scripts/demo.sh     # no pauses, shorter waits (used by the tests)
#   SLUICE_BUILD=build-asan scripts/demo.sh   # binaries from another build dir
#
# Every step checks what it shows; the script exits 0 when all checks pass,
# 1 otherwise. Everything it started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${SLUICE_BUILD:-build}
FAST=${DEMO_FAST:-0}
[ "$FAST" = 0 ] && FAST=""

for tool in curl python3; do
	command -v "$tool" >/dev/null || { echo "demo: $tool is required" >&2; exit 2; }
done
if [ ! -x "$BUILD/sluice" ] || [ ! -x "$BUILD/sluice-upstream" ] || [ ! -x "$BUILD/sluice-load" ]; then
	echo "Building sluice (make -s BUILD=$BUILD all) ..."
	make -s BUILD="$BUILD" all
fi

# ---- helpers -----------------------------------------------------------------

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-demo.XXXXXX")
PIDS=()
FAILURES=0
STEP=0

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -t 1 ]; then C_B=$'\e[1m' C_G=$'\e[32m' C_R=$'\e[31m' C_D=$'\e[2m' C_N=$'\e[0m'; else C_B="" C_G="" C_R="" C_D="" C_N=""; fi

# pause SECONDS: time to read (skipped with DEMO_FAST=1)
pause() { [ -n "$FAST" ] || sleep "$1"; }
# pick NORMAL FAST: a duration for this mode
pick() { if [ -n "$FAST" ]; then echo "$2"; else echo "$1"; fi; }

step() {
	STEP=$((STEP + 1))
	printf '\n%s== Step %d: %s ==%s\n' "$C_B" "$STEP" "$1" "$C_N"
}
say() { printf '%s\n' "$*" | fold -s -w 78; }
# run: show a command, then run it with its output indented
run() {
	printf '%s$ %s%s\n' "$C_D" "$*" "$C_N"
	"$@" 2>&1 | sed 's/^/    /'
}
# load FILE ARGS...: shows and runs sluice-load --json, its JSON into FILE
load() {
	local out=$1
	shift
	printf '%s$ sluice-load %s --json%s\n' "$C_D" "$*" "$C_N"
	"$BUILD/sluice-load" "$@" --json >"$out" || true
}
# check DESCRIPTION COMMAND...: the step's claim, verified
check() {
	local what=$1
	shift
	if "$@"; then
		printf '  %s✓ %s%s\n' "$C_G" "$what" "$C_N"
	else
		printf '  %s✗ FAILED: %s%s\n' "$C_R" "$what" "$C_N"
		FAILURES=$((FAILURES + 1))
	fi
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT PID: until something listens on PORT (and PID is alive)
wait_port() {
	local i
	for i in $(seq 1 200); do
		kill -0 "$2" 2>/dev/null || return 1
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.05
		: "$i"
	done
	return 1
}

# jget DOTTED.PATH [...]: values from the JSON on stdin, one per line
jget() {
	python3 -c '
import json, sys
d = json.load(sys.stdin)
for path in sys.argv[1:]:
    v = d
    for k in path.split("."):
        v = v[k]
    print(json.dumps(v) if isinstance(v, (dict, list)) else v)' "$@"
}

# jshow DOTTED.PATH [...]: "path = value" lines from the JSON on stdin
jshow() {
	python3 -c '
import json, sys
d = json.load(sys.stdin)
for path in sys.argv[1:]:
    v = d
    for k in path.split("."):
        v = v[k]
    print("    %-34s %s" % (path, json.dumps(v)))' "$@"
}

# Floating-point comparison: fcmp "a < b"
fcmp() { python3 -c "import sys; sys.exit(0 if ($1) else 1)"; }

UP_PORT=$(free_port)
start_upstream() {
	"$BUILD/sluice-upstream" --host 127.0.0.1 --port "$UP_PORT" --workers 2 >"$TMP/upstream.log" 2>&1 &
	PIDS+=($!)
	wait_port "$UP_PORT" $! || { echo "demo: sluice-upstream did not start" >&2; cat "$TMP/upstream.log" >&2; exit 1; }
}

# start_sluice NAME ARGS...: a sluice on a free port in front of the upstream;
# sets SL_PORT and SL_PID; its log goes to $TMP/NAME.log
start_sluice() {
	local name=$1
	shift
	SL_PORT=$(free_port)
	printf '%s$ sluice --listen-port %s --target-host 127.0.0.1 --target-port %s %s%s\n' \
		"$C_D" "$SL_PORT" "$UP_PORT" "$*" "$C_N"
	"$BUILD/sluice" --listen-host 127.0.0.1 --listen-port "$SL_PORT" \
		--target-host 127.0.0.1 --target-port "$UP_PORT" --workers 2 "$@" >"$TMP/$name.log" 2>&1 &
	SL_PID=$!
	PIDS+=("$SL_PID")
	wait_port "$SL_PORT" "$SL_PID" || { echo "demo: sluice ($name) did not start:" >&2; cat "$TMP/$name.log" >&2; exit 1; }
}

stop_pid() {
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

metrics() { curl -s "http://127.0.0.1:$1/proxy-metrics"; }
up_stats() { curl -s "http://127.0.0.1:$UP_PORT/__stats"; }
up_reset() { curl -s -X POST "http://127.0.0.1:$UP_PORT/__reset" >/dev/null; }
# code_of URL: "STATUS SECONDS" of one request
code_of() { curl -s -o "$TMP/body" -w '%{http_code} %{time_total}' "$1"; }

T0=$(date +%s)

# ---- the tour ----------------------------------------------------------------

step "Start an upstream and sluice in front of it"
say "sluice-upstream plays the slow, fragile service that sluice protects: each \
request picks its own behaviour with query parameters (delay_ms, status, size, \
fail_times, ...). sluice listens on its own port and forwards to it. Its \
settings come from a JSON config file, which SIGHUP re-reads."
start_upstream
echo "    sluice-upstream listening on 127.0.0.1:$UP_PORT"
CONF=$TMP/sluice.json
cat >"$CONF" <<EOF
{ "max_concurrent_requests": 5, "max_queue_size": 10, "read_timeout": 300, "pool_maxsize": 20 }
EOF
run cat "$CONF"
start_sluice main --config "$CONF" --access-log "$TMP/access.log"
MAIN_PORT=$SL_PORT
MAIN_PID=$SL_PID
MAIN=http://127.0.0.1:$MAIN_PORT
run curl -s "$MAIN/hello?size=26"
echo
check "a request through sluice gets the upstream's answer" \
	test "$(curl -s "$MAIN/hello?size=26")" = abcdefghijklmnopqrstuvwxyz
pause 4

step "Health and metrics"
say "sluice serves its own endpoints: /proxy-health for probes and load \
balancers, /proxy-metrics (JSON) for people and scripts, and \
/proxy-metrics/prometheus for Prometheus."
run curl -s "$MAIN/proxy-health"
echo
echo "$ curl -s $MAIN/proxy-metrics   (selected fields)"
metrics "$MAIN_PORT" | jshow status requests.total requests.success requests.rejected success_rate \
	latency_ms.p50 latency_ms.p99 concurrency.max concurrency.max_queue circuit_breaker.state config.target
echo "$ curl -s $MAIN/proxy-metrics/prometheus | grep '^sluice_requests_total'"
curl -s "$MAIN/proxy-metrics/prometheus" | grep '^sluice_requests_total' | sed 's/^/    /'
check "health says healthy" test "$(curl -s "$MAIN/proxy-health" | jget status)" = healthy
check "metrics counted the requests" test "$(metrics "$MAIN_PORT" | jget requests.success)" -ge 2
check "the Prometheus endpoint has the request counters" \
	grep -q '^sluice_requests_total{outcome="success"}' <(curl -s "$MAIN/proxy-metrics/prometheus")
pause 4

step "Connection pooling"
say "Opening a fresh upstream connection per request is what hurts a proxy like \
Squid. sluice keeps upstream connections alive and reuses them (each of its 2 \
worker threads has its own pool, so at most 2 x 5 are ever needed here). We \
send 300 requests from 10 concurrent clients and then ask the upstream how \
many connections it saw."
up_reset
load "$TMP/load.json" --url "$MAIN/pool?size=100" --concurrent 10 --total-requests 300
jshow success failed requests_per_second p50 <"$TMP/load.json"
echo "$ curl -s http://127.0.0.1:$UP_PORT/__stats   (the upstream's own count)"
up_stats | jshow requests connections
metrics "$MAIN_PORT" | jshow pool.created pool.reused pool.idle
UP_REQ=$(up_stats | jget requests)
UP_CONN=$(up_stats | jget connections)
check "all 300 requests served" test "$(jget success <"$TMP/load.json")" = 300
echo "    => $UP_REQ upstream requests over $UP_CONN new upstream connections"
check "300 upstream requests over at most 10 new connections (2 workers x limit 5), not 300" \
	test "$UP_REQ" = 300 -a "$UP_CONN" -le 10
pause 4

step "The concurrency limit and the queue"
say "At most max_concurrent_requests (5 here) requests reach the upstream at \
once; up to max_queue_size (10) more wait in a queue; the rest are turned away \
at once with 503 queue_full instead of piling up. A burst of 40 simultaneous \
slow requests (0.5 s each):"
up_reset
load "$TMP/burst.json" --url "$MAIN/burst?delay_ms=500" --concurrent 40 --total-requests 40
jshow success failed status_codes duration_seconds <"$TMP/burst.json"
metrics "$MAIN_PORT" | jshow requests.rejected_by.queue_full concurrency.peak_active concurrency.peak_queued
up_stats | jshow peak_inflight
SERVED=$(jget success <"$TMP/burst.json")
QFULL=$(metrics "$MAIN_PORT" | jget requests.rejected_by.queue_full)
PEAK=$(up_stats | jget peak_inflight)
echo "    => served $SERVED, rejected with queue_full $QFULL, peak in flight at the upstream $PEAK"
check "5 in flight + 10 queued were served" test "$SERVED" -ge 15
check "the rest got 503 queue_full at once" test "$((SERVED + QFULL))" = 40 -a "$QFULL" -ge 1
check "the upstream never saw more than 5 at once" test "$PEAK" -le 5
pause 4

step "Queue timeout"
QT=$(pick 1 0.5)
SLOW=$(pick 3 1.5)
say "A queued request does not wait forever: after queue_timeout it gets 503 \
queue_timeout. Here: one slot, queue_timeout ${QT} s, and one request holding \
the slot for ${SLOW} s."
start_sluice qtimeout --max-concurrent-requests 1 --max-queue-size 5 --queue-timeout "$QT"
QT_PORT=$SL_PORT
QT_PID=$SL_PID
HOLD_MS=$(python3 -c "print(int($SLOW * 1000))")
curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$QT_PORT/hold?delay_ms=$HOLD_MS" \
	>"$TMP/hold.code" 2>/dev/null &
HOLD=$!
sleep 0.2
echo "$ curl -s -w ' %{http_code} after %{time_total}s' http://127.0.0.1:$QT_PORT/waiting"
R=$(code_of "http://127.0.0.1:$QT_PORT/waiting")
echo "    $(cat "$TMP/body") $R s"
check "the waiting request got 503 queue_timeout" \
	test "${R%% *}" = 503 -a "$(jget error <"$TMP/body")" = queue_timeout
check "after about queue_timeout (${QT} s)" fcmp "${R#* } >= $QT * 0.8 and ${R#* } < $QT + 1.5"
wait "$HOLD" || true
check "the request holding the slot still completed (200)" test "$(cat "$TMP/hold.code")" = 200
stop_pid "$QT_PID"
pause 4

step "A slow upstream: read timeout"
RT=$(pick 2 1)
say "The motivating upstream can take minutes (an LLM gateway behind Squid). \
--read-timeout bounds the wait for the upstream; in production you would set \
it to 300 s. Here 5 minutes are shortened to ${RT} s: a response that takes \
half of it arrives, one that takes longer becomes 504 Gateway Timeout."
start_sluice slow --read-timeout "$RT" --max-retries 0
SLOW_PORT=$SL_PORT
SLOW_PID=$SL_PID
FAST_MS=$(python3 -c "print(int($RT * 500))")
HANG_MS=$(python3 -c "print(int($RT * 2500))")
R1=$(code_of "http://127.0.0.1:$SLOW_PORT/llm?delay_ms=$FAST_MS&size=5")
echo "    delay ${FAST_MS} ms -> $R1 s: $(cat "$TMP/body")"
R2=$(code_of "http://127.0.0.1:$SLOW_PORT/llm?delay_ms=$HANG_MS")
echo "    delay ${HANG_MS} ms -> $R2 s: $(head -c 120 "$TMP/body")"
metrics "$SLOW_PORT" | jshow requests.timeouts
check "the slow-but-in-time answer arrived (200)" test "${R1%% *}" = 200
check "the too-slow one became 504 after about ${RT} s" \
	fcmp "${R2%% *} == 504 and ${R2#* } >= $RT * 0.8 and ${R2#* } < $RT + 1.5"
stop_pid "$SLOW_PID"
pause 4

step "Retries recover a flaky upstream"
say "Failed attempts of idempotent requests (GET, PUT, ...) are retried with \
exponential backoff. Asked directly, this upstream answers 503 to the first \
two requests with key 'k1', then 200:"
for i in 1 2 3; do
	printf '    direct attempt %d: %s\n' "$i" "$(curl -s -o /dev/null -w '%{http_code}' \
		"http://127.0.0.1:$UP_PORT/flaky?status=503&fail_times=2&key=demo-k1-$$")"
done
say "Through sluice (--max-retries 2), a fresh key: the client sees one 200."
start_sluice retry --max-retries 2 --retry-backoff-factor 0.1
RETRY_PORT=$SL_PORT
RETRY_PID=$SL_PID
R=$(code_of "http://127.0.0.1:$RETRY_PORT/flaky?status=503&fail_times=2&key=demo-k2-$$")
echo "    through sluice: ${R%% *} after ${R#* } s"
metrics "$RETRY_PORT" | jshow requests.retries requests.success requests.failed
check "the client got 200" test "${R%% *}" = 200
check "sluice made 2 retries" test "$(metrics "$RETRY_PORT" | jget requests.retries)" = 2
stop_pid "$RETRY_PID"
pause 4

step "The circuit breaker opens and recovers"
BT=$(pick 2 1)
say "When the upstream keeps failing, hammering it makes things worse. After 3 \
consecutive failures the breaker opens: requests get 503 circuit_open at once, \
without touching the upstream. After ${BT} s one probe request is let through; \
its success closes the breaker."
start_sluice breaker --circuit-breaker-threshold 3 --circuit-breaker-timeout "$BT" --max-retries 0
BR_PORT=$SL_PORT
BR_PID=$SL_PID
BR=http://127.0.0.1:$BR_PORT
STATE0=$(metrics "$BR_PORT" | jget circuit_breaker.state)
echo "    circuit_breaker.state before: $STATE0"
for i in 1 2 3; do
	printf '    failing request %d: %s\n' "$i" "$(curl -s -o /dev/null -w '%{http_code}' "$BR/broken?status=503")"
done
STATE1=$(metrics "$BR_PORT" | jget circuit_breaker.state)
echo "    circuit_breaker.state now: $STATE1"
grep -m1 'circuit breaker opened' "$TMP/breaker.log" | sed 's/^/    log: /' || true
up_reset
R=$(code_of "$BR/healthy?size=2")
echo "    a healthy request while open: ${R%% *} in ${R#* } s: $(cat "$TMP/body")"
check "the breaker was closed at first" test "$STATE0" = closed
check "3 failures opened it" test "$STATE1" = open
check "while open, requests get 503 circuit_open without reaching the upstream" \
	test "${R%% *}" = 503 -a "$(jget error <"$TMP/body")" = circuit_open -a "$(up_stats | jget requests)" = 0
echo "    ... waiting ${BT} s for the half-open probe"
sleep "$BT"
sleep 0.2
R=$(code_of "$BR/healthy?size=2")
STATE2=$(metrics "$BR_PORT" | jget circuit_breaker.state)
echo "    probe: ${R%% *} ($(cat "$TMP/body")); circuit_breaker.state after: $STATE2"
metrics "$BR_PORT" | jshow circuit_breaker.opened_total requests.circuit_open_rejections
check "the probe succeeded and closed the breaker" test "${R%% *}" = 200 -a "$STATE2" = closed
stop_pid "$BR_PID"
pause 4

step "Live dashboard"
say "A self-contained HTML page with live charts of throughput, latency \
percentiles, active/queued requests and the breaker state. Open it in a \
browser while running sluice-load against sluice:"
echo "    $MAIN/proxy-dashboard"
curl -s "$MAIN/proxy-dashboard" >"$TMP/dash.html"
grep -o '<title>[^<]*</title>' "$TMP/dash.html" | sed 's/^/    /'
echo "    ($(wc -c <"$TMP/dash.html") bytes of HTML)"
check "the dashboard is an HTML page" grep -qi '<html' "$TMP/dash.html"
check "it loads no external scripts" bash -c "! grep -qiE '<script[^>]+src=\"?https?:' '$TMP/dash.html'"
pause 4

step "Reloading settings with SIGHUP"
say "Edit the config file and send SIGHUP: the new limits apply without dropping \
a connection or a queued request."
metrics "$MAIN_PORT" | jshow config.max_concurrent_requests
sed -i 's/"max_concurrent_requests": 5/"max_concurrent_requests": 8/' "$CONF"
echo "$ kill -HUP $MAIN_PID   (after setting max_concurrent_requests to 8 in the file)"
kill -HUP "$MAIN_PID"
for _ in $(seq 1 50); do
	[ "$(metrics "$MAIN_PORT" | jget config.max_concurrent_requests)" = 8 ] && break
	sleep 0.1
done
metrics "$MAIN_PORT" | jshow config.max_concurrent_requests concurrency.max
check "the new limit is in effect" test "$(metrics "$MAIN_PORT" | jget concurrency.max)" = 8
pause 4

step "Access log"
say "--access-log writes one line per request (here to a file; '-' is stdout)."
echo "    One line of each kind from the log: a burst request that waited in the queue"
echo "    and was then served, one rejected at once with 503, one of the pooling run:"
for pat in '"GET /burst[^"]*" 200 .*queue_ms=[1-9]' '"GET /burst[^"]*" 503 ' '"GET /pool[^"]*" 200 '; do
	grep -m1 -e "$pat" "$TMP/access.log" | sed 's/^/    /' || true
done
check "the access log has a line per request" test "$(wc -l <"$TMP/access.log")" -ge 300
pause 4

step "Graceful shutdown"
GS=$(pick 2 1)
say "On SIGTERM sluice stops accepting connections, lets in-flight requests \
finish (up to --shutdown-timeout) and exits 0. A ${GS} s request is in flight \
when we send SIGTERM:"
curl -s -o "$TMP/gs.body" -w '%{http_code}' "$MAIN/last?delay_ms=${GS}000&size=4" >"$TMP/gs.code" &
GS_CURL=$!
sleep 0.3
echo "$ kill -TERM $MAIN_PID"
kill -TERM "$MAIN_PID"
sleep 0.2
NEW=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$MAIN/late" || true)
echo "    a new connection after SIGTERM: ${NEW} (000 = refused)"
wait "$GS_CURL" || true
echo "    the in-flight request: $(cat "$TMP/gs.code") $(cat "$TMP/gs.body")"
RC=0
wait "$MAIN_PID" || RC=$?
echo "    sluice exit status: $RC"
tail -n 2 "$TMP/main.log" | sed 's/^/    log: /'
check "the in-flight request completed (200)" test "$(cat "$TMP/gs.code")" = 200 -a "$(cat "$TMP/gs.body")" = abcd
check "new connections were refused while draining" test "$NEW" = 000
check "sluice exited 0" test "$RC" = 0

# ---- summary -------------------------------------------------------------------

printf '\n%s== Done ==%s\n' "$C_B" "$C_N"
echo "    $STEP steps in $(($(date +%s) - T0)) s; stopping everything the demo started."
for pid in "${PIDS[@]}"; do
	stop_pid "$pid"
done
# A sanitizer build reports into the logs: any report is a failure.
if grep -l -E 'ERROR: (Address|Leak|Thread)Sanitizer|runtime error:' "$TMP"/*.log >/dev/null 2>&1; then
	grep -h -A20 -E 'ERROR: (Address|Leak|Thread)Sanitizer|runtime error:' "$TMP"/*.log | head -60
	check "no sanitizer reports" false
fi
if [ "$FAILURES" -gt 0 ]; then
	printf '%s%d check(s) failed%s\n' "$C_R" "$FAILURES" "$C_N"
	exit 1
fi
printf '%sall checks passed%s\n' "$C_G" "$C_N"
