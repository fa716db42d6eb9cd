#!/usr/bin/env bash
# Starts a private nginx on a free loopback port, with TLS, for the browser gateway's tests and
# benchmarks.
#   nginx.sh [start] [DIR]             -> a static site with /private/ behind auth_basic
#   nginx.sh proxy UPSTREAM_URL [DIR]  -> a TLS reverse proxy to UPSTREAM_URL, keepalive upstream
#                                         (the reference proxy for benchmarks)
#   nginx.sh stream HOST:PORT [DIR]    -> a plaintext TCP proxy to HOST:PORT (the stream module):
#                                         a relay written in C, for the MySQL benchmarks
#   nginx.sh stop DIR                  -> stops nginx, removes DIR
# Both print one JSON line on stdout (see README.md).
# Env: TARGET_PORT (fixed port), NGINX_WORKERS (worker_processes, default auto);
#      proxy only: NGINX_PROXY_UPSTREAM_CA (verify an https:// upstream against this CA).
set -euo pipefail

TARGET_KIND=nginx
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NGINX=/usr/sbin/nginx
BASIC_USER=gh-basic

ensure_pkgs() {
  ensure_pkg "$NGINX" nginx
  ensure_pkg htpasswd apache2-utils
  ensure_pkg openssl openssl
}

version() { "$NGINX" -v 2>&1 | sed 's/^nginx version: //'; }

# Workers drop to www-data (Debian's web server user); the master stays root to read the key.
worker_user() {
  if id www-data >/dev/null 2>&1; then echo www-data; else echo root; fi
}

# The settings both modes share: everything nginx writes or keeps lives in DIR, and Debian's
# /etc/nginx is never read (-p DIR -c DIR/nginx.conf; mime types are inlined).
common_conf() {
  local dir=$1 user
  user=$(worker_user)
  cat <<EOF
user $user;
worker_processes ${NGINX_WORKERS:-auto};
pid $dir/nginx.pid;
error_log $dir/error.log notice;
events {
  worker_connections 4096;
}
EOF
}

http_common() {
  local dir=$1
  cat <<EOF
  access_log $dir/access.log;
  client_body_temp_path $dir/tmp/client_body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  types {
    text/html html;
    text/plain txt;
    application/json json;
  }
  default_type application/octet-stream;
  sendfile on;
  tcp_nodelay on;
  server_tokens off;
  # Benchmarks open long keep-alive connections; nginx's default closes them after 1000 requests.
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:1m;
EOF
}

# launch DIR PORT: runs nginx in the foreground (daemon off: the pid we start is the master),
# records the master's pid in DIR/target.pid and NGINX_PID, waits for the listener. Not called
# in $(...): CLEANUP_PIDS must reach the EXIT trap.
NGINX_PID=''
launch() {
  local dir=$1 port=$2
  mkdir -p "$dir/tmp"
  # Workers write request bodies and proxied responses to the temp dirs.
  chown -R "$(worker_user)" "$dir/tmp"
  # -e: even the errors before the config is read go to our log, not /var/log/nginx.
  "$NGINX" -t -q -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" >>"$dir/nginx.out" 2>&1 ||
    { tail -n 30 "$dir/nginx.out" >&2; die "nginx -t rejected $dir/nginx.conf"; }
  setsid "$NGINX" -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' </dev/null >>"$dir/nginx.out" 2>&1 &
  local launcher=$!
  CLEANUP_PIDS+=("$launcher")
  local pid
  pid=$(wait_pidfile "$dir/nginx.pid" "$launcher" "$dir/error.log")
  CLEANUP_PIDS+=("$pid")
  wait_tcp "$port" "$pid" "$dir/error.log"
  echo "$pid" >"$dir/target.pid"
  NGINX_PID=$pid
}

start() {
  ensure_pkgs

  new_instance "${1:-}"
  local dir=$INSTANCE_DIR port=$INSTANCE_PORT

  local password
  password=$(rand_secret)
  make_tls "$dir/tls"
  mkdir -p "$dir/www/private"
  cat >"$dir/www/index.html" <<'EOF'
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nginx target</title></head>
<body><h1>nginx target</h1><p>A small static page. <a href="/private/">Private area</a>.</p></body></html>
EOF
  cat >"$dir/www/private/index.html" <<'EOF'
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>private</title></head>
<body><h1>Private area</h1><p>Only for the basic-auth user.</p></body></html>
EOF
  # htpasswd's default scheme (apr1, salted MD5), which nginx checks itself.
  htpasswd -bc "$dir/htpasswd" "$BASIC_USER" "$password" 2>/dev/null || die "htpasswd failed"
  # Workers read the password file on every request.
  chown "root:$(worker_user)" "$dir/htpasswd"
  chmod 640 "$dir/htpasswd"

  {
    common_conf "$dir"
    echo 'http {'
    http_common "$dir"
    cat <<EOF
  server {
    listen 127.0.0.1:$port ssl;
    server_name localhost 127.0.0.1;
    ssl_certificate $dir/tls/server.pem;
    ssl_certificate_key $dir/tls/server-key.pem;
    root $dir/www;
    index index.html;
    location / {
      try_files \$uri \$uri/ =404;
    }
    location /private/ {
      auth_basic "gatehouse nginx target";
      auth_basic_user_file $dir/htpasswd;
    }
  }
}
EOF
  } >"$dir/nginx.conf"

  launch "$dir" "$port"

  json_obj kind nginx host 127.0.0.1 port "#$port" pid "#$NGINX_PID" dir "$dir" \
    user "$BASIC_USER" password "$password" \
    ca "$dir/tls/ca.pem" cert "$dir/tls/server.pem" key "$dir/tls/server-key.pem" \
    url "https://127.0.0.1:$port" log "$dir/error.log" accessLog "$dir/access.log" \
    config "$dir/nginx.conf" version "$(version)" proxyOf '#null'
}

