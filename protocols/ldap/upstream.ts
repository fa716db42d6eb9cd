/**
 * The target leg: TCP, then TLS (LDAPS from the first byte, or StartTLS), the directory's
 * identity through the one policy (a configured CA, or the certificate pinned on first
 * use), then a simple bind with the vaulted DN and password. Nothing of the login is
 * written before the identity passed. The client's own bind never comes here.
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { TargetIdentity } from '../../src/broker/port.js';
import { UpstreamError } from '../../src/broker/upstream-error.js';
import { PeerClosedError, StreamReader } from '../shared/stream-reader.js';
import { tlsToTarget, withDeadline } from '../shared/upstream-tls.js';
import { decodeEnvelope, decodeResponseHead, extendedRequest, frameSize, LdapDecodeError, Oid, Op, ResultCode, simpleBindRequest } from './codec.js';

/**
 * How the target leg is secured: `ldaps` (TLS from the first byte), `starttls` (required),
 * `starttls-or-plain` (a resource that allows a plaintext lab directory: StartTLS when the
 * directory accepts it, unless its certificate is pinned), `plain` (such a resource with the
 * adapter's upstreamTls 'disable': benchmarks and tests).
 */
export type LdapTransport = 'ldaps' | 'starttls' | 'starttls-or-plain' | 'plain';

export interface LdapTarget {
  resource: string;
  host: string;
  port: number;
  transport: LdapTransport;
  /** A TLS certificate is pinned for the resource: a directory that now refuses StartTLS is a downgrade. */
  pinned: boolean;
  ca?: string;
  timeoutMs: number;
  verify(identity: TargetIdentity): Promise<unknown>;
}

export interface LdapUpstream {
  socket: Socket | TLSSocket;
  encrypted: boolean;
  /** Bytes the directory sent after the bind response (normally none). */
  rest: Buffer;
}

/** The directory's answers during start-up are small; anything bigger is not an answer. */
const HANDSHAKE_CAP = 64 * 1024;

const frames = (b: Buffer): { value: Buffer; size: number } | undefined => {
  const size = frameSize(b, HANDSHAKE_CAP);
  return size === undefined ? undefined : { value: b.subarray(0, size), size };
};

/** Reads the response to message `id` of type `op`: its result code and diagnostic message. */
async function response(reader: StreamReader, id: number, op: number): Promise<{ code: number; diagnostic: string }> {
  for (;;) {
    const frame = await reader.read(frames);
    const env = decodeEnvelope(frame, true);
    const head = decodeResponseHead(frame, env);
    if (env.id === 0) {
      throw new UpstreamError('unreachable', `the directory disconnected: ${head.diagnosticMessage ?? 'notice of disconnection'}`, {
        ...(head.resultCode !== undefined ? { code: String(head.resultCode) } : {}), ...(head.diagnosticMessage ? { message: head.diagnosticMessage } : {}),
      });
    }
    if (env.id !== id || env.op !== op || head.resultCode === undefined) {
      throw new UpstreamError('protocol', `unexpected message (id ${env.id}, tag 0x${env.op.toString(16)}) from the directory during start-up`);
    }
    return { code: head.resultCode, diagnostic: head.diagnosticMessage ?? '' };
  }
}

async function connectTcp(t: LdapTarget, onSocket: (s: Socket) => void): Promise<Socket> {
  const raw = netConnect({ host: t.host, port: t.port });
  onSocket(raw);
  raw.setNoDelay(true);
  raw.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    raw.once('connect', resolve);
    raw.once('error', (e) => reject(new UpstreamError('unreachable', `cannot connect to ${t.host}:${t.port}: ${e.message}`)));
  });
  return raw;
}

/** TCP and TLS as the transport says; the socket is ready for the bind. */
async function openTransport(t: LdapTarget, onSocket: (s: Socket) => void): Promise<{ socket: Socket | TLSSocket; encrypted: boolean }> {
  const raw = await connectTcp(t, onSocket);
  const tls = { host: t.host, port: t.port, ...(t.ca ? { ca: t.ca } : {}), verify: t.verify };
  switch (t.transport) {
    case 'plain':
      return { socket: raw, encrypted: false };
    case 'ldaps':
      return { socket: await tlsToTarget(raw, tls), encrypted: true };
    case 'starttls':
    case 'starttls-or-plain': {
      const reader = new StreamReader(raw, 'the directory', HANDSHAKE_CAP);
      raw.write(extendedRequest(1, Oid.startTls));
      const r = await response(reader, 1, Op.ExtendedResponse);
      if (r.code !== ResultCode.success) {
        if (t.transport === 'starttls') {
          throw new UpstreamError('tls', `the directory ${t.host}:${t.port} refused StartTLS (${r.code}: ${r.diagnostic}), and ${t.resource} requires TLS`, { code: String(r.code), message: r.diagnostic },
            `configure TLS on the directory; only a lab directory may go without it, if an administrator sets options.allowPlaintextUpstream for ${t.resource}`);
        }
        if (t.pinned) throw new UpstreamError('identity', `the directory ${t.host}:${t.port} no longer accepts StartTLS while its TLS certificate is pinned; refusing to bind in the clear`);
        reader.detach();
        return { socket: raw, encrypted: false };
      }
      // Bytes after the StartTLS response and before the handshake were not encrypted.
      if (reader.buffered > 0) throw new UpstreamError('protocol', 'the directory sent unencrypted data after accepting StartTLS');
      reader.detach();
      return { socket: await tlsToTarget(raw, tls), encrypted: true };
    }
    default: {
      const never: never = t.transport;
      throw new Error(`unknown LDAP transport ${String(never)}`);
    }
  }
}

/** Connects and binds with the vaulted DN and password. */
export function connectDirectory(t: LdapTarget, login: { dn: string; password: string }): Promise<LdapUpstream> {
  return withDeadline(
    t,
    async (onSocket) => {
      const { socket, encrypted } = await openTransport(t, onSocket);
      const reader = new StreamReader(socket, 'the directory', HANDSHAKE_CAP);
      // A plaintext socket was paused when the StartTLS reader let go of it.
      socket.resume();
      socket.write(simpleBindRequest(2, login.dn, login.password));
      const r = await response(reader, 2, Op.BindResponse);
      if (r.code !== ResultCode.success) {
        throw new UpstreamError('login', `the directory refused the vaulted bind as ${login.dn} (${r.code}${r.diagnostic ? `: ${r.diagnostic}` : ''})`, {
          code: String(r.code), ...(r.diagnostic ? { message: r.diagnostic } : {}),
        }, `check the vaulted DN and password of ${t.resource}`);
      }
      return { socket, encrypted, rest: reader.detach() };
    },
    (e) => {
      if (e instanceof PeerClosedError) return new UpstreamError('unreachable', `the directory ${t.host}:${t.port} closed the connection during start-up`);
      if (e instanceof LdapDecodeError) return new UpstreamError('protocol', `the directory sent a malformed message during start-up (${e.message})`);
      return undefined;
    },
  );
}
