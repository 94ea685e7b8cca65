#!/usr/bin/env bash
# Soak of the predict route: wrk at CONNECTIONS concurrency for DURATION seconds with a mix of known, unknown
# and malformed product ids; per minute req/s, p50/p99 and statuses, then the server's RSS growth.
#
#   bash bench/soak.sh            # 10 minutes (make soak)
#   bash bench/soak.sh 30         # 30 seconds (or DURATION=30)
#
# Without SOAK_URL it serves the newest forecast bento itself (`bentoml serve <tag>` on 127.0.0.1, like
# `make run`); it needs a packaged bento and a filled feature store (`make run` / the flows). With
# SOAK_URL=http://127.0.0.1:PORT it soaks a server that is already running; SERVER_PID (that server's
# `bentoml serve` process) lets it measure RSS (the process and all its descendants, i.e. the workers).
#
# Requests (chosen per request by the Lua script): KNOWN_PCT % real ids (200), UNKNOWN_PCT % random unknown ids
# (404), PATH_PCT % GETs of random unknown paths of up to 2 KB (404: each must not become a new metrics label),
# the rest malformed or hostile bodies (400: bad JSON, wrong types, empty/too long ids, control characters;
# 404: SQL-looking and path-looking ids; 415: not JSON). Any other status, or any socket error, is unexpected.
# RSS "start" is measured after a WARMUP-second warm-up, "end" after the last minute; target growth < 10 %.
#
# Output: the per-minute table and a verdict; the machine-readable summary goes to $OUT_DIR/summary.json
# (OUT_DIR defaults to a temporary folder, removed unless KEEP=1 or OUT_DIR is given). Exit status 0 = passed.
# Knobs (env): DURATION=600 CONNECTIONS=32 WRK_THREADS=2 WARMUP=5 KNOWN_PCT=60 UNKNOWN_PCT=25 PATH_PCT=5
#   EXPECTED_STATUSES="200 400 404 415" SOAK_URL SERVER_PID OUT_DIR KEEP
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-${DURATION:-600}}"
WARMUP="${WARMUP:-5}"
KNOWN_PCT="${KNOWN_PCT:-60}"
UNKNOWN_PCT="${UNKNOWN_PCT:-25}"
PATH_PCT="${PATH_PCT:-5}"
EXPECTED_STATUSES="${EXPECTED_STATUSES:-200 400 404 415}"
source bench/common.sh
PY=("$UV" run --frozen python)

command -v wrk >/dev/null || { echo "bench/soak.sh: wrk is not installed (apt-get install wrk)" >&2; exit 3; }
[[ "$DURATION" =~ ^[0-9]+$ ]] && [ "$DURATION" -gt 0 ] || { echo "DURATION must be whole seconds" >&2; exit 2; }

if [ -n "${OUT_DIR:-}" ]; then
  mkdir -p "$OUT_DIR"
  out="$OUT_DIR"
else
  out=$(mktemp -d)
fi
server_pid="${SERVER_PID:-}"
own_server=""
cleanup() {
  if [ -n "$own_server" ]; then
    kill -TERM -- "-$own_server" 2>/dev/null || true
    wait "$own_server" 2>/dev/null || true
  fi
  if [ -z "${OUT_DIR:-}" ] && [ -z "${KEEP:-}" ]; then rm -rf "$out"; fi
}
trap cleanup EXIT

# Sum of VmRSS (kB) of a process and all its descendants (BentoML's workers run in their own sessions).
tree_rss() {
  [ -n "$1" ] || { echo 0; return; }
  ps -eo pid=,ppid=,rss= | awk -v root="$1" '
    { parent[$1] = $2; rss[$1] = $3 }
    END {
      keep[root] = 1; grown = 1
      while (grown) { grown = 0; for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; grown = 1 } }
      total = 0; for (p in keep) total += rss[p]; print total + 0
    }'
}

if [ -z "${SOAK_URL:-}" ]; then
  tag=$("${PY[@]}" -m flows.serve_latest --print-bento-tag)
  port=$(free_port)
  setsid "$UV" run --frozen bentoml serve "$tag" --host 127.0.0.1 --port "$port" >"$out/server.log" 2>&1 &
  own_server=$!
  server_pid=$own_server
  SOAK_URL="http://127.0.0.1:$port"
  echo "serving $tag on $SOAK_URL (log: $out/server.log)"
fi
for _ in $(seq 1 240); do
  curl -fsS -o /dev/null "$SOAK_URL/readyz" 2>/dev/null && break
  if [ -n "$own_server" ] && ! kill -0 "$own_server" 2>/dev/null; then cat "$out/server.log" >&2; exit 1; fi
  sleep 0.5
done
curl -fsS -o /dev/null "$SOAK_URL/readyz" || { echo "server at $SOAK_URL is not ready" >&2; exit 1; }

