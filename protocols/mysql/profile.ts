/**
 * What the gateway's HandshakeV10 says about the server: the version string, the capability
 * flags (MariaDB's extended ones included), the default collation. A client shapes the whole
 * session on them (mysql2 treats a server whose version names MariaDB as MariaDB and asks
 * for its extended column metadata), so they must be the target's own.
 *
 * The greeting is sent before the client names its resource, so it cannot be one target's:
 * it is learned from every target this adapter logs in to (each login refreshes its entry)
 * and says what they have in common. Before the first login it is a fixed, conservative
 * greeting every MySQL >= 5.7 and MariaDB >= 10.2 can serve.
 */
import { Cap, CHARSET_UTF8MB4_GENERAL_CI, CLIENT_MYSQL, MariaCap, SERVER_STATUS_AUTOCOMMIT } from './codec.js';
import type { HandshakeV10 } from './handshake.js';

/**
 * Client flags the gateway passes to the target as the client chose them, when the target
 * has them too: they shape what the server does or sends, and the relay carries it untouched.
 * The inert ones (ODBC, IGNORE_SIGPIPE, RESERVED, REMEMBER_OPTIONS) mean nothing to a server
 * but are part of what it greets with.
 */
export const RELAYED_CAPS =
  (Cap.FOUND_ROWS | Cap.LONG_FLAG | Cap.NO_SCHEMA | Cap.ODBC | Cap.LOCAL_FILES | Cap.IGNORE_SPACE | Cap.INTERACTIVE |
    Cap.IGNORE_SIGPIPE | Cap.TRANSACTIONS | Cap.RESERVED | Cap.MULTI_STATEMENTS | Cap.MULTI_RESULTS | Cap.PS_MULTI_RESULTS |
    Cap.SESSION_TRACK | Cap.DEPRECATE_EOF | Cap.REMEMBER_OPTIONS) >>> 0;

/**
 * Flags the gateway implements itself on the client leg, offered whatever the target has:
 * TLS, the auth dance, the database at connect, connection attributes (read, not forwarded).
 */
export const GATEWAY_CAPS =
  Cap.PROTOCOL_41 | Cap.SECURE_CONNECTION | Cap.PLUGIN_AUTH | Cap.PLUGIN_AUTH_LENENC_CLIENT_DATA | Cap.CONNECT_WITH_DB |
  Cap.CONNECT_ATTRS | Cap.SSL;

/**
 * MariaDB extended capabilities the relay can carry: they change the content of server
 * packets or add commands the framer passes through, never the packet framing. Not
 * COM_MULTI: it would hide commands (COM_CHANGE_USER, KILL) inside one packet.
 */
export const RELAYED_MARIADB_CAPS =
  MariaCap.PROGRESS | MariaCap.STMT_BULK_OPERATIONS | MariaCap.EXTENDED_METADATA | MariaCap.CACHE_METADATA | MariaCap.BULK_UNIT_RESULTS;

/** Never offered: compression (COMPRESS, ZSTD), QUERY_ATTRIBUTES, OPTIONAL_RESULTSET_METADATA, CAN_HANDLE_EXPIRED_PASSWORDS, MULTI_FACTOR_AUTHENTICATION. */
const CONSERVATIVE_CAPS =
  Cap.LONG_PASSWORD | Cap.FOUND_ROWS | Cap.LONG_FLAG | Cap.LOCAL_FILES | Cap.IGNORE_SPACE | Cap.INTERACTIVE | Cap.TRANSACTIONS |
  Cap.MULTI_STATEMENTS | Cap.MULTI_RESULTS | Cap.PS_MULTI_RESULTS | Cap.SESSION_TRACK | Cap.DEPRECATE_EOF | GATEWAY_CAPS;

/** What goes into a HandshakeV10 besides the connection id, the nonce and the auth plugin. */
export interface Greeting {
  serverVersion: string;
  capabilities: number;
  mariadbCapabilities: number;
  charset: number;
  status: number;
}

/** What one target said in its own HandshakeV10. */
export type TargetProfile = Pick<HandshakeV10, 'serverVersion' | 'capabilities' | 'mariadbCapabilities' | 'charset' | 'status'>;

/** An entry not refreshed by a login for this long (a resource moved or removed) stops counting. */
const PROFILE_TTL_MS = 24 * 60 * 60 * 1000;
const MAX_PROFILES = 1000;
const MAX_VERSION_LENGTH = 100;

export class TargetProfiles {
  private readonly entries = new Map<string, { profile: TargetProfile; seen: number }>();
  private cached: Greeting | undefined;
  private cachedUntil = 0;

  constructor(
    /** The greeting before any target is known (`serverVersion` option). */
    private readonly fallbackVersion: string,
    private readonly now: () => number = Date.now,
  ) {}

