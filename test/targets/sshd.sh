#!/usr/bin/env bash
# Starts a private OpenSSH server on a free loopback port for protocol tests.
#   sshd.sh [start] [DIR]   -> one JSON line on stdout (see README.md)
#   sshd.sh stop DIR        -> kills the server and its sessions, removes DIR
# Env: TARGET_PORT (fixed port), SSHD_TARGET_USER (default gh-target),
#      SSHD_TARGET_PASSWORD (default gh-target-password),
#      SSHD_TARGET_ADMIN (default gh-target-admin: the JIT tests' vaulted login, key only,
#      with passwordless sudo for the account commands and nothing else).
set -euo pipefail

TARGET_KIND=sshd
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SSHD=/usr/sbin/sshd
TEST_USER=${SSHD_TARGET_USER:-gh-target}
# The user is shared by every instance on the machine, so its password is fixed, not
# random: a second instance must not invalidate the first one's credentials.
TEST_PASSWORD=${SSHD_TARGET_PASSWORD:-gh-target-password}
ADMIN_USER=${SSHD_TARGET_ADMIN:-gh-target-admin}
# Temporary accounts the gateway makes (protocols/ssh/provision.ts) are in this group.
JIT_GROUP=gatehouse-ephemeral
# What protocols/ssh/README.md says the vaulted login needs ("Ephemeral accounts and elevation").
ADMIN_SUDO='/usr/sbin/groupadd, /usr/sbin/useradd, /usr/sbin/usermod, /usr/sbin/userdel, /usr/bin/gpasswd, /usr/bin/pkill, /usr/bin/install, /usr/sbin/visudo, /usr/bin/mv, /usr/bin/rm'

# Per-connection sshd processes and the commands they run outlive the listener (each
# session is its own process session); end the whole tree so nothing lingers.
before_stop() {
  local p
  for p in $(descendants "$1"); do kill -TERM "$p" 2>/dev/null || true; done
}

ensure_user() {
  # Two instances starting together must not both run useradd.
  exec 9>/run/lock/gatehouse-sshd-target.lock
  flock 9
  if ! id "$TEST_USER" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "$TEST_USER"
  fi
  echo "$TEST_USER:$TEST_PASSWORD" | chpasswd
  if ! id "$ADMIN_USER" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "$ADMIN_USER"
  fi
  # No password, but not locked: without PAM, sshd refuses every method to a '!' account.
  usermod -p '*' "$ADMIN_USER"
  local drop=/etc/sudoers.d/gatehouse-target-admin
  printf '%s ALL=(root) NOPASSWD: %s\n' "$ADMIN_USER" "$ADMIN_SUDO" >"$drop.new"
  chmod 0440 "$drop.new"
  visudo -cqf "$drop.new" || die "invalid sudoers drop-in $drop.new"
  mv -f "$drop.new" "$drop"
  flock -u 9
  exec 9>&-
}

start() {
  ensure_pkg "$SSHD" openssh-server
  ensure_pkg ssh-keygen openssh-client
  ensure_pkg sudo sudo
  mkdir -p /run/sshd /run/lock
  chmod 755 /run/sshd
  ensure_user

  new_instance "${1:-}"
  local dir=$INSTANCE_DIR port=$INSTANCE_PORT

  ssh-keygen -q -t ed25519 -N '' -C "gatehouse-target-host" -f "$dir/ssh_host_ed25519_key"
  ssh-keygen -q -t ed25519 -N '' -C "gatehouse-target-client" -f "$dir/client_ed25519"
  cp "$dir/client_ed25519.pub" "$dir/authorized_keys"
  # sshd opens authorized_keys as the target user after dropping privileges.
  chmod 644 "$dir/authorized_keys"

  local extra=''
  # OpenSSH 9.8 penalises sources that fail auth; tests fail auth on purpose, from 127.0.0.1.
  if "$SSHD" -t -f /dev/null -o "HostKey=$dir/ssh_host_ed25519_key" -o PerSourcePenalties=no 2>/dev/null; then
    extra='PerSourcePenalties no'
  fi

  cat >"$dir/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
# The instance's client key for the fixed users; temporary accounts bring their own.
AuthorizedKeysFile $dir/authorized_keys .ssh/authorized_keys
# Primary groups of the two fixed users, and the temporary accounts' marker group.
AllowGroups $TEST_USER $ADMIN_USER $JIT_GROUP
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
X11Forwarding no
PrintMotd no
UseDNS no
Subsystem sftp internal-sftp
LogLevel VERBOSE
# Benchmarks open many connections at once; the default 10:30:100 would drop them.
MaxStartups 200
MaxSessions 100
$extra
EOF

  "$SSHD" -t -f "$dir/sshd_config" || die "invalid sshd_config"
  setsid "$SSHD" -D -f "$dir/sshd_config" -E "$dir/sshd.log" </dev/null >"$dir/sshd.out" 2>&1 &
  local launcher=$!
  CLEANUP_PIDS+=("$launcher")
  local pid
  pid=$(wait_pidfile "$dir/sshd.pid" "$launcher" "$dir/sshd.log")
  wait_tcp "$port" "$pid" "$dir/sshd.log"
  echo "$pid" >"$dir/target.pid"

  local pub fp
  pub=$(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")
  fp=$(ssh-keygen -l -E sha256 -f "$dir/ssh_host_ed25519_key.pub" | awk '{print $2}')
  echo "[127.0.0.1]:$port $pub" >"$dir/known_hosts"

  json_obj kind sshd host 127.0.0.1 port "#$port" pid "#$pid" dir "$dir" \
    user "$TEST_USER" password "$TEST_PASSWORD" \
    clientKey "$dir/client_ed25519" clientPublicKey "$(cut -d' ' -f1,2 "$dir/client_ed25519.pub")" \
    hostKey "$pub" hostKeyFingerprint "$fp" knownHosts "$dir/known_hosts" \
    config "$dir/sshd_config" log "$dir/sshd.log" version "$(ssh -V 2>&1 | head -n1 || true)"
}

case "${1:-start}" in
  stop) stop_target "${2:-}" TERM ;;
  start) shift || true; start "${1:-}" ;;
  *) start "$1" ;;
esac
