import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { Broker, BrokerSession } from '../../src/broker/broker.js';
import type { Logger } from '../../src/core/log.js';
import type { Resource } from '../../src/core/model.js';
import type { VerifiedPasswords } from '../../src/broker/password-cache.js';
import { authenticateClient } from './auth.js';
import type { CancelKeys } from './cancel.js';
import {
  authenticationCleartextPassword, authenticationOk, backendKeyData, decodeMessage, decodeStartup, negotiateProtocolVersion, PgDecodeError,
  readCString, type StartupPacket,
} from './codec.js';
import { addressingError, denialError, internalError, protocolError, tlsRequiredError, upstreamFailure } from './errors.js';
import { PeerClosedError, StreamReader } from './reader.js';
import { Relay, type StatementEvent } from './relay.js';
import { connectUpstream, sendCancel, UpstreamError, type UpstreamTarget } from './upstream.js';

/** What every client connection of one listener shares. */
export interface ConnectionContext {
  broker: Broker;
  log: Logger;
  secureContext: SecureContext;
  allowPlaintext: boolean;
  passwords: VerifiedPasswords;
  cancelKeys: CancelKeys;
  upstreamFor(resource: Resource): UpstreamTarget;
  handshakeTimeoutMs: number;
  auditLimit: number;
  onStatement: ((e: StatementEvent) => void) | undefined;
  /** Counters for metrics and tests (e.g. that a refused password never reached a target). */
  stats: { upstreamConnects: number; cancelsForwarded: number };
}

/** Parameters that name the gateway-side identity or ask for modes the relay cannot carry. */
const NOT_FORWARDED = new Set(['user', 'database', 'replication']);
const LINGER_MS = 1_000;

type Stream = Socket | TLSSocket;

/** Where the startup phase left the connection. */
interface Started {
  stream: Stream;
  reader: StreamReader;
  encrypted: boolean;
  packet: Extract<StartupPacket, { kind: 'startup' | 'cancel' }>;
}

class Refused extends Error {
  constructor(
    readonly reply: Buffer | undefined,
    why: string,
  ) {
    super(why);
  }
}

/**
 * One client connection: startup negotiation (TLS, GSSENC refusal, cancel), the password,
 * the decision, the upstream login, then the relay. Never throws: every failure ends this
 * connection with a PostgreSQL error (or silently, for cancel requests) and nothing else.
 */
export async function serveConnection(socket: Socket, ctx: ConnectionContext): Promise<void> {
  socket.setNoDelay(true);
  socket.on('error', () => {});
  const client = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
  let stream: Stream = socket;
  const timer = setTimeout(() => stream.destroy(), ctx.handshakeTimeoutMs);
  timer.unref();
  try {
    const started = await negotiate(socket, ctx, (s) => (stream = s));
    if (started.packet.kind === 'cancel') {
      started.reader.detach();
      stream.destroy();
      await forwardCancel(ctx, started.packet.key);
      return;
    }
    await login(started, ctx, client);
  } catch (e) {
    if (e instanceof Refused) {
      if (e.reply) refuse(stream, e.reply);
      else stream.destroy();
      ctx.log.info({ client, why: e.message }, 'postgres connection refused');
    } else if (e instanceof PgDecodeError) {
      refuse(stream, protocolError(e.message, e.sqlstate));
      ctx.log.info({ client, err: e.message }, 'postgres client sent a malformed packet');
    } else if (e instanceof PeerClosedError) {
      stream.destroy();
    } else {
      ctx.log.error({ err: e, client }, 'postgres connection failed');
      refuse(stream, internalError());
    }
  } finally {
    clearTimeout(timer);
  }
}

function refuse(stream: Stream, reply: Buffer): void {
  if (stream.destroyed) return;
  stream.end(reply);
  setTimeout(() => stream.destroy(), LINGER_MS).unref();
}

/** SSLRequest / GSSENCRequest until a StartupMessage or CancelRequest arrives. */
async function negotiate(socket: Socket, ctx: ConnectionContext, setStream: (s: Stream) => void): Promise<Started> {
  let stream: Stream = socket;
  let reader = new StreamReader(socket, 'the client');
  let encrypted = false;
  for (;;) {
    const packet = await reader.read(decodeStartup);
    switch (packet.kind) {
      case 'startup':
      case 'cancel':
        return { stream, reader, encrypted, packet };
      case 'gssenc':
      case 'ssl': {
        if (encrypted) throw new Refused(protocolError('unsupported frontend protocol: SSL already negotiated'), 'second SSLRequest');
        // Anything queued behind the request was sent before encryption: it may be injected
        // by a man in the middle (CVE-2021-23214), so it is never read as the startup.
        if (reader.buffered > 0) {
          throw new Refused(protocolError(`received unencrypted data after ${packet.kind === 'ssl' ? 'SSL' : 'GSSAPI encryption'} request`), 'data after SSLRequest');
        }
        if (packet.kind === 'gssenc') {
          socket.write('N');
          break;
        }
        reader.detach();
        socket.write('S');
        const tls = new TLSSocket(socket, { isServer: true, secureContext: ctx.secureContext });
        tls.on('error', () => {});
        stream = tls;
        setStream(tls);
        await new Promise<void>((resolve, reject) => {
          tls.once('secure', resolve);
          tls.once('error', (e) => reject(new PeerClosedError(`TLS handshake failed: ${e.message}`)));
          tls.once('close', () => reject(new PeerClosedError('closed during the TLS handshake')));
        });
        reader = new StreamReader(tls, 'the client');
        encrypted = true;
        break;
      }
      default: {
        const never: never = packet;
        throw new Error(`unknown startup packet ${JSON.stringify(never)}`);
      }
    }
  }
}

