#!/usr/bin/env bash
# bench/metrics-cost.sh — what per-request metrics cost (issue 5: < 3 % CPU).
#
# Builds sluice twice — as shipped (build/) and with per-request counting
# compiled out (`make METRICS=off`, into build-nometrics/) — and runs
# bench/compare.sh on the sluice target only, alternating the two builds for
# ROUNDS rounds (default 3) at CONNS connections (default 50), then prints
# the mean CPU time per request of each and the ratio.
#
# Usage: bench/metrics-cost.sh   (env: ROUNDS CONNS DURATION WORKERS)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
DURATION=${DURATION:-6}
make -s -j2 BUILD=build all
make -s -j2 BUILD=build-nometrics METRICS=off build-nometrics/sluice build-nometrics/sluice-upstream

run() { # BUILD -> "req/s cpu_us_per_req"
	TARGETS=sluice CONNS=$CONNS DURATION=$DURATION BUILD=$1 bench/compare.sh 2>/dev/null |
		awk '$1 == "sluice" && $2 ~ /^[0-9]+$/ { print $3, $7 }'
}

results=$(mktemp)
trap 'rm -f "$results"' EXIT
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
