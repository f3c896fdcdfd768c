#!/usr/bin/env bash
# bench/queue.sh — admission control under overload (issue 3): sluice against
# HAProxy and nginx, in one run, in front of the same slow upstream.
#
#   upstream  build/sluice-upstream --workers 2, every answer delayed 50 ms
#             (URL /?delay_ms=50&echo=1: echo=1 sends the request headers back,
#             which carries the client's send time, see below)
#   sluice    --max-concurrent-requests 100 --max-queue-size 200
#             --queue-timeout 30, --workers W
#   haproxy   server s1 ... maxconn 100, timeout queue 30s, nbthread W.
#             HAProxy's queue has no size limit by default: every client
#             beyond maxconn waits, nobody is refused.
#   haproxy-q200 (HAPROXY_Q200=1, default on) the same plus
#             "http-request deny deny_status 503 if { queue(be) ge 200 }",
#             the nearest HAProxy gets to a bounded queue (the check and the
#             enqueue are not atomic, so it is approximate).
#   nginx     upstream { server ... max_conns=100; keepalive 100; zone }
#             worker_processes W. OSS nginx has no queue: a request beyond
#             max_conns gets 502 ("no live upstreams") at once. The zone makes
#             max_conns shared by the workers (without it, it is per worker).
#
#   direct    the calibration row: wrk with only LIMIT (100) connections straight
#             to the upstream, no proxy: the most this machine delivers with
#             100 requests in flight (the 2,000 req/s ideal ignores overheads).
#
# Load: wrk, CONNS (400) connections, WRK_THREADS (2) threads, DURATION (10) s,
# after a 1 s warm-up at 100 connections. A Lua script stamps each request with
# the client's monotonic clock (header X-T, via LuaJIT's FFI), counts statuses,
# and for each 2xx reads X-T back from the upstream's echo: the latency of
# served requests alone (wrk's own percentiles mix in the fast rejections).
#
# Rejection latency: while the load runs, a probe (Python, one keep-alive
# connection, PROBE_N=200 requests, one every 40 ms) times each request with
# perf_counter; the p99 of those answered 503 (sluice: queue_full; nginx: its
# 502) is the latency of a rejection as one client sees it under full load.
#
# The upstream's /__stats is reset (POST /__reset) before each run and its
# peak_inflight read 0.5 s before the load ends ("peak") and after it ("p_end",
# which includes the instant wrk closes all its connections).
#
# Open loop (OPEN=1, default): the same proxies again under sluice-load
# --rate OPEN_RATE (3,000 req/s, 1.5 x the ideal; up to OPEN_CONNS
# connections), the load of many independent callers: requests arrive on a
# schedule whether or not earlier ones were answered, and a rejected caller
# does not come straight back. wrk's closed loop instead sends the next
# request the instant a 503 arrives, so 300 of its 400 connections bounce
# off the full queue ~100,000 times a second and the box's two cores go to
# the storm; throughput and rejection latency then measure the box more than
# the proxy. The probe runs during both.
#
# Per proxy it prints: served 2xx per second and as a share of the ideal
# 100 / 0.05 s = 2,000 req/s, the upstream's peak in-flight, p50/p99 of served
# requests, rejections (non-2xx responses and socket errors) and the probe's
# rejection p50/p99.
#
# POLICY=1 runs the queue-policy table instead (issue 15; see its block below).
#
# Usage: bench/queue.sh   (env: BUILD=build WORKERS=2 CONNS=400 DURATION=10
#                          WRK_THREADS=2 LIMIT=100 QUEUE=200 DELAY_MS=50
#                          TARGETS="sluice haproxy haproxy-q200 nginx" PROBE_N=200)
# Everything it starts is stopped on exit (trap EXIT, by PID).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BUILD=${BUILD:-build}
WORKERS=${WORKERS:-2}
UP_WORKERS=${UP_WORKERS:-2}
CONNS=${CONNS:-400}
DURATION=${DURATION:-10}
WRK_THREADS=${WRK_THREADS:-2}
LIMIT=${LIMIT:-100}
QUEUE=${QUEUE:-200}
DELAY_MS=${DELAY_MS:-50}
PROBE_N=${PROBE_N:-200}
TARGETS=${TARGETS:-"direct sluice haproxy haproxy-q200 nginx"}
OPEN=${OPEN:-1}              # 0: skip the open-loop table
OPEN_RATE=${OPEN_RATE:-3000} # offered req/s in the open-loop run: 1.5 x the ideal
OPEN_CONNS=${OPEN_CONNS:-1000}
URL_PATH="/?delay_ms=$DELAY_MS&echo=1"

