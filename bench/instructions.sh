#!/usr/bin/env bash
# bench/instructions.sh — instructions sluice executes per request, counted
# by callgrind, for one or more builds side by side: the repeatable way to
# see what a change costs on the hot path (wall-clock CPU on a shared 2-core
# box is noisier than most changes).
#
# Usage: bench/instructions.sh [BUILD_DIR...]   (default: build; env: N1 N2 SLUICE_ARGS)
#   e.g. git worktree add /tmp/base main && make -C /tmp/base && bench/instructions.sh /tmp/base/build build
set -euo pipefail
cd "$(dirname "$0")/.."
SCRIPT=instructions.sh
. bench/lib.sh
N1=${N1:-1000}
N2=${N2:-4000}
[ $# -gt 0 ] || set -- build
make -s -j2 all
printf '%-28s %14s %14s %12s\n' build "Ir($N1)" "Ir($N2)" Ir/request
for b in "$@"; do
	[ -x "$b/sluice" ] || die "$b/sluice not found"
	read -r i1 i2 per < <(instructions_per_request "$b" "$N1" "$N2")
	printf '%-28s %14s %14s %12s\n' "$b" "$i1" "$i2" "$per"
done