"${PY[@]}" -m bench.soak_report ids >"$out/known_ids.txt"

# The Lua script: known ids embedded; per-thread status counters collected in done(), printed as one JSON line.
{
  echo "local known = {"
  sed 's/.*/  "&",/' "$out/known_ids.txt"
  echo "}"
  cat <<LUA
local path = "$ROUTE"
local json_headers = { ["Content-Type"] = "application/json" }
local text_headers = { ["Content-Type"] = "text/plain" }
local known_pct, unknown_pct = $KNOWN_PCT / 100, ($KNOWN_PCT + $UNKNOWN_PCT) / 100
local path_pct = ($KNOWN_PCT + $UNKNOWN_PCT + $PATH_PCT) / 100

-- A random unknown path: "/" and 1 to 2,047 lowercase letters, digits and slashes.
local function random_path()
  local out = { "/" }
  for i = 1, math.random(1, 2047) do
    local c = math.random(40)
    out[#out + 1] = c > 36 and "/" or (c > 26 and string.char(47 + c - 26) or string.char(96 + c))
  end
  return table.concat(out)
end
local malformed = {
  '{"productid": ""}',
  '{"productid": "' .. string.rep("9", 65) .. '"}',
  '{"productid": "206\\\\u0000050084"}',
  '{"productid": "\\\\u001b[31m206050084"}',
  '{"productid": "206050084\\\\n"}',
  '{"productid": 206050084}',
  '{"productid": null}',
  '{"productid": ["206050084"]}',
  '{"product_id": "206050084"}',
  '{}',
  '[]',
  'not json',
  '{"productid": "2060',
  '{"productid": "\\' OR \\'1\\'=\\'1"}',
  '{"productid": "x\\'; DROP TABLE features; --"}',
  '{"productid": "../../../../etc/passwd"}',
}
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  math.randomseed(os.time() * 100 + id)
end

function request()
  local r = math.random()
  if r < known_pct then
    return wrk.format("POST", path, json_headers, '{"productid": "' .. known[math.random(#known)] .. '"}')
  elseif r < unknown_pct then
    return wrk.format("POST", path, json_headers, '{"productid": "U' .. math.random(1, 999999999) .. '"}')
  elseif r < path_pct then
    return wrk.format("GET", random_path())
  elseif math.random(20) == 1 then
    return wrk.format("POST", path, text_headers, "productid=206050084")
  end
  return wrk.format("POST", path, json_headers, malformed[math.random(#malformed)])
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do total[code] = (total[code] or 0) + n end
  end
  local parts = {}
  for code, n in pairs(total) do table.insert(parts, string.format('"%d": %d', code, n)) end
  local e = summary.errors
  io.write(string.format(
    'SOAK_MINUTE {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "statuses": {%s}, '
      .. '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    table.concat(parts, ", "), e.connect, e.read, e.write, e.timeout))
end
LUA
} >"$out/soak.lua"

expected_json=$(printf '"%s",' $EXPECTED_STATUSES)
rss_idle=$(tree_rss "$server_pid")
echo "warm-up ${WARMUP}s, then ${DURATION}s at $CONNECTIONS connections on $SOAK_URL$ROUTE"
wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$out/soak.lua" "$SOAK_URL$ROUTE" >/dev/null
rss_start=$(tree_rss "$server_pid")
cat >"$out/meta.json" <<JSON
{"url": "$SOAK_URL$ROUTE", "duration_s": $DURATION, "connections": $CONNECTIONS, "warmup_s": $WARMUP,
 "expected_statuses": [${expected_json%,}], "rss_kb_idle": $rss_idle, "rss_kb_after_warmup": $rss_start,
 "server_pid": "${server_pid}"}
JSON
: >"$out/minutes.jsonl"
left=$DURATION
minute=0
while [ "$left" -gt 0 ]; do
  span=$((left < 60 ? left : 60))
  minute=$((minute + 1))
  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${span}s" --timeout 10s --latency -s "$out/soak.lua" \
    "$SOAK_URL$ROUTE" >"$out/minute-$minute.txt"
  line=$(grep '^SOAK_MINUTE ' "$out/minute-$minute.txt" | sed 's/^SOAK_MINUTE //')
  [ -n "$line" ] || { cat "$out/minute-$minute.txt" >&2; echo "wrk printed no summary" >&2; exit 1; }
  rss=$(tree_rss "$server_pid")
  echo "${line%\}}, \"rss_kb\": $rss}" >>"$out/minutes.jsonl"
  echo "minute $minute: $(awk '/^Requests\/sec:/ {print $2}' "$out/minute-$minute.txt") req/s"
  left=$((left - span))
done

status=0
"${PY[@]}" -m bench.soak_report report "$out" || status=$?
echo "summary: $out/summary.json"
exit "$status"
