#!/usr/bin/env bash
# Starts a private OpenLDAP slapd on free loopback ports for protocol tests.
#   slapd.sh [start] [DIR]             -> one JSON line on stdout (see README.md)
#   slapd.sh proxy UPSTREAM_URI [DIR]  -> a back-ldap proxy in front of UPSTREAM_URI (benchmarks)
#   slapd.sh stop DIR                  -> stops the server, removes DIR
# Env: TARGET_PORT (fixed ldap:// port, plain and StartTLS), TARGET_LDAPS_PORT (fixed
#      ldaps:// port); proxy only: SLAPD_PROXY_UPSTREAM_CA (verify the upstream with StartTLS,
#      or ldaps:// for an ldaps upstream), SLAPD_PROXY_USER / SLAPD_PROXY_PASSWORD (reported
#      back as user/password; the proxy passes binds through, it stores no accounts).
set -euo pipefail

TARGET_KIND=slapd
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SLAPD=/usr/sbin/slapd
SCHEMA_DIR=/etc/ldap/schema
MODULE_DIR=/usr/lib/ldap
BASE_DN='dc=example,dc=com'
PEOPLE_DN="ou=people,$BASE_DN"
RESTRICTED_DN="ou=restricted,$BASE_DN"
REFERRAL_DN="ou=elsewhere,$BASE_DN"
SVC_DN="cn=gatehouse-svc,ou=services,$BASE_DN"
ROOT_DN="cn=admin,$BASE_DN"
# Gatehouse's temporary accounts (issue 17): entries made under JIT_OU, given READERS_DN;
# OPERATORS_DN is the group the vaulted account is elevated into. Members of either may read
# REPORTS_DN, which the service account itself may not: a test can tell who the directory
# thinks it is talking to by what a search there returns.
JIT_OU="ou=gatehouse,$BASE_DN"
READERS_DN="cn=readers,ou=groups,$BASE_DN"
OPERATORS_DN="cn=operators,ou=groups,$BASE_DN"
REPORTS_DN="ou=reports,$BASE_DN"
PEOPLE=2000
# What slapd 2.5 logs (loglevel stats) once a simple bind has SUCCEEDED: a bind is first
# logged as `BIND dn="…" method=128` whatever its outcome, and only a successful one adds
# `BIND dn="…" mech=SIMPLE bind_ssf=0 ssf=N`; a refused one goes straight to
# `RESULT tag=97 err=49`. Tests count this substring to count the service account's binds.
BIND_LINE="BIND dn=\"$SVC_DN\" mech=SIMPLE "

ensure_pkgs() {
  ensure_pkg "$SLAPD" slapd
  ensure_pkg slapadd slapd
  ensure_pkg slappasswd slapd
  # Not used here, but the way to reach the target by hand (README.md) and from the tests.
  ensure_pkg ldapsearch ldap-utils
  ensure_pkg openssl openssl
}

# Debian's package runs its own slapd as `openldap`; ours drops to the same user so it never
# runs as root, falling back to root where the user does not exist (a hand-made image).
run_as_args() {
  if id openldap >/dev/null 2>&1; then echo "-u openldap -g openldap"; fi
}

# The settings shared by the directory and the proxy: schemas, modules, TLS, pid file.
# Debian's /etc/ldap/slapd.d (cn=config) is never read: slapd gets `-f` with our file.
common_conf() {
  local dir=$1 module=$2
  cat <<EOF
include $SCHEMA_DIR/core.schema
include $SCHEMA_DIR/cosine.schema
include $SCHEMA_DIR/inetorgperson.schema
include $SCHEMA_DIR/nis.schema

# Debian builds every backend as a module.
modulepath $MODULE_DIR
moduleload $module

pidfile $dir/slapd.pid
argsfile $dir/slapd.args
# stats: one line per connection, operation and result (BIND/SRCH/RESULT), which is what
# tests read from the log.
loglevel stats

# Both StartTLS on the ldap:// port and the ldaps:// port use this certificate.
TLSCACertificateFile $dir/tls/ca.pem
TLSCertificateFile $dir/tls/server.pem
TLSCertificateKeyFile $dir/tls/server-key.pem
EOF
}

