#!/usr/bin/env bash
# Starts a private RDP server that CHECKS credentials, on a free loopback port, for the tunnel's
# tests (issue 16): FreeRDP's shadow server (freerdp-shadow-cli) sharing its own Xvfb display,
# NLA (CredSSP + NTLM) only, the NTLM password checked against a SAM file made by winpr-hash.
#   rdp.sh [start] [DIR]   -> one JSON line on stdout (see README.md)
#   rdp.sh stop DIR        -> stops the RDP server and its Xvfb, removes DIR
# Env: TARGET_PORT (fixed port), RDP_USER (default rdpuser), RDP_PASSWORD (default random),
#      RDP_SCREEN (Xvfb's screen, default 1024x768x24).
#
# Not xrdp: xrdp has no NLA, it accepts any password up to its own login screen, so
# `xfreerdp +auth-only` exits 0 against it even with a wrong password. The shadow server
# refuses a wrong password during the NLA handshake, before any session exists.
set -euo pipefail

TARGET_KIND=rdp
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SHADOW=freerdp-shadow-cli
# What the shadow server logs (wlog, level INFO) per login: a login that passed NLA goes on to
# the MCS connect, which logs `Accepted client: HOSTNAME` (also for xfreerdp +auth-only); one
# refused by NLA logs `client authentication failure` (after `Message Integrity Check (MIC)
# verification failed!` for a wrong password) and the server drops the TCP connection.
ACCEPT_LINE='Accepted client: '
REFUSE_LINE='client authentication failure'

ensure_pkgs() {
  ensure_pkg "$SHADOW" freerdp2-shadow-x11
  ensure_pkg winpr-hash winpr-utils
  ensure_pkg Xvfb xvfb
  ensure_pkg xauth xauth
  # Not used here, but the way to reach the target (README.md) and what the tests run.
  ensure_pkg xfreerdp freerdp2-x11
  ensure_pkg xvfb-run xvfb
  ensure_pkg openssl openssl
}

# "FreeRDP version 2.11.7 (git 2.11.7)", from the log line /version prints.
version() { "$SHADOW" /version 2>&1 | sed -n 's/.* - \(FreeRDP version .*\)$/\1/p' | head -n 1; }

