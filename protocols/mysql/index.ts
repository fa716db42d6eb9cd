/**
 * The MySQL/MariaDB gateway: `mariadb -h GATEWAY -P 13306 -u alice:prod-mysql -p`, with a
 * launch ticket or the gateway password as the password. See README.md for the contract.
 */
import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import type { DataPathWorker, Listener, ListenerConfig, ProtocolAdapter } from '../../src/broker/adapter.js';
import type { GatewayPort } from '../../src/broker/port.js';
import type { Provisioner } from '../../src/broker/provisioner.js';
import { ValidationError } from '../../src/core/errors.js';
import type { Resource } from '../../src/core/model.js';
import { doorFor } from '../registry.js';
import { resolveDatabaseOptions, type DatabaseAdapterOptions, type ResolvedDatabaseOptions } from '../shared/database-options.js';
import { assertPlaintextAllowed, positive, serveTcp } from '../shared/listener.js';
import type { RsaKeys } from './client-auth.js';
import { TargetProfiles, type TargetProfile } from './profile.js';
import { MysqlProvisioner } from './provision.js';
import type { StatementEvent } from './relay.js';
import { MysqlSession, type AdapterStats, type SessionDeps } from './session.js';
import { ThreadRegistry, type ThreadChange } from './threads.js';
import { serverTlsOptions, SERVER_TLS12_CIPHERS, SERVER_TLS13_SUITES } from '../shared/server-tls.js';
import { loopFor, nativeLoop, relayChoice, tlsRecordsChoice, type RelayChoice, type TlsRecords } from '../shared/native.js';

export type { StatementEvent } from './relay.js';
export type { UpstreamTlsMode } from './upstream.js';

export interface MysqlAdapterOptions extends DatabaseAdapterOptions {
  /** Largest client command (logical packet) relayed (default 64 MiB). */
  maxPacketSize?: number;
  /** Called for every COM_QUERY and COM_STMT_PREPARE (default: a debug log line). */
  onStatement?: (e: StatementEvent) => void;
  /**
   * The server version the gateway's HandshakeV10 gives before it has logged in to any
   * target since it started; from then on it greets with the targets' own (profile.ts).
   */
  serverVersion?: string;
  /** Simultaneous client connections, logged in or not (default 1000); more are dropped at accept. */
  maxConnections?: number;
  /**
   * The data path of established sessions with client TLS (native.ts): `auto` (the default, or
   * the GATEHOUSE_MYSQL_RELAY environment variable) uses the native one where it loads,
   * `native` refuses to start without it, `node` keeps the relay on Node's streams.
   */
  relay?: RelayChoice;
  /** On the native data path, who handles a live session's TLS records (shared/native.ts; GATEHOUSE_MYSQL_TLS_RECORDS). */
  tlsRecords?: TlsRecords;
}

const MAX_TLS_SESSIONS = 1000;

export class MysqlAdapter implements ProtocolAdapter {
  readonly protocol = 'mysql' as const;
  private readonly opts: MysqlAdapterOptions & ResolvedDatabaseOptions & { maxPacketSize: number; serverVersion: string; maxConnections: number };
  /** Connection ids (from a random start) and the target threads behind them, for KILL. */
  private readonly threads = new ThreadRegistry();
  /** What the targets greet with, learned at each target login; the greeting says what they share. */
  private readonly profiles: TargetProfiles;
  /** Target TLS sessions for resumption, oldest first. */
  private readonly tlsSessions = new Map<string, Buffer>();
  /** Counters for tests and metrics. */
  readonly stats: AdapterStats = {
    connections: 0, upstreamConnects: 0, refusals: 0, changeUserRefused: 0, threadKills: 0, upstreamQuits: 0, killsMapped: 0, killsRefused: 0, upstreamTlsResumed: 0,
  };