# launch DIR PORT LDAPS_PORT: runs slapd in the foreground (-d keeps it there and sends the
# stats lines to stderr, i.e. slapd.log), records its pid in DIR/target.pid and SLAPD_PID,
# waits for both listeners. Not called in $(...): CLEANUP_PIDS must reach the EXIT trap.
SLAPD_PID=''
launch() {
  local dir=$1 port=$2 ldaps_port=$3 run_as
  run_as=$(run_as_args)
  # shellcheck disable=SC2086 # run_as is two options or nothing
  setsid "$SLAPD" -f "$dir/slapd.conf" -h "ldap://127.0.0.1:$port/ ldaps://127.0.0.1:$ldaps_port/" \
    $run_as -d stats </dev/null >>"$dir/slapd.log" 2>&1 &
  local launcher=$!
  CLEANUP_PIDS+=("$launcher")
  local pid
  pid=$(wait_pidfile "$dir/slapd.pid" "$launcher" "$dir/slapd.log")
  CLEANUP_PIDS+=("$pid")
  wait_tcp "$port" "$pid" "$dir/slapd.log"
  wait_tcp "$ldaps_port" "$pid" "$dir/slapd.log"
  echo "$pid" >"$dir/target.pid"
  SLAPD_PID=$pid
}

# pick_ports: sets PORT and LDAPS_PORT (ldap:// and ldaps://), fixed or free, neither taken.
PORT='' LDAPS_PORT=''
pick_ports() {
  PORT=${TARGET_PORT:-$(free_port)}
  LDAPS_PORT=${TARGET_LDAPS_PORT:-$(free_port)}
  # Two kernel picks in a row can return the same port (the first was closed again).
  while [[ -z ${TARGET_LDAPS_PORT:-} && $LDAPS_PORT == "$PORT" ]]; do LDAPS_PORT=$(free_port); done
  [[ $LDAPS_PORT != "$PORT" ]] || die "TARGET_PORT and TARGET_LDAPS_PORT are both $PORT"
  ensure_port_free "$PORT"
  ensure_port_free "$LDAPS_PORT"
}

version() { "$SLAPD" -VV 2>&1 | head -n 1 | sed -e 's/^@(#) \$//' -e 's/ *\$$//' || true; }

# The sample tree, as LDIF for slapadd: 2000 people (more than one 100-entry page and more
# than slapd's default sizelimit of 500), groups, a subtree tests treat as out of bounds and a
# referral object (tests check that the gateway strips referrals and search references).
sample_ldif() {
  local svc_hash=$1
  cat <<EOF
dn: $BASE_DN
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=services,$BASE_DN
objectClass: organizationalUnit
ou: services

dn: $SVC_DN
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: gatehouse-svc
description: the account the gateway binds as
userPassword: $svc_hash

dn: $PEOPLE_DN
objectClass: organizationalUnit
ou: people

EOF
  awk -v n="$PEOPLE" -v base="$PEOPLE_DN" 'BEGIN {
    for (i = 1; i <= n; i++) {
      u = sprintf("user%04d", i)
      printf "dn: uid=%s,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: User %04d\nsn: %04d\ngivenName: User\nmail: %s@example.com\nemployeeNumber: %d\n\n", u, base, u, i, i, u, i
    }
  }'
  cat <<EOF
dn: ou=groups,$BASE_DN
objectClass: organizationalUnit
ou: groups

dn: cn=admins,ou=groups,$BASE_DN
objectClass: groupOfNames
cn: admins
member: uid=user0001,$PEOPLE_DN
member: uid=user0002,$PEOPLE_DN

dn: cn=developers,ou=groups,$BASE_DN
objectClass: groupOfNames
cn: developers
member: uid=user0003,$PEOPLE_DN
member: uid=user0004,$PEOPLE_DN
member: uid=user0005,$PEOPLE_DN

# groupOfNames needs at least one member: the rootdn (no entry, bypasses ACLs anyway) holds
# the place, so removing the last real member never empties a group.
dn: $READERS_DN
objectClass: groupOfNames
cn: readers
member: $ROOT_DN

dn: $OPERATORS_DN
objectClass: groupOfNames
cn: operators
member: $ROOT_DN

dn: $JIT_OU
objectClass: organizationalUnit
ou: gatehouse
description: temporary accounts made and removed by Gatehouse

dn: $REPORTS_DN
objectClass: organizationalUnit
ou: reports

dn: cn=q1-report,$REPORTS_DN
objectClass: organizationalRole
cn: q1-report
description: readable by the readers and operators groups only

dn: $RESTRICTED_DN
objectClass: organizationalUnit
ou: restricted
description: outside the base DN a people-only resource may reach

dn: uid=secret1,$RESTRICTED_DN
objectClass: inetOrgPerson
uid: secret1
cn: Secret One
sn: One
mail: secret1@example.com

