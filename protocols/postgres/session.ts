import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { GatewayPort, GatewaySession, MfaProof, Refusal } from '../../src/broker/port.js';
import { refusals } from '../../src/broker/refusals.js';
import { UpstreamError, type TargetSaid } from '../../src/broker/upstream-error.js';
import type { Resource } from '../../src/core/model.js';
import type { DoorConnection } from '../shared/listener.js';
import type { CancelKeys } from './cancel.js';
import {
  authenticationCleartextPassword, authenticationOk, backendKeyData, decodeMessage, decodeStartup, EncryptionAnswer, Msg, negotiateProtocolVersion,
  PgDecodeError, readCString, type StartupPacket,
} from './codec.js';
import { refusalError } from './errors.js';
import { PeerClosedError, StreamReader } from './reader.js';
import { Relay, type StatementEvent } from './relay.js';
import { handshake } from '../shared/upstream-tls.js';
import { connectUpstream, sendCancel, type UpstreamConnection, type UpstreamTarget } from './upstream.js';
import { NativeEndpoint, NativeRelay, type NativeLoop, type TlsRecords } from './native.js';

/** What every client connection of one listener shares. */
export interface ConnectionContext {
  port: GatewayPort;
  secureContext: SecureContext;
  allowPlaintext: boolean;
  cancelKeys: CancelKeys;
  /** Where and how to reach a resource's target; identity goes through the port. */
  upstreamFor(resource: Resource): UpstreamTarget;
  auditLimit: number;
  onStatement: ((e: StatementEvent) => void) | undefined;
  /** Counters for metrics and tests (e.g. that a refused password never reached a target). */
  stats: { upstreamConnects: number; cancelsForwarded: number; cancelKeys: number };
  /** In a data-path worker: passes a CancelRequest for a session of another worker on to it. */
  cancelElsewhere?: (key: Buffer) => boolean;
  /** The native data path (native.ts) with the door's TLS context, where it is in use. */
  native?: { loop: NativeLoop; context: object; records: TlsRecords };
}

/** Parameters that name the gateway-side identity or ask for modes the relay cannot carry. */
const NOT_FORWARDED = new Set(['user', 'database', 'replication']);
const LINGER_MS = 1_000;
const TLS_HINT = 'connect with sslmode=verify-full sslrootcert=ca.pem (or sslmode=require)';

/**
 * The steps of one client connection, in order. `cancel` is the short way out of `negotiate`;
 * every other failure ends the connection from whatever step it is in.
 */
const Phase = {
  /** SSLRequest / GSSENCRequest until a StartupMessage or CancelRequest arrives. */
  negotiate: 'negotiate',
  /** A CancelRequest: forwarded to the target of the session it names, then closed silently. */
  cancel: 'cancel',
  /** The startup parameters are checked, the password asked for and signed in with (port.login). */
  password: 'password',
  /** The connection-start decision (port.open). */
  decision: 'decision',
  /** TCP, TLS, the target's identity, then the vaulted login; nothing reached the target before. */
  upstream: 'upstream',
  /** The session goes live, the client gets its greeting, bytes flow. */
  relay: 'relay',
  done: 'done',
} as const;
type Phase = (typeof Phase)[keyof typeof Phase];

type Stream = Socket | TLSSocket | NativeEndpoint;

/** Who already audited a refusal: the broker (login, decision), the door (port.refused) or the session (discard). */
type AuditedBy = 'broker' | 'door' | 'session';

/** Ends the connection with a PostgreSQL error (or silently, without a refusal). */
class Refused extends Error {
  constructor(
    readonly refusal: Refusal | undefined,
    why: string,
    readonly auditedBy: AuditedBy,
    readonly targetSaid?: TargetSaid,
  ) {
    super(why);
  }
}

const passwordPacket = (b: Buffer): { value: string; size: number } | undefined => {
  const m = decodeMessage(b);
  if (!m) return undefined;
  if (m.value.type !== Msg.Password) throw new PgDecodeError('PG_BAD_MESSAGE', `expected a password response, got message type ${m.value.type}`);
  return { value: readCString(m.value.body, 0).value, size: m.size };
};

