import { createServer, type IncomingMessage } from 'node:http';
import { createSecureContext, TLSSocket } from 'node:tls';
import type { Listener, ListenerConfig, ProtocolAdapter } from '../../src/broker/adapter.js';
import { refusals } from '../../src/broker/refusals.js';
import { DOORS } from '../registry.js';
import { clientAddress, positive, serveTcp } from '../shared/listener.js';
import { AssertionSigner } from './assertion.js';
import { HttpDoor } from './session.js';

export interface HttpAdapterOptions {
  /** Simultaneous client connections (default 4096: a browser opens several per app). */
  maxConnections?: number;
  /** Headers a request may carry (default 100); a request that reaches the limit is refused. */
  maxHeaders?: number;
  /** Bytes of request head (default 16 KiB). */
  maxHeaderBytes?: number;
  /** Connect to an app and get its response head (default 30 s). */
  upstreamTimeoutMs?: number;
  /** CA bundles for apps' TLS by resource name ('*' for all); otherwise each app's certificate is pinned on first use. */
  upstreamCa?: Record<string, string>;
  /** Lifetime of the signed assertion header (default 60 s; never past the grant). */
  assertionTtlMs?: number;
  /** The port in app origins when browsers reach the listener through another one (a load balancer). */
  publicPort?: number;
  /** A browser session unused this long ends (default 30 min). */
  idleTimeoutMs?: number;
  /** From accept to a connection's first whole request head: TLS and the head (default 30 s). */
  handshakeTimeoutMs?: number;
  /** Each later request head on a kept-alive connection, from its first byte (default 20 s). */
  headersTimeoutMs?: number;
}

const LOGIN_EXAMPLE = DOORS.find((d) => d.name === 'http')!.loginExample;

/**
 * The browser door: internal web apps at `https://<resource>.<appsDomain>:8443`, entered
 * through the vault's Launch, with credentials injected and the session cut live when
 * access ends. See README.md beside this file.
 */
export class HttpAdapter implements ProtocolAdapter {
  readonly protocol = 'http' as const;
  private readonly opts: Required<Omit<HttpAdapterOptions, 'upstreamCa' | 'publicPort'>> & Pick<HttpAdapterOptions, 'upstreamCa' | 'publicPort'>;

  constructor(options: HttpAdapterOptions = {}) {
    this.opts = {
      ...options,
      maxConnections: positive('maxConnections', options.maxConnections, 4096),
      maxHeaders: positive('maxHeaders', options.maxHeaders, 100),
      maxHeaderBytes: positive('maxHeaderBytes', options.maxHeaderBytes, 16 * 1024),
      upstreamTimeoutMs: positive('upstreamTimeoutMs', options.upstreamTimeoutMs, 30_000),
      assertionTtlMs: positive('assertionTtlMs', options.assertionTtlMs, 60_000),
      idleTimeoutMs: positive('idleTimeoutMs', options.idleTimeoutMs, 30 * 60_000),
      handshakeTimeoutMs: positive('handshakeTimeoutMs', options.handshakeTimeoutMs, 30_000),
      headersTimeoutMs: positive('headersTimeoutMs', options.headersTimeoutMs, 20_000),
    };
  }