dn: uid=secret2,$RESTRICTED_DN
objectClass: inetOrgPerson
uid: secret2
cn: Secret Two
sn: Two
mail: secret2@example.com

dn: cn=vault,$RESTRICTED_DN
objectClass: organizationalRole
cn: vault
description: restricted

dn: $REFERRAL_DN
objectClass: referral
objectClass: extensibleObject
ou: elsewhere
ref: ldap://elsewhere.invalid/$REFERRAL_DN

EOF
}

start() {
  ensure_pkgs

  local dir port ldaps_port
  dir=$(make_dir "${1:-}")
  CLEANUP_DIR=$dir
  pick_ports
  port=$PORT ldaps_port=$LDAPS_PORT

  local root_pw svc_pw root_hash svc_hash
  root_pw=$(rand_secret) svc_pw=$(rand_secret)
  root_hash=$(slappasswd -h '{SSHA}' -s "$root_pw")
  svc_hash=$(slappasswd -h '{SSHA}' -s "$svc_pw")

  mkdir -p "$dir/db" "$dir/tls"
  make_tls "$dir/tls"

  {
    common_conf "$dir" back_mdb
    # Global (frontend) ACLs: they guard the rootDSE and cn=Subschema, and slapd appends them to
    # the database's (empty) list, so this one list is the whole policy. First match wins,
    # per entry and attribute; the rootdn is never subject to ACLs.
    cat <<EOF

# Passwords: nobody reads them but their owner; anonymous may only use them to bind. Under
# ou=people the service account may set them too (it manages those accounts), but not read
# them: "=w" is the bare write privilege, whereas the "write" level includes read.
access to dn.subtree="$PEOPLE_DN" attrs=userPassword
  by self write
  by dn.exact="$SVC_DN" =w
  by anonymous auth
  by * none
# Temporary accounts under ou=gatehouse: the same, the service account makes and removes them.
access to dn.subtree="$JIT_OU" attrs=userPassword
  by self write
  by dn.exact="$SVC_DN" =w
  by anonymous auth
  by * none
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
# Anonymous sees the rootDSE (naming contexts, supported controls and extensions), nothing else.
access to dn.base=""
  by * read
access to dn.base="cn=Subschema"
  by users read
  by * none
# A person may read their own entry (without it, "by self" above could not even find it).
access to dn.subtree="$PEOPLE_DN"
  by dn.exact="$SVC_DN" write
  by self read
  by * none
access to dn.subtree="$JIT_OU"
  by dn.exact="$SVC_DN" write
  by self read
  by * none
# The groups Gatehouse hands out (readers) and elevates into (operators): the service account
# may change who is in them; the groups above it (admins, developers) it may only read.
access to dn.exact="$READERS_DN" attrs=member
  by dn.exact="$SVC_DN" write
  by * none
access to dn.exact="$OPERATORS_DN" attrs=member
  by dn.exact="$SVC_DN" write
  by * none
access to dn.subtree="$REPORTS_DN"
  by group.exact="$READERS_DN" read
  by group.exact="$OPERATORS_DN" read
  by * none
access to *
  by dn.exact="$SVC_DN" read
  by * none

database mdb
suffix "$BASE_DN"
rootdn "$ROOT_DN"
rootpw $root_hash
directory $dir/db
# The 10 MiB default is enough for the sample tree, not for benchmarks that write.
maxsize 268435456
# Throwaway data: no fsync per write.
dbnosync
index objectClass eq
index uid,cn,mail eq,sub
index member eq
# slapd's default sizelimit (500) stays for everyone else; the gateway's account gets every
# entry of a paged search (size.prtotal: the total over all pages).
limits dn.exact="$SVC_DN" size=unlimited size.prtotal=unlimited time=unlimited
EOF
  } >"$dir/slapd.conf"

  # Loaded offline, before slapd starts: far quicker than ldapadd and no race with the listener.
  # -q skips consistency checks that a freshly generated LDIF does not need.
  sample_ldif "$svc_hash" >"$dir/sample.ldif"
  slapadd -q -f "$dir/slapd.conf" -b "$BASE_DN" -l "$dir/sample.ldif" >"$dir/slapadd.log" 2>&1 ||
    { tail -n 30 "$dir/slapadd.log" >&2; die "slapadd failed"; }

  # slapd drops to openldap after reading its config: the database, the key and the dir (for
  # its pid file) must be its own.
  if id openldap >/dev/null 2>&1; then chown -R openldap:openldap "$dir"; fi

  local pid
  launch "$dir" "$port" "$ldaps_port"
  pid=$SLAPD_PID

  json_obj kind slapd host 127.0.0.1 port "#$port" ldapsPort "#$ldaps_port" pid "#$pid" dir "$dir" \
    user "$SVC_DN" password "$svc_pw" baseDn "$BASE_DN" peopleDn "$PEOPLE_DN" \
    restrictedDn "$RESTRICTED_DN" referralDn "$REFERRAL_DN" entries "#$PEOPLE" \
    superuser "$ROOT_DN" superuserPassword "$root_pw" \
    ca "$dir/tls/ca.pem" cert "$dir/tls/server.pem" key "$dir/tls/server-key.pem" \
    log "$dir/slapd.log" bindLine "$BIND_LINE" config "$dir/slapd.conf" version "$(version)" \
    proxyOf '#null'
}