SCRIPT=queue.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------- set-up

need_tools

for b in sluice sluice-upstream; do
	if [ ! -x "$BUILD/$b" ]; then
		make -s BUILD="$BUILD" "$BUILD/$b" || die "cannot build $BUILD/$b"
	fi
done

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((CONNS * 3 + 100)) ] || die "open-file limit $(ulimit -n) is too low for $CONNS connections"


# ---------------------------------------------------------------- helper scripts

cat >"$TMP/stamp.lua" <<'EOF'
-- Counts statuses; for 2xx, latency from the X-T send stamp echoed back.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } sl_timespec_t;
int clock_gettime(int clk, sl_timespec_t *tp);
]]
local ts = ffi.new("sl_timespec_t")
local function now_us()
	ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
	return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

local threads = {}
function setup(thread)
	table.insert(threads, thread)
end

function init(args)
	codes = {}
	lat = {}
	nlat = 0
	unstamped = 0
end

function request()
	return wrk.format(nil, nil, { ["X-T"] = string.format("%d", now_us()) })
end

function response(status, headers, body)
	codes[status] = (codes[status] or 0) + 1
	if status >= 200 and status < 300 then
		local t = body:match('"[Xx]%-[Tt]","(%d+)"')
		if t then
			nlat = nlat + 1
			lat[nlat] = now_us() - tonumber(t)
		else
			unstamped = unstamped + 1
		end
	end
end