/** Sends the target's cancel for the session a gateway cancel key names, if one of ours does. */
export async function cancelSession(ctx: Pick<ConnectionContext, 'cancelKeys' | 'stats' | 'port'>, key: Buffer): Promise<void> {
  const t = ctx.cancelKeys.lookup(key);
  if (!t) return;
  ctx.stats.cancelsForwarded++;
  await sendCancel(t.target, t.key).catch((err: unknown) => ctx.port.log.warn({ err }, 'cancel request to the target failed'));
}

/** `user=alice:prod-pg` as it is, or `user=alice dbname=prod-pg` as `alice:prod-pg`; port.login judges the result. */
function loginName(params: Map<string, string>): string {
  const user = params.get('user') ?? '';
  const db = params.get('database');
  return user.includes(':') || !db || db === user ? user : `${user}:${db}`;
}

/**
 * One client connection, from the first byte to a live relay (see Phase). Never throws: every
 * failure ends this connection with a PostgreSQL error (or silently, for cancel requests).
 */
export class PgConnection {
  private phase: Phase = Phase.negotiate;
  private stream: Stream;
  private reader: StreamReader;
  private encrypted = false;
  private timedOut = false;
  private startup: Extract<StartupPacket, { kind: 'startup' }> | undefined;
  private cancelKey: Buffer | undefined;
  private who: { user: string; resource: string; mfa: MfaProof } | undefined;
  private session: GatewaySession | undefined;
  private target: UpstreamTarget | undefined;
  private up: UpstreamConnection | undefined;
  /** When each step of the login began (performance.now()), for the debug log's `login timings`. */
  private readonly marks: number[] = [performance.now()];

  constructor(
    private readonly conn: DoorConnection,
    private readonly ctx: ConnectionContext,
  ) {
    conn.socket.setNoDelay(true);
    this.stream = conn.socket;
    this.reader = new StreamReader(conn.socket, 'the client');
    conn.onHandshakeTimeout(() => {
      this.timedOut = true;
      ctx.port.refused(conn.client, refusals.handshakeTimeout(), `in the ${this.phase} step`);
      this.stream.destroy();
    });
  }

  async run(): Promise<void> {
    try {
      while (this.phase !== Phase.done) await this.step();
    } catch (e) {
      this.fail(e);
    }
  }

  private async step(): Promise<void> {
    switch (this.phase) {
      case Phase.negotiate:
        return this.negotiate();
      case Phase.cancel:
        return this.forwardCancel();
      case Phase.password:
        return this.signIn();
      case Phase.decision:
        return this.decide();
      case Phase.upstream:
        return this.connectTarget();
      case Phase.relay:
        return this.relay();
      case Phase.done:
        return;
      default: {
        const never: never = this.phase;
        throw new Error(`unknown postgres phase ${String(never)}`);
      }
    }
  }

