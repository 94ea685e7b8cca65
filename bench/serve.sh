#!/usr/bin/env bash
# Serving benchmark: the forecast service's predict route vs. a no-op BentoML service started the same way.
#
#   bash bench/serve.sh            (make bench-serve)
#
# Both run under `bentoml serve <import path>` on 127.0.0.1 with the same server settings
# (service.contract.SERVER_CONFIG); wrk then POSTs {"productid": <a real id>} for DURATION at CONNECTIONS
# concurrency after a short warm-up. Prints req/s, p50 and p99 of each and the ratio predict/no-op.
# Needs a packaged model in the BentoML store and a filled feature store (`make run` / the flows).
#
# Knobs (env): DURATION=30s CONNECTIONS=32 WRK_THREADS=2 WARMUP=3s PRODUCT_ID=<id>
#   WORKERS=<n> ACCESS_LOG=true|false METRICS=true|false THREADS=<n>  -> BentoML config overrides for BOTH
#   services (the levers measured in the team's shared serving-performance notes); unset = the services' own settings.
#   SERVICE=service.api:TamalesForecast NOOP=bench.noop_service:Noop
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-30s}"
WARMUP="${WARMUP:-3s}"
SERVICE="${SERVICE:-service.api:TamalesForecast}"
NOOP="${NOOP:-bench.noop_service:Noop}"
source bench/common.sh

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
  else
    echo "bench/serve.sh: wrk is not installed (apt-get install wrk)" >&2
    exit 1
  fi
fi

if [ -z "${PRODUCT_ID:-}" ]; then
  PRODUCT_ID=$("$UV" run --frozen python -m flows.serve_latest --print-product-id)
fi

# BentoML config overrides for both services (service names: tamales-forecast, noop).
overrides=()
for svc in tamales-forecast noop; do
  [ -n "${WORKERS:-}" ] && overrides+=("services.\"$svc\".workers=$WORKERS")
  [ -n "${ACCESS_LOG:-}" ] && overrides+=("services.\"$svc\".logging.access.enabled=$ACCESS_LOG")
  [ -n "${METRICS:-}" ] && overrides+=("services.\"$svc\".metrics.enabled=$METRICS")
  [ -n "${THREADS:-}" ] && overrides+=("services.\"$svc\".threads=$THREADS")
done
if [ ${#overrides[@]} -gt 0 ]; then
  BENTOML_CONFIG_OPTIONS="${overrides[*]}"
  export BENTOML_CONFIG_OPTIONS
fi

tmp=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM -- "-$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

write_post_lua "$tmp/post.lua" "$PRODUCT_ID"

# wrk latency figure -> milliseconds
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.2f", v}'; }

# run_one NAME TARGET -> sets RPS P50 P99 ERRORS
run_one() {
  local name=$1 target=$2 port
  port=$(free_port)
  setsid "$UV" run --frozen bentoml serve "$target" --host 127.0.0.1 --port "$port" >"$tmp/$name.log" 2>&1 &
  server_pid=$!
  local url="http://127.0.0.1:$port"
  for _ in $(seq 1 240); do
    if curl -fsS -o /dev/null "$url/readyz" 2>/dev/null; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then cat "$tmp/$name.log" >&2; echo "$name server died" >&2; exit 1; fi
    sleep 0.5
  done
  curl -fsS -o /dev/null "$url/readyz" || { cat "$tmp/$name.log" >&2; echo "$name server not ready" >&2; exit 1; }
  local status
  status=$(curl -s -o "$tmp/$name.sample" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d "{\"productid\": \"$PRODUCT_ID\"}" "$url$ROUTE")
  [ "$status" = 200 ] || { echo "$name: POST $ROUTE answered $status: $(cat "$tmp/$name.sample")" >&2; exit 1; }
  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$tmp/post.lua" "$url$ROUTE" >/dev/null
  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$tmp/post.lua" "$url$ROUTE" >"$tmp/$name.wrk"
  RPS=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$tmp/$name.wrk")
  P50=$(awk '$1 == "50%" {print $2}' "$tmp/$name.wrk" | to_ms)
  P99=$(awk '$1 == "99%" {print $2}' "$tmp/$name.wrk" | to_ms)
  ERRORS=$(awk '/Non-2xx or 3xx responses:/ {n+=$NF} /Socket errors:/ {n+=1} END {print n+0}' "$tmp/$name.wrk")
  kill -TERM -- "-$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

echo "wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION (after $WARMUP warm-up), POST $ROUTE {\"productid\": \"$PRODUCT_ID\"}"
echo "$(nproc) CPUs; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
[ -n "${BENTOML_CONFIG_OPTIONS:-}" ] && echo "BENTOML_CONFIG_OPTIONS=$BENTOML_CONFIG_OPTIONS"
run_one predict "$SERVICE"
P_RPS=$RPS P_P50=$P50 P_P99=$P99 P_ERR=$ERRORS
run_one noop "$NOOP"
N_RPS=$RPS N_P50=$P50 N_P99=$P99 N_ERR=$ERRORS

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %10s %10s %10s %8s\n' endpoint "req/s" "p50 ms" "p99 ms" errors
printf '%-10s %10s %10s %10s %8s\n' predict "$P_RPS" "$P_P50" "$P_P99" "$P_ERR"
printf '%-10s %10s %10s %10s %8s\n' noop "$N_RPS" "$N_P50" "$N_P99" "$N_ERR"
awk -v p="$P_RPS" -v n="$N_RPS" -v p99="$P_P99" 'BEGIN {
  r = (n > 0) ? p / n : 0
  printf "ratio predict/noop req/s: %.2f (target >= 0.80: %s); predict p99 %.1f ms (target <= 30: %s)\n",
    r, (r >= 0.8 ? "met" : "MISSED"), p99, (p99 <= 30 ? "met" : "MISSED")
}'
