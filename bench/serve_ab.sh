#!/usr/bin/env bash
# A/B of two bentos' predict route: both served side by side, wrk alternating between them, so that each pair
# of figures shares the machine's load (bench/serve.sh compares against a no-op service instead).
#
#   bash bench/serve_ab.sh OLD_BENTO_TAG NEW_BENTO_TAG      # e.g. before and after a change
#
# Each round runs wrk for DURATION on one bento then the other (the order alternates by round); wrk opens new
# connections every run, so how the kernel spreads them over each server's workers varies run to run — the
# main noise of a single bench/serve.sh run. Prints req/s and p99 of each run and the median of the per-round
# ratios NEW/OLD. Needs both bentos in the BentoML store and a filled feature store (`make run` / the flows).
# Knobs (env): ROUNDS=6 DURATION=10s CONNECTIONS=32 WRK_THREADS=2 WARMUP=3s PRODUCT_ID=<id>
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -eq 2 ] || { echo "usage: bash bench/serve_ab.sh OLD_BENTO_TAG NEW_BENTO_TAG" >&2; exit 2; }
ROUNDS="${ROUNDS:-6}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-3s}"
source bench/common.sh
command -v wrk >/dev/null || { echo "bench/serve_ab.sh: wrk is not installed (apt-get install wrk)" >&2; exit 3; }
PRODUCT_ID="${PRODUCT_ID:-$("$UV" run --frozen python -m flows.serve_latest --print-product-id)}"

tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

write_post_lua "$tmp/post.lua" "$PRODUCT_ID"

urls=()
for tag in "$1" "$2"; do
  port=$(free_port)
  setsid "$UV" run --frozen bentoml serve "$tag" --host 127.0.0.1 --port "$port" >"$tmp/$port.log" 2>&1 &
  pids+=($!)
  urls+=("http://127.0.0.1:$port")
done
for i in 0 1; do
  for _ in $(seq 1 240); do curl -fsS -o /dev/null "${urls[$i]}/readyz" 2>/dev/null && break; sleep 0.5; done
  curl -fsS -o /dev/null "${urls[$i]}/readyz" || { cat "$tmp"/*.log >&2; echo "bento not ready" >&2; exit 1; }
  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$tmp/post.lua" "${urls[$i]}$ROUTE" >/dev/null
done

echo "A/B: old=$1 new=$2; wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION x $ROUNDS rounds; $(nproc) CPUs"
: >"$tmp/ratios"
for round in $(seq 1 "$ROUNDS"); do
  order="0 1"; [ $((round % 2)) = 0 ] && order="1 0"
  declare -A rps=()
  for i in $order; do
    wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$tmp/post.lua" "${urls[$i]}$ROUTE" >"$tmp/wrk"
    rps[$i]=$(awk '/^Requests\/sec:/ {print $2}' "$tmp/wrk")
    p99=$(awk '$1 == "99%" {print $2}' "$tmp/wrk")
    printf 'round %d %-3s %10s req/s  p99 %s\n' "$round" "$([ "$i" = 0 ] && echo old || echo new)" "${rps[$i]}" "$p99"
  done
  awk -v n="${rps[1]}" -v o="${rps[0]}" 'BEGIN { printf "%.3f\n", n / o }' >>"$tmp/ratios"
done
sort -n "$tmp/ratios" | awk '{ r[NR] = $1 } END {
  m = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
  printf "new/old req/s per round: %s..%s, median %.2f\n", r[1], r[NR], m
}'