  /** SSLRequest / GSSENCRequest until a StartupMessage or CancelRequest. */
  private async negotiate(): Promise<void> {
    const packet = await this.reader.read(decodeStartup);
    switch (packet.kind) {
      case 'startup':
        this.startup = packet;
        this.phase = Phase.password;
        return;
      case 'cancel':
        this.cancelKey = packet.key;
        this.phase = Phase.cancel;
        return;
      case 'unsupported':
        throw this.doorRefusal(
          refusals.notAllowed(`frontend protocol ${packet.major}.${packet.minor}`, 'the gateway speaks protocol 3.0, as every client since PostgreSQL 7.4 does'),
          `frontend protocol ${packet.major}.${packet.minor}`,
        );
      case 'gssenc':
      case 'ssl': {
        if (this.encrypted) throw this.doorRefusal(refusals.protocolError('unsupported frontend protocol: SSL already negotiated'), 'second SSLRequest');
        // Anything queued behind the request was sent before encryption: it may be injected
        // by a man in the middle (CVE-2021-23214), so it is never read as the startup.
        if (this.reader.buffered > 0) {
          const what = packet.kind === 'ssl' ? 'SSL' : 'GSSAPI encryption';
          throw this.doorRefusal(refusals.protocolError(`received unencrypted data after ${what} request`), 'data after SSLRequest');
        }
        const socket = this.conn.socket;
        if (packet.kind === 'gssenc') {
          socket.write(Buffer.from([EncryptionAnswer.Refuse]));
          return;
        }
        this.reader.detach();
        if (this.ctx.native) return this.nativeTls(socket, this.ctx.native);
        socket.write(Buffer.from([EncryptionAnswer.Accept]));
        const tls = new TLSSocket(socket, { isServer: true, secureContext: this.ctx.secureContext });
        tls.on('error', () => {});
        this.stream = tls;
        await handshake(tls, 'secure', (e) => new PeerClosedError(e ? `TLS handshake failed: ${e.message}` : 'closed during the TLS handshake'));
        this.reader = new StreamReader(tls, 'the client');
        this.encrypted = true;
        return;
      }
      default: {
        const never: never = packet;
        throw new Error(`unknown startup packet ${JSON.stringify(never)}`);
      }
    }
  }