function done(summary, latency, requests)
	local all, codes_all, nostamp = {}, {}, 0
	for _, t in ipairs(threads) do
		for _, v in ipairs(t:get("lat")) do all[#all + 1] = v end
		for k, v in pairs(t:get("codes")) do codes_all[k] = (codes_all[k] or 0) + v end
		nostamp = nostamp + t:get("unstamped")
	end
	table.sort(all)
	local function pct(q)
		if #all == 0 then return -1 end
		local i = math.max(1, math.ceil(q * #all))
		return all[i] / 1000.0
	end
	local e = summary.errors
	io.write(string.format("RESULT duration_us %d\n", summary.duration))
	io.write(string.format("RESULT requests %d\n", summary.requests))
	io.write(string.format("RESULT sock_errors %d\n", e.connect + e.read + e.write + e.timeout))
	io.write(string.format("RESULT timeouts %d\n", e.timeout))
	io.write(string.format("RESULT served_stamped %d\n", #all))
	io.write(string.format("RESULT unstamped %d\n", nostamp))
	io.write(string.format("RESULT served_p50 %.2f\n", pct(0.50)))
	io.write(string.format("RESULT served_p99 %.2f\n", pct(0.99)))
	io.write(string.format("RESULT all_p50 %.2f\n", latency:percentile(50) / 1000.0))
	io.write(string.format("RESULT all_p99 %.2f\n", latency:percentile(99) / 1000.0))
	local ok, other, parts = 0, 0, {}
	for k, v in pairs(codes_all) do
		if k >= 200 and k < 300 then ok = ok + v else other = other + v end
		parts[#parts + 1] = k .. ":" .. v
	end
	table.sort(parts)
	io.write(string.format("RESULT ok %d\n", ok))
	io.write(string.format("RESULT non2xx %d\n", other))
	io.write("RESULT codes " .. table.concat(parts, ",") .. "\n")
end
EOF

cat >"$TMP/probe.py" <<'EOF'
"""One keep-alive connection, N requests at a low rate; times each answer and
prints JSON: counts by status and p50/p99/max (ms) of the rejections."""
import json, socket, sys, time

port, n, gap, path = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
req = ("GET %s HTTP/1.1\r\nHost: probe\r\n\r\n" % path).encode()


def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s, bytearray()


def read_response(s, buf):
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            raise ConnectionError("closed")
        buf += b
    i = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:i]).decode("latin-1")
    status = int(head.split(" ", 2)[1])
    clen, close = 0, False
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            clen = int(v)
        if k.strip().lower() == "connection" and "close" in v.lower():
            close = True
    while len(buf) < i + clen:
        b = s.recv(65536)
        if not b:
            raise ConnectionError("closed")
        buf += b
    del buf[:i + clen]
    return status, close


s, buf = connect()
codes, rej, served, reconnects = {}, [], [], 0
next_t = time.perf_counter()
for _ in range(n):
    next_t += gap
    t0 = time.perf_counter()
    try:
        s.sendall(req)
        status, close = read_response(s, buf)
    except (ConnectionError, OSError):
        reconnects += 1
        s.close()
        s, buf = connect()
        continue
    dt = (time.perf_counter() - t0) * 1000.0
    codes[status] = codes.get(status, 0) + 1
    (served if 200 <= status < 300 else rej).append(dt)
    if close:
        s.close()
        s, buf = connect()
        reconnects += 1
    left = next_t - time.perf_counter()
    if left > 0:
        time.sleep(left)


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[max(0, min(len(xs) - 1, int(q * len(xs) + 0.999999) - 1))], 3)


print(json.dumps({"codes": codes, "rejected": len(rej), "served": len(served), "reconnects": reconnects,
                  "rej_p50": pct(rej, 0.5), "rej_p99": pct(rej, 0.99), "rej_max": pct(rej, 1.0)}))
EOF

# ---------------------------------------------------------------- upstream

UP_PORT=$(free_port)
start upstream "$UP_PORT" "$ROOT/$BUILD/sluice-upstream" --port "$UP_PORT" --workers "$UP_WORKERS"
UP="http://127.0.0.1:$UP_PORT"

# HAProxy as both benches run it: name port maxconn-to-the-upstream
# [queue bound: beyond it 503 at once, as sluice's max_queue_size; empty:
# an unbounded queue, HAProxy's default].
start_haproxy() {
	local name=$1 port=$2 limit=$3 queue=$4 deny=""
	[ -n "$queue" ] && deny="    http-request deny deny_status 503 if { queue(be) ge $queue }"
	cat >"$TMP/$name.cfg" <<EOF
global
    nbthread $WORKERS
    maxconn 8000
defaults
    mode http
    maxconn 8000
    timeout connect 10s
    timeout client 120s
    timeout server 120s
    timeout queue 30s
    timeout http-keep-alive 60s
    http-reuse always
    option forwardfor
frontend fe
    bind 127.0.0.1:$port
    default_backend be
backend be
$deny
    server s1 127.0.0.1:$UP_PORT maxconn $limit
EOF
	start "$name" "$port" "$HAPROXY" -db -f "$TMP/$name.cfg"
}

up_stat() { # field
	curl -s "$UP/__stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"
}

# ---------------------------------------------------------------- queue policies (POLICY=1)

# POLICY=1: instead of the tables below, the overload table of issue 15:
# sluice --queue-policy fifo against --queue-policy adaptive (and HAProxy,
# maxconn P_LIMIT with its queue bounded at P_QUEUE as haproxy-q200 below),
# in front of P_DELAY_MS (100 ms) answers with P_LIMIT (20) slots, capacity
# P_LIMIT / P_DELAY_MS = 200 req/s, and a queue of P_QUEUE (200): 1 s of
# work. Open loop (sluice-load --rate) at each of OVERLOADS (1.5 and 4) x
# the capacity, for DURATION s, once per client deadline of DEADLINES (1 and
# 30 s: sluice-load --timeout; sluice is not told of it: no
# --request-timeout, queue_timeout 30). Each proxy is started afresh per
# row and warmed with 1 s of load within the limit (the adaptive queue
# needs 8 measured holds). SLUICE_ARGS: more sluice flags.
#   goodput: 2xx answers within the deadline per second (sluice-load's
#            successes: a later answer is its timeout), and its share of
#            the capacity;
#   p50/p99: of those answers alone (sluice-load's success_p50/p99), ms;
#   503/s:   refusals per second; late/s: requests whose client gave up.
if [ "${POLICY:-0}" = 1 ]; then
	P_LIMIT=${P_LIMIT:-20}
	P_DELAY_MS=${P_DELAY_MS:-100}
	P_QUEUE=${P_QUEUE:-200}
	OVERLOADS=${OVERLOADS:-"1.5 4"}
	DEADLINES=${DEADLINES:-"1 30"}
	P_TARGETS=${P_TARGETS:-"sluice-fifo sluice-adaptive haproxy"}
	cap=$(awk -v l="$P_LIMIT" -v d="$P_DELAY_MS" 'BEGIN {printf "%.0f", l / (d / 1000.0)}')
	P_ROWS=()
	for deadline in $DEADLINES; do
		for over in $OVERLOADS; do
			rate=$(awk -v c="$cap" -v o="$over" 'BEGIN {printf "%.0f", c * o}')
			for t in $P_TARGETS; do
				port=$(free_port)
				name="$t-$over-$deadline"
				case $t in
				sluice-fifo | sluice-adaptive)
					# shellcheck disable=SC2086 # SLUICE_ARGS is a list of flags
					start "$name" "$port" "$ROOT/$BUILD/sluice" --listen-host 127.0.0.1 --listen-port "$port" \
						--target-host 127.0.0.1 --target-port "$UP_PORT" --workers "$WORKERS" --log-level warn \
						--max-concurrent-requests "$P_LIMIT" --max-queue-size "$P_QUEUE" --queue-timeout 30 \
						--pool-maxsize "$P_LIMIT" --max-connections 20000 --queue-policy "${t#sluice-}" \
						${SLUICE_ARGS:-}
					;;
				haproxy) start_haproxy "$name" "$port" "$P_LIMIT" "$P_QUEUE" ;;
				*) die "unknown policy target $t" ;;
				esac
				url="http://127.0.0.1:$port/?delay_ms=$P_DELAY_MS"
				"$WRK" -t1 -c"$P_LIMIT" -d1s "$url" >/dev/null 2>&1 || true
				for _ in $(seq 100); do [ "$(up_stat inflight)" = 0 ] && break; sleep 0.05; done
				out_file="$TMP/policy-$name.json"
				"$ROOT/$BUILD/sluice-load" --url "$url" --rate "$rate" --concurrent 200 --max-concurrent 4000 \
					--duration "$DURATION" --timeout "$deadline" --json >"$out_file" 2>"$TMP/policy-$name.err" ||
					[ -s "$out_file" ] || die "sluice-load failed against $t: $(cat "$TMP/policy-$name.err")"
				row=$(python3 - "$out_file" "$t" "$over" "$deadline" "$cap" <<'PY'
import json, sys
out, name, over, deadline, cap = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
r = json.load(open(out))
dur = r["duration_seconds"]
ok = r["success"]
rej = r["status_codes"].get("503", 0)
late = r["errors"]["timeout"]
print("%-16s %4sx %6ss %8.1f %6.1f%% %8.1f %8.1f %8.1f %8.1f" % (
    name, over, deadline, ok / dur, 100 * ok / dur / cap, r["success_p50"], r["success_p99"], rej / dur, late / dur))
PY
)
				P_ROWS+=("$row")
				log "policy: $row"
				kill -TERM "${PID[$name]}" 2>/dev/null || true
				wait "${PID[$name]}" 2>/dev/null || true
				for _ in $(seq 200); do [ "$(up_stat inflight)" = 0 ] && break; sleep 0.05; done
			done
		done
	done
	echo
	echo "sluice bench/queue.sh POLICY=1 — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, $(uname -r)"
	echo "upstream: sluice-upstream ($UP_WORKERS workers), every answer delayed ${P_DELAY_MS} ms; limit $P_LIMIT," \
		"queue $P_QUEUE (queue_timeout 30 s); capacity $cap req/s; ${DURATION} s open loop per row;" \
		"$WORKERS worker(s) per proxy; $("$HAPROXY" -v | head -1 | awk '{print "HAProxy " $3}')"
	echo
	printf '%-16s %5s %7s %8s %7s %8s %8s %8s %8s\n' proxy load deadline goodput share p50_ms p99_ms "503/s" "late/s"
	printf '%s\n' "${P_ROWS[@]}"
	echo
	echo "goodput: 2xx answers within the client's deadline per second (share: of the capacity, $cap req/s);"
	echo "p50_ms, p99_ms: of those answers; 503/s: refusals; late/s: requests whose client gave up at the deadline."
	exit 0