  constructor(readonly options: MysqlAdapterOptions = {}) {
    const maxPacketSize = positive('maxPacketSize', options.maxPacketSize, 64 * 1024 * 1024);
    if (maxPacketSize < 1024 || maxPacketSize > 1024 ** 3) throw new ValidationError('maxPacketSize', 'must be between 1 KiB and 1 GiB');
    this.opts = {
      ...options,
      ...resolveDatabaseOptions(options),
      maxPacketSize,
      serverVersion: options.serverVersion ?? '8.0.99-Gatehouse',
      maxConnections: positive('maxConnections', options.maxConnections, 1000),
    };
    this.profiles = new TargetProfiles(this.opts.serverVersion);
  }

  private upstreamFor(resource: Resource): ReturnType<SessionDeps['upstream']> {
    const ca = this.opts.upstreamCa?.[resource.name] ?? this.opts.upstreamCa?.['*'];
    // Keyed by everything the session was verified against: a changed CA or address starts afresh.
    const key = `${resource.name}\0${resource.host}\0${resource.port}\0${ca ?? resource.hostKeyPin ?? ''}`;
    const tlsSessions = {
      get: () => this.tlsSessions.get(key),
      set: (s: Buffer) => {
        this.keepTlsSession(key, s);
        this.tellTlsSession?.(key, s);
      },
    };
    // A lab target may lack TLS only where its resource says so, and never once a TLS certificate was pinned for it (a downgrade).
    const plaintextAllowed = !!resource.options.allowPlaintextUpstream && !resource.hostKeyPin?.startsWith('tls-sha256:');
    return { ...(ca ? { ca } : {}), tls: ca ? 'require' : this.opts.upstreamTls, plaintextAllowed, timeoutMs: this.opts.upstreamTimeoutMs, tlsSessions };
  }

  /** In a data-path worker: tells the listener's other workers of a target TLS session to resume. */
  private tellTlsSession: ((key: string, s: Buffer) => void) | undefined;

  private keepTlsSession(key: string, s: Buffer): void {
    this.tlsSessions.delete(key);
    if (this.tlsSessions.size >= MAX_TLS_SESSIONS) this.tlsSessions.delete(this.tlsSessions.keys().next().value!);
    this.tlsSessions.set(key, s);
  }

  /** Ephemeral accounts and elevation (provision.ts), reaching each target as its sessions do. */
  provisioner(port: GatewayPort): Provisioner {
    return new MysqlProvisioner({ port, target: (r) => this.upstreamFor(r) });
  }

  async listen(config: ListenerConfig): Promise<Listener> {
    assertPlaintextAllowed('MySQL', config);
    const { log } = config;
    const port = config.broker.portFor({ protocol: 'mysql', loginExample: doorFor('mysql')!.loginExample }, log);
    const allowPlaintext = config.allowPlaintext ?? false;
    const loop = loopFor(relayChoice(this.opts.relay, 'mysql'), log, nativeLoop, 'mysql');
    const native = loop
      // One session ticket per full handshake: mysql2 keeps the last session it was given and
      // resumes with it (no certificate, no signature), as it does against Node's TLS server.
      ? { loop, context: loop.serverContext({ certPem: config.tls.cert, keyPem: config.tls.key, tls13: SERVER_TLS13_SUITES, tls12: SERVER_TLS12_CIPHERS, tickets: 1, ticketKey: config.tls.ticketKey }), records: tlsRecordsChoice(this.opts.tlsRecords, 'mysql') }
      : undefined;
    const deps: SessionDeps = {
      stats: this.stats,
      port,
      auth: {
        secureContext: createSecureContext(serverTlsOptions(config.tls)),
        allowPlaintext,
        rsa: rsaKeys(config.tls.rsaKey ?? config.tls.key),
        ...(native ? { native } : {}),
      },
      ...(native ? { native } : {}),
      threads: this.threads,
      profiles: this.profiles,
      maxPacket: this.opts.maxPacketSize,
      auditSqlLimit: this.opts.auditSqlLimit,
      // Without a hook and with debug logging off, statement text is not even decoded.
      onStatement: this.opts.onStatement ?? (log.isLevelEnabled('debug') ? (e) => log.debug({ session: e.sessionId, kind: e.kind, sql: e.sql, truncated: e.truncated }, 'mysql statement') : undefined),
      upstream: (r) => this.upstreamFor(r),
    };
    const worker = config.dataPath;
    if (worker) {
      const tell = shareWithWorkers(worker, this.threads, this.profiles, { keep: (key, session) => this.keepTlsSession(key, session), all: () => [...this.tlsSessions] });
      this.tellTlsSession = (key, session) => tell({ tlsSession: [key, session] });
    }
    if (allowPlaintext) log.info('mysql: plaintext client connections are allowed (loopback listener)');
    return serveTcp(config, log, 'mysql', (conn) => {
      this.stats.connections++;
      const id = this.threads.allocate();
      return new MysqlSession(conn, id, this.profiles.greeting(), deps).run();
    }, { maxConnections: this.opts.maxConnections, handshakeTimeoutMs: this.opts.handshakeTimeoutMs });
  }
}

