/**
 * The TLS half of a door's target leg, the same for every door that starts TLS on a socket
 * it already has (PostgreSQL after SSLRequest, LDAP after StartTLS or at once for LDAPS):
 * the handshake, then the target's identity through the one policy (port.verifyTarget:
 * a configured CA, or the certificate pinned on first use). Nothing of the login is written
 * before `tlsToTarget` resolves.
 */
import { isIP, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import type { TargetIdentity } from '../../src/broker/port.js';
import { UpstreamError } from '../../src/broker/upstream-error.js';

export interface TargetTls {
  host: string;
  port: number;
  /** PEM bundle the target's certificate must chain to and name the host with; else pinned. */
  ca?: string;
  /** The identity policy (port.verifyTarget); throws UpstreamError('identity'). */
  verify(identity: TargetIdentity): Promise<unknown>;
}

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

/** TLS over `raw` (a connected socket, or undefined to connect now), with the identity verified. */
export async function tlsToTarget(raw: Socket | undefined, t: TargetTls): Promise<TLSSocket> {
  const sock = tlsConnect({
    ...(raw ? { socket: raw } : { host: t.host, port: t.port }),
    host: t.host,
    ...(isIP(t.host) ? {} : { servername: t.host }),
    secureContext: contextFor(t.ca),
    // With a CA the TLS layer checks the chain and the host name and reports it in
    // `authorized`; the identity policy below refuses what it did not verify.
    rejectUnauthorized: false,
  });
  sock.on('error', () => {});
  const what = raw ? 'TLS' : 'cannot connect';
  await handshake(sock, 'secureConnect', (e) =>
    e ? new UpstreamError(raw ? 'tls' : 'unreachable', `${what} to ${t.host}:${t.port}${raw ? ' failed' : ''}: ${e.message}`) : new UpstreamError('tls', `TLS to ${t.host}:${t.port} failed: connection closed`),
  );
  try {
    await t.verify(identityOf(sock, t.ca !== undefined));
  } catch (e) {
    sock.destroy();
    throw e;
  }
  return sock;
}

/**
 * Waits for a TLS handshake to finish (`event`), or fails with `failure(error)` on an error and
 * `failure()` on a close. Its listeners go once it settles: a session keeps its socket for
 * hours, and a listener left behind would build an error object at every close.
 */
export function handshake(sock: TLSSocket, event: 'secure' | 'secureConnect', failure: (e?: Error) => Error): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const off = (): void => {
      sock.off(event, done);
      sock.off('error', onError);
      sock.off('close', onClose);
    };
    const done = (): void => {
      off();
      resolve();
    };
    const onError = (e: Error): void => {
      off();
      reject(failure(e));
    };
    const onClose = (): void => {
      off();
      reject(failure());
    };
    sock.once(event, done);
    sock.once('error', onError);
    sock.once('close', onClose);
  });
}

function identityOf(sock: TLSSocket, withCa: boolean): TargetIdentity {
  if (withCa) {
    const error = sock.authorizationError;
    return { kind: 'ca', authorized: sock.authorized, ...(error ? { error: String(error) } : {}) };
  }
  const fp = sock.getPeerCertificate().fingerprint256;
  if (!fp) throw new UpstreamError('identity', 'the target presented no TLS certificate');
  return { kind: 'pin', what: 'TLS certificate', fingerprint: `tls-sha256:${fp}` };
}

/**
 * Runs `work` with a deadline; on timeout the socket opened so far is destroyed and the
 * attempt fails with UpstreamError('timeout'). `closed` maps a peer that hung up mid-way.
 */
export async function withDeadline<T>(
  t: { host: string; port: number; timeoutMs: number },
  work: (onSocket: (s: { destroy(): unknown }) => void) => Promise<T>,
  closed: (e: unknown) => UpstreamError | undefined = () => undefined,
): Promise<T> {
  let sock: { destroy(): unknown } | undefined;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      sock?.destroy();
      reject(new UpstreamError('timeout', `the target ${t.host}:${t.port} did not answer within ${t.timeoutMs} ms`));
    }, t.timeoutMs);
  });
  try {
    return await Promise.race([work((s) => (sock = s)), timeout]);
  } catch (e) {
    sock?.destroy();
    throw closed(e) ?? e;
  } finally {
    clearTimeout(timer);
  }
}
