#!/usr/bin/env bash
# Container check of the forecast bento (make test-container; also run by tests/test_service_container.py).
#
#   bash scripts/test_container.sh [BENTO_TAG]        (default: the newest tamales-forecast bento)
#
# Builds the stand-in base image if needed (scripts/make_base_image.sh — a local stand-in for
# python:3.11-slim, no registry is reachable here), `bentoml containerize --backend podman`s the bento (skipped
# when its image exists), runs it on a free 127.0.0.1 port with the local feature store mounted read-only,
# POSTs the predict route with a real product id, asserts 200 + the JSON fields and that the server runs as a
# non-root user, then stops and removes the container (the image is kept; REMOVE_IMAGE=1 removes it).
# Uses the project's settings (TAMALES_STATE_DIR, BENTOML_HOME, ...) to find the bento and the feature store.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/scripts/containers.conf}"
export BENTOML_DO_NOT_TRACK=true DO_NOT_TRACK=1
UV="${UV:-$(command -v uv || echo "$HOME/.local/bin/uv")}"
PY=("$UV" run --frozen python)
ROUTE=/apis/products/predict/1.0.0

command -v podman >/dev/null || { echo "test_container.sh: podman is not installed" >&2; exit 1; }
bash scripts/make_base_image.sh

bento="${1:-${BENTO_TAG:-$("${PY[@]}" -m flows.serve_latest --print-bento-tag)}}"
image="localhost/$bento"
product_id="${PRODUCT_ID:-$("${PY[@]}" -m flows.serve_latest --print-product-id)}"
# The local feature store file and the settings that name it, as the container must see them.
read -r store_file bq_dataset bq_table < <("${PY[@]}" -c '
from features.settings import get_settings
s = get_settings()
print(s.local_feature_store_path, s.bq_dataset, s.bq_table)')
[ -f "$store_file" ] || { echo "no local feature store at $store_file: run the features flow" >&2; exit 1; }

if podman image exists "$image"; then
  echo "image $image exists: not rebuilding"
else
  echo "containerizing $bento -> $image"
  start=$(date +%s)
  "${PY[@]}" -m bentoml containerize --backend podman "$bento" -t "$image"
  echo "containerized in $(( $(date +%s) - start )) s"
fi

port=$("${PY[@]}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
name="tamales-forecast-check-$$"
cleanup() {
  podman rm -f "$name" >/dev/null 2>&1 || true
  if [ "${REMOVE_IMAGE:-0}" = 1 ]; then podman rmi -f "$image" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

podman run -d --name "$name" -p "127.0.0.1:$port:3000" \
  -v "$(dirname "$store_file"):/data/feature_store:ro" \
  -e TAMALES_STATE_DIR=/data -e TAMALES_FEATURE_STORE=local \
  -e TAMALES_BQ_DATASET="$bq_dataset" -e TAMALES_BQ_TABLE="$bq_table" \
  "$image" >/dev/null

url="http://127.0.0.1:$port"
ready=""
for _ in $(seq 1 240); do
  if curl -fsS -o /dev/null "$url/readyz" 2>/dev/null; then ready=1; break; fi
  if [ "$(podman inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" != true ]; then break; fi
  sleep 0.5
done
if [ -z "$ready" ]; then
  podman logs "$name" 2>&1 | tail -40 >&2
  echo "FAIL: the container never became ready" >&2
  exit 1
fi

body=$(curl -sS -w '\n%{http_code}' -H 'Content-Type: application/json' \
  -d "{\"productid\": \"$product_id\"}" "$url$ROUTE")
status=${body##*$'\n'}
body=${body%$'\n'*}
echo "POST $ROUTE {\"productid\": \"$product_id\"} -> $status $body"
[ "$status" = 200 ] || { podman logs "$name" 2>&1 | tail -40 >&2; echo "FAIL: status $status" >&2; exit 1; }
"${PY[@]}" -c '
import json, sys
body = json.loads(sys.argv[1])
fields = ("productid", "prediction", "lower", "upper", "forecast_month", "model_version", "features_as_of")
missing = [f for f in fields if f not in body]
assert not missing, f"missing fields {missing}"
assert body["productid"] == sys.argv[2], body
assert 0 <= body["lower"] <= body["prediction"] <= body["upper"], body
' "$body" "$product_id"

unknown=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"productid": "no-such-product"}' "$url$ROUTE")
[ "$unknown" = 404 ] || { echo "FAIL: unknown product answered $unknown, not 404" >&2; exit 1; }

# Every process of the container (the server and its workers) must run as the image's non-root user.
users=$(podman top "$name" user | tail -n +2 | sort -u | tr '\n' ' ')
case " $users " in *" root "*|"  ") echo "FAIL: container processes run as: $users" >&2; exit 1 ;; esac
echo "OK: $image answers the predict route; processes run as: $users(image USER $(podman image inspect -f '{{.Config.User}}' "$image"))"
