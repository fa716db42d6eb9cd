import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import {
  cancelRequest, decodeFields, decodeMessage, passwordMessage, readCString, saslInitialResponse, saslResponse,
  sslRequest, startupMessage, type Message,
} from './codec.js';
import { StreamReader } from './reader.js';
import { md5Response, ScramClient } from './scram.js';
import type { UpstreamTlsMode } from '../shared/database-options.js';

export type UpstreamErrorCode =
  | 'PG_UPSTREAM_CONNECT'
  | 'PG_UPSTREAM_TLS'
  | 'PG_UPSTREAM_AUTH'
  | 'PG_UPSTREAM_REFUSED'
  | 'PG_UPSTREAM_PROTOCOL'
  | 'PG_UPSTREAM_TIMEOUT';

/** The target could not be reached or logged into. `server` holds the target's own ErrorResponse. */
export class UpstreamError extends Error {
  readonly code: UpstreamErrorCode;
  readonly server: Record<string, string> | undefined;
  constructor(code: UpstreamErrorCode, message: string, server?: Record<string, string>) {
    super(message);
    this.name = 'UpstreamError';
    this.code = code;
    this.server = server;
  }
}

/** libpq's sslmode, minus the verify modes: a CA turns verification (and `require`) on. */
export type { UpstreamTlsMode } from '../shared/database-options.js';

export interface UpstreamTls {
  mode: UpstreamTlsMode;
  /** PEM bundle the target's certificate must chain to and name the host with. */
  ca?: string;
}

export interface UpstreamTarget {
  host: string;
  port: number;
  tls: UpstreamTls;
  timeoutMs: number;
}

export interface UpstreamLogin {
  user: string;
  password: string | undefined;
  database: string;
  /** The client's other startup parameters (application_name, client_encoding, options...). */
  params: Map<string, string>;
}

export interface UpstreamConnection {
  socket: Socket | TLSSocket;
  encrypted: boolean;
  /** The target's BackendKeyData (pid + secret), for cancel requests. */
  key: Buffer;
  /** ParameterStatus, NoticeResponse and the final ReadyForQuery, as the target sent them. */
  greeting: Buffer[];
  /** Bytes the target sent after ReadyForQuery (normally none). */
  rest: Buffer;
}

const oneByte = (b: Buffer): { value: number; size: number } | undefined => (b.length >= 1 ? { value: b[0]!, size: 1 } : undefined);
const typed = (b: Buffer): { value: Message; size: number } | undefined => decodeMessage(b);

/**
 * One TLS context per CA bundle (and one for unverified links): building a context parses
 * certificates, which would otherwise be paid on every upstream connection.
 */
const contexts = new Map<string, SecureContext>();
function contextFor(ca: string | undefined): SecureContext {
  const key = ca ?? '';
  let ctx = contexts.get(key);
  if (!ctx) {
    ctx = createSecureContext({ minVersion: 'TLSv1.2', ...(ca ? { ca } : {}) });
    if (contexts.size > 64) contexts.clear();
    contexts.set(key, ctx);
  }
  return ctx;
}

/** TCP, then SSLRequest and TLS when the target accepts it (or must). */
async function openTransport(t: UpstreamTarget): Promise<{ socket: Socket | TLSSocket; encrypted: boolean; reader: StreamReader }> {
  const raw = netConnect({ host: t.host, port: t.port });
  raw.setNoDelay(true);
  raw.on('error', () => {});
  try {
    await new Promise<void>((resolve, reject) => {
      raw.once('connect', resolve);
      raw.once('error', (e) => reject(new UpstreamError('PG_UPSTREAM_CONNECT', `cannot connect to ${t.host}:${t.port}: ${e.message}`)));
    });
    const plain = new StreamReader(raw, 'the target');
    if (t.tls.mode === 'disable') return { socket: raw, encrypted: false, reader: plain };
    raw.write(sslRequest());
    const answer = await plain.read(oneByte);
    const mustTls = t.tls.mode === 'require' || t.tls.ca !== undefined;
    if (answer === 0x4e /* N */) {
      if (mustTls) throw new UpstreamError('PG_UPSTREAM_TLS', `the target ${t.host}:${t.port} does not accept TLS, and this resource requires it`);
      return { socket: raw, encrypted: false, reader: plain };
    }
    if (answer !== 0x53 /* S */) throw new UpstreamError('PG_UPSTREAM_PROTOCOL', 'the target answered SSLRequest with neither S nor N');
    // Bytes before the handshake completes were not encrypted (CVE-2021-23222).
    if (plain.buffered > 0) throw new UpstreamError('PG_UPSTREAM_PROTOCOL', 'the target sent unencrypted data after accepting SSLRequest');
    plain.detach();
    const sock = tlsConnect({
      socket: raw,
      host: t.host,
      ...(isIP(t.host) ? {} : { servername: t.host }),
      secureContext: contextFor(t.tls.ca),
      rejectUnauthorized: t.tls.ca !== undefined,
    });
    sock.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      sock.once('secureConnect', resolve);
      sock.once('error', (e) => reject(new UpstreamError('PG_UPSTREAM_TLS', `TLS to ${t.host}:${t.port} failed: ${e.message}`)));
      sock.once('close', () => reject(new UpstreamError('PG_UPSTREAM_TLS', `TLS to ${t.host}:${t.port} failed: connection closed`)));
    });
    return { socket: sock, encrypted: true, reader: new StreamReader(sock, 'the target') };
  } catch (e) {
    raw.destroy();
    throw e;
  }
}

