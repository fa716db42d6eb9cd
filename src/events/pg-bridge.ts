import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Logger } from '../core/log.js';
import type { EventBus, RevokeEvent } from './bus.js';
import { encodeMessage, originOf, Reassembler, type ClusterMessage } from './pg-wire.js';

/** The name predates notices; it stays so nodes of the previous release still hear revocations during a rolling upgrade. */
const CHANNEL = 'gatehouse_revoke';
/** How operators find a node's listening connection in pg_stat_activity (the node name follows). */
export const EVENT_FEED_APPLICATION_NAME = 'gatehouse-events';

/** Whether this node hears what the other nodes do. */
export type FeedState = 'up' | 'down';

export interface PgEventBridgeOptions {
  /** How often the listening connection proves it still delivers (a NOTIFY to itself); default 250 ms. */
  heartbeatMs?: number;
  /** Without a heartbeat coming back for this long, the feed counts as lost; default 1000 ms. */
  stallAfterMs?: number;
  /** First delay before listening again after a loss, doubled per failure up to maxReconnectMs; defaults 200 ms, 5 s. */
  reconnectMs?: number;
  maxReconnectMs?: number;
  /** application_name of the listening connection; default `gatehouse-events`. */
  applicationName?: string;
}

const DEFAULTS: Required<PgEventBridgeOptions> = {
  heartbeatMs: 250, stallAfterMs: 1000, reconnectMs: 200, maxReconnectMs: 5000, applicationName: EVENT_FEED_APPLICATION_NAME,
};

/**
 * Carries events between gateways that share a PostgreSQL store, with LISTEN/NOTIFY: a force
 * check-in handled by node A reaches the monitor of a session node B holds, and a request
 * approved on node A reaches the WebSocket clients connected to node B. Remote notices go on
 * the bus as `remoteNotice`, for connected clients only: the node that made a notice is the
 * one that sends its webhooks. A node never takes back its own messages (each names its
 * origin), so nothing is delivered twice where it was made.
 *
 * The feed is watched: the listening connection sends itself a heartbeat, and when it drops
 * or stops answering the bridge reports the feed `down` (the broker then re-checks live
 * sessions against the store, since revocations may be missed) and listens again with
 * backoff, reporting `up` once LISTEN is back in place.
 *
 * Liveness timing runs on the real monotonic clock, not the injected Clock: it measures a
 * network connection, not workflow time.
 */
export class PgEventBridge {
  /** This bridge's name on the channel. */
  readonly origin = randomUUID();
  private readonly opts: Required<PgEventBridgeOptions>;
  private readonly pingChannel = `gatehouse_ping_${this.origin.replace(/-/g, '')}`;
  /** Events this bridge put on the local bus, so they are not sent back out. */
  private readonly injected = new WeakSet<RevokeEvent>();
  private readonly pool: pg.Pool;
  private readonly chunks = new Reassembler();
  private readonly feedListeners = new Set<(state: FeedState, why: string) => void>();
  private readonly unsubscribe: Array<() => void> = [];
  private state: FeedState | 'starting' | 'stopped' = 'starting';
  private listener: pg.Client | undefined;
  /** Bumped whenever the listening connection is replaced; callbacks of an older one are ignored. */
  private epoch = 0;
  private lastBeat = 0;
  private beatSeq = 0;
  private heartbeat: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private retryDelay: number;

  constructor(
    private readonly url: string,
    private readonly bus: EventBus,
    private readonly log: Logger,
    options: PgEventBridgeOptions = {},
  ) {
    this.opts = { ...DEFAULTS, ...options };
    this.retryDelay = this.opts.reconnectMs;
    this.pool = new pg.Pool({ connectionString: url, max: 2 });
    this.pool.on('error', (err) => this.log.warn({ err: err.message }, 'event bridge pool error'));
  }

  /** Listens (failing if it cannot: a node that would hear nothing must not start) and starts sending. */
  async start(): Promise<void> {
    await this.listen();
    this.unsubscribe.push(
      this.bus.on('revoke', (event) => {
        if (!this.injected.has(event)) this.send({ kind: 'revoke', event });
      }),
      // A notice nobody is addressed by (an audit checkpoint) is for this node's webhooks only.
      this.bus.on('notice', (notice) => {
        if (notice.to.length > 0) this.send({ kind: 'notice', notice });
      }),
    );
    this.heartbeat = setInterval(() => this.beat(), this.opts.heartbeatMs);
    this.heartbeat.unref();
  }

  /** `up` while this node hears the others. */
  get feed(): FeedState {
    return this.state === 'up' ? 'up' : 'down';
  }

  /** Called on every change of the feed's state. */
  onFeed(fn: (state: FeedState, why: string) => void): () => void {
    this.feedListeners.add(fn);
    return () => this.feedListeners.delete(fn);
  }

