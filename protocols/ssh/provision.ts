/**
 * Ephemeral Linux accounts and group elevation over SSH. The gateway logs in to the machine
 * as the resource's vaulted login (connectUpstream: the host key pinned like a session's),
 * sends one POSIX shell script per step on an exec channel's stdin, and reads one
 * `GATEHOUSE-<WORD>` result line back. Privileged commands run through `sudo -n` unless the
 * login is root; every value in a script is single-quoted here and was validated before.
 *
 * Shell, not SFTP or several round trips: each step is atomic from the gateway's side (the
 * UID lock, the marker check right before userdel, the undo of a half-made account all run
 * on the target in one go), and costs one SSH login.
 */
import ssh2, { type Client } from 'ssh2';
import type { GatewayPort } from '../../src/broker/port.js';
import { JitError, type AccountOwner, type AccountSpec, type JitErrorKind, type JitTarget, type Provisioner, type RemoveResult } from '../../src/broker/provisioner.js';
import type { UpstreamErrorKind } from '../../src/broker/upstream-error.js';
import type { JitSettings, TargetCredentials } from '../../src/core/model.js';
import { connectUpstream } from './upstream.js';

/** Every temporary account is in this group; nothing outside it is ever removed. */
export const MARKER_GROUP = 'gatehouse-ephemeral';
/**
 * UIDs of temporary accounts: above Debian's UID_MAX (60000), so useradd never hands them to
 * people. Removed UIDs are not reused until the allocation cursor has gone round the range.
 */
export const UID_RANGE = { low: 60000, high: 64999 } as const;
/** The allocation cursor (`uid-watermark`) and the directory whose flock serialises creates. */
export const STATE_DIR = '/var/lib/gatehouse';
export const SUDOERS_DIR = '/etc/sudoers.d';
const LINUX_NAME = /^[a-z_][a-z0-9_]{0,31}$/;
const UNIX_GROUP = /^[a-z_][a-z0-9_-]{0,31}$/;

/**
 * A temporary account's ed25519 key pair, in OpenSSH's formats. ssh2's generator drops the
 * leading zero bytes of a public key that begins with one (1 pair in 256; mscdex/ssh2#1513),
 * which leaves both halves malformed, so a pair that does not parse is made again.
 */
export function ed25519Pair(comment: string): { private: string; public: string } {
  for (let i = 0; i < 16; i++) {
    const keys = ssh2.utils.generateKeyPairSync('ed25519', { comment });
    if (!(ssh2.utils.parseKey(keys.private) instanceof Error) && !(ssh2.utils.parseKey(keys.public) instanceof Error)) return keys;
  }
  throw new Error('ssh2 made 16 ed25519 key pairs that do not parse');
}

/** Commands the vaulted login must be able to run through `sudo -n` (protocols/ssh/README.md). */
const NEEDS = {
  create: ['groupadd', 'useradd', 'install', 'usermod', 'userdel', 'pkill', 'rm'],
  sudoDropIn: ['visudo', 'mv'],
  remove: ['usermod', 'userdel', 'pkill', 'rm'],
  elevate: ['usermod'],
  unelevate: ['gpasswd'],
} as const;

export interface SshProvisionerOptions {
  /** The SSH login to the target (default 15 s, the door's upstream timeout). */
  connectTimeoutMs?: number;
  /** One script's run (default 60 s; a remove waits up to ~5 s for processes to go). */
  scriptTimeoutMs?: number;
}

/** `'…'` for POSIX sh: the one quoting every value in a script goes through. */
export function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** `YYYYMMDDHHMMSSZ`, sudoers' NOTAFTER. */
function generalizedTime(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, '').replace(/\.\d{3}Z$/, 'Z');
}

/** The day after the deadline's UTC day: the account works through that day, not longer. */
function expiryDate(d: Date): string {
  return new Date(d.getTime() + 86_400_000).toISOString().slice(0, 10);
}