/** Runs `work` with a deadline; on timeout the socket opened so far is destroyed. */
async function withDeadline<T>(t: UpstreamTarget, work: (onSocket: (s: Socket | TLSSocket) => void) => Promise<T>): Promise<T> {
  let sock: Socket | TLSSocket | undefined;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      sock?.destroy();
      reject(new UpstreamError('PG_UPSTREAM_TIMEOUT', `the target ${t.host}:${t.port} did not answer within ${t.timeoutMs} ms`));
    }, t.timeoutMs);
  });
  try {
    return await Promise.race([work((s) => (sock = s)), timeout]);
  } catch (e) {
    sock?.destroy();
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/** Connects, logs in with the vaulted credentials, and reads up to the first ReadyForQuery. */
export function connectUpstream(t: UpstreamTarget, login: UpstreamLogin): Promise<UpstreamConnection> {
  return withDeadline(t, async (onSocket) => {
    const { socket, encrypted, reader } = await openTransport(t);
    onSocket(socket);
    const params = new Map<string, string>([['user', login.user], ['database', login.database], ...login.params]);
    socket.write(startupMessage(params));
    await authenticate(socket, reader, login);
    const greeting: Buffer[] = [];
    let key: Buffer | undefined;
    for (;;) {
      const m = await reader.read(typed);
      switch (String.fromCharCode(m.type)) {
        case 'K':
          if (m.body.length !== 8) throw new UpstreamError('PG_UPSTREAM_PROTOCOL', 'unexpected BackendKeyData length');
          key = Buffer.from(m.body);
          break;
        case 'S':
        case 'N':
          greeting.push(Buffer.from(m.raw));
          break;
        case 'Z':
          greeting.push(Buffer.from(m.raw));
          return { socket, encrypted, key: key ?? Buffer.alloc(8), greeting, rest: reader.detach() };
        case 'E':
          throw serverError('PG_UPSTREAM_REFUSED', m);
        default:
          throw new UpstreamError('PG_UPSTREAM_PROTOCOL', `unexpected message '${String.fromCharCode(m.type)}' from the target during start-up`);
      }
    }
  });
}

function serverError(code: UpstreamErrorCode, m: Message): UpstreamError {
  const f = decodeFields(m.body);
  return new UpstreamError(code, f.M ?? 'the target refused the connection', f);
}

function need(password: string | undefined, how: string): string {
  if (password === undefined) throw new UpstreamError('PG_UPSTREAM_AUTH', `the target asks for ${how} and the resource has no vaulted password`);
  return password;
}

async function authenticate(socket: Socket | TLSSocket, reader: StreamReader, login: UpstreamLogin): Promise<void> {
  let scram: ScramClient | undefined;
  let scramDone = false;
  for (;;) {
    const m = await reader.read(typed);
    if (m.type === 0x45 /* E */) throw serverError('PG_UPSTREAM_AUTH', m);
    if (m.type === 0x76 /* v: NegotiateProtocolVersion */) continue;
    if (m.type !== 0x52 /* R */ || m.body.length < 4) throw new UpstreamError('PG_UPSTREAM_PROTOCOL', 'expected an authentication request from the target');
    const kind = m.body.readInt32BE(0);
    switch (kind) {
      case 0:
        // A server that started SCRAM must prove it knows the password before we trust it.
        if (scram && !scramDone) throw new UpstreamError('PG_UPSTREAM_AUTH', 'the target skipped the end of SCRAM authentication');
        return;
      case 3:
        socket.write(passwordMessage(need(login.password, 'a cleartext password')));
        break;
      case 5:
        if (m.body.length !== 8) throw new UpstreamError('PG_UPSTREAM_PROTOCOL', 'bad MD5 salt');
        socket.write(passwordMessage(md5Response(login.user, need(login.password, 'an MD5 password'), m.body.subarray(4, 8))));
        break;
      case 10: {
        const offered: string[] = [];
        for (let i = 4; i < m.body.length && m.body[i] !== 0; ) {
          const s = readCString(m.body, i);
          offered.push(s.value);
          i = s.next;
        }
        if (!offered.includes(ScramClient.MECHANISM)) throw new UpstreamError('PG_UPSTREAM_AUTH', `the target offers no supported SASL mechanism (${offered.join(', ')})`);
        scram = new ScramClient(need(login.password, 'SCRAM-SHA-256'));
        socket.write(saslInitialResponse(ScramClient.MECHANISM, scram.clientFirst()));
        break;
      }
      case 11:
        if (!scram) throw new UpstreamError('PG_UPSTREAM_PROTOCOL', 'SASLContinue without SASL');
        socket.write(saslResponse(await scram.clientFinal(m.body.toString('utf8', 4))));
        break;
      case 12:
        if (!scram) throw new UpstreamError('PG_UPSTREAM_PROTOCOL', 'SASLFinal without SASL');
        try {
          scram.verifyServerFinal(m.body.toString('utf8', 4));
        } catch (e) {
          throw new UpstreamError('PG_UPSTREAM_AUTH', `SCRAM with the target failed: ${(e as Error).message}`);
        }
        scramDone = true;
        break;
      default:
        throw new UpstreamError('PG_UPSTREAM_AUTH', `the target asks for an authentication method the gateway does not support (${kind})`);
    }
  }
}

/** Sends a CancelRequest for `key` to the target, the way the session reached it. */
export function sendCancel(t: UpstreamTarget, key: Buffer): Promise<void> {
  return withDeadline(t, async (onSocket) => {
    const { socket, reader } = await openTransport(t);
    onSocket(socket);
    reader.detach();
    socket.on('error', () => {});
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.end(cancelRequest(key));
      socket.resume();
    });
  });
}
