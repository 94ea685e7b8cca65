# Shared by the bench/*.sh scripts (sourced from the repository root): wrk's defaults, the predict route, uv,
# telemetry off, and a free loopback port.
CONNECTIONS="${CONNECTIONS:-32}"
WRK_THREADS="${WRK_THREADS:-2}"
ROUTE=/apis/products/predict/1.0.0
UV="${UV:-$(command -v uv || echo "$HOME/.local/bin/uv")}"
export BENTOML_DO_NOT_TRACK=true DO_NOT_TRACK=1

free_port() { "$UV" run --frozen python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wrk Lua script POSTing {"productid": ID} to the route: write_post_lua FILE ID
write_post_lua() {
  printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' \
    "'{\"productid\": \"$2\"}'" >"$1"
}
