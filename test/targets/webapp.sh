#!/usr/bin/env bash
# Starts the project's own small web app (webapp.mjs) on a free loopback port, the target of
# the browser gateway's tests: a CSRF-checked login form with a session cookie, basic / bearer
# / custom-header auth, a header echo, a WebSocket, server-sent events, a slow 5 MB download.
#   webapp.sh [start] [DIR]   -> one JSON line on stdout (see README.md)
#   webapp.sh stop DIR        -> stops the app, removes DIR
# Env: TARGET_PORT (fixed port), WEBAPP_TLS=1 (HTTPS with a make_tls certificate),
#      WEBAPP_USER (default webuser), WEBAPP_PASSWORD / WEBAPP_TOKEN (default: random).
set -euo pipefail

TARGET_KIND=webapp
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APP=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/webapp.mjs

start() {
  command -v node >/dev/null 2>&1 || die "node is missing"
  ensure_pkg openssl openssl

  local dir port
  dir=$(make_dir "${1:-}")
  CLEANUP_DIR=$dir
  # Port 0: the app binds a kernel-picked port itself and reports it, so there is no window
  # between picking a port and binding it.
  port=${TARGET_PORT:-0}
  if ((port != 0)); then ensure_port_free "$port"; fi

  local user=${WEBAPP_USER:-webuser} password=${WEBAPP_PASSWORD:-} token=${WEBAPP_TOKEN:-}
  [[ -n $password ]] || password=$(rand_secret)
  [[ -n $token ]] || token=$(rand_secret)

  local scheme=http ca='#null' tls_args=()
  if [[ ${WEBAPP_TLS:-} == 1 ]]; then
    make_tls "$dir/tls"
    scheme=https ca=$dir/tls/ca.pem
    tls_args=(--cert "$dir/tls/server.pem" --key "$dir/tls/server-key.pem")
  fi

  # Secrets through the environment, not argv: /proc/PID/cmdline is world-readable.
  WEBAPP_USER=$user WEBAPP_PASSWORD=$password WEBAPP_TOKEN=$token \
    setsid node "$APP" --dir "$dir" --port "$port" "${tls_args[@]}" </dev/null >>"$dir/webapp.log" 2>&1 &
  local pid=$!
  CLEANUP_PIDS+=("$pid")
  port=$(wait_pidfile "$dir/webapp.port" "$pid" "$dir/webapp.log")
  wait_tcp "$port" "$pid" "$dir/webapp.log"
  echo "$pid" >"$dir/target.pid"

  json_obj kind webapp host 127.0.0.1 port "#$port" pid "#$pid" dir "$dir" \
    user "$user" password "$password" token "$token" scheme "$scheme" ca "$ca" \
    url "$scheme://127.0.0.1:$port" log "$dir/webapp.log" \
    version "gatehouse-webapp/1 (node $(node --version))"
}

case "${1:-start}" in
  stop) stop_target "${2:-}" TERM ;;
  start) shift || true; start "${1:-}" ;;
  *) start "$1" ;;
esac