# A second slapd whose back-ldap forwards every operation to UPSTREAM_URI: OpenLDAP's own
# LDAP proxy, the baseline the gateway is benchmarked against. Binds pass through, so clients
# use the upstream's accounts; searches then run upstream under that identity.
proxy() {
  local upstream=${1:-}
  [[ $upstream == ldap://* || $upstream == ldaps://* ]] || die "usage: $0 proxy ldap[s]://HOST:PORT [DIR]"
  ensure_pkgs

  local dir port ldaps_port
  dir=$(make_dir "${2:-}")
  CLEANUP_DIR=$dir
  pick_ports
  port=$PORT ldaps_port=$LDAPS_PORT

  mkdir -p "$dir/tls"
  make_tls "$dir/tls"

  # The leg to the upstream: StartTLS (or ldaps://) verified against its CA when we have it,
  # plain otherwise; an ldaps:// upstream cannot be verified without it, so it is refused.
  local ca=${SLAPD_PROXY_UPSTREAM_CA:-} tls_line mode
  if [[ -n $ca ]]; then
    [[ -r $ca ]] || die "SLAPD_PROXY_UPSTREAM_CA=$ca is not readable"
    cp "$ca" "$dir/upstream-ca.pem"
    if [[ $upstream == ldaps://* ]]; then mode=ldaps; else mode=start; fi
    tls_line="tls $mode tls_cacert=\"$dir/upstream-ca.pem\" tls_reqcert=demand"
  elif [[ $upstream == ldaps://* ]]; then
    die "an ldaps:// upstream needs SLAPD_PROXY_UPSTREAM_CA to be verified"
  else
    tls_line='tls none'
  fi

  {
    common_conf "$dir" back_ldap
    cat <<EOF

database ldap
suffix "$BASE_DN"
uri "$upstream"
$tls_line
# The client's own bind is replayed upstream after a reconnect, so a dropped upstream
# connection does not silently turn the client anonymous.
rebind-as-user yes
# The upstream enforces the real limits; slapd's default sizelimit (500) here would cut
# every larger (paged) search short at the proxy.
sizelimit unlimited
timelimit unlimited
# Referrals are the upstream's business: hand them to the client untouched, as a plain
# LDAP server would.
chase-referrals no
EOF
  } >"$dir/slapd.conf"

  if id openldap >/dev/null 2>&1; then chown -R openldap:openldap "$dir"; fi

  local pid
  launch "$dir" "$port" "$ldaps_port"
  pid=$SLAPD_PID

  json_obj kind slapd host 127.0.0.1 port "#$port" ldapsPort "#$ldaps_port" pid "#$pid" dir "$dir" \
    user "${SLAPD_PROXY_USER:-}" password "${SLAPD_PROXY_PASSWORD:-}" baseDn "$BASE_DN" \
    peopleDn "$PEOPLE_DN" restrictedDn "$RESTRICTED_DN" referralDn "$REFERRAL_DN" entries '#0' \
    superuser '' superuserPassword '' \
    ca "$dir/tls/ca.pem" cert "$dir/tls/server.pem" key "$dir/tls/server-key.pem" \
    log "$dir/slapd.log" bindLine "$BIND_LINE" config "$dir/slapd.conf" version "$(version)" \
    proxyOf "$upstream"
}

case "${1:-start}" in
  # slapd closes its listeners and the database cleanly on TERM, in well under a second.
  stop) stop_target "${2:-}" TERM ;;
  proxy) shift; proxy "${1:-}" "${2:-}" ;;
  start) shift || true; start "${1:-}" ;;
  *) start "$1" ;;
esac
