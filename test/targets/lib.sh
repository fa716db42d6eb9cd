# shellcheck shell=bash
# Shared helpers for the target scripts. Sourced, never run on its own.
# Every helper writes diagnostics to stderr: stdout is reserved for the one JSON line.

# Marks a directory as ours so `stop` never removes something it did not create.
TARGET_MARKER=.gatehouse-target

log() { printf '[%s] %s\n' "${TARGET_KIND:-target}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- package installation ----------------------------------------------------------------
# Every apt-get the test suite runs goes through with_install_lock, so two installs never race
# for dpkg's lock: vitest's globalSetup runs install.sh (every package, once, before any test),
# and a target script started by hand on a bare machine installs what it lacks here, behind
# the same lock. The GATEHOUSE_* overrides exist for the tests of this mechanism
# (test/targets/install.test.ts): a private lock, a fake apt-get, a trace of lock hand-overs.
INSTALL_LOCK=${GATEHOUSE_INSTALL_LOCK:-/run/lock/gatehouse-test-install.lock}
INSTALL_LOCK_WAIT=${GATEHOUSE_INSTALL_LOCK_WAIT:-1200}
APT_GET=${GATEHOUSE_APT_GET:-apt-get}
APT_LISTS=${GATEHOUSE_APT_LISTS:-/var/lib/apt/lists}
# apt waits for dpkg's own lock too (an unattended upgrade, a human's apt) instead of failing.
APT_OPTS=(-y -q -o DPkg::Lock::Timeout=300)
APT_UPDATED=''

# has_bin NAME|PATH: NAME is a command on PATH, or a file at PATH (a glob is allowed) exists:
# a package's binary, library or data file.
has_bin() {
  local f
  if [[ $1 != */* ]]; then
    command -v "$1" >/dev/null 2>&1
    return
  fi
  for f in $1; do
    if [[ -f $f ]]; then return 0; fi
  done
  return 1
}

install_trace() {
  if [[ -n ${GATEHOUSE_INSTALL_TRACE:-} ]]; then echo "$* ${TARGET_KIND:-target}:$$" >>"$GATEHOUSE_INSTALL_TRACE"; fi
  return 0
}

# with_install_lock CMD...: runs CMD holding the install lock (an flock on fd 8), first
# waiting for whoever holds it. The lock belongs to this process's open file, so it is gone
# the moment the process exits, however it exits.
with_install_lock() {
  command -v flock >/dev/null 2>&1 || die "flock (util-linux) is missing; cannot serialize installs"
  mkdir -p "$(dirname "$INSTALL_LOCK")"
  local rc=0
  {
    if ! flock -n 8; then
      log "waiting for the install lock $INSTALL_LOCK (another install is running)"
      flock -w "$INSTALL_LOCK_WAIT" 8 || die "gave up after ${INSTALL_LOCK_WAIT}s waiting for $INSTALL_LOCK"
      log "got the install lock"
    fi
    install_trace locked
    "$@" || rc=$?
    install_trace unlocking
  } 8>>"$INSTALL_LOCK"
  return "$rc"
}

# apt_update: refreshes the package lists, at most once per process.
apt_update() {
  APT_UPDATED=1
  log "apt-get update"
  # 8>&-: nothing apt starts (a postinst may launch a daemon) may inherit the install lock.
  "$APT_GET" update -q -o DPkg::Lock::Timeout=300 8>&- >&2
}

# apt_install PKG...: one apt-get install, to be called under with_install_lock. The lists
# are refreshed first only when there are none, and otherwise only when the install fails
# (they may be stale on a fresh machine: a 404 for a superseded version).
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [[ -z $APT_UPDATED ]] && ! compgen -G "$APT_LISTS/*_Packages*" >/dev/null; then
    log "no package lists yet"
    apt_update || return
  fi
  log "apt-get install $*"
  if "$APT_GET" install "${APT_OPTS[@]}" "$@" 8>&- >&2; then return 0; fi
  if [[ -n $APT_UPDATED ]]; then return 1; fi
  log "apt-get install failed; refreshing the package lists and trying once more"
  apt_update || return
  "$APT_GET" install "${APT_OPTS[@]}" "$@" 8>&- >&2
}

# ensure_pkg BIN PKG...: installs PKG... when BIN is absent (see has_bin). A present BIN
# costs nothing and never waits for the lock; an absent one is checked again once the lock
# is ours, since whoever held it may just have installed it.
ensure_pkg() {
  local bin=$1; shift
  if has_bin "$bin"; then return 0; fi
  with_install_lock ensure_pkg_locked "$bin" "$@"
}

ensure_pkg_locked() {
  local bin=$1; shift
  if has_bin "$bin"; then
    log "$bin was installed while we waited"
    return 0
  fi
  log "installing $* (missing $bin)"
  apt_install "$@" || die "apt-get install $* failed"
  has_bin "$bin" || die "installed $* but $bin is still missing"
}

# Asks the kernel for an unused loopback port (port 0), so two runs started at the same
# moment get different ports; falls back to probing random ports when no runtime is there.
free_port() {
  # TARGET_PORT_ONCE_FILE (the test of a start's retry, start.test.ts): the port in that file,
  # once; the file goes with it.
  if [[ -n ${TARGET_PORT_ONCE_FILE:-} && -s $TARGET_PORT_ONCE_FILE ]]; then
    cat "$TARGET_PORT_ONCE_FILE"
    rm -f "$TARGET_PORT_ONCE_FILE"
    return
  fi
  if command -v node >/dev/null 2>&1; then
    node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
    return
  fi
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found"
}

# Creates (or adopts) the instance directory and marks it.
make_dir() {
  local dir=${1:-}
  if [[ -z $dir ]]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-${TARGET_KIND}.XXXXXX")
  else
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
  fi
  # Server users (postgres, mysql) must be able to traverse into it.
  chmod 755 "$dir"
  echo "$TARGET_KIND" >"$dir/$TARGET_MARKER"
  echo "$dir"
}

# new_instance [DIR]: the instance directory (made and marked, removed if the start fails) in
# INSTANCE_DIR, and its port (TARGET_PORT, refused if something answers there, or a free one)
# in INSTANCE_PORT.
new_instance() {
  INSTANCE_DIR=$(make_dir "${1:-}")
  CLEANUP_DIR=$INSTANCE_DIR
  INSTANCE_PORT=${TARGET_PORT:-$(free_port)}
  ensure_port_free "$INSTANCE_PORT"
}

# JSON string literal: the values we emit are paths, keys and generated passwords, but
# escape the JSON specials anyway so a path with a quote cannot break the line.
json_str() {
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

# json_obj key value key value ...; a value prefixed with '#' is emitted raw (numbers, null).
json_obj() {
  local out='{' sep='' k v
  while (($#)); do
    k=$1 v=$2; shift 2
    if [[ $v == '#'* ]]; then v=${v:1}; else v=$(json_str "$v"); fi
    out+="$sep$(json_str "$k"):$v"; sep=','
  done
  printf '%s}\n' "$out"
}

# A start that fails half-way must not leave a server or a directory behind. Scripts set
# CLEANUP_DIR once the directory exists and add each server pid to CLEANUP_PIDS.
# TARGET_KEEP_ON_FAILURE=1 keeps the directory (and its logs) for a post-mortem.
CLEANUP_DIR=''
CLEANUP_PIDS=()
cleanup_on_failure() {
  local rc=$? p
  ((rc == 0)) && return 0
  for p in "${CLEANUP_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [[ -n $CLEANUP_DIR && -f $CLEANUP_DIR/$TARGET_MARKER && -z ${TARGET_KEEP_ON_FAILURE:-} ]]; then
    rm -rf "$CLEANUP_DIR"
  fi
  return "$rc"
}
trap cleanup_on_failure EXIT

rand_secret() { openssl rand -hex 16; }

# A throwaway CA plus a server certificate for 127.0.0.1/localhost signed by it, so clients
# can verify the server with `ca.pem` (verify-full, rejectUnauthorized) rather than trusting
# a bare self-signed leaf. EC keys keep this well under a second.
make_tls() {
  local d=$1
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/CN=Gatehouse test CA ${TARGET_KIND}" -keyout "$d/ca-key.pem" -out "$d/ca.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=127.0.0.1" -keyout "$d/server-key.pem" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    >"$d/server.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -CAcreateserial \
    -days 30 -extfile "$d/server.ext" -out "$d/server.pem" 2>/dev/null
  chmod 600 "$d/server-key.pem" "$d/ca-key.pem"
}

# Waits until a TCP listener answers on 127.0.0.1:port, failing early if pid died.
wait_tcp() {
  local port=$1 pid=$2 logfile=$3 deadline=$((SECONDS + ${4:-30}))
  while ((SECONDS < deadline)); do
    if [[ -n $pid ]] && ! alive "$pid"; then
      [[ -f $logfile ]] && tail -n 30 "$logfile" >&2
      die "server exited before accepting connections"
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  [[ -f $logfile ]] && tail -n 30 "$logfile" >&2
  die "timed out waiting for 127.0.0.1:$port"
}

# Waits for a pid file to appear and prints the pid it holds, failing early if the
# launched process ($2) died first.
wait_pidfile() {
  local f=$1 launcher=${2:-} logfile=${3:-} deadline=$((SECONDS + ${4:-30}))
  while ((SECONDS < deadline)); do
    if [[ -s $f ]]; then head -n 1 "$f"; return 0; fi
    if [[ -n $launcher ]] && ! alive "$launcher"; then
      [[ -f $logfile ]] && tail -n 30 "$logfile" >&2
      die "server exited before writing $f"
    fi
    sleep 0.05
  done
  die "no pid file at $f"
}

# A fixed port that already answers belongs to someone else: waiting on it would
# mistake their server for ours.
ensure_port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then die "127.0.0.1:$1 is already in use"; fi
}

# stop DIR SIGNAL: ends the server recorded in DIR/target.pid and removes DIR. The pid is
# only signalled while its command line still names DIR, so a recycled pid is never hit.
# Idempotent: stopping a stopped or removed instance succeeds.
stop_target() {
  local dir=${1:-} sig=${2:-TERM} pid
  [[ -n $dir ]] || die "usage: $0 stop DIR"
  [[ -d $dir ]] || return 0
  dir=$(cd "$dir" && pwd)
  [[ -f $dir/$TARGET_MARKER ]] || die "$dir is not a target directory (no $TARGET_MARKER)"
  if [[ -s $dir/target.pid ]]; then
    pid=$(<"$dir/target.pid")
    if owns_pid "$pid" "$dir"; then
      declare -F before_stop >/dev/null && before_stop "$pid"
      kill "-$sig" "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do
        alive "$pid" || break
        sleep 0.05
      done
      if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
  fi
  rm -rf "$dir"
}

# A zombie counts as gone: the server has exited, only its reaping is left to init
# (which some sandboxes do slowly).
alive() {
  local state
  # The state follows the last ')': the command name in parentheses may hold spaces.
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z ]]
}

# Every descendant pid of $1, parents before children.
descendants() {
  local c
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    echo "$c"
    descendants "$c"
  done
}

owns_pid() {
  local pid=$1 dir=$2
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$dir"
}