  /** The addon answers 'S' and runs the handshake; the login then reads and writes through it. */
  private async nativeTls(socket: Socket, native: { loop: NativeLoop; context: object }): Promise<void> {
    const ep = native.loop.acceptTls(socket, native.context);
    ep.on('error', () => {});
    this.stream = ep;
    try {
      await ep.ready;
    } catch (e) {
      throw new PeerClosedError(`TLS handshake failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    this.reader = new StreamReader(ep, 'the client');
    this.encrypted = true;
  }

  private async forwardCancel(): Promise<void> {
    this.phase = Phase.done;
    this.reader.detach();
    this.stream.destroy();
    if (this.ctx.cancelElsewhere?.(this.cancelKey!)) return;
    await cancelSession(this.ctx, this.cancelKey!);
  }

  /** The startup parameters, then the password: a launch ticket or the user's gateway password. */
  private async signIn(): Promise<void> {
    const packet = this.startup!;
    // Over the listener's limit: said here, after TLS, where psql shows it (libpq reports an
    // error answer to an SSLRequest without its text); a CancelRequest is still served.
    if (this.conn.overLimit) throw this.doorRefusal(refusals.tooManyConnections(), 'over maxConnections');
    if (!this.encrypted && !this.ctx.allowPlaintext) throw this.doorRefusal(refusals.tlsRequired(TLS_HINT), 'plaintext startup');
    const unsupported = [...packet.params.keys()].filter((k) => k.startsWith('_pq_.'));
    if (packet.minor > 0 || unsupported.length) this.stream.write(negotiateProtocolVersion(0, unsupported));
    const repl = packet.params.get('replication');
    if (repl !== undefined && !['false', 'off', 'no', '0'].includes(repl.toLowerCase())) {
      throw this.doorRefusal(refusals.notAllowed('a replication connection', 'Gatehouse relays SQL sessions; replicate from the target directly'), `replication=${repl}`);
    }

    this.marks.push(performance.now());
    this.stream.write(authenticationCleartextPassword());
    const password = await this.reader.read(passwordPacket);
    this.marks.push(performance.now());
    const r = await this.ctx.port.login({ name: loginName(packet.params), secret: { kind: 'password', value: password }, client: this.conn.client });
    if (!r.ok) throw new Refused(r.refusal, `sign-in refused: ${r.code}`, 'broker');
    this.who = { user: r.user, resource: r.resource, mfa: r.mfa };
    this.phase = Phase.decision;
  }

  private async decide(): Promise<void> {
    // A client that left (or timed out) while its password was checked gets no decision.
    if (this.stream.destroyed) throw new PeerClosedError('the client left before the decision');
    const who = this.who!;
    this.marks.push(performance.now());
    const opened = await this.ctx.port.open({ user: who.user, resource: who.resource, client: this.conn.client, mfa: who.mfa });
    if (!opened.ok) throw new Refused(opened.refusal, `${who.user} → ${who.resource}: ${opened.refusal.code}`, 'broker');
    this.session = opened.session;
    this.phase = Phase.upstream;
  }

  /** The target's identity is checked right after TLS, before the startup and the password. */
  private async connectTarget(): Promise<void> {
    this.marks.push(performance.now());
    const session = this.session!;
    if (this.stream.destroyed) throw this.clientGone();
    const resource = session.resource;
    const creds = session.credentials;
    if (!creds?.login) throw this.targetRefusal(new UpstreamError('no_credentials', 'the resource has no vaulted login'));
    const params = new Map([...this.startup!.params].filter(([k]) => !NOT_FORWARDED.has(k) && !k.startsWith('_pq_.')));
    this.target = this.ctx.upstreamFor(resource);
    this.ctx.stats.upstreamConnects++;
    try {
      // A client on the native data path gets its target leg there too: the relay joins the two.
      const native = this.stream instanceof NativeEndpoint ? this.ctx.native?.loop : undefined;
      this.up = await connectUpstream(this.target, { user: creds.login, password: creds.password, database: resource.database ?? creds.login, params }, native);
    } catch (e) {
      if (e instanceof UpstreamError) throw this.targetRefusal(e);
      throw e;
    }
    if (this.stream.destroyed) {
      this.up.socket.destroy();
      throw this.clientGone();
    }
    this.phase = Phase.relay;
  }

  /** The client is gone before the session went live: the attempt ends without a word to anyone. */
  private clientGone(): Refused {
    const why = 'the client left before the target was reached';
    if (this.timedOut) this.session!.discard('handshake_timeout', why);
    else this.session!.end('client_closed', why);
    return new Refused(undefined, why, 'session');
  }

  private async relay(): Promise<void> {
    this.marks.push(performance.now());
    this.phase = Phase.done;
    const session = this.session!;
    const target = this.target!;
    const up = this.up!;
    const { cancelKeys, port } = this.ctx;
    const targetKey = up.key;
    const key = cancelKeys.issue({ target, key: targetKey });
    const { stats } = this.ctx;
    stats.cancelKeys = cancelKeys.size;
    const relayOptions = {
      session, log: port.log, auditLimit: this.ctx.auditLimit, onStatement: this.ctx.onStatement,
      // Holds the target and its key only: the login's leftovers (greeting, startup) go with this connection object.
      onFinish: (byBroker: boolean, targetBusy: boolean) => {
        cancelKeys.release(key);
        stats.cancelKeys = cancelKeys.size;
        // A statement still running on the target must not outlive the access that started it;
        // an idle session has none, and a mass teardown would otherwise open a connection per session.
        if (byBroker && targetBusy) void sendCancel(target, targetKey).catch(() => undefined);
      },
    };
    const client = this.stream;
    // A plaintext target leg logged in on Node's socket (upstream.ts): the addon takes it now,
    // in the turn the login's last read was detached in, so no byte can be read in between.
    const upstream = client instanceof NativeEndpoint && !(up.socket instanceof NativeEndpoint) && !(up.socket instanceof TLSSocket)
      ? this.ctx.native!.loop.plain(up.socket)
      : up.socket;
    let clientRest = this.reader.detach();
    let upstreamRest = up.rest;
    let handle: Relay | NativeRelay;
    let stopped: Promise<[Buffer, Buffer]> | undefined;
    if (client instanceof NativeEndpoint && upstream instanceof NativeEndpoint) {
      // Whatever the addon read after the login's last message is still on its way up: waited
      // for (while the session is recorded live), and relayed first.
      stopped = Promise.all([client.stop(), upstream.stop()]);
      const { loop, records } = this.ctx.native!;
      handle = new NativeRelay({ loop, records, release: this.conn.keep(), ...relayOptions }, client, upstream);
    } else if (!(client instanceof NativeEndpoint) && !(upstream instanceof NativeEndpoint)) {
      handle = new Relay({ client, upstream, ...relayOptions });
    } else throw new Error('one leg on the native data path and the other not');
    this.conn.established();
    try {
      // A plaintext target leg (only for a resource with allowPlaintextUpstream, only with SCRAM) is on the record.
      await session.live(handle, { upstreamTls: up.encrypted });
    } catch (err) {
      // The session is live in the broker already: end it there, which closes the handle.
      port.log.error({ err, session: session.id }, 'could not record a live session');
      session.end('error', 'Gatehouse: the session could not be recorded; try again.');
      return;
    }
    if (stopped) {
      const [c, u] = await stopped;
      clientRest = Buffer.concat([clientRest, c]);
      upstreamRest = Buffer.concat([upstreamRest, u]);
    }
    const greeting = [authenticationOk(), ...up.greeting.slice(0, -1), backendKeyData(key), ...up.greeting.slice(-1)];
    handle.start(Buffer.concat(greeting), clientRest, upstreamRest);
    if (port.log.isLevelEnabled('debug')) port.log.debug({ session: session.id, ms: this.timings() }, 'login timings');
  }

  /**
   * Milliseconds per step, from accept to the greeting: `tls` (SSLRequest, handshake and
   * StartupMessage), `ask` (asking for the password until it came), `signIn`, `decision`, `target`
   * (connect, TLS, login and greeting of the target) and `live` (hand-over and the live record).
   */
  private timings(): Record<string, number> {
    const m = [...this.marks, performance.now()];
    const names = ['tls', 'ask', 'signIn', 'decision', 'target', 'live'];
    return Object.fromEntries(names.map((n, i) => [n, Math.round((m[i + 1]! - m[i]!) * 1000) / 1000]));
  }

  private doorRefusal(refusal: Refusal, why: string): Refused {
    return new Refused(refusal, why, 'door');
  }

  /** The decision allowed the session but the target could not be used: the attempt is discarded. */
  private targetRefusal(e: UpstreamError): Refused {
    const session = this.session!;
    const refusal = refusals.target(e.refusalCode, session.resource.name, e.message, e.hint);
    session.discard(e.refusalCode, e.message);
    return new Refused(refusal, `${session.resource.name}: ${e.message}`, 'session', e.targetSaid);
  }

  private fail(e: unknown): void {
    const { port } = this.ctx;
    const client = this.conn.client;
    const phase = this.phase;
    this.phase = Phase.done;
    let r: Refused;
    if (e instanceof Refused) r = e;
    else if (e instanceof PgDecodeError && phase === Phase.negotiate && e.code === 'PG_BAD_LENGTH') {
      // PostgreSQL itself closes such a connection without a word (a COMMERROR, logged only):
      // a client that sends Terminate before any startup (node-postgres's connect() then end())
      // must not get an ErrorResponse it has no parser state for. It is still audited here.
      port.refused(client, refusals.protocolError(e.message), `${e.code} in the ${phase} step (closed silently, as PostgreSQL does)`);
      r = new Refused(undefined, e.message, 'door');
    } else if (e instanceof PgDecodeError) r = this.doorRefusal(refusals.protocolError(e.message), `${e.code} in the ${phase} step`);
    else if (e instanceof PeerClosedError) r = new Refused(undefined, e.message, 'door');
    else {
      port.log.error({ err: e, client }, 'postgres connection failed');
      r = this.doorRefusal(refusals.internalError(), e instanceof Error ? e.message : String(e));
    }
    if (this.session && r.auditedBy !== 'session') this.session.discard(r.refusal?.code ?? 'internal_error', r.message);
    if (r.refusal && r.auditedBy === 'door') port.refused(client, r.refusal, r.message);
    if (r.refusal) this.refuse(refusalError(r.refusal, r.targetSaid));
    else this.stream.destroy();
    port.log.info({ client, phase, code: r.refusal?.code, why: r.message }, 'postgres connection refused');
  }

  private refuse(reply: Buffer): void {
    const stream = this.stream;
    if (stream.destroyed) return;
    stream.end(reply);
    setTimeout(() => stream.destroy(), LINGER_MS).unref();
  }
}
