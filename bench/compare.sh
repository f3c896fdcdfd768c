#!/usr/bin/env bash
# bench/compare.sh — sluice against nginx and HAProxy, in one run.
#
# Starts one upstream (build/sluice-upstream with 2 workers, or nginx with
# UPSTREAM=nginx) and, each with its own generated config in a temp dir, on
# free loopback ports, with access logging off:
#   direct   wrk -> upstream
#   sluice   wrk -> sluice  --workers W               -> upstream
#   nginx    wrk -> nginx   worker_processes W         -> upstream
#            (proxy_pass to an upstream{} block with keepalive,
#             proxy_http_version 1.1, Connection "")
#   haproxy  wrk -> haproxy nbthread W                 -> upstream
#            (http-reuse always)
# The three proxies get the same worker count W (WORKERS, default 1) and all
# add X-Forwarded-For, so they do comparable work.
#
# For each target and each connection count (CONNS, default "50 500") it runs
# wrk --latency for DURATION seconds (default 8) after a 1 s warm-up, and
# prints requests/s, p50/p99, errors, and CPU time per request of the proxy's
# processes (utime+stime from /proc/PID/stat before/after the run, summed over
# nginx's master and workers) and of the upstream. Then the ratio of sluice's
# CPU/request to nginx's and HAProxy's (issue 2 target: <= 1.25).
#
# Usage: bench/compare.sh            (env: WORKERS CONNS DURATION WRK_THREADS
#                                     UPSTREAM=sluice-upstream|nginx UP_WORKERS
#                                     TARGETS="direct sluice nginx haproxy"
#                                       (also sluice-redis: sluice with its
#                                        limit shared through a redis-server
#                                        started for it, --redis-url)
#                                     URL_PATH=/ BUILD=build
#                                     POST_BYTES=N: POST an N-byte JSON body
#                                     instead of GET, like an LLM call)
#
# TLS (issue 16), configured the same way in all three proxies (bench/lib.sh
# start_proxy; an RSA 2048 certificate for localhost from a throwaway CA):
#   TLS_CLIENT=1    wrk -> proxy over HTTPS (wrk does not resume sessions)
#   NEWCONN=1       ... with a new client connection per request
#                   (wrk -H 'Connection: close': a full handshake each time)
#   TLS_UPSTREAM=1  proxy -> upstream over HTTPS, verified, sessions resumed
#                   (the upstream is then nginx with ssl: UPSTREAM=nginx)
#   UP_NEWCONN=1    ... with a new upstream connection per request (no pool)
# e.g. TLS_CLIENT=1 NEWCONN=1 TARGETS="sluice nginx haproxy" bench/compare.sh
# Everything it starts is stopped on exit (trap EXIT, by PID).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BUILD=${BUILD:-build}
WORKERS=${WORKERS:-1}
UP_WORKERS=${UP_WORKERS:-2}
CONNS=${CONNS:-"50 500"}
DURATION=${DURATION:-8}
WRK_THREADS=${WRK_THREADS:-2}
UPSTREAM=${UPSTREAM:-sluice-upstream}
TARGETS=${TARGETS:-"direct sluice nginx haproxy"}
URL_PATH=${URL_PATH:-/}
POST_BYTES=${POST_BYTES:-}
TLS_CLIENT=${TLS_CLIENT:-0}
TLS_UPSTREAM=${TLS_UPSTREAM:-0}
NEWCONN=${NEWCONN:-0}
UP_NEWCONN=${UP_NEWCONN:-0}
[ "$TLS_UPSTREAM" = 1 ] && UPSTREAM=nginx

SCRIPT=compare.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------- set-up

need_tools

case " $TARGETS " in *" sluice "*) want_sluice=1 ;; *) want_sluice=0 ;; esac
if [ "$want_sluice" = 1 ] && [ ! -x "$BUILD/sluice" ]; then
	make -s BUILD="$BUILD" "$BUILD/sluice" || die "cannot build $BUILD/sluice"
