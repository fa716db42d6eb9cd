#!/usr/bin/env bash
# Starts a private redis-server on a free loopback port for the tunnel's tests (issue 16: any TCP
# service) and benchmarks: a password (requirepass), no persistence, everything in its own dir.
# Debian's system instance (redis-server.service on 6379, /etc/redis) is never read or touched.
#   redis.sh [start] [DIR]   -> one JSON line on stdout (see README.md)
#   redis.sh stop DIR        -> stops the server, removes DIR
# Env: TARGET_PORT (fixed port), REDIS_PASSWORD (default random).
set -euo pipefail

TARGET_KIND=redis
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REDIS=redis-server

ensure_pkgs() {
  ensure_pkg "$REDIS" redis-server
  # Not used here, but the way to reach the target (README.md) and what the tests run.
  ensure_pkg redis-cli redis-tools
  ensure_pkg openssl openssl
}

# "Redis server v=7.0.15"
version() { "$REDIS" --version | sed 's/ sha=.*//'; }

# The server drops to Debian's `redis` user when it exists (setpriv execs in place, so $! stays
# redis-server's pid), root otherwise.
run_as() {
  if id redis >/dev/null 2>&1; then
    echo setpriv --reuid=redis --regid=redis --init-groups --
  fi
}

start() {
  ensure_pkgs

  new_instance "${1:-}"
  local dir=$INSTANCE_DIR port=$INSTANCE_PORT

  local password=${REDIS_PASSWORD:-}
  [[ -n $password ]] || password=$(rand_secret)
  # Written between double quotes in redis.conf, where \ and " would be escapes.
  [[ $password != *[\\\"$'\n']* ]] || die "REDIS_PASSWORD may not contain a backslash, a double quote or a newline"

  # The password lives in the config file (mode 600), not on the command line, which
  # /proc/PID/cmdline shows to everyone. set-proc-title no: redis would otherwise rewrite its
  # command line to "redis-server 127.0.0.1:PORT", and `stop` only signals a pid whose command
  # line still names DIR.
  cat >"$dir/redis.conf" <<EOF
bind 127.0.0.1
port $port
protected-mode yes
requirepass "$password"
daemonize no
supervised no
set-proc-title no
pidfile $dir/redis.pid
logfile $dir/redis.log
loglevel notice
dir $dir
save ""
appendonly no
databases 16
maxclients 1000
EOF
  chmod 600 "$dir/redis.conf"
  local run
  read -ra run <<<"$(run_as)"
  if ((${#run[@]})); then chown -R redis:redis "$dir"; fi

  setsid "${run[@]}" "$REDIS" "$dir/redis.conf" </dev/null >>"$dir/redis.out" 2>&1 &
  local pid=$!
  CLEANUP_PIDS+=("$pid")
  wait_tcp "$port" "$pid" "$dir/redis.log"
  echo "$pid" >"$dir/target.pid"

  json_obj kind redis host 127.0.0.1 port "#$port" pid "#$pid" dir "$dir" \
    user default password "$password" config "$dir/redis.conf" log "$dir/redis.log" version "$(version)"
}

case "${1:-start}" in
  # TERM: redis exits at once (nothing to save: save "" and appendonly no).
  stop) stop_target "${2:-}" TERM ;;
  start) shift || true; start "${1:-}" ;;
  *) start "$1" ;;
esac