start() {
  ensure_pkgs

  new_instance "${1:-}"
  local dir=$INSTANCE_DIR port=$INSTANCE_PORT

  local user=${RDP_USER:-rdpuser} password=${RDP_PASSWORD:-}
  [[ -n $password ]] || password=$(rand_secret)
  [[ $user != *:* ]] || die "RDP_USER may not contain ':' (the SAM file's separator)"

  # The SAM file, one line per account: USER:DOMAIN:LMHASH:NTHASH::: (WinPR's
  # winpr/libwinpr/utils/sam.c). winpr-hash -f sam writes exactly that with an empty domain
  # (which matches whatever domain the client sends) and an empty LM hash: `rdpuser:::NT:::`.
  # The shadow server reads the file again for every NLA login.
  winpr-hash -u "$user" -p "$password" -f sam >"$dir/sam" || die "winpr-hash failed"
  chmod 600 "$dir/sam"

  # Our own X server: a free display number picked by Xvfb itself (-displayfd writes it once
  # it accepts connections; no race with a parallel start), access by MIT cookie only. Xvfb
  # takes every cookie in its -auth file whatever display the entry names, so the server's
  # file is written before the number is known and the clients' one (`xauthority`) after.
  # -noreset: by default an X server resets when its last client disconnects, and the shadow
  # server opens the display twice at start-up (its monitor list, then its session): a second
  # open that lands in that reset fails ("failed to open display"): up to three starts in four
  # failed when several started at once.
  local cookie
  cookie=$(openssl rand -hex 16)
  xauth -q -f "$dir/xvfb.auth" add :0 MIT-MAGIC-COOKIE-1 "$cookie" 2>/dev/null
  setsid Xvfb -displayfd 3 -auth "$dir/xvfb.auth" -nolisten tcp -noreset -screen 0 "${RDP_SCREEN:-1024x768x24}" \
    3>"$dir/display" </dev/null >>"$dir/xvfb.log" 2>&1 &
  local xvfb=$!
  CLEANUP_PIDS+=("$xvfb")
  echo "$xvfb" >"$dir/xvfb.pid"
  local display
  display=:$(wait_pidfile "$dir/display" "$xvfb" "$dir/xvfb.log")
  xauth -q -f "$dir/Xauthority" add "$display" . "$cookie" 2>/dev/null
  chmod 600 "$dir/xvfb.auth" "$dir/Xauthority"

  # The shadow server: /bind-address keeps it on loopback (its default is every interface),
  # /sec:nla offers NLA only (no TLS-only or RDP security, which would let a client in before
  # the password is checked), -auth: no PAM logon on top (the NTLM check is the only one).
  # It makes a self-signed certificate (CN = this host's name) at its first start, in
  # $XDG_CONFIG_HOME/freerdp/shadow, here inside DIR. stdbuf: wlog writes INFO lines to stdout
  # and errors to stderr; line buffering keeps them in order in the one log.
  mkdir -p "$dir/home" "$dir/config"
  HOME=$dir/home XDG_CONFIG_HOME=$dir/config DISPLAY=$display XAUTHORITY=$dir/Xauthority \
    setsid stdbuf -oL "$SHADOW" "/bind-address:127.0.0.1" "/port:$port" /sec:nla "/sam-file:$dir/sam" -auth \
    </dev/null >>"$dir/shadow.log" 2>&1 &
  local pid=$!
  CLEANUP_PIDS+=("$pid")
  wait_tcp "$port" "$pid" "$dir/shadow.log"
  echo "$pid" >"$dir/target.pid"

  local cert=$dir/config/freerdp/shadow/shadow.crt fingerprint
  [[ -s $cert ]] || die "the shadow server made no certificate at $cert"
  # The form xfreerdp's /cert:fingerprint:sha256:… wants: lower-case hex with colons.
  fingerprint=$(openssl x509 -in "$cert" -noout -fingerprint -sha256 | sed 's/.*=//' | tr 'A-F' 'a-f')

  json_obj kind rdp host 127.0.0.1 port "#$port" pid "#$pid" dir "$dir" \
    user "$user" password "$password" domain '' security nla sam "$dir/sam" \
    display "$display" xauthority "$dir/Xauthority" xvfbPid "#$xvfb" \
    cert "$cert" certFingerprint "sha256:$fingerprint" acceptLine "$ACCEPT_LINE" refuseLine "$REFUSE_LINE" \
    log "$dir/shadow.log" xvfbLog "$dir/xvfb.log" version "$(version)"
}

# The shadow server first (TERM: it closes its listener and exits), then its X server, which
# removes its /tmp/.X11-unix/XN socket on TERM. The Xvfb pid is read before
# stop_target removes DIR, and signalled only while its command line names DIR (-auth DIR/…).
stop() {
  local dir=${1:-} xvfb=''
  [[ -n $dir ]] || die "usage: $0 stop DIR"
  if [[ -d $dir ]]; then dir=$(cd "$dir" && pwd); fi
  if [[ -f $dir/$TARGET_MARKER && -s $dir/xvfb.pid ]]; then xvfb=$(<"$dir/xvfb.pid"); fi
  stop_target "$dir" TERM
  if [[ -n $xvfb ]] && owns_pid "$xvfb" "$dir"; then
    kill -TERM "$xvfb" 2>/dev/null || true
    for _ in $(seq 1 100); do
      alive "$xvfb" || return 0
      sleep 0.05
    done
    kill -KILL "$xvfb" 2>/dev/null || true
  fi
}

case "${1:-start}" in
  stop) stop "${2:-}" ;;
  start) shift || true; start "${1:-}" ;;
  *) start "$1" ;;
esac