fi
if [ "$UPSTREAM" = sluice-upstream ] && [ ! -x "$BUILD/sluice-upstream" ]; then
	make -s BUILD="$BUILD" "$BUILD/sluice-upstream" || die "cannot build $BUILD/sluice-upstream"
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge 2048 ] || die "open-file limit $(ulimit -n) is too low for 500 connections"

SLUICE_EXTRA=()
make_tls_material

# ---------------------------------------------------------------- upstream

UP_PORT=$(free_port)
if [ "$UPSTREAM" = nginx ]; then
	mkdir -p "$TMP/up"
	cat >"$TMP/up/nginx.conf" <<EOF
worker_processes $UP_WORKERS;
daemon off;
pid $TMP/up/nginx.pid;
error_log $TMP/up/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/up/body; proxy_temp_path $TMP/up/proxy;
    fastcgi_temp_path $TMP/up/fcgi; uwsgi_temp_path $TMP/up/uwsgi; scgi_temp_path $TMP/up/scgi;
    server {
        listen 127.0.0.1:$UP_PORT$([ "$TLS_UPSTREAM" = 1 ] && printf ' ssl;\n        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_certificate %s; ssl_certificate_key %s; ssl_session_cache shared:UP:10m' "$TMP/tls/leaf.crt" "$TMP/tls/leaf.key");
        location / { default_type text/plain; return 200 "ok\n"; }
    }
}
EOF
	start upstream "$UP_PORT" "$NGINX" -p "$TMP/up" -c "$TMP/up/nginx.conf" -e "$TMP/up/error.log"
else
	start upstream "$UP_PORT" "$ROOT/$BUILD/sluice-upstream" --port "$UP_PORT" --workers "$UP_WORKERS"
fi

# ---------------------------------------------------------------- proxies

for t in $TARGETS; do
	if [ "$t" = direct ]; then PORT[direct]=$UP_PORT; else start_proxy "$t"; fi
done

# ---------------------------------------------------------------- runs

to_ms() { # "312.00us" / "1.20ms" / "2.00s" -> ms
	awk -v v="$1" 'BEGIN {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
		if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
		printf "%.2f", n }'
}

WRK_SCRIPT=()
METHOD=GET
if [ -n "$POST_BYTES" ]; then
	METHOD="POST ${POST_BYTES}-byte body"
	cat >"$TMP/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"prompt": "' .. string.rep("x", $POST_BYTES - 14) .. '"}'
EOF
	WRK_SCRIPT=(-s "$TMP/post.lua")
fi
if [ "$NEWCONN" = 1 ]; then
	WRK_SCRIPT+=(-H "Connection: close")
fi

