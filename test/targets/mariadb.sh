#!/usr/bin/env bash
# Starts a private MariaDB server on a free loopback port for protocol tests.
#   mariadb.sh [start] [DIR]   -> one JSON line on stdout (see README.md)
#   mariadb.sh stop DIR        -> shuts the server down, removes DIR
# Env: TARGET_PORT (fixed port).
set -euo pipefail

TARGET_KIND=mariadb
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MARIADBD=/usr/sbin/mariadbd
SHA2_NOTE='MariaDB has no caching_sha2_password server plugin (only MySQL 8 does); no app_sha2 user exists. app_ed25519 (client_ed25519) is the second auth plugin here.'

start() {
  ensure_pkg "$MARIADBD" mariadb-server
  ensure_pkg mariadb mariadb-client
  ensure_pkg openssl openssl

  new_instance "${1:-}"
  local dir=$INSTANCE_DIR port=$INSTANCE_PORT

  local root_pw app_pw ed_pw
  root_pw=$(rand_secret) app_pw=$(rand_secret) ed_pw=$(rand_secret)

  mkdir -p "$dir/data" "$dir/tmp" "$dir/tls"
  make_tls "$dir/tls"

  # --defaults-file everywhere: the system instance's /etc/mysql config (its socket, port,
  # datadir) must never leak into ours.
  cat >"$dir/my.cnf" <<EOF
[mysqld]
datadir = $dir/data
tmpdir = $dir/tmp
port = $port
socket = $dir/mysqld.sock
pid-file = $dir/mariadbd.pid
log-error = $dir/mariadbd.log
bind-address = 127.0.0.1
skip-networking = 0
skip-name-resolve
local-infile = ON
max_allowed_packet = 64M
max_connections = 300
plugin-load-add = auth_ed25519
ssl-ca = $dir/tls/ca.pem
ssl-cert = $dir/tls/server.pem
ssl-key = $dir/tls/server-key.pem
# Throwaway data: small buffers and no flushing keep start-up and benchmarks quick.
innodb_buffer_pool_size = 32M
innodb_log_file_size = 16M
innodb_flush_log_at_trx_commit = 0
innodb_doublewrite = 0
innodb_flush_method = nosync
performance_schema = OFF
EOF
  chown -R mysql:mysql "$dir"

  # Default socket auth: the OS root account logs in as MariaDB root over the socket,
  # which is how the accounts below are created without a bootstrap password.
  mariadb-install-db --defaults-file="$dir/my.cnf" --user=mysql --skip-test-db \
    --auth-root-authentication-method=socket --auth-root-socket-user=root \
    >"$dir/install-db.log" 2>&1 || { cat "$dir/install-db.log" >&2; die "mariadb-install-db failed"; }

  setsid "$MARIADBD" --defaults-file="$dir/my.cnf" --user=mysql \
    </dev/null >>"$dir/mariadbd.out" 2>&1 &
  local launcher=$!
  CLEANUP_PIDS+=("$launcher")
  local pid
  pid=$(wait_pidfile "$dir/mariadbd.pid" "$launcher" "$dir/mariadbd.log" 60)
  wait_tcp "$port" "$pid" "$dir/mariadbd.log" 60
  echo "$pid" >"$dir/target.pid"

  # Accounts for both '%' and the loopback/localhost hosts: a more specific anonymous
  # or host entry would otherwise win the match for local connections.
  local sql='' h
  for h in '%' '127.0.0.1' 'localhost'; do
    sql+="CREATE USER 'app_user'@'$h' IDENTIFIED VIA mysql_native_password USING PASSWORD('$app_pw');
GRANT ALL PRIVILEGES ON appdb.* TO 'app_user'@'$h';
CREATE USER 'app_ed25519'@'$h' IDENTIFIED VIA ed25519 USING PASSWORD('$ed_pw');
GRANT ALL PRIVILEGES ON appdb.* TO 'app_ed25519'@'$h';
"
  done
  mariadb --no-defaults -S "$dir/mysqld.sock" -u root <<EOF
CREATE DATABASE appdb;
$sql
ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('$root_pw');
CREATE USER 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('$root_pw');
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
DELETE FROM mysql.global_priv WHERE User = '';
FLUSH PRIVILEGES;
EOF

  json_obj kind mariadb host 127.0.0.1 port "#$port" pid "#$pid" dir "$dir" \
    user app_user password "$app_pw" database appdb authPlugin mysql_native_password \
    ed25519User app_ed25519 ed25519Password "$ed_pw" sha2User '#null' sha2Note "$SHA2_NOTE" \
    superuser root superuserPassword "$root_pw" socket "$dir/mysqld.sock" \
    ca "$dir/tls/ca.pem" cert "$dir/tls/server.pem" key "$dir/tls/server-key.pem" \
    log "$dir/mariadbd.log" config "$dir/my.cnf" version "$("$MARIADBD" --version)"
}

case "${1:-start}" in
  stop) stop_target "${2:-}" TERM ;;
  start) shift || true; start "${1:-}" ;;
  *) start "$1" ;;
esac
