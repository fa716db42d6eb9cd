import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { SessionHandle } from '../../src/broker/adapter.js';
import type { GatewaySession } from '../../src/broker/port.js';
import { refusals } from '../../src/broker/refusals.js';
import type { Logger } from '../../src/core/log.js';
import type { TerminationReason } from '../../src/core/model.js';
import { Framer, MAX_CLIENT_MESSAGE, MAX_SERVER_MESSAGE, Msg, PgDecodeError, readCString, terminate } from './codec.js';
import { refusalError, teardownError, warningNotice } from './errors.js';

/** One statement a client sent, for the audit trail. Parameters of Bind are never captured. */
export interface StatementEvent {
  sessionId: string;
  user: string;
  resource: string;
  kind: 'query' | 'parse';
  sql: string;
  /** The statement was longer than the capture limit. */
  truncated: boolean;
}

/** What a relay (this one on Node's streams, or native.ts's) is told besides its two legs. */
export interface RelayDuties {
  session: GatewaySession;
  log: Logger;
  /** Bytes of SQL kept per statement. */
  auditLimit: number;
  onStatement: ((e: StatementEvent) => void) | undefined;
  /**
   * Runs once when the relay is over, whoever ended it; `byBroker` when the gateway cut it,
   * `targetBusy` unless every request the client sent had its ReadyForQuery back (an idle
   * session has no statement on the target to cancel).
   */
  onFinish: (byBroker: boolean, targetBusy: boolean) => void;
}

export interface RelayOptions extends RelayDuties {
  client: Socket | TLSSocket;
  upstream: Socket | TLSSocket;
}

/** How long a teardown waits for the target to finish the message in flight to the client. */
const BOUNDARY_WAIT_MS = 250;
/** After the goodbye, how long the client has to read it before its socket is destroyed. */
const LINGER_MS = 100;
/**
 * After the client's socket closed, how long the target leg is kept before its Terminate. Ending
 * a backend costs the target a process exit; in a mass teardown a thousand of them would compete
 * with the goodbyes still on their way to the clients. A running statement is cancelled at once
 * (onFinish), whatever this says.
 */
const UPSTREAM_GRACE_MS = 250;

/**
 * The hot path of one session, and its SessionHandle. Client bytes are framed (type and
 * length, plus the SQL of Query/Parse for the audit) and forwarded as received; target
 * bytes are forwarded as received, only counted and framed so the gateway knows where it
 * may slip in a message of its own (a warning, the final FATAL) without splitting one.
 */
export class Relay implements SessionHandle {
  // The options' sockets and session, held directly: the per-chunk handlers read them on every call.
  private readonly client: Socket | TLSSocket;
  private readonly upstream: Socket | TLSSocket;
  private readonly session: GatewaySession;
  private readonly c2s: Framer;
  private readonly s2c: Framer;
  /** Client requests (Query, Sync, FunctionCall) still waiting for their ReadyForQuery. */
  private awaiting = 0;
  private readonly pendingNotices: Buffer[] = [];
  private started = false;
  private closing: Buffer | undefined;
  private finished = false;
  /** The client said Terminate: whoever's socket closes first, the client ended it. */
  private terminated = false;

  constructor(private readonly o: RelayOptions) {
    this.client = o.client;
    this.upstream = o.upstream;
    this.session = o.session;
    const audit = o.onStatement !== undefined || o.log.isLevelEnabled('debug');
    // The message-start hooks run once per message anyway; they also count requests and
    // their ReadyForQuery answers (nothing is captured from the target's side).
    this.s2c = new Framer(MAX_SERVER_MESSAGE, {
      types: (t) => {
        if (t === Msg.ReadyForQuery && this.awaiting > 0) this.awaiting--;
        return false;
      },
      limit: 0,
      done: () => undefined,
    });
    this.c2s = new Framer(MAX_CLIENT_MESSAGE, {
      types: (t) => {
        if (t === Msg.Query || t === Msg.Sync || t === Msg.FunctionCall) this.awaiting++;
        return t === Msg.Terminate || (audit && (t === Msg.Query || t === Msg.Parse));
      },
      limit: o.auditLimit,
      done: (t, prefix, len) => (t === Msg.Terminate ? (this.terminated = true) : this.statement(t, prefix, len)),
    });
  }

  /** Sends the greeting, then moves bytes both ways until one side or the broker ends it. */
  start(greeting: Buffer, clientRest: Buffer, upstreamRest: Buffer): void {
    const { client, upstream } = this;
    if (this.finished) return;
    this.started = true;
    client.on('data', this.onClientData);
    upstream.on('data', this.onUpstreamData);
    client.on('drain', () => this.closing || upstream.resume());
    upstream.on('drain', () => this.closing || client.resume());
    client.on('close', () => this.sideClosed('client_closed'));
    upstream.on('close', () => this.sideClosed(this.terminated ? 'client_closed' : 'target_closed'));
    client.write(greeting);
    for (const n of this.pendingNotices.splice(0)) client.write(n);
    if (upstreamRest.length) this.onUpstreamData(upstreamRest);
    if (clientRest.length) this.onClientData(clientRest);
    if (this.finished) return;
    if (client.destroyed) return this.sideClosed('client_closed');
    if (upstream.destroyed) return this.sideClosed(this.terminated ? 'client_closed' : 'target_closed');
    client.resume();
    upstream.resume();
  }

