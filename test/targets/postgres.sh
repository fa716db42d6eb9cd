#!/usr/bin/env bash
# Starts a private PostgreSQL cluster on a free loopback port for protocol tests.
#   postgres.sh [start] [DIR]   -> one JSON line on stdout (see README.md)
#   postgres.sh stop DIR        -> fast shutdown, removes DIR
# Env: TARGET_PORT (fixed port), PG_BIN (server binaries; default: newest installed).
set -euo pipefail

TARGET_KIND=postgres
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

find_pg_bin() {
  if [[ -n ${PG_BIN:-} ]]; then echo "$PG_BIN"; return; fi
  local d
  d=$(printf "%s\n" /usr/lib/postgresql/*/bin | grep -v "\*" | sort -V | tail -n 1 || true)
  echo "${d:-/usr/lib/postgresql/15/bin}"
}

as_pg() { runuser -u postgres -- "$@"; }

start() {
  local bin
  bin=$(find_pg_bin)
  # initdb and pg_ctl refuse to run as root, and Debian ships them outside PATH.
  if [[ ! -x $bin/initdb ]]; then
    ensure_pkg "$bin/initdb" postgresql
    bin=$(find_pg_bin)
  fi
  ensure_pkg psql postgresql-client

  new_instance "${1:-}"
  local dir=$INSTANCE_DIR port=$INSTANCE_PORT
  # Postgres resolves relative paths and its cwd against the data dir, but runuser keeps
  # ours, which postgres may not be allowed to read.
  cd "$dir"

  local super_pw app_pw md5_pw
  super_pw=$(rand_secret) app_pw=$(rand_secret) md5_pw=$(rand_secret)

  mkdir -p "$dir/sock" "$dir/tls"
  make_tls "$dir/tls"
  printf '%s\n' "$super_pw" >"$dir/superuser.pw"
  chmod 600 "$dir/superuser.pw"
  chown -R postgres:postgres "$dir"

  as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=scram-sha-256 --pwfile="$dir/superuser.pw" \
    -E UTF8 --locale=C --no-sync --no-instructions >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; die "initdb failed"; }

  # app_md5's line comes first: pg_hba is first-match, and an md5 line is what makes the
  # server send an MD5 challenge for a role whose stored password is an md5 hash.
  cat >"$dir/data/pg_hba.conf" <<EOF
local all all scram-sha-256
host all app_md5 127.0.0.1/32 md5
host all all 127.0.0.1/32 scram-sha-256
EOF
  cat >>"$dir/data/postgresql.conf" <<EOF

# --- gatehouse test target ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = '$dir/tls/server.pem'
ssl_key_file = '$dir/tls/server-key.pem'
ssl_ca_file = '$dir/tls/ca.pem'
# Throwaway data: durability only costs start-up and benchmark time.
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 16MB
max_connections = 200
log_connections = on
log_disconnections = on
EOF
  chown postgres:postgres "$dir/data/pg_hba.conf" "$dir/data/postgresql.conf"

  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 -s start ||
    {
      # pg_ctl -w can give up on a postmaster that is still coming up.
      [[ -s $dir/data/postmaster.pid ]] && CLEANUP_PIDS+=("$(head -n 1 "$dir/data/postmaster.pid")")
      tail -n 30 "$dir/postgres.log" >&2
      die "pg_ctl start failed"
    }

  local pid
  pid=$(head -n 1 "$dir/data/postmaster.pid")
  CLEANUP_PIDS+=("$pid")
  echo "$pid" >"$dir/target.pid"
  wait_tcp "$port" "$pid" "$dir/postgres.log"

  # Only the md5 role is created under password_encryption=md5, so its verifier is an md5
  # hash while every other role keeps SCRAM.
  PGPASSWORD=$super_pw as_pg "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/sock" -p "$port" -U postgres \
    -d postgres >/dev/null <<EOF
CREATE ROLE app_user LOGIN PASSWORD '$app_pw';
CREATE DATABASE appdb OWNER app_user;
SET password_encryption = 'md5';
CREATE ROLE app_md5 LOGIN PASSWORD '$md5_pw';
RESET password_encryption;
\\connect appdb
GRANT USAGE, CREATE ON SCHEMA public TO app_md5;
EOF

  json_obj kind postgres host 127.0.0.1 port "#$port" pid "#$pid" dir "$dir" \
    user app_user password "$app_pw" database appdb \
    md5User app_md5 md5Password "$md5_pw" \
    superuser postgres superuserPassword "$super_pw" socketDir "$dir/sock" \
    ca "$dir/tls/ca.pem" cert "$dir/tls/server.pem" key "$dir/tls/server-key.pem" \
    log "$dir/postgres.log" version "$("$bin/postgres" --version)"
}

case "${1:-start}" in
  # SIGQUIT is immediate shutdown: the data is thrown away, so skip the checkpoint that
  # fast shutdown (SIGINT) writes; SIGTERM (smart) would even wait for every client.
  stop) stop_target "${2:-}" QUIT ;;
  start) shift || true; start "${1:-}" ;;
  *) start "$1" ;;
esac