fi

# ---------------------------------------------------------------- proxies

for t in $TARGETS; do
	port=$(free_port)
	eval "PORT_${t//-/_}=$port"
	case $t in
	direct) eval "PORT_direct=$UP_PORT" ;;
	sluice)
		start sluice "$port" "$ROOT/$BUILD/sluice" --listen-host 127.0.0.1 --listen-port "$port" \
			--target-host 127.0.0.1 --target-port "$UP_PORT" --workers "$WORKERS" --log-level warn \
			--max-concurrent-requests "$LIMIT" --max-queue-size "$QUEUE" --queue-timeout 30 \
			--pool-maxsize "$LIMIT" --max-connections 20000
		;;
	haproxy) start_haproxy "$t" "$port" "$LIMIT" "" ;;
	haproxy-q200) start_haproxy "$t" "$port" "$LIMIT" "$QUEUE" ;;
	nginx)
		mkdir -p "$TMP/nginx"
		cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes $WORKERS;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log crit;
worker_rlimit_nofile 20000;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    client_body_temp_path $TMP/nginx/body; proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fcgi; uwsgi_temp_path $TMP/nginx/uwsgi; scgi_temp_path $TMP/nginx/scgi;
    upstream up {
        zone up 64k;
        server 127.0.0.1:$UP_PORT max_conns=$LIMIT;
        keepalive $LIMIT;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
}
EOF
		start nginx "$port" "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log"
		;;
	*) die "unknown target $t" ;;
	esac
