#!/usr/bin/env bash
# Installs every Debian package the test suite needs, in one apt-get run, before any test
# starts: vitest's globalSetup (test/global-setup.ts) runs it once. Without it, the target
# scripts would install on demand from several vitest workers at once and collide on dpkg's
# lock. Safe to run by hand, any number of times, in parallel with itself or with a target
# script: everything happens under the install lock (lib.sh, with_install_lock), and nothing
# is installed that is already there.
#   install.sh           install what is missing (root)
#   install.sh --check   list what is missing on stderr; exit 1 if anything is
set -euo pipefail

TARGET_KIND=install
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Pairs of (command or path, Debian package providing it). Keep in step with what the target
# scripts, the protocol tests and the e2e tests run.
REQUIREMENTS=(
  # sshd.sh, the SSH protocol tests (ssh, scp, sftp, ssh-agent, ssh-add) and ssh-keygen
  /usr/sbin/sshd openssh-server
  ssh openssh-client
  scp openssh-client
  sftp openssh-client
  ssh-keygen openssh-client
  ssh-agent openssh-client
  ssh-add openssh-client
  # sshd.sh: the JIT tests' vaulted login works through sudo (protocols/ssh/provision.ts)
  sudo sudo
  # postgres.sh: initdb, pg_ctl, postgres from the newest /usr/lib/postgresql/N/bin; psql
  '/usr/lib/postgresql/*/bin/initdb' postgresql
  psql postgresql-client
  # mariadb.sh: mariadbd, mariadb-install-db; the mariadb client
  /usr/sbin/mariadbd mariadb-server
  mariadb-install-db mariadb-server
  mariadb mariadb-client
  # slapd.sh: slapd (with its back_mdb/back_ldap modules) and slapadd; the OpenLDAP clients
  # the protocol tests run
  /usr/sbin/slapd slapd
  slapadd slapd
  slappasswd slapd
  ldapsearch ldap-utils
  ldapmodify ldap-utils
  ldapwhoami ldap-utils
  ldappasswd ldap-utils
  # test/protocols/ldap.test.ts: ldapsearch -Y PLAIN (a SASL bind the gateway refuses) needs the PLAIN plugin
  '/usr/lib/*/sasl2/libplain.so*' libsasl2-modules
  # nginx.sh: a private nginx (basic-auth site, or the reference TLS reverse proxy) and
  # htpasswd for its password file
  /usr/sbin/nginx nginx
  htpasswd apache2-utils
  # adminer.sh: Adminer under PHP's built-in server, logging in to a mariadb.sh target through
  # mysqli. php-cgi comes before adminer on purpose: adminer depends on
  # `libapache2-mod-php | php-cgi | php-fpm | php`, and without another alternative already
  # chosen apt takes the first one, which pulls in (and would start) apache2.
  php php-cli
  php-cgi php-cgi
  '/usr/lib/php/*/mysqli.so' php-mysql
  # has_bin wants an executable file and adminer.php (what adminer.sh serves) is not one;
  # compile.php, from the same package, is
  /usr/share/adminer/compile.php adminer
  # rdp.sh: FreeRDP's shadow server (an RDP server with NLA checking a SAM file) on its own
  # Xvfb display, winpr-hash for the SAM file's NT hash, xfreerdp as the client (+auth-only
  # under xvfb-run; the tunnel tests and the gateway's RDP launch); xauth for xvfb-run
  freerdp-shadow-cli freerdp2-shadow-x11
  winpr-hash winpr-utils
  xfreerdp freerdp2-x11
  Xvfb xvfb
  xvfb-run xvfb
  xauth xauth
  # redis.sh: a private redis-server (requirepass) beside Debian's system instance; redis-cli
  redis-server redis-server
  redis-cli redis-tools
  # bench/: wrk drives the HTTP benchmarks (the browser gateway against nginx.sh proxy),
  # iperf3 the tunnel's raw TCP throughput
  wrk wrk
  iperf3 iperf3
  # bench/mysql: nginx's stream module (nginx.sh stream), a TCP proxy written in C in front of MariaDB
  /usr/lib/nginx/modules/ngx_stream_module.so libnginx-mod-stream
  # test/e2e/web.test.ts drives Debian's Chromium through playwright-core
  /usr/bin/chromium chromium
  # test/unit/deploy-files.test.ts validates docker-compose.yml with the compose CLI (no daemon, no images)
  docker-compose docker-compose
  # lib.sh and the target scripts (usually present, but not on every slim image)
  openssl openssl
  ps procps
  runuser util-linux
  setsid util-linux
  useradd passwd
  chpasswd passwd
)

# The packages whose requirement is not met, each once, in list order.
missing_packages() {
  local i seen=' '
  for ((i = 0; i < ${#REQUIREMENTS[@]}; i += 2)); do
    local bin=${REQUIREMENTS[i]} pkg=${REQUIREMENTS[i + 1]}
    if has_bin "$bin" || [[ $seen == *" $pkg "* ]]; then continue; fi
    seen+="$pkg "
    echo "$pkg"
  done
}

install_missing() {
  local missing
  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]} == 0)); then
    log "every package the tests need is installed"
    return 0
  fi
  log "installing ${missing[*]}"
  if ! apt_install "${missing[@]}"; then
    ((EUID == 0)) || log "hint: installing packages needs root (sudo $0)"
    log "apt-get install ${missing[*]} failed"
    return 1
  fi
  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]})); then
    log "still missing after the install: ${missing[*]}"
    return 1
  fi
  log "installed; every package the tests need is there"
}

case "${1:-}" in
  --check)
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]})); then log "missing: ${missing[*]}"; exit 1; fi
    log "nothing missing"
    ;;
  '')
    # Always under the lock, even when nothing looks missing: a binary can already be on
    # disk while a concurrent install is still configuring its package.
    with_install_lock install_missing
    ;;
  *) die "usage: $0 [--check]" ;;
esac