  /** The fixed greeting used until a target has been seen. */
  fallback(): Greeting {
    return { serverVersion: this.fallbackVersion, capabilities: CONSERVATIVE_CAPS, mariadbCapabilities: 0, charset: CHARSET_UTF8MB4_GENERAL_CI, status: SERVER_STATUS_AUTOCOMMIT };
  }

  /** In a data-path worker: tells the listener's other workers what a target greeted with. */
  private tell: ((key: string, hs: TargetProfile) => void) | undefined;

  /** Shares what is learned with the other data-path workers (theirs comes in through `learn(key, hs, false)`). */
  share(tell: (key: string, hs: TargetProfile) => void): void {
    this.tell = tell;
  }

  /** What has been learned, per target (what a newly started worker is told). */
  known(): Array<[string, TargetProfile]> {
    return [...this.entries].map(([key, e]) => [key, e.profile]);
  }

  /** Records what a target greeted with (every login does; `key` names the resource and its address). */
  learn(key: string, hs: TargetProfile, ours = true): void {
    if (ours) this.tell?.(key, hs);
    const profile: TargetProfile = {
      serverVersion: printableVersion(hs.serverVersion), capabilities: hs.capabilities >>> 0, mariadbCapabilities: hs.mariadbCapabilities >>> 0, charset: hs.charset, status: hs.status,
    };
    const old = this.entries.get(key);
    this.entries.delete(key);
    if (this.entries.size >= MAX_PROFILES) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { profile, seen: this.now() });
    if (!old || !sameProfile(old.profile, profile)) this.cached = undefined;
  }

  /** The greeting for the next client. */
  greeting(): Greeting {
    const now = this.now();
    if (this.cached && now < this.cachedUntil) return this.cached;
    let oldest = Infinity;
    const live: TargetProfile[] = [];
    for (const [key, e] of this.entries) {
      if (now - e.seen > PROFILE_TTL_MS) {
        this.entries.delete(key);
        continue;
      }
      live.push(e.profile);
      oldest = Math.min(oldest, e.seen);
    }
    this.cached = live.length ? common(live, this.fallback()) : this.fallback();
    this.cachedUntil = live.length ? oldest + PROFILE_TTL_MS : Infinity;
    return this.cached;
  }
}

/**
 * The greeting that suits every known target: the flags they all have (the relayable ones,
 * plus the gateway's own), MariaDB's extended flags only if every target is a MariaDB that
 * offers them, and one version string (the lowest, when they differ; the fallback when MySQL
 * and MariaDB targets are mixed, so a client never mistakes one for the other).
 */
export function common(profiles: TargetProfile[], fallback: Greeting): Greeting {
  let caps = 0xffffffff;
  let ext = 0xffffffff;
  let mariadbMode = true;
  for (const p of profiles) {
    caps &= p.capabilities;
    if (p.capabilities & CLIENT_MYSQL) mariadbMode = false;
    else ext &= p.mariadbCapabilities;
  }
  const capabilities = ((caps & RELAYED_CAPS) | GATEWAY_CAPS | (mariadbMode ? 0 : CLIENT_MYSQL)) >>> 0;
  const same = <T>(f: (p: TargetProfile) => T, dflt: T): T => (profiles.every((p) => f(p) === f(profiles[0]!)) ? f(profiles[0]!) : dflt);
  return {
    serverVersion: commonVersion(profiles.map((p) => p.serverVersion), fallback.serverVersion),
    capabilities,
    mariadbCapabilities: mariadbMode ? (ext & RELAYED_MARIADB_CAPS) >>> 0 : 0,
    charset: same((p) => p.charset, fallback.charset),
    status: same((p) => p.status, fallback.status),
  };
}

/**
 * The greeting goes to the clients of every resource behind the listener, and clients print
 * the version: one target must not put control characters (terminal escapes) in front of
 * another resource's users.
 */
function printableVersion(v: string): string {
  return v.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_VERSION_LENGTH);
}

function commonVersion(versions: string[], fallback: string): string {
  const first = versions[0]!;
  if (versions.every((v) => v === first)) return first;
  const isMaria = (v: string): boolean => /mariadb/i.test(v);
  if (!versions.every((v) => isMaria(v) === isMaria(first))) return fallback;
  return [...versions].sort((a, b) => compareVersions(a, b) || (a < b ? -1 : a > b ? 1 : 0))[0]!;
}

/** MariaDB says `5.5.5-10.11.6-MariaDB...` (the prefix keeps old replication clients happy); the real version follows it. */
function versionNumbers(v: string): number[] {
  const m = /^(?:5\.5\.5-)?(\d+)\.(\d+)\.(\d+)/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 0, 0];
}

function compareVersions(a: string, b: string): number {
  const x = versionNumbers(a);
  const y = versionNumbers(b);
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}

function sameProfile(a: TargetProfile, b: TargetProfile): boolean {
  return a.serverVersion === b.serverVersion && a.capabilities === b.capabilities && a.mariadbCapabilities === b.mariadbCapabilities &&
    a.charset === b.charset && a.status === b.status;
}
