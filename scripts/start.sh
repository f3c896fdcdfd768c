#!/usr/bin/env bash
# scripts/start.sh — start sluice in the foreground with the settings
# recommended for an upstream whose answers can take up to 5 minutes (an LLM
# gateway, or a forward proxy such as Squid in front of one):
#
#   --read-timeout 300 --request-timeout 300 --max-concurrent-requests 100
#   --max-queue-size 200
#
# A hung upstream is answered 504 within about 300 s, queue wait included: a
# read timeout is not retried (unless --retry-on-timeout), and no attempt or
# backoff runs past the request's deadline.
#
# Builds first if anything changed (make -s all), then exec's sluice, so the
# script's process becomes sluice: Ctrl-C or SIGTERM drains and stops it,
# SIGHUP reaches it directly.
#
# Environment (default in brackets):
#   TARGET_HOST     upstream host name or address          [127.0.0.1]
#   TARGET_PORT     upstream port                          [8000]
#   LISTEN_HOST     address to listen on                   [0.0.0.0]
#   LISTEN_PORT     port to listen on                      [8080]
#   READ_TIMEOUT    seconds to wait for the upstream's head
#                   and between two body reads             [300]
#   REQUEST_TIMEOUT seconds for a whole request until its
#                   answer's head: queue, attempts, backoff [300]
#   MAX_CONCURRENT  requests in flight to the upstream     [100]
#   MAX_QUEUE       requests waiting for a slot            [200]
#   SLUICE_BUILD    directory holding the binaries         [build, in the repo]
# Arguments are passed on to sluice after these and override them:
#
#   TARGET_HOST=ssrf-proxy.vke-system TARGET_PORT=8888 scripts/start.sh
#   scripts/start.sh --queue-timeout 120 --log-level debug
#
# The defaults match `make run`'s bundled sluice-upstream on 127.0.0.1:8000.
# docs/guide.md explains how to size these numbers for your upstream.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${SLUICE_BUILD:-build} # as make sees it, from $root
case $build_dir in
/*) build=$build_dir ;;
*) build=$root/$build_dir ;;
esac

if [ -f "$root/Makefile" ] && command -v make >/dev/null; then
	make -s -C "$root" BUILD="$build_dir" all
fi
if [ ! -x "$build/sluice" ]; then
	echo "start.sh: $build/sluice not found (run 'make' in $root first)" >&2
	exit 1
fi

target_host=${TARGET_HOST:-127.0.0.1}
target_port=${TARGET_PORT:-8000}
listen_host=${LISTEN_HOST:-0.0.0.0}
listen_port=${LISTEN_PORT:-8080}

echo "start.sh: sluice on $listen_host:$listen_port -> $target_host:$target_port" >&2
exec "$build/sluice" \
	--listen-host "$listen_host" --listen-port "$listen_port" \
	--target-host "$target_host" --target-port "$target_port" \
	--read-timeout "${READ_TIMEOUT:-300}" \
	--request-timeout "${REQUEST_TIMEOUT:-300}" \
	--max-concurrent-requests "${MAX_CONCURRENT:-100}" \
	--max-queue-size "${MAX_QUEUE:-200}" \
	"$@"
