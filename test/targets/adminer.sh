#!/usr/bin/env bash
# Starts Adminer (Debian's package, a PHP database UI) under PHP's built-in web server on a free
# loopback port: a real third-party login form for the browser gateway's form-login tests,
# logging in to a MariaDB server (mariadb.sh) through mysqli.
#   adminer.sh [start] [DIR]   -> one JSON line on stdout (see README.md)
#   adminer.sh stop DIR        -> stops the web server, removes DIR
# Env: TARGET_PORT (fixed port); ADMINER_DB_HOST (default 127.0.0.1), ADMINER_DB_PORT (default
#      3306), ADMINER_DB_USER, ADMINER_DB_PASSWORD, ADMINER_DB_NAME: the database Adminer is to
#      log in to, only reported back (the login form names the server; Adminer stores nothing).
#      ADMINER_WORKERS: PHP_CLI_SERVER_WORKERS (default 4: a browser loads several URLs at once).
set -euo pipefail

TARGET_KIND=adminer
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ADMINER_DIR=/usr/share/adminer
ADMINER_PHP=$ADMINER_DIR/adminer.php

ensure_pkgs() {
  ensure_pkg php php-cli
  # Before adminer: it depends on `libapache2-mod-php | php-cgi | php-fpm | php`, and apt
  # would otherwise take the first alternative and bring in apache2.
  ensure_pkg php-cgi php-cgi
  ensure_pkg '/usr/lib/php/*/mysqli.so' php-mysql
  # has_bin wants an executable; adminer.php is not one, compile.php from the same package is.
  ensure_pkg "$ADMINER_DIR/compile.php" adminer
  [[ -f $ADMINER_PHP ]] || die "$ADMINER_PHP is missing (package adminer)"
  php -r 'exit(extension_loaded("mysqli") ? 0 : 1);' || die "PHP's mysqli extension is not enabled (php-mysql)"
}

# Workers drop to www-data when it exists (setpriv execs in place, so $! stays php's pid).
run_as() {
  if id www-data >/dev/null 2>&1; then
    echo setpriv --reuid=www-data --regid=www-data --init-groups --
  fi
}

adminer_version() {
  sed -n 's/^\* @version \(.*\)$/\1/p' "$ADMINER_PHP" | head -n 1
}

start() {
  ensure_pkgs

  new_instance "${1:-}"
  local dir=$INSTANCE_DIR port=$INSTANCE_PORT

  mkdir -p "$dir/www" "$dir/sessions" "$dir/tmp"
  # Debian's /etc/adminer/conf.php, reduced to the one plugin it enables: no version check,
  # which would have the browser load an iframe from adminer.org on every page.
  cat >"$dir/www/index.php" <<EOF
<?php
function adminer_object() {
    include_once '$ADMINER_DIR/plugins/plugin.php';
    include_once '$ADMINER_DIR/plugins/version-noverify.php';
    return new AdminerPlugin(array(new AdminerVersionNoverify()));
}
include '$ADMINER_PHP';
EOF
  if id www-data >/dev/null 2>&1; then chown www-data:www-data "$dir/sessions" "$dir/tmp"; fi

  # Sessions and Adminer's own temp files (adminer.invalid: the failed-login counter per client
  # IP, 30 failures lock it out for 30 minutes; adminer.key: the permanent-login key) in DIR, so
  # instances never share them and a test's wrong passwords never lock out another run.
  local run
  read -ra run <<<"$(run_as)"
  PHP_CLI_SERVER_WORKERS=${ADMINER_WORKERS:-4} setsid "${run[@]}" php \
    -d "session.save_path=$dir/sessions" -d "upload_tmp_dir=$dir/tmp" -d "sys_temp_dir=$dir/tmp" \
    -d display_errors=0 -d log_errors=1 -d "error_log=$dir/php-error.log" \
    -S "127.0.0.1:$port" -t "$dir/www" </dev/null >>"$dir/php.log" 2>&1 &
  local pid=$!
  CLEANUP_PIDS+=("$pid")
  wait_tcp "$port" "$pid" "$dir/php.log"
  echo "$pid" >"$dir/target.pid"

  local db_host=${ADMINER_DB_HOST:-127.0.0.1} db_port=${ADMINER_DB_PORT:-3306}
  json_obj kind adminer host 127.0.0.1 port "#$port" pid "#$pid" dir "$dir" \
    user "${ADMINER_DB_USER:-}" password "${ADMINER_DB_PASSWORD:-}" \
    url "http://127.0.0.1:$port/" driver server server "$db_host:$db_port" \
    dbHost "$db_host" dbPort "#$db_port" database "${ADMINER_DB_NAME:-}" \
    log "$dir/php.log" errorLog "$dir/php-error.log" \
    version "Adminer $(adminer_version) (PHP $(php -r 'echo PHP_VERSION;'))"
}

# The built-in server's workers (PHP_CLI_SERVER_WORKERS) are children of the pid we record;
# end them too, whatever the parent does with its signal.
before_stop() {
  local p
  for p in $(descendants "$1"); do kill -TERM "$p" 2>/dev/null || true; done
}

case "${1:-start}" in
  stop) stop_target "${2:-}" TERM ;;
  start) shift || true; start "${1:-}" ;;
  *) start "$1" ;;
esac