  warn(message: string): void {
    if (this.finished || this.closing) return;
    const notice = warningNotice(message);
    if (this.started && this.s2c.atBoundary) this.client.write(notice);
    else this.pendingNotices.push(notice);
  }

  /** Idempotent. Stops client input at once; the FATAL goes out at the next message boundary. */
  close(_reason: TerminationReason, message: string): void {
    if (this.finished || this.closing) return;
    this.closing = teardownError(message);
    this.client.off('data', this.onClientData);
    this.client.pause();
    if (!this.started || this.s2c.atBoundary) return this.finish(true, true);
    this.upstream.resume();
    setTimeout(() => this.finish(false, true), BOUNDARY_WAIT_MS).unref();
  }

  private readonly onClientData = (chunk: Buffer): void => {
    if (this.finished) return;
    try {
      this.c2s.feed(chunk);
    } catch (e) {
      if (!(e instanceof PgDecodeError)) throw e;
      this.o.log.warn({ session: this.session.id, err: e.message }, 'client broke the protocol; closing');
      this.closing = refusalError(refusals.protocolError(e.message));
      this.finish(this.s2c.atBoundary, false);
      this.session.end('error', `client protocol violation: ${e.message}`);
      return;
    }
    this.session.bytesIn += chunk.length;
    if (!this.upstream.write(chunk)) this.client.pause();
  };

  private readonly onUpstreamData = (chunk: Buffer): void => {
    if (this.finished) return;
    this.session.bytesOut += chunk.length;
    if (this.closing) return this.drainToGoodbye(chunk);
    try {
      this.s2c.feed(chunk);
    } catch (e) {
      return this.targetBroke(e as Error);
    }
    const ok = this.client.write(chunk);
    if (this.pendingNotices.length > 0 && this.s2c.atBoundary) {
      for (const n of this.pendingNotices.splice(0)) this.client.write(n);
    }
    if (!ok) this.upstream.pause();
  };

  /** Tearing down: delivers only the rest of the message in flight, then says goodbye. */
  private drainToGoodbye(chunk: Buffer): void {
    let n: number;
    try {
      n = this.s2c.feed(chunk, true);
    } catch (e) {
      return this.targetBroke(e as Error);
    }
    this.client.write(n === chunk.length ? chunk : chunk.subarray(0, n));
    if (this.s2c.atBoundary) this.finish(true, true);
  }

  private targetBroke(e: Error): void {
    this.o.log.warn({ session: this.session.id, err: e.message }, 'target broke the protocol; closing');
    this.finish(false, false);
    this.session.end('error', `target protocol violation: ${e.message}`);
  }

  private sideClosed(reason: 'client_closed' | 'target_closed'): void {
    if (this.finished) return;
    // Finish first: the broker's close() that follows must not send a goodbye of ours.
    this.finish(false, false);
    this.session.end(reason);
  }

  /** Ends both sockets: the client gets `closing` if a goodbye is due and possible. */
  private finish(goodbye: boolean, byBroker: boolean): void {
    if (this.finished) return;
    this.finished = true;
    const { client, upstream } = this;
    client.off('data', this.onClientData);
    upstream.off('data', this.onUpstreamData);
    if (goodbye && this.closing && !client.destroyed) {
      client.end(this.closing);
      setTimeout(() => client.destroy(), LINGER_MS).unref();
    } else if (!client.destroyed) {
      // A half-delivered message cannot be followed by ours; the client sees a plain close.
      client.end();
      setTimeout(() => client.destroy(), LINGER_MS).unref();
    }
    if (!upstream.destroyed) {
      // The target leg ends once the client's socket has closed (at most LINGER_MS from here) and
      // UPSTREAM_GRACE_MS more: in a mass teardown every client gets its goodbye and its close
      // before backends on the target start to exit.
      const bye = (): void => {
        if (upstream.destroyed) return;
        upstream.end(terminate());
        setTimeout(() => upstream.destroy(), LINGER_MS).unref();
      };
      if (client.destroyed) bye();
      else client.once('close', () => setTimeout(bye, UPSTREAM_GRACE_MS).unref());
    }
    this.o.onFinish(byBroker, this.awaiting > 0 || !this.s2c.atBoundary);
  }

  private statement(type: number, prefix: Buffer, bodyLength: number): void {
    auditStatement(this.o, type, prefix, bodyLength);
  }
}

/**
 * One Query or Parse for the audit: `prefix` is the first bytes of its body, `bodyLength` all of
 * it. Goes to the debug log and the onStatement hook (whose failure is only logged).
 */
export function auditStatement(o: RelayDuties, type: number, prefix: Buffer, bodyLength: number): void {
  const s = o.session;
  // Query is the SQL; Parse is the statement name, then the SQL.
  const sql = type === Msg.Query ? readCString(prefix, 0).value : readCString(prefix, readCString(prefix, 0).next).value;
  const e: StatementEvent = { sessionId: s.id, user: s.user, resource: s.resource.name, kind: type === Msg.Query ? 'query' : 'parse', sql, truncated: bodyLength > prefix.length };
  o.log.debug({ session: e.sessionId, kind: e.kind, sql: e.sql, truncated: e.truncated }, 'statement');
  try {
    o.onStatement?.(e);
  } catch (err) {
    o.log.warn({ err }, 'statement hook failed');
  }
}
