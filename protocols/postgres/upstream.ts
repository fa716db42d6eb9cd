import { connect as netConnect, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { TargetIdentity } from '../../src/broker/port.js';
import { UpstreamError, type UpstreamErrorKind } from '../../src/broker/upstream-error.js';
import {
  Auth, cancelRequest, decodeFields, decodeMessage, EncryptionAnswer, Msg, passwordMessage, readCString, saslInitialResponse, saslResponse,
  sslRequest, startupMessage, type Message,
} from './codec.js';
import { tlsToTarget, withDeadline as deadline } from '../shared/upstream-tls.js';
import { PeerClosedError, StreamReader } from './reader.js';
import { md5Response, ScramClient, ScramError } from './scram.js';
import { identityOf, type NativeEndpoint, type NativeLoop } from './native.js';
/**
 * Whether the target leg may be plaintext, decided per resource (see index.ts):
 * - `never` (the default): SSLRequest, and the target must accept it; its identity (CA or pin)
 *   is verified before a byte of the startup or the password is written.
 * - `if-declined`: the resource allows a plaintext target (`options.allowPlaintextUpstream`):
 *   TLS with the identity verified when the target accepts SSLRequest, plaintext when it
 *   answers N — unless a TLS certificate is pinned for it (then that N is a downgrade).
 * - `always`: as `if-declined`, and the adapter's `upstreamTls` is 'disable' (benchmarks,
 *   tests): no SSLRequest at all.
 * Whatever the mode, a cleartext or MD5 password is only ever sent inside TLS: plaintext
 * targets get SCRAM-SHA-256 or nothing.
 */
export type PlaintextUpstream = 'never' | 'if-declined' | 'always';

export interface UpstreamTls {
  plaintext: PlaintextUpstream;
  /** PEM bundle the target's certificate must chain to and name the host with. */
  ca?: string;
  /**
   * A TLS certificate is pinned for the resource: a target that now answers SSLRequest with N
   * is refused instead of being logged into in the clear, whatever `plaintext` says.
   */
  pinned?: boolean;
}

export interface UpstreamTarget {
  /** The resource this target is, for the sentences of a refusal. */
  resource: string;
  host: string;
  port: number;
  tls: UpstreamTls;
  timeoutMs: number;
  /**
   * The one identity policy (port.verifyTarget): called right after the TLS handshake, before
   * a byte of the startup or the password is written; throws UpstreamError('identity').
   */
  verify(identity: TargetIdentity): Promise<unknown>;
}

export interface UpstreamLogin {
  user: string;
  password: string | undefined;
  database: string;
  /** The client's other startup parameters (application_name, client_encoding, options...). */
  params: Map<string, string>;
}

export interface UpstreamConnection<S = Socket | TLSSocket | NativeEndpoint> {
  /** Node's socket, or the addon's (native.ts) when the login ran on the native data path. */
  socket: S;
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
 * TCP, then SSLRequest and TLS when the target accepts it (or must), then the target's
 * identity: nothing of the login is written before the certificate passed `verify`.
 */
async function openTransport(
  t: UpstreamTarget,
  onSocket: (s: { destroy(): unknown }) => void,
  native?: NativeLoop,
): Promise<{ socket: Socket | TLSSocket | NativeEndpoint; encrypted: boolean; reader: StreamReader }> {
  const raw = netConnect({ host: t.host, port: t.port });
  onSocket(raw);
  raw.setNoDelay(true);
  raw.on('error', () => {});
  try {
    await new Promise<void>((resolve, reject) => {
      raw.once('connect', resolve);
      raw.once('error', (e) => reject(new UpstreamError('unreachable', `cannot connect to ${t.host}:${t.port}: ${e.message}`)));
    });
    // A plaintext leg logs in on Node's socket on either data path: the native one takes it at
    // the relay's start (session.ts), so the login's messages do not cross threads.
    const plain = new StreamReader(raw, 'the target');
    if (t.tls.plaintext === 'always') return { socket: raw, encrypted: false, reader: plain };
    raw.write(sslRequest());
    const answer = await plain.read(oneByte);
    if (answer === EncryptionAnswer.Refuse) {
      if (t.tls.plaintext === 'never') {
        throw new UpstreamError('tls', `the target ${t.host}:${t.port} does not accept TLS, and ${t.resource} requires it`, undefined,
          `turn TLS on at the target (ssl = on); only a lab target may go without it, if an administrator sets options.allowPlaintextUpstream for ${t.resource}`);
      }
      if (t.tls.pinned) throw new UpstreamError('identity', `the target ${t.host}:${t.port} no longer accepts TLS while its TLS certificate is pinned; refusing to log in in the clear`);
      return { socket: raw, encrypted: false, reader: plain };
    }
    if (answer !== EncryptionAnswer.Accept) throw new UpstreamError('protocol', 'the target answered SSLRequest with neither S nor N');
    // Bytes before the handshake completes were not encrypted (CVE-2021-23222).
    if (plain.buffered > 0) throw new UpstreamError('protocol', 'the target sent unencrypted data after accepting SSLRequest');
    plain.detach();
    if (native) {
      const ep = await nativeTls(native, raw, t, onSocket);
      return { socket: ep, encrypted: true, reader: new StreamReader(ep, 'the target') };
    }
    const sock = await tlsToTarget(raw, { host: t.host, port: t.port, ...(t.tls.ca ? { ca: t.tls.ca } : {}), verify: t.verify });
    return { socket: sock, encrypted: true, reader: new StreamReader(sock, 'the target') };
  } catch (e) {
    raw.destroy();
    throw e;
  }
}

/** TLS to the target by the addon, then the identity policy: tlsToTarget's steps, on the native data path. */
async function nativeTls(native: NativeLoop, raw: Socket, t: UpstreamTarget, onSocket: (s: { destroy(): unknown }) => void): Promise<NativeEndpoint> {
  const ep = native.connectTls(raw, t.host, t.tls.ca);
  onSocket(ep);
  let handshake;
  try {
    handshake = await ep.ready;
  } catch (e) {
    throw new UpstreamError('tls', `TLS to ${t.host}:${t.port} failed: ${e instanceof Error ? e.message : String(e)}`);
  }
  const identity = identityOf(handshake, t.tls.ca !== undefined);
  if (!identity) throw new UpstreamError('identity', 'the target presented no TLS certificate');
  await t.verify(identity);
  return ep;
}

/** A deadline on a target exchange; a target that hangs up mid-way is unreachable, like one that never answered. */
function withDeadline<T>(t: UpstreamTarget, work: (onSocket: (s: { destroy(): unknown }) => void) => Promise<T>): Promise<T> {
  return deadline(t, work, (e) => (e instanceof PeerClosedError ? new UpstreamError('unreachable', `the target ${t.host}:${t.port} closed the connection during start-up`) : undefined));
}

/** Connects, logs in with the vaulted credentials, and reads up to the first ReadyForQuery. */
export function connectUpstream(t: UpstreamTarget, login: UpstreamLogin): Promise<UpstreamConnection<Socket | TLSSocket>>;
export function connectUpstream(t: UpstreamTarget, login: UpstreamLogin, native: NativeLoop | undefined): Promise<UpstreamConnection>;
export function connectUpstream(t: UpstreamTarget, login: UpstreamLogin, native?: NativeLoop): Promise<UpstreamConnection> {
  return withDeadline(t, async (onSocket) => {
    const { socket, encrypted, reader } = await openTransport(t, onSocket, native);
    const params = new Map<string, string>([['user', login.user], ['database', login.database], ...login.params]);
    socket.write(startupMessage(params));
    await authenticate(socket, reader, login, encrypted ? 'tls' : t.tls.plaintext === 'never' ? 'none' : 'scram-only');
    const greeting: Buffer[] = [];
    let key: Buffer | undefined;
    for (;;) {
      const m = await reader.read(typed);
      switch (m.type) {
        case Msg.BackendKeyData:
          if (m.body.length !== 8) throw new UpstreamError('protocol', 'unexpected BackendKeyData length');
          key = Buffer.from(m.body);
          break;
        case Msg.ParameterStatus:
        case Msg.NoticeResponse:
          greeting.push(Buffer.from(m.raw));
          break;
        case Msg.ReadyForQuery:
          greeting.push(Buffer.from(m.raw));
          return { socket, encrypted, key: key ?? Buffer.alloc(8), greeting, rest: reader.detach() };
        case Msg.ErrorResponse:
          throw serverError('login', m);
        default:
          throw new UpstreamError('protocol', `unexpected message '${String.fromCharCode(m.type)}' from the target during start-up`);
      }
    }
  });
}

/** The target's own ErrorResponse, kept as it said it (SQLSTATE, message, every field). */
function serverError(kind: UpstreamErrorKind, m: Message): UpstreamError {
  const f = decodeFields(m.body);
  return new UpstreamError(kind, f.M ?? 'the target refused the connection', { ...(f.C ? { code: f.C } : {}), ...(f.M ? { message: f.M } : {}), fields: f });
}

function need(password: string | undefined, how: string): string {
  if (password === undefined) throw new UpstreamError('no_credentials', `the target asks for ${how} and the resource has no vaulted password`);
  return password;
}

/**
 * What may be sent over this link: anything inside TLS whose identity was verified or pinned
 * (openTransport returns no other TLS), only SCRAM on a plaintext link the resource allows,
 * nothing at all otherwise.
 */
type LinkTrust = 'tls' | 'scram-only' | 'none';

function mayAnswer(trust: LinkTrust, how: 'a cleartext password' | 'an MD5 password' | 'SCRAM-SHA-256'): void {
  if (trust === 'tls' || (trust === 'scram-only' && how === 'SCRAM-SHA-256')) return;
  const why = trust === 'none' ? 'this resource requires TLS' : 'it is only ever sent inside TLS';
  throw new UpstreamError('tls', `the target asks for ${how} without TLS; ${why}`);
}

async function authenticate(socket: Socket | TLSSocket | NativeEndpoint, reader: StreamReader, login: UpstreamLogin, trust: LinkTrust): Promise<void> {
  let scram: ScramClient | undefined;
  let scramDone = false;
  for (;;) {
    const m = await reader.read(typed);
    if (m.type === Msg.ErrorResponse) throw serverError('login', m);
    if (m.type === Msg.NegotiateProtocolVersion) continue;
    if (m.type !== Msg.Authentication || m.body.length < 4) throw new UpstreamError('protocol', 'expected an authentication request from the target');
    const kind = m.body.readInt32BE(0);
    switch (kind) {
      case Auth.Ok:
        // A server that started SCRAM must prove it knows the password before we trust it.
        if (scram && !scramDone) throw new UpstreamError('identity', 'the target skipped the end of SCRAM authentication');
        return;
      case Auth.CleartextPassword:
        mayAnswer(trust, 'a cleartext password');
        socket.write(passwordMessage(need(login.password, 'a cleartext password')));
        break;
      case Auth.MD5Password:
        mayAnswer(trust, 'an MD5 password');
        if (m.body.length !== 8) throw new UpstreamError('protocol', 'bad MD5 salt');
        socket.write(passwordMessage(md5Response(login.user, need(login.password, 'an MD5 password'), m.body.subarray(4, 8))));
        break;
      case Auth.SASL: {
        const offered: string[] = [];
        for (let i = 4; i < m.body.length && m.body[i] !== 0; ) {
          const s = readCString(m.body, i);
          offered.push(s.value);
          i = s.next;
        }
        if (!offered.includes(ScramClient.MECHANISM)) throw new UpstreamError('capability', `the target offers no supported SASL mechanism (${offered.join(', ')})`);
        mayAnswer(trust, 'SCRAM-SHA-256');
        scram = new ScramClient(need(login.password, 'SCRAM-SHA-256'));
        socket.write(saslInitialResponse(ScramClient.MECHANISM, scram.clientFirst()));
        break;
      }
      case Auth.SASLContinue:
        if (!scram) throw new UpstreamError('protocol', 'SASLContinue without SASL');
        socket.write(saslResponse(await scramStep(() => scram!.clientFinal(m.body.toString('utf8', 4)), 'protocol')));
        break;
      case Auth.SASLFinal:
        if (!scram) throw new UpstreamError('protocol', 'SASLFinal without SASL');
        // A server that cannot prove it knows the password is not the target the vault knows.
        await scramStep(async () => scram!.verifyServerFinal(m.body.toString('utf8', 4)), 'identity');
        scramDone = true;
        break;
      default:
        throw new UpstreamError('capability', `the target asks for an authentication method the gateway does not support (${kind})`);
    }
  }
}

async function scramStep<T>(step: () => Promise<T>, kind: UpstreamErrorKind): Promise<T> {
  try {
    return await step();
  } catch (e) {
    if (e instanceof ScramError) throw new UpstreamError(kind, `SCRAM with the target failed: ${e.message}`);
    throw e;
  }
}

/** Sends a CancelRequest for `key` to the target, the way the session reached it. */
export function sendCancel(t: UpstreamTarget, key: Buffer): Promise<void> {
  return withDeadline(t, async (onSocket) => {
    const { socket, reader } = await openTransport(t, onSocket);
    reader.detach();
    socket.on('error', () => {});
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.end(cancelRequest(key));
      socket.resume();
    });
  });
}
