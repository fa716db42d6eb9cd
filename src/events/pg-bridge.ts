import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Logger } from '../core/log.js';
import type { EventBus, RevokeEvent } from './bus.js';

const CHANNEL = 'gatehouse_revoke';

interface Envelope {
  origin: string;
  event: RevokeEvent;
}

/**
 * Carries revoke events between gateways that share a PostgreSQL store, with LISTEN/NOTIFY:
 * a force check-in handled by node A reaches the monitor of a session that node B holds.
 * Notices for people stay on the node that made them (each node's webhooks would otherwise
 * fire twice). A lost listening connection is re-established with backoff.
 */
export class PgRevokeBridge {
  private readonly origin = randomUUID();
  /** Events this bridge put on the local bus, so they are not sent back out. */
  private readonly injected = new WeakSet<RevokeEvent>();
  private listener: pg.Client | undefined;
  private readonly pool: pg.Pool;
  private unsubscribe: (() => void) | undefined;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;

  constructor(
    private readonly url: string,
    private readonly bus: EventBus,
    private readonly log: Logger,
  ) {
    this.pool = new pg.Pool({ connectionString: url, max: 2 });
    this.pool.on('error', (err) => this.log.warn({ err: err.message }, 'revoke bridge pool error'));
  }

  async start(): Promise<void> {
    await this.listen();
    this.unsubscribe = this.bus.on('revoke', (event) => {
      if (this.injected.has(event)) return;
      const payload = JSON.stringify({ origin: this.origin, event } satisfies Envelope);
      this.pool.query('SELECT pg_notify($1, $2)', [CHANNEL, payload]).catch((err: Error) => {
        this.log.error({ err: err.message, kind: event.kind }, 'could not send a revoke event to the other gateways');
      });
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    this.unsubscribe?.();
    await this.listener?.end().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }

  private async listen(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url });
    client.on('error', (err) => this.log.warn({ err: err.message }, 'revoke bridge connection error'));
    client.on('end', () => {
      if (!this.stopped) this.reconnect(1000);
    });
    client.on('notification', (msg) => this.receive(msg.payload));
    await client.connect();
    await client.query(`LISTEN ${CHANNEL}`);
    this.listener = client;
  }

  private reconnect(delayMs: number): void {
    this.retry = setTimeout(() => {
      this.listen().catch((err: Error) => {
        this.log.warn({ err: err.message }, 'revoke bridge could not reconnect; retrying');
        this.reconnect(Math.min(delayMs * 2, 30_000));
      });
    }, delayMs);
    this.retry.unref();
  }

  private receive(payload: string | undefined): void {
    let env: Envelope;
    try {
      env = JSON.parse(payload ?? '') as Envelope;
    } catch {
      this.log.warn('ignored a malformed revoke notification');
      return;
    }
    if (env.origin === this.origin || !env.event?.kind) return;
    this.injected.add(env.event);
    this.bus.publishRevoke(env.event);
  }
}
