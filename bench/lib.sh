#!/usr/bin/env bash
# bench/lib.sh — what every benchmark script shares: a temp dir, starting
# processes on loopback ports and stopping every one of them on exit (by PID),
# and CPU accounting from /proc. Source it after setting SCRIPT (the name used
# in messages):  SCRIPT=compare.sh; . "$(dirname "$0")/lib.sh"

log() { printf '%s\n' "$*" >&2; }
die() { log "$SCRIPT: $*"; exit 1; }

TMP=$(mktemp -d "/tmp/sluice-${SCRIPT%.sh}.XXXXXX")
PIDS=()        # everything started, for cleanup
declare -A PID # name -> pid of a started process
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port pid name
	local _
	for _ in $(seq 100); do
		kill -0 "$2" 2>/dev/null || { cat "$TMP/$3.log" >&2 2>/dev/null; die "$3 exited at start"; }
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	die "$3 not listening on $1"
}

start() { # name port cmd...  (output to $TMP/name.log; PID[name] set)
	local name=$1 port=$2
	shift 2
	"$@" >"$TMP/$name.log" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	wait_port "$port" "$pid" "$name"
	# shellcheck disable=SC2034 # read by the scripts that source this
	PID[$name]=$pid
}

# CPU ticks (utime+stime) of processes and all their descendants; threads
# are already included in a process's own stat line.
cpu_ticks() {
	local total=0 p kids t
	for p in "$@"; do
		[ -r "/proc/$p/stat" ] || continue
		# fields after the ")": state is $1, utime $12, stime $13
		t=$(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')
		total=$((total + t))
		kids=$(cat /proc/"$p"/task/*/children 2>/dev/null || true)
		if [ -n "$kids" ]; then
			# shellcheck disable=SC2086
			t=$(cpu_ticks $kids)
			total=$((total + t))
		fi
	done
	echo "$total"
}
# shellcheck disable=SC2034 # read by the scripts that source this
HZ=$(getconf CLK_TCK)

# Installs wrk, HAProxy and nginx from Debian if missing, and sets WRK,
# HAPROXY and NGINX to their paths.
need_tools() {
	local need_pkgs="" p SUDO=
	command -v wrk >/dev/null 2>&1 || need_pkgs="$need_pkgs wrk"
	command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_pkgs="$need_pkgs haproxy"
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_pkgs="$need_pkgs nginx"
	command -v python3 >/dev/null 2>&1 || need_pkgs="$need_pkgs python3"
	if [ -n "$need_pkgs" ]; then
		log "installing:$need_pkgs"
		[ "$(id -u)" -ne 0 ] && SUDO=sudo
		export DEBIAN_FRONTEND=noninteractive
		$SUDO apt-get update -qq
		for p in $need_pkgs; do
			if [ "$p" = nginx ]; then
				# nginx-light where it exists (bookworm), nginx otherwise
				$SUDO apt-get install -y -qq --no-install-recommends nginx-light >/dev/null 2>&1 ||
					$SUDO apt-get install -y -qq --no-install-recommends nginx >/dev/null
			else
				$SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null
			fi
		done
	fi
	export PATH="$PATH:/usr/sbin:/sbin"
	# shellcheck disable=SC2034 # read by the scripts that source this
	NGINX=$(command -v nginx) HAPROXY=$(command -v haproxy) WRK=$(command -v wrk)
}

# Instructions sluice executes per request, counted by callgrind (exact and
# repeatable on a shared machine): sluice from BUILD runs with one worker
# under callgrind for N1 and then for N2 requests (GET, 100-byte answers,
# 10 connections); (Ir(N2) - Ir(N1)) / (N2 - N1) removes start-up and
# shutdown. Prints "Ir(N1) Ir(N2) Ir/request". Extra sluice flags: SLUICE_ARGS.
instructions_per_request() { # build n1 n2
	local build=$1 n1=$2 n2=$3 i1 i2
	command -v valgrind >/dev/null || { log "installing valgrind"; apt-get install -y -qq valgrind >/dev/null; }
	i1=$(callgrind_total "$build" "$n1")
	i2=$(callgrind_total "$build" "$n2")
	awk -v a="$i1" -v b="$i2" -v n="$((n2 - n1))" 'BEGIN { printf "%s %s %.0f\n", a, b, (b - a) / n }'
}

callgrind_total() { # build n -> instructions from start to exit
	local build=$1 n=$2 up_port sl_port up sl out
	out="$TMP/cg.$(basename "$build").$n"
	up_port=$(free_port)
	sl_port=$(free_port)
	"$build/sluice-upstream" --port "$up_port" --workers 1 >/dev/null 2>&1 &
	up=$!
	# shellcheck disable=SC2086 # SLUICE_ARGS is a list of flags
	valgrind --tool=callgrind --callgrind-out-file="$out" "$build/sluice" --workers 1 --listen-host 127.0.0.1 \
		--listen-port "$sl_port" --target-host 127.0.0.1 --target-port "$up_port" --log-level error \
		${SLUICE_ARGS:-} 2>/dev/null &
	sl=$!
	for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$sl_port") 2>/dev/null && break; sleep 0.1; done
	build/sluice-load --url "http://127.0.0.1:$sl_port/?size=100" --concurrent 10 --total-requests "$n" \
		--threads 1 >/dev/null
	kill -TERM "$sl"
	wait "$sl" || true
	kill -TERM "$up"
	wait "$up" || true
	awk '/^summary:/ { print $2 }' "$out"
}

# A throwaway CA and a certificate for localhost and 127.0.0.1 (RSA 2048, as
# most certificates still are), in $TMP/tls: ca.crt, leaf.crt, leaf.key and
# leaf.pem (certificate and key in one file, for HAProxy).
make_tls_material() {
	local d="$TMP/tls"
	[ -f "$d/leaf.pem" ] && return 0
	mkdir -p "$d"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench CA" -keyout "$d/ca.key" \
		-out "$d/ca.crt" >/dev/null 2>&1 || die "openssl cannot make a CA"
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$d/leaf.ext"
	openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$d/leaf.key" -out "$d/leaf.csr" \
		>/dev/null 2>&1 || die "openssl cannot make a key"
	openssl x509 -req -in "$d/leaf.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
		-extfile "$d/leaf.ext" -out "$d/leaf.crt" >/dev/null 2>&1 || die "openssl cannot sign"
	cat "$d/leaf.crt" "$d/leaf.key" >"$d/leaf.pem"
}

# Starts proxy $1 (sluice, nginx or haproxy) on a free loopback port in
# front of 127.0.0.1:$UP_PORT with $WORKERS workers, each with its own
# generated config in $TMP, access logging off, all adding X-Forwarded-For,
# keeping upstream connections alive; sets PORT[$1] (and PID[$1]).
# Needs ROOT, BUILD, UP_PORT, WORKERS and need_tools; optional MAXCONN (client
# connections each may hold) and SLUICE_EXTRA (extra sluice flags, an array).
# TLS (issue 16), the same way for all three (make_tls_material first):
# TLS_CLIENT=1 serves HTTPS to the clients with $TMP/tls/leaf.*; TLS_UPSTREAM=1
# speaks HTTPS to the upstream, verifying it against $TMP/tls/ca.crt for the
# name localhost, resuming sessions; UP_NEWCONN=1 uses a new upstream
# connection for every request (no keep-alive pool anywhere).
declare -A PORT
start_proxy() { # name
	local t=$1
	local tlsd="$TMP/tls" sl_tls=() ng_listen="" ng_up="http" ng_keep="keepalive 1000;" ha_bind="" ha_srv=""
	local ha_reuse="http-reuse always"
	if [ "${TLS_CLIENT:-0}" = 1 ]; then
		sl_tls+=(--tls-cert "$tlsd/leaf.crt" --tls-key "$tlsd/leaf.key")
		# nginx 1.22's default protocols stop at TLS 1.2, whose abbreviated
		# resumption skips the key exchange: say TLS 1.2-1.3, as the others do
		ng_listen=" ssl;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate $tlsd/leaf.crt; ssl_certificate_key $tlsd/leaf.key"
		ha_bind=" ssl crt $tlsd/leaf.pem alpn http/1.1"
	fi
	if [ "${TLS_UPSTREAM:-0}" = 1 ]; then
		sl_tls+=(--target-tls --target-tls-ca "$tlsd/ca.crt" --target-tls-sni localhost)
		ng_up="https"
		ha_srv=" ssl verify required ca-file $tlsd/ca.crt sni str(localhost) verifyhost localhost alpn http/1.1"
	fi
	local pool=1000
	if [ "${UP_NEWCONN:-0}" = 1 ]; then
		pool=0 ng_keep="" ha_reuse="http-reuse never
    option http-server-close"
	fi
	case $t in
	sluice)
		PORT[$t]=$(free_port)
		start "$t" "${PORT[$t]}" "$ROOT/$BUILD/sluice" --listen-host 127.0.0.1 --listen-port "${PORT[$t]}" \
			--target-host 127.0.0.1 --target-port "$UP_PORT" --workers "$WORKERS" --log-level warn \
			--max-concurrent-requests 2000 --max-queue-size 2000 --pool-maxsize "$pool" \
			--max-connections "${MAXCONN:-20000}" "${sl_tls[@]}" "${SLUICE_EXTRA[@]}"
		;;
	sluice-redis) # the same sluice, its limit shared through a redis-server of its own (issue 14)
		if [ -z "${PID[redis]:-}" ]; then
			command -v redis-server >/dev/null || die "redis-server is not installed (Debian package redis-server)"
			PORT[redis]=$(free_port)
			start redis "${PORT[redis]}" redis-server --port "${PORT[redis]}" --bind 127.0.0.1 --save '' \
				--appendonly no
		fi
		PORT[$t]=$(free_port)
		start "$t" "${PORT[$t]}" "$ROOT/$BUILD/sluice" --listen-host 127.0.0.1 --listen-port "${PORT[$t]}" \
			--target-host 127.0.0.1 --target-port "$UP_PORT" --workers "$WORKERS" --log-level warn \
			--max-concurrent-requests 2000 --max-queue-size 2000 --pool-maxsize 1000 \
			--max-connections "${MAXCONN:-20000}" --redis-url "redis://127.0.0.1:${PORT[redis]}" \
			--cluster-key "bench-$t-$$" "${SLUICE_EXTRA[@]}"
		;;
	nginx)
		PORT[$t]=$(free_port)
		mkdir -p "$TMP/$t"
		cat >"$TMP/$t/nginx.conf" <<EOF
worker_processes $WORKERS;
daemon off;
pid $TMP/$t/nginx.pid;
error_log $TMP/$t/error.log warn;
worker_rlimit_nofile $((2 * ${MAXCONN:-8192} + 100));
events { worker_connections ${MAXCONN:-8192}; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    client_body_temp_path $TMP/$t/body; proxy_temp_path $TMP/$t/proxy;
    fastcgi_temp_path $TMP/$t/fcgi; uwsgi_temp_path $TMP/$t/uwsgi; scgi_temp_path $TMP/$t/scgi;
    upstream up {
        server 127.0.0.1:$UP_PORT;
        $ng_keep
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:${PORT[$t]}$ng_listen;
        location / {
            proxy_ssl_protocols TLSv1.2 TLSv1.3;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $tlsd/ca.crt;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
            proxy_pass $ng_up://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }
}
EOF
		start "$t" "${PORT[$t]}" "$NGINX" -p "$TMP/$t" -c "$TMP/$t/nginx.conf" -e "$TMP/$t/error.log"
		;;
	haproxy)
		PORT[$t]=$(free_port)
		cat >"$TMP/$t.cfg" <<EOF
global
    nbthread $WORKERS
    maxconn ${MAXCONN:-8000}
    ulimit-n $(ulimit -Hn)
defaults
    mode http
    timeout connect 10s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 60s
    $ha_reuse
    option forwardfor
frontend fe
    bind 127.0.0.1:${PORT[$t]}$ha_bind
    default_backend be
backend be
    server up 127.0.0.1:$UP_PORT$ha_srv
EOF
		start "$t" "${PORT[$t]}" "$HAPROXY" -db -f "$TMP/$t.cfg"
		;;
	*) die "unknown proxy $t" ;;
	esac
}
