/**
 * The MySQL/MariaDB gateway: `mariadb -h GATEWAY -P 13306 -u alice:prod-mysql -p`, with a
 * launch ticket or the gateway password as the password. See README.md for the contract.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import type { Listener, ListenerConfig, ProtocolAdapter } from '../../src/broker/adapter.js';
import type { GatewayPort } from '../../src/broker/port.js';
import type { Provisioner } from '../../src/broker/provisioner.js';
import { ValidationError } from '../../src/core/errors.js';
import type { Resource } from '../../src/core/model.js';
import { doorFor } from '../registry.js';
import { resolveDatabaseOptions, type DatabaseAdapterOptions, type ResolvedDatabaseOptions } from '../shared/database-options.js';
import { assertPlaintextAllowed, positive, serveTcp } from '../shared/listener.js';
import { TargetProfiles } from './profile.js';
import { MysqlProvisioner } from './provision.js';
import type { StatementEvent } from './relay.js';
import { MysqlSession, type AdapterStats, type SessionDeps } from './session.js';
import { ThreadRegistry } from './threads.js';
import { serverTlsOptions } from '../shared/server-tls.js';

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

  constructor(options: MysqlAdapterOptions = {}) {
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
        this.tlsSessions.delete(key);
        if (this.tlsSessions.size >= MAX_TLS_SESSIONS) this.tlsSessions.delete(this.tlsSessions.keys().next().value!);
        this.tlsSessions.set(key, s);
      },
    };
    // A lab target may lack TLS only where its resource says so, and never once a TLS certificate was pinned for it (a downgrade).
    const plaintextAllowed = !!resource.options.allowPlaintextUpstream && !resource.hostKeyPin?.startsWith('tls-sha256:');
    return { ...(ca ? { ca } : {}), tls: ca ? 'require' : this.opts.upstreamTls, plaintextAllowed, timeoutMs: this.opts.upstreamTimeoutMs, tlsSessions };
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
    const deps: SessionDeps = {
      stats: this.stats,
      port,
      auth: {
        secureContext: createSecureContext(serverTlsOptions(config.tls)),
        allowPlaintext,
        rsa: rsaKeys(config.tls.key),
      },
      threads: this.threads,
      profiles: this.profiles,
      maxPacket: this.opts.maxPacketSize,
      auditSqlLimit: this.opts.auditSqlLimit,
      // Without a hook and with debug logging off, statement text is not even decoded.
      onStatement: this.opts.onStatement ?? (log.isLevelEnabled('debug') ? (e) => log.debug({ session: e.sessionId, kind: e.kind, sql: e.sql, truncated: e.truncated }, 'mysql statement') : undefined),
      upstream: (r) => this.upstreamFor(r),
    };
    if (allowPlaintext) log.info('mysql: plaintext client connections are allowed (loopback listener)');
    return serveTcp(config, log, 'mysql', (conn) => {
      this.stats.connections++;
      const id = this.threads.allocate();
      conn.socket.once('close', () => this.threads.release(id));
      return new MysqlSession(conn, id, this.profiles.greeting(), deps).run();
    }, { maxConnections: this.opts.maxConnections, handshakeTimeoutMs: this.opts.handshakeTimeoutMs });
  }
}

/**
 * The key caching_sha2_password clients encrypt the password with when they have no TLS:
 * the gateway's own TLS key when it is RSA (it is, from src/pki), else one made here.
 */
function rsaKeys(tlsKeyPem: string): { privateKey: KeyObject; publicKeyPem: string } {
  let privateKey = createPrivateKey(tlsKeyPem);
  if (privateKey.asymmetricKeyType !== 'rsa') privateKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  return { privateKey, publicKeyPem: createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString() };
}
