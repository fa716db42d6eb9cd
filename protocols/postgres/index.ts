import { createServer, type AddressInfo, type Socket } from 'node:net';
import { createSecureContext } from 'node:tls';
import type { Listener, ListenerConfig, ProtocolAdapter } from '../../src/broker/adapter.js';
import { ValidationError } from '../../src/core/errors.js';
import type { Resource } from '../../src/core/model.js';
import { VerifiedPasswords } from '../../src/broker/password-cache.js';
import { CancelKeys } from './cancel.js';
import type { StatementEvent } from './relay.js';
import { serveConnection, type ConnectionContext } from './session.js';
import { resolveDatabaseOptions, type DatabaseAdapterOptions, type ResolvedDatabaseOptions } from '../shared/database-options.js';
import { isLoopback } from '../../src/core/net.js';
import type { UpstreamTarget } from './upstream.js';

export type { StatementEvent } from './relay.js';

export interface PostgresAdapterOptions extends DatabaseAdapterOptions {
  /** Called for every Query and Parse a client sends (besides a debug log line). */
  onStatement?: (e: StatementEvent) => void;
}

/**
 * The PostgreSQL gateway: stock psql and drivers connect with TLS as `user=alice:prod-pg`,
 * type a launch ticket or their gateway password, and are relayed to the target logged in
 * with the vaulted credentials. See README.md beside this file for the wire contract.
 */
export class PostgresAdapter implements ProtocolAdapter {
  readonly protocol = 'postgres' as const;
  /** Shared by every listener of this adapter; tests and metrics read them. */
  readonly stats = { upstreamConnects: 0, cancelsForwarded: 0 };
  private readonly cancelKeys = new CancelKeys();
  private readonly opts: PostgresAdapterOptions & ResolvedDatabaseOptions;

  constructor(options: PostgresAdapterOptions = {}) {
    this.opts = { ...options, ...resolveDatabaseOptions(options) };
  }

  /** Live sessions' cancel keys (released when a session ends). */
  get cancelKeyCount(): number {
    return this.cancelKeys.size;
  }

  private upstreamFor(resource: Resource): UpstreamTarget {
    const ca = this.opts.upstreamCa?.[resource.name] ?? this.opts.upstreamCa?.['*'];
    return {
      host: resource.host,
      port: resource.port,
      tls: ca ? { mode: 'require', ca } : { mode: this.opts.upstreamTls },
      timeoutMs: this.opts.upstreamTimeoutMs,
    };
  }

  async listen(config: ListenerConfig): Promise<Listener> {
    if (config.allowPlaintext && !isLoopback(config.host)) {
      throw new ValidationError('allowPlaintext', `plaintext PostgreSQL connections are allowed only on a loopback listener, not ${config.host}`);
    }
    const log = config.log.child({ protocol: 'postgres' });
    const ctx: ConnectionContext = {
      broker: config.broker,
      log,
      secureContext: createSecureContext({ cert: config.tls.cert, key: config.tls.key, minVersion: 'TLSv1.2' }),
      allowPlaintext: config.allowPlaintext ?? false,
      passwords: new VerifiedPasswords(this.opts.clock ?? config.broker.engine.ctx.clock, this.opts.passwordCacheMs),
      cancelKeys: this.cancelKeys,
      upstreamFor: (r) => this.upstreamFor(r),
      handshakeTimeoutMs: this.opts.handshakeTimeoutMs,
      auditLimit: this.opts.auditSqlLimit,
      onStatement: this.opts.onStatement,
      stats: this.stats,
    };
    const handshaking = new Set<Socket>();
    const server = createServer({ noDelay: true }, (socket) => {
      handshaking.add(socket);
      socket.once('close', () => handshaking.delete(socket));
      serveConnection(socket, ctx)
        .catch((err: unknown) => log.error({ err }, 'postgres connection handler failed'))
        .finally(() => handshaking.delete(socket));
    });
    server.on('error', (err) => log.error({ err }, 'postgres listener error'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    log.info({ host: address.address, port: address.port, plaintext: ctx.allowPlaintext }, 'postgres gateway listening');
    return {
      address,
      async close() {
        server.close();
        // Connections still in their handshake are not sessions yet: nobody else will end them.
        for (const s of handshaking) s.destroy();
      },
    };
  }
}
