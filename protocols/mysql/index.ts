/**
 * The MySQL/MariaDB gateway: `mariadb -h GATEWAY -P 13306 -u alice:prod-mysql -p`, with a
 * launch ticket or the gateway password as the password. See README.md for the contract.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import type { Listener, ListenerConfig, ProtocolAdapter } from '../../src/broker/adapter.js';
import { ValidationError } from '../../src/core/errors.js';
import type { Resource } from '../../src/core/model.js';
import { doorFor } from '../registry.js';
import { resolveDatabaseOptions, type DatabaseAdapterOptions, type ResolvedDatabaseOptions } from '../shared/database-options.js';
import { assertPlaintextAllowed, positive, serveTcp } from '../shared/listener.js';
import type { StatementEvent } from './relay.js';
import { MysqlSession, type AdapterStats, type SessionDeps } from './session.js';

export type { StatementEvent } from './relay.js';
export type { UpstreamTlsMode } from './upstream.js';

export interface MysqlAdapterOptions extends DatabaseAdapterOptions {
  /** Largest client command (logical packet) relayed (default 64 MiB). */
  maxPacketSize?: number;
  /** Called for every COM_QUERY and COM_STMT_PREPARE (default: a debug log line). */
  onStatement?: (e: StatementEvent) => void;
  /** What the gateway's HandshakeV10 says it is; clients only display it. */
  serverVersion?: string;
  /** Simultaneous client connections, logged in or not (default 1000); more are dropped at accept. */
  maxConnections?: number;
}

const MAX_TLS_SESSIONS = 1000;

export class MysqlAdapter implements ProtocolAdapter {
  readonly protocol = 'mysql' as const;
  private readonly opts: MysqlAdapterOptions & ResolvedDatabaseOptions & { maxPacketSize: number; serverVersion: string; maxConnections: number };
  private nextConnectionId = 1;
  /** Target TLS sessions for resumption, oldest first. */
  private readonly tlsSessions = new Map<string, Buffer>();
  /** Counters for tests and metrics. */
  readonly stats: AdapterStats = { connections: 0, upstreamConnects: 0, refusals: 0, changeUserRefused: 0, threadKills: 0, upstreamTlsResumed: 0 };

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
    return { ...(ca ? { ca } : {}), tls: ca ? 'require' : this.opts.upstreamTls, timeoutMs: this.opts.upstreamTimeoutMs, tlsSessions };
  }

  async listen(config: ListenerConfig): Promise<Listener> {
    assertPlaintextAllowed('MySQL', config);
    const log = config.log.child({ protocol: 'mysql' });
    const port = config.broker.portFor({ protocol: 'mysql', loginExample: doorFor('mysql')!.loginExample }, log);
    const allowPlaintext = config.allowPlaintext ?? false;
    const deps: SessionDeps = {
      stats: this.stats,
      port,
      auth: {
        secureContext: createSecureContext({ cert: config.tls.cert, key: config.tls.key, minVersion: 'TLSv1.2' }),
        allowPlaintext,
        serverVersion: this.opts.serverVersion,
        rsa: rsaKeys(config.tls.key),
      },
      maxPacket: this.opts.maxPacketSize,
      auditSqlLimit: this.opts.auditSqlLimit,
      // Without a hook and with debug logging off, statement text is not even decoded.
      onStatement: this.opts.onStatement ?? (log.isLevelEnabled('debug') ? (e) => log.debug({ session: e.sessionId, kind: e.kind, sql: e.sql, truncated: e.truncated }, 'mysql statement') : undefined),
      upstream: (r) => this.upstreamFor(r),
    };
    if (allowPlaintext) log.info('mysql: plaintext client connections are allowed (loopback listener)');
    return serveTcp(config, log, 'mysql', (conn) => {
      this.stats.connections++;
      const id = this.nextConnectionId;
      this.nextConnectionId = (this.nextConnectionId % 0xfffffffe) + 1;
      return new MysqlSession(conn, id, deps).run();
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