async function forwardCancel(ctx: ConnectionContext, key: Buffer): Promise<void> {
  const t = ctx.cancelKeys.lookup(key);
  if (!t) return;
  ctx.stats.cancelsForwarded++;
  await sendCancel(t.target, t.key).catch((err: unknown) => ctx.log.warn({ err }, 'cancel request to the target failed'));
}

/** `alice:prod-pg`, or user `alice` with database `prod-pg`. */
function address(params: Map<string, string>): { user: string; resource: string } | undefined {
  const raw = params.get('user') ?? '';
  const colon = raw.indexOf(':');
  if (colon > 0 && colon < raw.length - 1) return { user: raw.slice(0, colon), resource: raw.slice(colon + 1) };
  const db = params.get('database');
  if (colon < 0 && raw && db && db !== raw) return { user: raw, resource: db };
  return undefined;
}

const passwordPacket = (b: Buffer): { value: string; size: number } | undefined => {
  const m = decodeMessage(b);
  if (!m) return undefined;
  if (m.value.type !== 0x70 /* p */) throw new PgDecodeError('PG_BAD_MESSAGE', `expected a password response, got message type ${m.value.type}`);
  return { value: readCString(m.value.body, 0).value, size: m.size };
};

/** Password, decision, upstream login and relay. */
async function login(s: Started, ctx: ConnectionContext, client: string): Promise<void> {
  const { stream, reader, packet } = s;
  if (packet.kind !== 'startup') return;
  if (!s.encrypted && !ctx.allowPlaintext) throw new Refused(tlsRequiredError(), 'plaintext startup');
  const unsupported = [...packet.params.keys()].filter((k) => k.startsWith('_pq_.'));
  if (packet.minor > 0 || unsupported.length) stream.write(negotiateProtocolVersion(0, unsupported));
  const repl = packet.params.get('replication');
  if (repl !== undefined && !['false', 'off', 'no', '0'].includes(repl.toLowerCase())) {
    throw new Refused(protocolError('Gatehouse does not relay replication connections', '0A000'), 'replication');
  }
  const who = address(packet.params);
  if (!who) throw new Refused(addressingError(), `no resource in user=${packet.params.get('user') ?? ''}`);

  stream.write(authenticationCleartextPassword());
  const password = await reader.read(passwordPacket);
  const auth = await authenticateClient(ctx.broker, ctx.passwords, who.user, who.resource, password);
  if (!auth.ok) throw new Refused(auth.error, `${who.user} → ${who.resource}: ${auth.why}`);

  const opened = await ctx.broker.open({ user: who.user, resource: who.resource, protocol: 'postgres', client, mfa: auth.mfa });
  if (!opened.ok) throw new Refused(denialError(opened.denial), `${who.user} → ${who.resource}: ${opened.denial.code}`);
  const session = opened.session;
  try {
    await relay(s, ctx, session);
  } catch (e) {
    session.discard(e instanceof Error ? e.message : String(e));
    throw e;
  }
}

async function relay(s: Started, ctx: ConnectionContext, session: BrokerSession): Promise<void> {
  const { stream, reader, packet } = s;
  if (packet.kind !== 'startup') return;
  const resource = session.resource;
  const creds = session.credentials;
  if (!creds?.login) throw new Refused(upstreamFailure(resource.name, new UpstreamError('PG_UPSTREAM_AUTH', 'the resource has no vaulted login')), 'no credentials');
  const params = new Map([...packet.params].filter(([k]) => !NOT_FORWARDED.has(k) && !k.startsWith('_pq_.')));
  const target = ctx.upstreamFor(resource);
  ctx.stats.upstreamConnects++;
  let up;
  try {
    up = await connectUpstream(target, { user: creds.login, password: creds.password, database: resource.database ?? creds.login, params });
  } catch (e) {
    if (e instanceof UpstreamError) throw new Refused(upstreamFailure(resource.name, e), `${resource.name}: ${e.message}`);
    throw e;
  }
  if (stream.destroyed) {
    up.socket.destroy();
    throw new Refused(undefined, 'the client left during the upstream login');
  }
  const key = ctx.cancelKeys.issue({ target, key: up.key });
  const upstream = up.socket;
  const handle = new Relay({
    client: stream, upstream, session, log: ctx.log, auditLimit: ctx.auditLimit, onStatement: ctx.onStatement,
    onFinish: (byBroker) => {
      ctx.cancelKeys.release(key);
      // A statement still running on the target must not outlive the access that started it.
      if (byBroker) void sendCancel(target, up.key).catch(() => undefined);
    },
  });
  const clientRest = reader.detach();
  try {
    await session.live(handle);
  } catch (err) {
    // The session is live in the broker already: end it there, which closes the handle.
    ctx.log.error({ err, session: session.id }, 'could not record a live session');
    session.end('error', 'Gatehouse: the session could not be recorded; try again.');
    return;
  }
  const greeting = [authenticationOk(), ...up.greeting.slice(0, -1), backendKeyData(key), ...up.greeting.slice(-1)];
  handle.start(Buffer.concat(greeting), clientRest, up.rest);
}