# nginx as the textbook TLS reverse proxy in front of UPSTREAM_URL: the baseline the browser
# gateway is benchmarked against. Upstream connections are HTTP/1.1 and kept alive (an
# `upstream` block with `keepalive`, `proxy_http_version 1.1`, an empty Connection header),
# WebSocket upgrades pass through, responses are not buffered (SSE, the slow download).
proxy() {
  local upstream=${1:-}
  [[ $upstream =~ ^(https?)://([^/:]+|\[[0-9a-fA-F:]+\]):([0-9]+)/?$ ]] ||
    die "usage: $0 proxy http[s]://HOST:PORT [DIR]"
  local up_scheme=${BASH_REMATCH[1]} up_host=${BASH_REMATCH[2]} up_port=${BASH_REMATCH[3]}
  ensure_pkgs

  new_instance "${2:-}"
  local dir=$INSTANCE_DIR port=$INSTANCE_PORT
  make_tls "$dir/tls"

  # An https:// upstream is verified against its CA, or refused: a benchmark baseline that
  # skipped verification would not be doing the gateway's work.
  local upstream_tls=''
  if [[ $up_scheme == https ]]; then
    local ca=${NGINX_PROXY_UPSTREAM_CA:-}
    [[ -n $ca ]] || die "an https:// upstream needs NGINX_PROXY_UPSTREAM_CA to be verified"
    [[ -r $ca ]] || die "NGINX_PROXY_UPSTREAM_CA=$ca is not readable"
    cp "$ca" "$dir/upstream-ca.pem"
    # nginx checks the upstream's certificate against a host NAME only (X509_check_host), never
    # an IP SAN: for a loopback IP upstream it checks `localhost`, which make_tls certificates
    # also carry (and sends it as SNI, where an IP is not allowed anyway).
    local ssl_name=$up_host
    if [[ $up_host == 127.* || $up_host == '[::1]' ]]; then ssl_name=localhost; fi
    upstream_tls="      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate $dir/upstream-ca.pem;
      proxy_ssl_name $ssl_name;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;"
  fi

  {
    common_conf "$dir"
    echo 'http {'
    http_common "$dir"
    cat <<EOF
  upstream backend {
    server $up_host:$up_port;
    keepalive 64;
  }
  # Keep-alive to the upstream needs an empty Connection header; a WebSocket handshake needs
  # "upgrade" there instead.
  map \$http_upgrade \$connection_upgrade {
    default upgrade;
    '' '';
  }
  server {
    listen 127.0.0.1:$port ssl;
    server_name localhost 127.0.0.1;
    ssl_certificate $dir/tls/server.pem;
    ssl_certificate_key $dir/tls/server-key.pem;
    location / {
      proxy_pass $up_scheme://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Host $up_host:$up_port;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto https;
      proxy_buffering off;
      proxy_read_timeout 1h;
$upstream_tls
    }
  }
}
EOF
  } >"$dir/nginx.conf"

  launch "$dir" "$port"

  json_obj kind nginx host 127.0.0.1 port "#$port" pid "#$NGINX_PID" dir "$dir" \
    user '' password '' \
    ca "$dir/tls/ca.pem" cert "$dir/tls/server.pem" key "$dir/tls/server-key.pem" \
    url "https://127.0.0.1:$port" log "$dir/error.log" accessLog "$dir/access.log" \
    config "$dir/nginx.conf" version "$(version)" proxyOf "$upstream"
}

# nginx's stream module as a plain TCP relay to HOST:PORT: bytes both ways, no TLS (MySQL's TLS
# starts inside the protocol, after the server's greeting, which nginx cannot terminate), no
# parsing. One worker: the relay on one core, as the gateway's data path runs on one thread.
stream() {
  local upstream=${1:-}
  [[ $upstream =~ ^([^/:]+):([0-9]+)$ ]] || die "usage: $0 stream HOST:PORT [DIR]"
  ensure_pkgs
  ensure_pkg /usr/lib/nginx/modules/ngx_stream_module.so libnginx-mod-stream

  new_instance "${2:-}"
  local dir=$INSTANCE_DIR port=$INSTANCE_PORT
  {
    echo 'load_module /usr/lib/nginx/modules/ngx_stream_module.so;'
    NGINX_WORKERS=${NGINX_WORKERS:-1} common_conf "$dir"
    cat <<EOF
stream {
  server {
    listen 127.0.0.1:$port;
    proxy_pass $upstream;
    tcp_nodelay on;
    proxy_timeout 1h;
  }
}
EOF
  } >"$dir/nginx.conf"

  launch "$dir" "$port"

  json_obj kind nginx host 127.0.0.1 port "#$port" pid "#$NGINX_PID" dir "$dir" \
    user '' password '' ca '' cert '' key '' url "tcp://127.0.0.1:$port" log "$dir/error.log" \
    accessLog '' config "$dir/nginx.conf" version "$(version)" proxyOf "$upstream"
}

case "${1:-start}" in
  # TERM is nginx's fast shutdown: the master ends its workers and exits.
  stop) stop_target "${2:-}" TERM ;;
  proxy) shift; proxy "${1:-}" "${2:-}" ;;
  stream) shift; stream "${1:-}" "${2:-}" ;;
  start) shift || true; start "${1:-}" ;;
  *) start "$1" ;;
esac
