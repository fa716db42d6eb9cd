/**
 * The target leg, the gateway in the client's role: TLS when the target offers it (checked
 * against the resource's CA, or pinned on first use, both through the broker's one target
 * identity policy), a HandshakeResponse41 carrying the vaulted login, the auth plugins a
 * target may ask for, and the deferred COM_INIT_DB.
 */
import { createHash } from 'node:crypto';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { GatewayPort } from '../../src/broker/port.js';
import { UpstreamError, type TargetSaid } from '../../src/broker/upstream-error.js';
import { Cap, CLIENT_MYSQL, Cmd, decodeAuthPacket, decodeErr, MariaCap, Reply, type ErrFields } from './codec.js';
import { decodeHandshakeV10, encodeHandshakeResponse, encodeSslRequest, type HandshakeV10 } from './handshake.js';
import { RELAYED_CAPS, RELAYED_MARIADB_CAPS } from './profile.js';
import { PacketReader } from './reader.js';
import {
  CACHING_SHA2,
  cachingSha2Token,
  CLEAR_PASSWORD,
  clearPasswordPayload,
  NATIVE_PASSWORD,
  nativePasswordToken,
  rsaEncryptPassword,
  Sha2,
} from './scramble.js';
import type { UpstreamTlsMode } from '../shared/database-options.js';
import { identityOf, type NativeLoop } from '../shared/native.js';

/** Flags that change the shape of server packets: if the client has one, the target must too. */
const SHAPING: Array<[number, string]> = [
  [Cap.DEPRECATE_EOF, 'CLIENT_DEPRECATE_EOF'],
  [Cap.SESSION_TRACK, 'CLIENT_SESSION_TRACK'],
  [Cap.PROTOCOL_41, 'CLIENT_PROTOCOL_41'],
  [Cap.SECURE_CONNECTION, 'CLIENT_SECURE_CONNECTION'],
];

/** MariaDB flags that change the content the client parses: if the client has one, the target must too. */
const MARIADB_SHAPING: Array<[number, string]> = [
  [MariaCap.EXTENDED_METADATA, 'MARIADB_CLIENT_EXTENDED_METADATA'],
  [MariaCap.CACHE_METADATA, 'MARIADB_CLIENT_CACHE_METADATA'],
  [MariaCap.BULK_UNIT_RESULTS, 'MARIADB_CLIENT_BULK_UNIT_RESULTS'],
];

const MAX_AUTH_ROUNDS = 8;

export type { UpstreamTlsMode } from '../shared/database-options.js';

/** The target's own ERR, as UpstreamError carries it: errno and SQLSTATE in `fields`. */
export function targetSaid(err: ErrFields): TargetSaid {
  return { code: String(err.errno), message: err.message, fields: { errno: err.errno, sqlstate: err.sqlstate } };
}

export interface UpstreamOptions {
  host: string;
  port: number;
  login: string;
  password: string;
  database?: string;
  /** The client's negotiated flags. */
  clientCapabilities: number;
  /** The client's negotiated MariaDB extended flags (0 for a MySQL client). */
  clientMariadbCapabilities: number;
  charset: number;
  maxPacket: number;
  /** PEM CA bundle the target's certificate must chain to; without one the certificate is pinned. */
  ca?: string;
  /** 'require' is implied by `ca`. */
  tls: UpstreamTlsMode;
  /** The resource allows a plaintext target (allowPlaintextUpstream) and has no TLS identity pinned: TLS when offered, else plaintext. */
  plaintextAllowed?: boolean;
  /** Connect and login must finish within this. */
  timeoutMs: number;
  /** The resource this target is, for the identity check. */
  resource: string;
  /** The identity policy: CA-verified, or the certificate / RSA key pinned on first use. */
  gateway: Pick<GatewayPort, 'verifyTarget'>;
  /** TLS session resumption with the target: saves a full handshake on every later connect. */
  tlsSessions?: { get(): Buffer | undefined; set(session: Buffer): void };
  /**
   * The native data path: a target that speaks TLS has it run by the addon (checked and
   * resumed as here), and the login goes on through it; a plaintext one is handed over when
   * the relay starts.
   */
  native?: NativeLoop;
  /** Lets the caller abort a handshake in progress (timeout, teardown). */
  onReader(reader: PacketReader): void;
  /** Sees the target's HandshakeV10 before anything is checked (the greeting is learned from it). */
  onGreeting?(hs: HandshakeV10): void;
}