  async stop(): Promise<void> {
    this.state = 'stopped';
    this.epoch++;
    clearInterval(this.heartbeat);
    clearTimeout(this.retry);
    for (const off of this.unsubscribe.splice(0)) off();
    await this.listener?.end().catch(() => undefined);
    this.listener = undefined;
    await this.pool.end().catch(() => undefined);
  }

  private send(message: ClusterMessage): void {
    let payloads: string[];
    try {
      payloads = encodeMessage(this.origin, message);
    } catch (err) {
      this.log.error({ err: (err as Error).message, kind: kindOf(message) }, 'could not send an event to the other gateways');
      return;
    }
    // All chunks in one statement, so one transaction: they arrive together or not at all.
    const calls = payloads.map((_, i) => `pg_notify($1, $${i + 2})`).join(', ');
    this.pool.query(`SELECT ${calls}`, [CHANNEL, ...payloads]).catch((err: Error) => {
      this.log.error({ err: err.message, kind: kindOf(message) }, 'could not send an event to the other gateways');
    });
  }

  private async listen(): Promise<void> {
    const epoch = ++this.epoch;
    const mine = (): boolean => epoch === this.epoch;
    const client = new pg.Client({
      connectionString: this.url,
      application_name: this.opts.applicationName,
      keepAlive: true,
      connectionTimeoutMillis: 5000,
      query_timeout: 5000,
    });
    this.listener = client;
    client.on('error', (err) => {
      if (mine()) this.lost(`listening connection failed: ${err.message}`);
    });
    client.on('end', () => {
      if (mine()) this.lost('listening connection closed');
    });
    client.on('notification', (msg) => {
      if (!mine()) return;
      if (msg.channel === this.pingChannel) this.lastBeat = performance.now();
      else this.receive(msg.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
      await client.query(`LISTEN ${this.pingChannel}`);
    } catch (e) {
      if (mine()) this.listener = undefined;
      await client.end().catch(() => undefined);
      throw e;
    }
    if (!mine()) {
      await client.end().catch(() => undefined);
      return;
    }
    this.chunks.reset();
    this.lastBeat = performance.now();
    this.retryDelay = this.opts.reconnectMs;
    this.setState('up', 'listening');
  }

  private beat(): void {
    const client = this.listener;
    if (this.state !== 'up' || !client) return;
    const silent = performance.now() - this.lastBeat;
    if (silent > this.opts.stallAfterMs) {
      this.lost(`no heartbeat for ${Math.round(silent)} ms`);
      return;
    }
    client.query('SELECT pg_notify($1, $2)', [this.pingChannel, String(++this.beatSeq)]).catch(() => undefined);
  }

  /** The feed is gone: report it, drop the connection (a stalled one has a query in flight, so end() destroys it) and listen again. */
  private lost(why: string): void {
    // Before the first LISTEN, start() reports the failure itself.
    if (this.state === 'stopped' || this.state === 'starting') return;
    this.epoch++;
    const old = this.listener;
    this.listener = undefined;
    void old?.end().catch(() => undefined);
    this.setState('down', why);
    this.reconnect();
  }

  private reconnect(): void {
    if (this.retry || this.state === 'stopped') return;
    const delay = this.retryDelay;
    this.retryDelay = Math.min(delay * 2, this.opts.maxReconnectMs);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      if (this.state === 'stopped') return;
      this.listen().catch((err: Error) => {
        this.log.warn({ err: err.message, retryInMs: this.retryDelay }, 'event bridge could not listen again; retrying');
        this.reconnect();
      });
    }, delay);
    this.retry.unref();
  }

  private setState(next: FeedState, why: string): void {
    if (this.state === 'stopped' || this.state === next) return;
    const was = this.state;
    this.state = next;
    if (next === 'down') this.log.warn({ why }, 'event feed lost: re-checking live sessions against the store until it is back');
    else if (was === 'down') this.log.info('event feed back');
    for (const fn of this.feedListeners) {
      try {
        fn(next, why);
      } catch (err) {
        this.log.error({ err }, 'event feed listener failed');
      }
    }
  }

  private receive(payload: string | undefined): void {
    if (!payload || originOf(payload) === this.origin) return;
    let got;
    try {
      got = this.chunks.accept(payload);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'ignored a malformed cluster notification');
      return;
    }
    if (!got || got.origin === this.origin) return;
    const m = got.message;
    if (m.kind === 'revoke') {
      this.injected.add(m.event);
      this.bus.publishRevoke(m.event);
    } else {
      this.bus.publishRemoteNotice(m.notice);
    }
  }
}

function kindOf(m: ClusterMessage): string {
  return m.kind === 'revoke' ? m.event.kind : m.notice.kind;
}
