#!/usr/bin/env bash
# bench/metrics-cost.sh — what per-request metrics cost (issue 5: < 3 % CPU).
#
# Builds sluice twice — as shipped (build/) and with per-request counting
# compiled out (`make METRICS=off`, into build-nometrics/) — and measures
# each two ways:
#   1. instructions per request, counted by valgrind's callgrind: exact and
#      repeatable on a shared machine. sluice runs with one worker under
#      callgrind for N1 and then N2 requests; (Ir(N2) - Ir(N1)) / (N2 - N1)
#      removes start-up and shutdown.
#   2. CPU time per request under wrk (bench/compare.sh, sluice target only),
#      alternating the builds for ROUNDS rounds: real, but on a shared 2-core
#      box its noise is larger than the effect.
#
# Usage: bench/metrics-cost.sh   (env: ROUNDS CONNS DURATION N1 N2)
set -euo pipefail
cd "$(dirname "$0")/.."
SCRIPT=metrics-cost.sh
. bench/lib.sh
ROUNDS=${ROUNDS:-3}
N1=${N1:-1000}
N2=${N2:-4000}
CONNS=${CONNS:-50}
DURATION=${DURATION:-6}
make -s -j2 BUILD=build all
make -s -j2 BUILD=build-nometrics METRICS=off build-nometrics/sluice build-nometrics/sluice-upstream

run() { # BUILD -> "req/s cpu_us_per_req"
	TARGETS=sluice CONNS=$CONNS DURATION=$DURATION BUILD=$1 bench/compare.sh 2>/dev/null |
		awk '$1 == "sluice" && $2 ~ /^[0-9]+$/ { print $3, $7 }'
}

printf '%-8s %14s %14s %12s\n' metrics "Ir($N1)" "Ir($N2)" Ir/request
declare -A per
for b in build build-nometrics; do
	read -r i1 i2 "per[$b]" < <(instructions_per_request "$b" "$N1" "$N2")
	name=on
	[ "$b" = build ] || name=off
	printf '%-8s %14s %14s %12s\n' "$name" "$i1" "$i2" "${per[$b]}"
done
awk -v on="${per[build]}" -v off="${per[build-nometrics]}" \
	'BEGIN { printf "instructions per request: metrics on %d, off %d; cost %+.2f %% (goal < 3 %%)\n\n", on, off, (on / off - 1) * 100 }'

results="$TMP/results"
printf '%-10s %5s %10s %12s\n' metrics round req/s cpu_us/req
for r in $(seq 1 "$ROUNDS"); do
	for b in build build-nometrics; do
		read -r rps cpu < <(run "$b")
		name=on
		[ "$b" = build ] || name=off
		printf '%-10s %5d %10s %12s\n' "$name" "$r" "$rps" "$cpu"
		echo "$name $cpu" >>"$results"
	done
done
awk '{ s[$1] += $2; n[$1]++ }
     END { on = s["on"] / n["on"]; off = s["off"] / n["off"];
           printf "\nmean cpu_us/req: metrics on %.2f, off %.2f; cost %+.1f %% (goal < 3 %%)\n", on, off, (on / off - 1) * 100 }' "$results"