/**
 * In a data-path worker (src/dataplane): the listener's other workers learn every session this
 * one registers or ends, so that KILL finds the caller's sessions whichever worker holds them;
 * what each target greeted with, so that every worker greets clients alike; and the target TLS
 * sessions to resume, so that a login in any worker resumes. A KILL for a session that went live
 * in another worker an instant ago may be refused (not yet known here). Returns the teller.
 */
function shareWithWorkers(
  worker: DataPathWorker, threads: ThreadRegistry, profiles: TargetProfiles,
  tlsSessions: { keep(key: string, s: Buffer): void; all(): Array<[string, Buffer]> },
): (news: WorkerNews) => void {
  const keepTlsSession = tlsSessions.keep;
  const others = [...Array(worker.count).keys()].filter((i) => i !== worker.index);
  const tell = (payload: WorkerNews, to: readonly number[] = others): void => {
    for (const i of to) worker.send(i, { ...payload, from: worker.index });
  };
  /** A worker started in place of one that died knows nothing yet: it is told what this one holds. */
  const catchUp = (to: number): void => {
    for (const t of threads.own()) tell({ thread: { add: t } }, [to]);
    for (const p of profiles.known()) tell({ profile: p }, [to]);
    for (const s of tlsSessions.all()) tell({ tlsSession: s }, [to]);
  };
  threads.share(worker.index, worker.count, (thread) => tell({ thread }));
  profiles.share((key, hs) => tell({ profile: [key, hs] }));
  worker.onMessage((m) => {
    const news = m as WorkerNews & { from?: number; peerGone?: number; peerJoined?: number };
    if (typeof news.peerGone === 'number') threads.apply({ peerGone: news.peerGone }, news.peerGone);
    if (typeof news.peerJoined === 'number' && news.peerJoined !== worker.index && news.peerJoined < worker.count) catchUp(news.peerJoined);
    if (typeof news.from !== 'number') return;
    if (news.thread) threads.apply(news.thread, news.from);
    if (news.profile) profiles.learn(news.profile[0], news.profile[1], false);
    if (news.tlsSession) keepTlsSession(news.tlsSession[0], Buffer.from(news.tlsSession[1]));
  });
  return tell;
}

interface WorkerNews {
  thread?: ThreadChange;
  profile?: [string, TargetProfile];
  tlsSession?: [string, Buffer];
}

/**
 * The key caching_sha2_password clients encrypt the password with when they have no TLS: the
 * listener's `tls.rsaKey` (src/pki's rsa-key.pem, the same in every worker), else the TLS key
 * when it is RSA, else one made on first use, in the thread pool, and kept for the listener's life.
 */
function rsaKeys(keyPem: string): () => Promise<RsaKeys> {
  let keys: Promise<RsaKeys> | undefined;
  const of = (privateKey: KeyObject): RsaKeys => ({ privateKey, publicKeyPem: createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString() });
  return () => {
    keys ??= (async () => {
      const own = createPrivateKey(keyPem);
      if (own.asymmetricKeyType === 'rsa') return of(own);
      return of(await new Promise<KeyObject>((resolve, reject) => generateKeyPair('rsa', { modulusLength: 2048 }, (err, _pub, key) => (err ? reject(err) : resolve(key)))));
    })();
    // A failure is that login's, not every later one's: the next asks again.
    const mine = keys;
    mine.catch(() => {
      if (keys === mine) keys = undefined;
    });
    return mine;
  };
}