/** GECOS cannot hold `:`, `,` splits its fields: keep a plain, bounded line. */
function gecos(note: string): string {
  return note.replace(/[^A-Za-z0-9 ._@/=+#-]/g, '_').slice(0, 200);
}

/** A sudoers Cmnd_List from the validated `ALL` or `/path args, /path args`. */
export function sudoCommands(sudo: string): string {
  if (sudo.trim() === 'ALL') return 'ALL';
  return sudo.split(',').map((c) => c.trim().replace(/[\\!=:,()]/g, (ch) => `\\${ch}`)).join(', ');
}

function assertName(name: string): void {
  if (!LINUX_NAME.test(name)) throw new JitError('invalid', `'${name}' is not a Linux account name Gatehouse makes ([a-z_][a-z0-9_]*, at most 32)`);
}

function assertGroups(field: string, groups: readonly string[]): void {
  for (const g of groups) if (!UNIX_GROUP.test(g)) throw new JitError('invalid', `${field}: '${g}' is not a Linux group name`);
}

/**
 * What every script starts with: C messages, a sane PATH, UTC (useradd -e reads the date in
 * the local zone), `$SUDO`, `fail`, `run` (a privileged step; its output goes to stderr and
 * a failure ends the script with `GATEHOUSE-FAIL step CMD RC`), `need` (`sudo -n -l` for each
 * command, all missing ones named at once, before anything is changed).
 */
const PRELUDE = `set -u
LC_ALL=C; TZ=UTC; PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL TZ PATH
umask 022
fail() { echo "GATEHOUSE-FAIL $*"; exit 0; }
if [ "$(id -u)" = 0 ]; then SUDO=''; else SUDO='sudo -n'; fi
need() {
  [ -z "$SUDO" ] && return 0
  command -v sudo >/dev/null 2>&1 || fail nosudo
  # In parallel (one sudo is ~30 ms), then back in the order asked.
  missing=$(i=0; for c in "$@"; do i=$((i + 1)); { sudo -n -l "$c" >/dev/null 2>&1 || echo "$i $c"; } & done; wait)
  [ -z "$missing" ] || fail rights $(printf '%s\n' "$missing" | sort -n | cut -d' ' -f2)
}
run() {
  if out=$($SUDO "$@" 2>&1); then [ -z "$out" ] || printf '%s\\n' "$out" >&2; return 0; fi
  rc=$?; printf '%s\\n' "$out" >&2
  undo; fail step "$1" "$rc"
}
undo() { :; }
`;

function createScript(t: JitTarget, spec: AccountSpec, publicKey: string): string {
  const e = t.jit.ephemeral!;
  const drop = `${SUDOERS_DIR}/gatehouse-${spec.name}`;
  const sudoLine = e.sudo
    ? `${spec.name} ALL=(ALL) ${spec.deadline ? `NOTAFTER=${generalizedTime(spec.deadline)} ` : ''}NOPASSWD: ${sudoCommands(e.sudo)}`
    : '';
  return `${PRELUDE}
NAME=${shQuote(spec.name)}; GRANTS=${shQuote(e.grants.join(','))}; NOTE=${shQuote(gecos(spec.note))}
EXPIRE=${shQuote(spec.deadline ? expiryDate(spec.deadline) : '')}; PUB=${shQuote(publicKey)}
SUDOLINE=${shQuote(sudoLine)}; DROP=${shQuote(drop)}; STATE=${shQuote(STATE_DIR)}; MARK=${MARKER_GROUP}
LOW=${UID_RANGE.low}; HIGH=${UID_RANGE.high}
need ${NEEDS.create.join(' ')} ${e.sudo ? NEEDS.sudoDropIn.join(' ') : ''}
command -v flock >/dev/null 2>&1 || fail noflock
getent passwd "$NAME" >/dev/null && fail exists
for g in $(printf '%s' "$GRANTS" | tr ',' ' '); do getent group "$g" >/dev/null || fail nogroup "$g"; done
getent group "$MARK" >/dev/null || run groupadd -f "$MARK"
[ -d "$STATE" ] || run install -d -m 0755 "$STATE"
exec 9<"$STATE" || fail step lock 1
flock -w 30 9 || fail lock
# The cursor only moves up, so a removed account's UID comes back only after a full round.
WM=$(cat "$STATE/uid-watermark" 2>/dev/null || true)
case $WM in
  ''|*[!0-9]*) NEXT=$(getent passwd | awk -F: -v lo=$LOW -v hi=$HIGH '$3>=lo && $3<=hi && $3>m {m=$3} END {print m+0}')
    [ "$NEXT" -ge "$LOW" ] || NEXT=$((LOW - 1)) ;;
  *) NEXT=$WM ;;
esac
NEXT=$((NEXT + 1)); [ "$NEXT" -ge "$LOW" ] || NEXT=$LOW
while [ "$NEXT" -le "$HIGH" ] && getent passwd "$NEXT" >/dev/null; do NEXT=$((NEXT + 1)); done
if [ "$NEXT" -gt "$HIGH" ]; then
  NEXT=$LOW
  while [ "$NEXT" -le "$HIGH" ] && getent passwd "$NEXT" >/dev/null; do NEXT=$((NEXT + 1)); done
  [ "$NEXT" -le "$HIGH" ] || fail uids
fi
# Here-documents, not pipes: a piped \`run\` would fail in a subshell and the script go on.
run install -m 0644 /dev/stdin "$STATE/uid-watermark" <<EOF
$NEXT
EOF
SH=/bin/bash; [ -x "$SH" ] || SH=/bin/sh
set -- -m -u "$NEXT" -G "$MARK\${GRANTS:+,$GRANTS}" -c "$NOTE" -s "$SH" -p '*'
[ -z "$EXPIRE" ] || set -- "$@" -e "$EXPIRE"
run useradd "$@" "$NAME"
undo() { $SUDO pkill -KILL -u "$NAME" >/dev/null 2>&1; $SUDO userdel -r "$NAME" >/dev/null 2>&1; $SUDO rm -f "$DROP" "$DROP.new" >/dev/null 2>&1; }
HOMEDIR=$(getent passwd "$NAME" | cut -d: -f6); GID=$(id -g "$NAME")
[ -n "$HOMEDIR" ] && [ "$HOMEDIR" != / ] || { undo; fail step home 1; }
run install -d -m 0700 -o "$NAME" -g "$GID" "$HOMEDIR/.ssh"
run install -m 0600 -o "$NAME" -g "$GID" /dev/stdin "$HOMEDIR/.ssh/authorized_keys" <<EOF
$PUB
EOF
if [ -n "$SUDOLINE" ]; then
  # A name with a dot is skipped by sudo's includedir: the file only counts once renamed.
  run install -m 0440 -o root -g root /dev/stdin "$DROP.new" <<EOF
$SUDOLINE
EOF
  run visudo -cqf "$DROP.new"
  run mv -f "$DROP.new" "$DROP"
fi
echo "GATEHOUSE-OK $NEXT"
`;
}

function removeScript(t: JitTarget, name: string): string {
  return `${PRELUDE}
NAME=${shQuote(name)}; ADMIN=${shQuote(t.admin.login)}; DROP=${shQuote(`${SUDOERS_DIR}/gatehouse-${name}`)}
LOW=${UID_RANGE.low}; HIGH=${UID_RANGE.high}
if ! getent passwd "$NAME" >/dev/null; then
  if [ -e "$DROP" ] || [ -e "$DROP.new" ]; then need rm; run rm -f "$DROP" "$DROP.new"; fi
  echo GATEHOUSE-ABSENT; exit 0
fi
# The marker, checked right before anything is changed: an account Gatehouse did not make is left alone.
[ "$NAME" != "$ADMIN" ] && [ "$NAME" != "$(id -un)" ] || { echo GATEHOUSE-UNMARKED the vaulted login; exit 0; }
case ",$(getent group ${MARKER_GROUP} | cut -d: -f4)," in *",$NAME,"*) ;; *) echo GATEHOUSE-UNMARKED not in ${MARKER_GROUP}; exit 0 ;; esac
UID_=$(id -u "$NAME")
[ "$UID_" -ge "$LOW" ] && [ "$UID_" -le "$HIGH" ] || { echo "GATEHOUSE-UNMARKED UID $UID_ outside $LOW-$HIGH"; exit 0; }
need ${NEEDS.remove.join(' ')}
run usermod -L -e 1 "$NAME"
run rm -f "$DROP" "$DROP.new"
i=0; killed=0
while :; do
  $SUDO pkill -KILL -u "$NAME" >/dev/null 2>&1 && killed=1
  out=$($SUDO userdel -r "$NAME" 2>&1); rc=$?
  case $rc in
    0|6) echo "GATEHOUSE-GONE $killed"; exit 0 ;;
    12) printf '%s\\n' "$out" >&2; echo "GATEHOUSE-GONE $killed home"; exit 0 ;;
    8) ;;
    *) printf '%s\\n' "$out" >&2; fail step userdel "$rc" ;;
  esac
  i=$((i + 1)); [ "$i" -lt 25 ] || { printf '%s\\n' "$out" >&2; echo GATEHOUSE-BUSY; exit 0; }
  sleep 0.2
done
`;
}

function listScript(): string {
  return `${PRELUDE}
for m in $(getent group ${MARKER_GROUP} | cut -d: -f4 | tr ',' ' '); do
  u=$(id -u "$m" 2>/dev/null) || continue
  [ "$u" -ge ${UID_RANGE.low} ] && [ "$u" -le ${UID_RANGE.high} ] && [ "$m" != "$(id -un)" ] && echo "GATEHOUSE-MARKED $m"
done
echo GATEHOUSE-OK
`;
}

function elevateScript(t: JitTarget, groups: readonly string[]): string {
  return `${PRELUDE}
LOGIN=${shQuote(t.admin.login)}; GROUPS_=${shQuote(groups.join(','))}
[ "$(id -u)" != 0 ] || fail root
need ${NEEDS.elevate.join(' ')}
for g in $(printf '%s' "$GROUPS_" | tr ',' ' '); do getent group "$g" >/dev/null || fail nogroup "$g"; done
run usermod -aG "$GROUPS_" "$LOGIN"
echo GATEHOUSE-OK
`;
}

/**
 * Takes the groups away, then ends the vaulted login's processes that still carry one of
 * them: a process keeps the groups it logged in with, so those (and only those) are the
 * sessions that started during the grant. The script's own connection is spared: its
 * ancestors (the sshd session process) and its session.
 */
function unelevateScript(t: JitTarget, groups: readonly string[]): string {
  return `${PRELUDE}
LOGIN=${shQuote(t.admin.login)}; GROUPS_=${shQuote(groups.join(','))}
[ "$(id -u)" != 0 ] || { echo GATEHOUSE-OK 0; exit 0; }
need ${NEEDS.unelevate.join(' ')}
GIDS=' '
for g in $(printf '%s' "$GROUPS_" | tr ',' ' '); do
  line=$(getent group "$g") || continue
  GIDS="$GIDS$(printf '%s' "$line" | cut -d: -f3) "
  case ",$(printf '%s' "$line" | cut -d: -f4)," in *",$LOGIN,"*) run gpasswd -d "$LOGIN" "$g" ;; esac
done
field() { while read -r k v rest; do [ "$k" = "$1:" ] && { echo "$v"; return; }; done <"/proc/$2/status"; }
ME=$(id -u); MYSID=$(field NSsid $$); SPARE=' '
p=$$; while [ -n "$p" ] && [ "$p" -gt 1 ]; do SPARE="$SPARE$p "; p=$(field PPid "$p"); done
n=0
for f in /proc/[0-9]*/status; do
  pid=\${f#/proc/}; pid=\${pid%/status}
  case $SPARE in *" $pid "*) continue ;; esac
  ruid=''; sid=''; grps=''; st=''
  while read -r k a b rest; do
    case $k in State:) st=$a ;; Uid:) ruid=$a ;; NSsid:) sid=$a ;; Groups:) grps=" $a $b $rest " ;; esac
  done 2>/dev/null <"$f" || continue
  [ "$ruid" = "$ME" ] && [ "$sid" != "$MYSID" ] && [ "$st" != Z ] || continue
  for gid in $GIDS; do
    case $grps in *" $gid "*) kill -KILL "$pid" 2>/dev/null && n=$((n + 1)); break ;; esac
  done
done
echo "GATEHOUSE-OK $n"
`;
}

interface ScriptResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The script's result line: `GATEHOUSE-<WORD> args…` (the last one on stdout). */
function resultOf(r: ScriptResult): { word: string; args: string[]; all: string[] } {
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('GATEHOUSE-'));
  const last = lines.at(-1);
  if (!last) return { word: 'NONE', args: [], all: [] };
  const [word, ...args] = last.slice('GATEHOUSE-'.length).split(' ');
  return { word: word!, args, all: lines };
}

const CONNECT_KIND: Record<UpstreamErrorKind, JitErrorKind> = {
  unreachable: 'unreachable', timeout: 'unreachable', tls: 'unreachable', identity: 'unreachable', protocol: 'unreachable',
  login: 'refused', capability: 'refused', no_credentials: 'refused',
};

export class SshProvisioner implements Provisioner {
  readonly protocol = 'ssh' as const;
  readonly nameLimit = 32;
  private readonly connectTimeoutMs: number;
  private readonly scriptTimeoutMs: number;

  constructor(private readonly port: Pick<GatewayPort, 'verifyTarget'>, o: SshProvisionerOptions = {}) {
    this.connectTimeoutMs = o.connectTimeoutMs ?? 15_000;
    this.scriptTimeoutMs = o.scriptTimeoutMs ?? 60_000;
  }

  check(jit: JitSettings): string[] {
    const out: string[] = [];
    if (jit.ephemeral?.grants.includes(MARKER_GROUP)) out.push(`ephemeral.grants: ${MARKER_GROUP} is the marker group; Gatehouse adds every temporary account to it itself`);
    if (jit.elevate?.grants.includes(MARKER_GROUP)) out.push(`elevate.grants: ${MARKER_GROUP} marks temporary accounts for removal; the vaulted login must never be in it`);
    if (jit.ephemeral?.ou !== undefined) out.push('ephemeral.ou applies to directories (ldap) only');
    if (jit.ephemeral?.inheritor !== undefined) out.push('ephemeral.inheritor applies to PostgreSQL only');
    if (jit.ephemeral?.maxConnections !== undefined) out.push('ephemeral.maxConnections applies to MySQL/MariaDB only');
    return out;
  }

  async create(t: JitTarget, spec: AccountSpec): Promise<TargetCredentials> {
    const e = t.jit.ephemeral;
    if (!e) throw new JitError('invalid', `${t.resource.name} has no ephemeral account settings`);
    assertName(spec.name);
    assertGroups('ephemeral.grants', e.grants);
    const problems = this.check(t.jit);
    if (problems.length) throw new JitError('invalid', problems.join('; '));
    const keys = ed25519Pair(`gatehouse-${spec.owner.accountId.replace(/[^A-Za-z0-9_.-]/g, '_')}`);
    const r = await this.script(t, createScript(t, spec, keys.public.trim()));
    const res = resultOf(r);
    if (res.word !== 'OK') this.fail(t, res, r, `create ${spec.name}`, spec.name);
    return { login: spec.name, privateKey: keys.private };
  }

  async remove(t: JitTarget, name: string): Promise<RemoveResult> {
    assertName(name);
    const r = await this.script(t, removeScript(t, name));
    const res = resultOf(r);
    switch (res.word) {
      case 'ABSENT': return { done: true };
      case 'UNMARKED': return { done: true, detail: `${name} was left alone: ${res.args.join(' ')} (not an account Gatehouse made)` };
      case 'GONE': {
        const notes = [res.args[0] === '1' ? 'its processes were killed' : '', res.args[1] === 'home' ? `its home directory could not be removed (${tail(r.stderr)})` : ''];
        const detail = notes.filter(Boolean).join('; ');
        return detail ? { done: true, detail } : { done: true };
      }
      case 'BUSY': return { done: false, detail: `${name} still has processes after 25 kill rounds (userdel said: ${tail(r.stderr)})` };
      default: return this.fail(t, res, r, `remove ${name}`, name);
    }
  }

  async elevate(t: JitTarget, _owner: AccountOwner): Promise<void> {
    const groups = t.jit.elevate?.grants ?? [];
    if (!groups.length) return;
    assertGroups('elevate.grants', groups);
    const problems = this.check(t.jit);
    if (problems.length) throw new JitError('invalid', problems.join('; '));
    const r = await this.script(t, elevateScript(t, groups));
    const res = resultOf(r);
    if (res.word !== 'OK') this.fail(t, res, r, `elevate ${t.admin.login}`, t.admin.login);
  }

  async unelevate(t: JitTarget): Promise<RemoveResult> {
    const groups = t.jit.elevate?.grants ?? [];
    if (!groups.length) return { done: true };
    assertGroups('elevate.grants', groups);
    const r = await this.script(t, unelevateScript(t, groups));
    const res = resultOf(r);
    if (res.word !== 'OK') this.fail(t, res, r, `unelevate ${t.admin.login}`, t.admin.login);
    const n = Number(res.args[0] ?? 0);
    return n > 0 ? { done: true, detail: `ended ${n} process${n === 1 ? '' : 'es'} of ${t.admin.login} that held ${groups.join(', ')}` } : { done: true };
  }

  async listMarked(t: JitTarget): Promise<string[]> {
    const r = await this.script(t, listScript());
    const res = resultOf(r);
    if (res.word !== 'OK') this.fail(t, res, r, 'list the marked accounts', '');
    return res.all.filter((l) => l.startsWith('GATEHOUSE-MARKED ')).map((l) => l.slice('GATEHOUSE-MARKED '.length)).filter((n) => LINUX_NAME.test(n));
  }

  /** A script's failure line as a JitError naming what was refused, in the target's words. */
  private fail(t: JitTarget, res: ReturnType<typeof resultOf>, r: ScriptResult, what: string, name: string): never {
    const login = t.admin.login;
    const on = `on ${t.resource.name}`;
    const [kind, ...rest] = res.args;
    switch (res.word === 'FAIL' ? kind : 'none') {
      case 'rights':
        throw new JitError('missing_right', `the vaulted login ${login} cannot run ${rest.join(', ')} via sudo ${on} (sudo -n -l refused; it needs passwordless sudo for them, see the SSH README)`);
      case 'nosudo':
        throw new JitError('missing_right', `the vaulted login ${login} is not root and sudo is not installed ${on}`);
      case 'root':
        throw new JitError('invalid', `the vaulted login of ${t.resource.name} is root: it has every right already, so there is nothing to elevate; vault a login without them`);
      case 'exists':
        throw new JitError('refused', `an account named ${name} already exists ${on}; it was left alone`);
      case 'nogroup':
        throw new JitError('refused', `the group ${rest[0] ?? ''} does not exist ${on}`);
      case 'noflock':
        throw new JitError('refused', `flock (util-linux) is missing ${on}; Gatehouse needs it to allocate UIDs`);
      case 'lock':
        throw new JitError('refused', `another account was being created ${on} for over 30 s (${STATE_DIR} lock); try again`);
      case 'uids':
        throw new JitError('refused', `no free UID is left in ${UID_RANGE.low}-${UID_RANGE.high} ${on}`);
      case 'step': {
        const [cmd, rc] = rest;
        const said = tail(r.stderr);
        const denied = /permission denied|not permitted|cannot lock|cannot open|not allowed|password is required|unable to/i.test(said);
        throw new JitError(denied ? 'missing_right' : 'refused',
          `${what}: ${cmd} failed ${on} as ${login} (exit ${rc}${said ? `; it said: ${said}` : ''})`);
      }
      default:
        throw new JitError('refused', `${what} ${on} ended without a result (exit ${r.code ?? 'signal'}${r.stderr ? `; ${tail(r.stderr)}` : ''})`);
    }
  }

  /** One SSH login as the vaulted account, one script on `sh -s`, the connection closed. */
  private async script(t: JitTarget, script: string): Promise<ScriptResult> {
    const up = await connectUpstream({ port: this.port, resource: t.resource, credentials: t.admin, timeoutMs: this.connectTimeoutMs });
    if (!up.ok) {
      throw new JitError(CONNECT_KIND[up.error.kind], `${t.resource.name}: the gateway could not log in as the vaulted login ${t.admin.login}: ${up.error.message}`);
    }
    try {
      return await execScript(up.conn, script, this.scriptTimeoutMs);
    } catch (err) {
      throw new JitError('unreachable', `${t.resource.name}: ${(err as Error).message}`);
    } finally {
      up.conn.end();
    }
  }
}

const OUTPUT_LIMIT = 256 * 1024;

function execScript(conn: Client, script: string, timeoutMs: number): Promise<ScriptResult> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the account script did not finish within ${timeoutMs} ms`)), timeoutMs);
    conn.once('error', (err: Error) => { clearTimeout(timer); reject(err); });
    conn.exec('/bin/sh -s', (err, stream) => {
      if (err) { clearTimeout(timer); reject(err); return; }
      let stdout = '';
      let stderr = '';
      stream.on('data', (d: Buffer) => { if (stdout.length < OUTPUT_LIMIT) stdout += d.toString('utf8'); });
      stream.stderr.on('data', (d: Buffer) => { if (stderr.length < OUTPUT_LIMIT) stderr += d.toString('utf8'); });
      stream.once('close', (code: number | null) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
      stream.end(script);
    });
  });
}

/** The last lines of a command's output, for a message (bounded, one line). */
function tail(s: string): string {
  return s.trim().split('\n').filter((l) => !/^useradd warning: .* outside of the UID_MIN/.test(l)).slice(-3).join(' / ').slice(0, 300);
}