  async listen(config: ListenerConfig): Promise<Listener> {
    const { log } = config;
    const port = config.broker.portFor({ protocol: 'http', loginExample: LOGIN_EXAMPLE }, log);
    const appsDomain = config.http?.appsDomain ?? 'apps.localhost';
    let listening = 0;
    const door = new HttpDoor({
      port,
      appsDomain,
      publicPort: () => this.opts.publicPort ?? listening,
      ...(config.http?.vaultUrl ? { vaultUrl: config.http.vaultUrl } : {}),
      signer: new AssertionSigner(`gatehouse:${appsDomain}`),
      maxHeaders: this.opts.maxHeaders,
      ...(this.opts.upstreamCa ? { upstreamCa: this.opts.upstreamCa } : {}),
      upstreamTimeoutMs: this.opts.upstreamTimeoutMs,
      assertionTtlMs: this.opts.assertionTtlMs,
      idleTimeoutMs: this.opts.idleTimeoutMs,
    });
    const client = (req: IncomingMessage): string => clientAddress(req.socket as never);
    // Connections taken over maxConnections: their requests are answered 503 (the listener's headroom).
    const overLimit = new WeakSet<object>();
    // Those answered already: a request pipelined behind the 503 is never answered (the
    // connection closes after it), so it is not audited either.
    const refused = new WeakSet<object>();
    // Until its first request head is whole, a connection is timed by the listener
    // (handshakeTimeoutMs: TLS and the head); after that, by the server's keep-alive and
    // header timeouts. An over-limit one stays on the listener's timer until it closes.
    const pending = new WeakMap<object, () => void>();
    const arrived = (req: IncomingMessage): void => {
      const established = pending.get(req.socket);
      pending.delete(req.socket);
      established?.();
    };
    const server = createServer({
      maxHeaderSize: this.opts.maxHeaderBytes, requireHostHeader: true, insecureHTTPParser: false, joinDuplicateHeaders: false,
      connectionsCheckingInterval: Math.min(5_000, this.opts.headersTimeoutMs),
    }, (req, res) => {
      if (overLimit.has(req.socket)) {
        if (refused.has(req.socket)) return;
        refused.add(req.socket);
        return door.overLimit(res, client(req));
      }
      arrived(req);
      door.request(req, res, client(req)).catch((err: unknown) => {
        log.error({ err }, 'http request failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain', connection: 'close' });
        res.end('Gatehouse: internal error\n');
      });
    });
    // Node keeps at most this many headers and still frames the body with the rest: the door
    // refuses a request that reaches it (codec.ts), so the parser must count one more.
    server.maxHeadersCount = this.opts.maxHeaders;
    server.headersTimeout = this.opts.headersTimeoutMs;
    server.requestTimeout = 0;
    server.keepAliveTimeout = 30_000;
    // Node checks headersTimeout (a later head sent slowly) from 'listening' on; this server is
    // never listen()ed (serveTcp hands it the connections), so the check is started here.
    server.emit('listening');
    server.on('upgrade', (req: IncomingMessage, socket, head: Buffer) => {
      if (overLimit.has(req.socket)) return door.overLimitUpgrade(socket, client(req));
      arrived(req);
      door.upgrade(req, socket, head, client(req));
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
        port.refused(clientAddress(socket as never), refusals.handshakeTimeout(), `a request head not whole within ${this.opts.headersTimeoutMs} ms`);
        if (socket.writable) socket.end('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 37\r\n\r\nGatehouse: request head too slow.\r\n\r\n');
        else socket.destroy();
        return;
      }
      port.refused(clientAddress(socket as never), refusals.protocolError(`malformed HTTP request (${err.code ?? err.message})`), err.code ?? 'clientError');
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 39\r\n\r\nGatehouse: malformed request (400).\r\n\r\n');
      else socket.destroy();
    });
    const secureContext = createSecureContext({ cert: config.tls.cert, key: config.tls.key, minVersion: 'TLSv1.2' });
    // Always HTTPS, even where plaintext is allowed on loopback: the app origins, the enter
    // links and the Secure session cookie all say https.
    const listener = await serveTcp(config, log, 'http', (conn) => {
      const tls = new TLSSocket(conn.socket, { isServer: true, secureContext, ALPNProtocols: ['http/1.1'] });
      if (conn.overLimit) overLimit.add(tls);
      else pending.set(tls, () => conn.established());
      conn.onHandshakeTimeout(() => {
        port.refused(conn.client, refusals.handshakeTimeout(), `no whole request head within ${this.opts.handshakeTimeoutMs} ms`);
        tls.destroy();
        conn.socket.destroy();
      });
      tls.on('error', () => conn.socket.destroy());
      server.emit('connection', tls);
    }, { maxConnections: this.opts.maxConnections, handshakeTimeoutMs: this.opts.handshakeTimeoutMs });
    listening = listener.address.port;
    return {
      address: listener.address,
      async close() {
        await listener.close();
        // Stops Node's header-timeout check (started above); the server itself never listened.
        server.close();
        server.closeAllConnections();
      },
    };
  }
}