export interface UpstreamConnection {
  reader: PacketReader;
  tls: boolean;
  /** The TLS session was resumed (no full handshake). */
  tlsResumed: boolean;
  capabilities: number;
  /** The MariaDB extended flags in effect (0 unless both the client and the target have some). */
  mariadbCapabilities: number;
  /** Status flags of the target's last OK (autocommit, in transaction...). */
  status: number;
  serverVersion: string;
  connectionId: number;
}

export async function connectUpstream(o: UpstreamOptions): Promise<UpstreamConnection> {
  let socket: Socket | undefined;
  let reader: PacketReader | undefined;
  const timer = setTimeout(() => {
    const err = new UpstreamError('timeout', `${o.host}:${o.port} did not complete the login within ${o.timeoutMs} ms`);
    reader?.abort(err);
    socket?.destroy(err);
  }, o.timeoutMs);
  try {
    return await login(o, (s) => (socket = s), (r) => {
      reader = r;
      o.onReader(r);
    });
  } finally {
    clearTimeout(timer);
  }
}

async function login(o: UpstreamOptions, onSocket: (s: Socket) => void, onReader: (r: PacketReader) => void): Promise<UpstreamConnection> {
  const socket = await dial(o.host, o.port, onSocket);
  socket.setNoDelay(true);
  // Errors surface through the readers and 'close'; an unlistened one would crash the gateway.
  socket.on('error', () => {});
  let reader = new PacketReader(socket, 'target');
  onReader(reader);
  const first = (await reader.read()).payload;
  if (first[0] === Reply.Err) {
    const err = decodeErr(first);
    throw new UpstreamError('unreachable', `the target refused the connection: ${err.message}`, targetSaid(err));
  }
  const hs = decodeHandshakeV10(first);
  o.onGreeting?.(hs);
  for (const [flag, name] of SHAPING) {
    const needed = flag === Cap.PROTOCOL_41 || flag === Cap.SECURE_CONNECTION || o.clientCapabilities & flag;
    if (needed && !(hs.capabilities & flag)) throw new UpstreamError('capability', `the target does not support ${name}, which this client relies on`);
  }
  for (const [flag, name] of MARIADB_SHAPING) {
    if (o.clientMariadbCapabilities & flag && !(hs.mariadbCapabilities & flag)) throw new UpstreamError('capability', `the target does not support ${name}, which this client relies on`);
  }
  let caps = (o.clientCapabilities & RELAYED_CAPS & hs.capabilities) | Cap.LONG_PASSWORD | Cap.PROTOCOL_41 | Cap.SECURE_CONNECTION;
  caps |= hs.capabilities & (Cap.PLUGIN_AUTH | Cap.PLUGIN_AUTH_LENENC_CLIENT_DATA);
  if (o.database && hs.capabilities & Cap.CONNECT_WITH_DB) caps |= Cap.CONNECT_WITH_DB;
  // MariaDB reads the extended flags only from a client that leaves CLIENT_MYSQL unset.
  const mariadbCapabilities = (o.clientMariadbCapabilities & RELAYED_MARIADB_CAPS & hs.mariadbCapabilities) >>> 0;
  if (mariadbCapabilities) caps &= ~CLIENT_MYSQL;
  caps >>>= 0;

  let tls = false;
  let tlsResumed = false;
  const useTls = o.ca !== undefined || o.tls !== 'disable';
  if (useTls && hs.capabilities & Cap.SSL) {
    caps |= Cap.SSL;
    const maxPacket = o.maxPacket;
    reader.write(encodeSslRequest({ capabilities: caps, mariadbCapabilities, maxPacket, charset: o.charset }));
    const seq = reader.seq;
    reader.detach();
    if (o.native) {
      const secure = await nativeTls(o.native, socket, o);
      reader = new PacketReader(secure.stream, 'target');
      tlsResumed = secure.resumed;
    } else {
      const secure = await startTls(socket, o);
      reader = new PacketReader(secure, 'target');
      tlsResumed = secure.isSessionReused();
    }
    onReader(reader);
    reader.seq = seq;
    tls = true;
  } else if (o.ca !== undefined || (o.tls === 'require' && !o.plaintextAllowed)) {
    throw new UpstreamError('tls', 'the target does not offer TLS, and TLS is required for it', undefined,
      'give the target TLS, or (a lab target only) allow a plaintext target with the resource option allowPlaintextUpstream');
  }

  let plugin = hs.authPlugin === CACHING_SHA2 ? CACHING_SHA2 : NATIVE_PASSWORD;
  let scramble = hs.scramble;
  const token = plugin === CACHING_SHA2 ? cachingSha2Token(o.password, scramble) : nativePasswordToken(o.password, scramble);
  const response = { capabilities: caps, mariadbCapabilities, maxPacket: o.maxPacket, charset: o.charset, user: o.login, authResponse: token, authPlugin: plugin };
  reader.write(encodeHandshakeResponse(caps & Cap.CONNECT_WITH_DB && o.database ? { ...response, database: o.database } : response));

  let awaitingKey = false;
  let status: number;
  for (let round = 0; ; round++) {
    if (round >= MAX_AUTH_ROUNDS) throw new UpstreamError('protocol', 'the target kept the authentication going too long');
    const p = decodeAuthPacket((await reader.read()).payload);
    if (p.kind === 'ok') {
      status = p.status;
      break;
    }
    if (p.kind === 'err') throw new UpstreamError('login', `the target refused the vaulted login: ${p.err.message}`, targetSaid(p.err));
    if (p.kind === 'switch') {
      plugin = p.plugin;
      scramble = p.data;
      awaitingKey = false;
      reader.write(switchResponse(plugin, o.password, scramble, tls));
      continue;
    }
    if (plugin !== CACHING_SHA2) throw new UpstreamError('protocol', `unexpected auth data for ${plugin}`);
    if (awaitingKey) {
      // Without TLS nothing vouches for this key, and whoever holds its private half reads
      // the vaulted password: pin it on first use like a certificate.
      const fp = createHash('sha256').update(p.data).digest('hex');
      await o.gateway.verifyTarget(o.resource, { kind: 'pin', what: 'RSA public key', fingerprint: `rsa-sha256:${fp}` });
      reader.write(rsaEncryptPassword(o.password, scramble, p.data.toString('latin1')));
      awaitingKey = false;
    } else if (p.data[0] === Sha2.FAST_AUTH_SUCCESS) {
      // The OK follows.
    } else if (p.data[0] === Sha2.PERFORM_FULL_AUTH) {
      if (tls) reader.write(clearPasswordPayload(o.password));
      else {
        reader.write(Buffer.from([Sha2.REQUEST_PUBLIC_KEY]));
        awaitingKey = true;
      }
    } else {
      throw new UpstreamError('protocol', 'unexpected caching_sha2_password data from the target');
    }
  }

  if (o.database && !(caps & Cap.CONNECT_WITH_DB)) status = await initDb(reader, o.database);
  return { reader, tls, tlsResumed, capabilities: caps, mariadbCapabilities, status, serverVersion: hs.serverVersion, connectionId: hs.connectionId };
}

