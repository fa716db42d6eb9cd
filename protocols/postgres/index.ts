import { createSecureContext } from 'node:tls';
import type { Listener, ListenerConfig, ProtocolAdapter } from '../../src/broker/adapter.js';
import type { Provisioner } from '../../src/broker/provisioner.js';
import type { GatewayPort } from '../../src/broker/port.js';
import type { Resource } from '../../src/core/model.js';
import { DOORS } from '../registry.js';
import { resolveDatabaseOptions, type DatabaseAdapterOptions, type ResolvedDatabaseOptions } from '../shared/database-options.js';
import { assertPlaintextAllowed, positive, serveTcp } from '../shared/listener.js';
import { CancelKeys } from './cancel.js';
import { PostgresProvisioner } from './provision.js';
import type { StatementEvent } from './relay.js';
import { cancelSession, PgConnection, type ConnectionContext } from './session.js';
import type { PlaintextUpstream, UpstreamTarget } from './upstream.js';
import { SERVER_TLS12_CIPHERS, SERVER_TLS13_SUITES, serverTlsOptions } from '../shared/server-tls.js';
import { loopFor, relayChoice, tlsRecordsChoice, type RelayChoice, type TlsRecords } from './native.js';

export type { StatementEvent } from './relay.js';

export interface PostgresAdapterOptions extends DatabaseAdapterOptions {
  /** Called for every Query and Parse a client sends (besides a debug log line). */
  onStatement?: (e: StatementEvent) => void;
  /** Simultaneous client connections per listener, logged in or not (default 1000). */
  maxConnections?: number;
  /**
   * The data path of established sessions (native.ts): `auto` (the default, or the
   * GATEHOUSE_POSTGRES_RELAY environment variable) uses the native one where it loads, `native`
   * requires it, `node` keeps relay.ts on Node's streams.
   */
  relay?: RelayChoice;
  /**
   * On the native data path, who handles a live session's TLS records (native.ts): `lean`
   * (the default, or GATEHOUSE_POSTGRES_TLS_RECORDS) or `openssl`.
   */
  tlsRecords?: TlsRecords;
}

const LOGIN_EXAMPLE = DOORS.find((d) => d.protocol === 'postgres')!.loginExample;

/**
 * The PostgreSQL gateway: stock psql and drivers connect with TLS as `user=alice:prod-pg`,
 * type a launch ticket or their gateway password, and are relayed to the target logged in
 * with the vaulted credentials. See README.md beside this file for the wire contract.
 */
export class PostgresAdapter implements ProtocolAdapter {
  readonly protocol = 'postgres' as const;
  /** Shared by every listener of this adapter; tests and metrics read them. */
  readonly stats = { upstreamConnects: 0, cancelsForwarded: 0, cancelKeys: 0 };
  /** `cancelKeys` counts live sessions' keys; the others count events. */
  readonly gauges = ['cancelKeys'] as const;
  private readonly cancelKeys = new CancelKeys();
  private readonly opts: PostgresAdapterOptions & ResolvedDatabaseOptions & { maxConnections: number };

  constructor(readonly options: PostgresAdapterOptions = {}) {
    this.opts = { ...options, ...resolveDatabaseOptions(options), maxConnections: positive('maxConnections', options.maxConnections, 1000) };
    relayChoice(options.relay);
    tlsRecordsChoice(options.tlsRecords);
  }

  /**
   * TLS to the target is required, its identity verified against the resource's CA or pinned
   * on first use; only a resource that allows a plaintext target (an explicit, audited option)
   * may be reached without TLS, and then only with SCRAM (see upstream.ts).
   */
  private upstreamFor(port: GatewayPort, resource: Resource): UpstreamTarget {
    const ca = this.opts.upstreamCa?.[resource.name] ?? this.opts.upstreamCa?.['*'];
    const pinned = resource.hostKeyPin?.startsWith('tls-sha256:') ?? false;
    const plaintext: PlaintextUpstream = resource.options.allowPlaintextUpstream !== true ? 'never'
      : this.opts.upstreamTls === 'disable' && !ca && !pinned ? 'always' : 'if-declined';
    return {
      resource: resource.name,
      host: resource.host,
      port: resource.port,
      tls: { plaintext, pinned, ...(ca ? { ca } : {}) },
      timeoutMs: this.opts.upstreamTimeoutMs,
      verify: (identity) => port.verifyTarget(resource.name, identity),
    };
  }

  /**
   * Temporary roles and elevation on this door's targets, as the vaulted login over the same
   * target leg as a session (TLS, identity policy, SCRAM): see provision.ts and README.md.
   */
  provisioner(port: GatewayPort): Provisioner {
    return new PostgresProvisioner({ target: (r) => this.upstreamFor(port, r), clock: port.clock });
  }

  async listen(config: ListenerConfig): Promise<Listener> {
    assertPlaintextAllowed('PostgreSQL', config);
    const { log } = config;
    const port = config.broker.portFor({ protocol: 'postgres', loginExample: LOGIN_EXAMPLE }, log);
    const ctx: ConnectionContext = {
      port,
      secureContext: createSecureContext(serverTlsOptions(config.tls)),
      allowPlaintext: config.allowPlaintext ?? false,
      cancelKeys: this.cancelKeys,
      upstreamFor: (r) => this.upstreamFor(port, r),
      auditLimit: this.opts.auditSqlLimit,
      onStatement: this.opts.onStatement,
      stats: this.stats,
    };
    const loop = loopFor(relayChoice(this.opts.relay), log);
    if (loop) {
      const context = loop.serverContext({ certPem: config.tls.cert, keyPem: config.tls.key, tls13: SERVER_TLS13_SUITES, tls12: SERVER_TLS12_CIPHERS });
      ctx.native = { loop, context, records: tlsRecordsChoice(this.opts.tlsRecords) };
    }
    const worker = config.dataPath;
    if (worker) {
      // A CancelRequest may reach another worker than the one holding its session (see cancel.ts).
      this.cancelKeys.ownedBy(worker.index, worker.count);
      ctx.cancelElsewhere = (key) => {
        const to = this.cancelKeys.elsewhere(key);
        if (to !== undefined) worker.send(to, { cancel: key.toString('hex') });
        return to !== undefined;
      };
      worker.onMessage((m) => {
        const hex = (m as { cancel?: unknown }).cancel;
        if (typeof hex === 'string' && /^[0-9a-f]{16}$/.test(hex)) void cancelSession(ctx, Buffer.from(hex, 'hex'));
      });
    }
    return serveTcp(config, log, 'postgres', (conn) => new PgConnection(conn, ctx).run(), {
      maxConnections: this.opts.maxConnections,
      handshakeTimeoutMs: this.opts.handshakeTimeoutMs,
    });
  }
}