ROWS=()
declare -A CPU
for c in $CONNS; do
	for t in $TARGETS; do
		port=${PORT[$t]}
		pid=${PID[$t]:-}
		scheme=http
		if { [ "$t" = direct ] && [ "$TLS_UPSTREAM" = 1 ]; } || { [ "$t" != direct ] && [ "$TLS_CLIENT" = 1 ]; }; then
			scheme=https
		fi
		url="$scheme://127.0.0.1:$port$URL_PATH"
		threads=$WRK_THREADS; [ "$threads" -gt "$c" ] && threads=$c
		"$WRK" -t"$threads" -c"$c" -d1s "${WRK_SCRIPT[@]}" "$url" >/dev/null 2>&1 || true  # warm-up: pools, caches
		p0=0; [ -n "$pid" ] && p0=$(cpu_ticks "$pid")
		u0=$(cpu_ticks "${PID[upstream]}")
		out=$("$WRK" -t"$threads" -c"$c" -d"${DURATION}s" --latency "${WRK_SCRIPT[@]}" "$url" 2>&1) || die "wrk failed: $out"
		p1=0; [ -n "$pid" ] && p1=$(cpu_ticks "$pid")
		u1=$(cpu_ticks "${PID[upstream]}")
		echo "$out" >"$TMP/wrk-$t-$c.txt"
		reqs=$(echo "$out" | awk '/requests in/ {print $1; exit}')
		rps=$(echo "$out" | awk '/^Requests\/sec:/ {printf "%.0f", $2}')
		p50=$(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2; exit}')")
		p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2; exit}')")
		errs=$(echo "$out" | awk '/Socket errors:/ {gsub(",", ""); n += $4 + $6 + $8 + $10}
			/Non-2xx or 3xx responses:/ {n += $5} END {print n + 0}')
		if [ -z "$reqs" ] || [ "$reqs" -eq 0 ]; then die "no requests completed against $t: $out"; fi
		if [ -n "$pid" ]; then
			pcpu=$(awk -v d=$((p1 - p0)) -v hz="$HZ" -v r="$reqs" 'BEGIN {printf "%.2f", d / hz / r * 1e6}')
		else
			pcpu="-"
		fi
		ucpu=$(awk -v d=$((u1 - u0)) -v hz="$HZ" -v r="$reqs" 'BEGIN {printf "%.2f", d / hz / r * 1e6}')
		CPU[$t,$c]=$pcpu
		ROWS+=("$(printf '%-12s %6s %10s %9s %9s %7s %12s %12s' "$t" "$c" "$rps" "$p50" "$p99" "$errs" "$pcpu" "$ucpu")")
		log "$(printf '%-8s c=%-4s %8s req/s' "$t" "$c" "$rps")"
	done
done

# ---------------------------------------------------------------- report

echo
echo "sluice bench/compare.sh — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, $(uname -r)"
echo "upstream: $UPSTREAM ($UP_WORKERS workers); proxies: $WORKERS worker(s) each" \
	"(sluice --workers $WORKERS, nginx worker_processes $WORKERS, haproxy nbthread $WORKERS)"
echo "wrk $WRK_THREADS threads, ${DURATION}s per run after a 1 s warm-up, $METHOD $URL_PATH;" \
	"CPU = utime+stime per request, in microseconds"
echo "$("$NGINX" -v 2>&1 | sed 's/.*version: //'), $("$HAPROXY" -v | head -1 | awk '{print "HAProxy " $3}')"
echo "TLS: client->proxy $([ "$TLS_CLIENT" = 1 ] && echo "on$([ "$NEWCONN" = 1 ] && echo ", new connection per request")" || echo off)," \
	"proxy->upstream $([ "$TLS_UPSTREAM" = 1 ] && echo "on$([ "$UP_NEWCONN" = 1 ] && echo ", new connection per request")" || echo off)"
echo
printf '%-12s %6s %10s %9s %9s %7s %12s %12s\n' target conns req/s p50_ms p99_ms errors proxy_us/req upstr_us/req
printf '%s\n' "${ROWS[@]}"
echo
for c in $CONNS; do
	s=${CPU[sluice,$c]:-}
	if [ -z "$s" ] || [ "$s" = "-" ]; then continue; fi
	r=${CPU[sluice-redis,$c]:-}
	if [ -n "$r" ] && [ "$r" != "-" ]; then
		awk -v s="$s" -v r="$r" -v c="$c" 'BEGIN {
			if (s > 0) printf "c=%-4s sluice --redis-url CPU/request / sluice = %.2f%s\n", c, r / s, (r / s <= 1.05 ? "" : "  (over the 1.05 target)") }'
	fi
	for o in nginx haproxy; do
		x=${CPU[$o,$c]:-}
		if [ -z "$x" ] || [ "$x" = "-" ]; then continue; fi
		awk -v s="$s" -v x="$x" -v o="$o" -v c="$c" 'BEGIN {
			if (x > 0) printf "c=%-4s sluice CPU/request / %-7s = %.2f%s\n", c, o, s / x, (s / x <= 1.25 ? "" : "  (over the 1.25 target)") }'
	done
	n=${CPU[nginx,$c]:-} h=${CPU[haproxy,$c]:-}
	if [ -n "$n" ] && [ "$n" != "-" ] && [ -n "$h" ] && [ "$h" != "-" ]; then
		awk -v s="$s" -v n="$n" -v h="$h" -v c="$c" 'BEGIN { b = n < h ? n : h;
			if (b > 0) printf "c=%-4s sluice CPU/request / the better of nginx and HAProxy = %.2f\n", c, s / b }'
	fi
done