function switchResponse(plugin: string, password: string, scramble: Buffer, tls: boolean): Buffer {
  switch (plugin) {
    case NATIVE_PASSWORD:
      return nativePasswordToken(password, scramble);
    case CACHING_SHA2:
      return cachingSha2Token(password, scramble);
    case CLEAR_PASSWORD:
      if (!tls) throw new UpstreamError('protocol', 'the target asked for the password in clear over a connection without TLS');
      return clearPasswordPayload(password);
    default:
      throw new UpstreamError('protocol', `the target asked for the ${plugin.slice(0, 64)} auth plugin, which Gatehouse does not speak`);
  }
}

async function initDb(reader: PacketReader, database: string): Promise<number> {
  reader.resetSeq();
  reader.write(Buffer.concat([Buffer.from([Cmd.InitDb]), Buffer.from(database, 'utf8')]));
  const p = decodeAuthPacket((await reader.read()).payload);
  if (p.kind === 'ok') return p.status;
  if (p.kind === 'err') throw new UpstreamError('login', p.err.message, targetSaid(p.err));
  throw new UpstreamError('protocol', 'unexpected answer to COM_INIT_DB');
}

function dial(host: string, port: number, onSocket: (s: Socket) => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host, port });
    onSocket(s);
    const fail = (err: Error): void => {
      s.destroy();
      reject(err instanceof UpstreamError ? err : new UpstreamError('unreachable', `cannot reach ${host}:${port} (${(err as NodeJS.ErrnoException).code ?? err.message})`));
    };
    s.once('error', fail);
    s.once('connect', () => {
      s.off('error', fail);
      resolve(s);
    });
  });
}