done

# ---------------------------------------------------------------- runs

# Warm-up within the limit (upstream connections, pools), let it drain,
# then zero the upstream's counters for the run.
prepare_run() { # url
	"$WRK" -t"$WRK_THREADS" -c"$LIMIT" -d1s "$1" >/dev/null 2>&1 || true
	for _ in $(seq 100); do [ "$(up_stat inflight)" = 0 ] && break; sleep 0.05; done
	curl -s -X POST "$UP/__reset" >/dev/null
}

ideal=$(awk -v l="$LIMIT" -v d="$DELAY_MS" 'BEGIN {printf "%.0f", l / (d / 1000.0)}')
ROWS=()
NOTES=()
for t in $TARGETS; do
	eval "port=\$PORT_${t//-/_}"
	url="http://127.0.0.1:$port$URL_PATH"
	prepare_run "$url"

	out_file="$TMP/wrk-$t.txt"
	conns=$CONNS; [ "$t" = direct ] && conns=$LIMIT
	"$WRK" -t"$WRK_THREADS" -c"$conns" -d"${DURATION}s" --timeout 35s -s "$TMP/stamp.lua" "$url" >"$out_file" 2>&1 &
	wrk_pid=$!
	PIDS+=("$wrk_pid")
	if [ "$t" != direct ]; then
		sleep 1
		python3 "$TMP/probe.py" "$port" "$PROBE_N" 0.04 "$URL_PATH" >"$TMP/probe-$t.json" 2>"$TMP/probe-$t.err" &
		probe_pid=$!
		PIDS+=("$probe_pid")
	fi
	# the upstream's peak while the load still runs (half a second before its end)...
	sleep "$(awk -v d="$DURATION" -v t="$t" 'BEGIN {print d - 0.5 - (t == "direct" ? 0 : 1)}')"
	peak=$(up_stat peak_inflight)
	wait "$wrk_pid" || die "wrk failed against $t: $(cat "$out_file")"
	if [ "$t" != direct ]; then
		wait "$probe_pid" || log "probe failed against $t: $(cat "$TMP/probe-$t.err")"
	fi
	# ...and after it, including the moment wrk closes its connections at once
	sleep 0.3
	peak_end=$(up_stat peak_inflight)
	upconns=$(up_stat connections)

	r() { awk -v k="$1" '$1 == "RESULT" && $2 == k {print $3}' "$out_file"; }
	dur=$(r duration_us); ok=$(r ok); non2xx=$(r non2xx); serr=$(r sock_errors)
	[ -n "$dur" ] || die "no result from wrk against $t: $(cat "$out_file")"
	rps=$(awk -v n="$ok" -v d="$dur" 'BEGIN {printf "%.0f", n / (d / 1e6)}')
	share=$(awk -v n="$ok" -v d="$dur" -v i="$ideal" 'BEGIN {printf "%.1f%%", 100 * n / (d / 1e6) / i}')
	probe=$(cat "$TMP/probe-$t.json" 2>/dev/null || echo '{}')
	pr() { python3 -c "import json,sys; v=json.loads(sys.argv[1]).get('$1'); print('-' if v is None else v)" "$probe"; }
	per_k=$(awk -v c="$upconns" -v n="$ok" 'BEGIN { printf "%.2f", n ? 1000 * c / n : 0 }')
	ROWS+=("$(printf '%-13s %7s %7s %5s %5s %8s %8s %9s %7s %9s %9s %8s %8s %8s' "$t" "$rps" "$share" "$peak" "$peak_end" \
		"$(r served_p50)" "$(r served_p99)" "$non2xx" "$serr" "$(pr rej_p50)" "$(pr rej_p99)" \
		"$(r all_p50)" "$(r all_p99)" "$per_k")")
	if [ "$t" = sluice ]; then
		own=$(curl -s "http://127.0.0.1:$port/proxy-metrics" | python3 -c \
			'import json,sys
try: print(json.load(sys.stdin)["concurrency"]["peak_active"])
except Exception: print("n/a")' 2>/dev/null || echo n/a)
		NOTES+=("sluice: its own peak of active requests (/proxy-metrics concurrency.peak_active, incl. warm-up): $own")
	fi
	NOTES+=("$t: statuses $(r codes); probe $(pr codes) (rejected $(pr rejected), served $(pr served), max rejection $(pr rej_max) ms, reconnects $(pr reconnects))")
	log "$(printf '%-13s %7s served/s (%s)' "$t" "$rps" "$share")"
	# let the queue of this run drain before the next proxy is measured
	for _ in $(seq 200); do [ "$(up_stat inflight)" = 0 ] && break; sleep 0.05; done
done

# ---------------------------------------------------------------- open loop

OPEN_ROWS=()
if [ "$OPEN" = 1 ]; then
	for t in $TARGETS; do
		[ "$t" = direct ] && continue
		eval "port=\$PORT_${t//-/_}"
		url="http://127.0.0.1:$port$URL_PATH"
		prepare_run "$url"
		out_file="$TMP/open-$t.json"
		"$ROOT/$BUILD/sluice-load" --url "$url" --rate "$OPEN_RATE" --concurrent "$OPEN_CONNS" \
			--duration "$DURATION" --timeout 35 --json >"$out_file" 2>"$TMP/open-$t.err" &
		load_pid=$!
		PIDS+=("$load_pid")
		sleep 1
		python3 "$TMP/probe.py" "$port" "$PROBE_N" 0.04 "$URL_PATH" >"$TMP/oprobe-$t.json" 2>"$TMP/oprobe-$t.err" &
		probe_pid=$!
		PIDS+=("$probe_pid")
		sleep "$(awk -v d="$DURATION" 'BEGIN {print d - 1.5}')"
		peak=$(up_stat peak_inflight)
		wait "$load_pid" || [ -s "$out_file" ] || die "sluice-load failed against $t: $(cat "$TMP/open-$t.err")"
		wait "$probe_pid" || log "probe failed against $t: $(cat "$TMP/oprobe-$t.err")"
		row=$(python3 - "$out_file" "$TMP/oprobe-$t.json" "$t" "$ideal" "$peak" <<'PY'
import json, sys
out, probe, name, ideal, peak = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
r = json.load(open(out))
try:
    p = json.load(open(probe))
except Exception:
    p = {}
ok = sum(v for k, v in r["status_codes"].items() if 200 <= int(k) < 300)
dur = r["duration_seconds"]
other = r["total"] - ok
errs = sum(r["errors"].values())
f = lambda v: "-" if v is None else v
print("%-13s %7.0f %7.0f %6.1f%% %5s %8d %7d %9s %9s %8.2f %8.2f" % (
    name, r["requests_per_second"], ok / dur, 100 * ok / dur / ideal, peak, other, errs,
    f(p.get("rej_p50")), f(p.get("rej_p99")), r["p50"], r["p99"]))
PY
)
		OPEN_ROWS+=("$row")
		log "open loop: $row"
		for _ in $(seq 400); do [ "$(up_stat inflight)" = 0 ] && break; sleep 0.05; done
	done
fi

# ---------------------------------------------------------------- report

echo
echo "sluice bench/queue.sh — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, $(uname -r)"
echo "upstream: sluice-upstream ($UP_WORKERS workers), every answer delayed ${DELAY_MS} ms;" \
	"limit $LIMIT, queue $QUEUE; ideal $LIMIT / ${DELAY_MS} ms = $ideal req/s"
echo "proxies: $WORKERS worker(s) each (sluice --workers $WORKERS, haproxy nbthread $WORKERS," \
	"nginx worker_processes $WORKERS); wrk $WRK_THREADS threads, $CONNS connections, ${DURATION} s after a 1 s warm-up"
echo "$("$NGINX" -v 2>&1 | sed 's/.*version: //'), $("$HAPROXY" -v | head -1 | awk '{print "HAProxy " $3}'), all on one machine"
echo
printf '%-13s %7s %7s %5s %5s %8s %8s %9s %7s %9s %9s %8s %8s %8s\n' proxy "2xx/s" "ideal" peak "p_end" \
	"p50_ms" "p99_ms" "non2xx" sockerr "rej_p50" "rej_p99" "all_p50" "all_p99" "conn/1k"
printf '%s\n' "${ROWS[@]}"
echo
echo "2xx/s, ideal: served responses per second and their share of $ideal req/s (goal >= 97 %)."
echo "peak: the upstream's own peak of requests in flight while the load ran (read 0.5 s before its end;"
echo "sluice: must be <= $LIMIT); p_end: the same read after the run, which adds the moment wrk closes all its"
echo "connections: a proxy that aborts an in-flight request frees its slot at once and may hand it to a queued"
echo "one before the upstream has noticed the abort, so the upstream briefly counts both."
echo "The upstream counts a request done just before it writes the response's last bytes, so no proxy's"
echo "next request can be counted while the previous one still is: a peak above $LIMIT is the proxy's."
echo "p50_ms, p99_ms: latency of served (2xx) requests only, from the send stamp echoed by the upstream."
echo "non2xx: rejections and errors answered (sluice 503 queue_full/queue_timeout, nginx 502, haproxy 503);"
echo "sockerr: wrk socket errors (connect/read/write/timeout)."
echo "rej_p50, rej_p99: ms, the probe's requests (1 keep-alive connection, $PROBE_N at 25/s) that were refused"
echo "(sluice 503 queue_full: goal p99 < 1 ms; nginx 502; '-' = none refused)."
echo "all_p50, all_p99: ms, wrk's own latency percentiles over every response; where almost all are"
echo "rejections (sluice, nginx) they are the rejection latency seen by the $CONNS closed-loop clients."
echo "conn/1k: upstream connections opened during the run per 1,000 served requests (the upstream's count;"
echo "a pool that keeps what the load needs opens none after the warm-up)."
echo "direct: wrk with $LIMIT connections straight to the upstream (no proxy, no overflow): this machine's ceiling."
echo "haproxy: default unbounded queue (timeout queue 30s) — nobody is refused, everyone waits."
echo "haproxy-q200: + 'http-request deny deny_status 503 if { queue(be) ge $QUEUE }' (approximate bound)."
echo "nginx: OSS nginx has no queue; beyond max_conns=$LIMIT (zone-shared by the workers) it answers 502 at once."
if [ "$OPEN" = 1 ]; then
	echo
	echo "Open loop: sluice-load --rate $OPEN_RATE --concurrent $OPEN_CONNS, ${DURATION} s (offered 1.5 x the ideal)"
	printf '%-13s %7s %7s %7s %5s %8s %7s %9s %9s %8s %8s\n' proxy "sent/s" "2xx/s" ideal peak \
		"non2xx" errors "rej_p50" "rej_p99" "all_p50" "all_p99"
	printf '%s\n' "${OPEN_ROWS[@]}"
	echo "sent/s: requests sent per second (from each one's scheduled start); 2xx/s, ideal: served, as above;"
	echo "non2xx: answered otherwise (rejections); errors: sluice-load's connect/timeout/reset/other;"
	echo "rej_*: the probe, as above; all_*: sluice-load's latency over every request, from its intended start"
	echo "(no coordinated omission), so a queue that only grows shows as seconds."
fi
echo
printf '%s\n' "${NOTES[@]}"
