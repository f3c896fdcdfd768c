#!/bin/sh
# Installs the Debian packages that building and testing sluice need, and only
# the ones missing, so that `make run` and `make test` work on a fresh machine.
# Usage: scripts/deps.sh [extra-package ...]
set -e
pkgs="gcc make pkg-config libuv1-dev node-llhttp libjansson-dev libhiredis-dev redis-server libcmocka-dev libssl-dev ca-certificates python3 python3-pytest python3-yaml python3-requests openssl groff-base curl $*"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing Debian packages:$missing"
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