/**
 * TLS to the target by the addon, then the identity policy: startTls's steps on the native data
 * path, with the same resumption (a session is kept only once the target's identity was checked).
 */
async function nativeTls(native: NativeLoop, socket: Socket, o: UpstreamOptions): Promise<{ stream: Duplex; resumed: boolean }> {
  const ep = native.connectTls(socket, o.host, o.ca, o.tlsSessions?.get());
  ep.on('error', () => {});
  let verified = false;
  let ticket: Buffer | undefined;
  ep.on('session', (s: Buffer) => (verified ? o.tlsSessions?.set(s) : (ticket = s)));
  try {
    const h = await ep.ready;
    // Resumed without a CA: the session was stored after this very pin was checked (the cache key holds it).
    if (o.ca || !h.resumed) {
      const identity = identityOf(h, o.ca !== undefined);
      if (!identity) throw new Error('the target presented no certificate');
      await o.gateway.verifyTarget(o.resource, identity);
    }
    verified = true;
    if (ticket) o.tlsSessions?.set(ticket);
    return { stream: ep, resumed: h.resumed };
  } catch (err) {
    ep.destroy();
    throw err instanceof UpstreamError ? err : new UpstreamError('tls', `TLS with the target failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function startTls(socket: Socket, o: UpstreamOptions): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    // With a CA the TLS layer checks the chain and the host name and reports `authorized`;
    // the identity policy (port.verifyTarget) decides, before any password is sent.
    const opts: ConnectionOptions = { socket, host: o.host, rejectUnauthorized: false };
    if (o.ca) opts.ca = o.ca;
    if (!isIP(o.host)) opts.servername = o.host;
    const session = o.tlsSessions?.get();
    if (session) opts.session = session;
    const secure = tlsConnect(opts);
    secure.on('error', () => {});
    // Sessions are kept for resumption only once the target's identity was checked: a
    // resumed session presents no certificate to check again.
    let verified = false;
    let ticket: Buffer | undefined;
    secure.on('session', (s: Buffer) => (verified ? o.tlsSessions?.set(s) : (ticket = s)));
    const fail = (err: unknown): void => {
      secure.destroy();
      reject(err instanceof UpstreamError ? err : new UpstreamError('tls', `TLS with the target failed: ${err instanceof Error ? err.message : String(err)}`));
    };
    secure.once('error', fail);
    const done = (): void => {
      verified = true;
      if (ticket) o.tlsSessions?.set(ticket);
      secure.off('error', fail);
      resolve(secure);
    };
    secure.once('secureConnect', () => {
      if (o.ca) {
        const error = secure.authorizationError;
        o.gateway.verifyTarget(o.resource, { kind: 'ca', authorized: secure.authorized, ...(error ? { error: String(error) } : {}) }).then(done, fail);
        return;
      }
      // Resumed: the session was stored after this very pin was checked (the cache key holds it).
      if (secure.isSessionReused()) return done();
      const fp = secure.getPeerCertificate().fingerprint256;
      if (!fp) return fail(new Error('the target presented no certificate'));
      o.gateway.verifyTarget(o.resource, { kind: 'pin', what: 'TLS certificate', fingerprint: `tls-sha256:${fp}` }).then(done, fail);
    });
  });
}

/**
 * Ends a target thread from a second login: a session torn down mid-statement must not
 * leave the statement running on the target (a server notices a vanished client only when
 * it next writes to it).
 */
export async function killThread(o: Omit<UpstreamOptions, 'database' | 'onReader' | 'onGreeting'>, threadId: number): Promise<void> {
  let stream: { destroy(): void } | undefined;
  try {
    const up = await connectUpstream({ ...o, onReader: (r) => (stream = r.stream) });
    up.reader.resetSeq();
    up.reader.write(Buffer.concat([Buffer.from([Cmd.Query]), Buffer.from(`KILL CONNECTION ${threadId >>> 0}`)]));
    const p = decodeAuthPacket((await up.reader.read()).payload);
    // 1094: the thread is already gone, which is what we wanted.
    if (p.kind === 'err' && p.err.errno !== 1094) throw new UpstreamError('protocol', p.err.message, targetSaid(p.err));
  } finally {
    stream?.destroy();
  }
}
