/**
 * The tunnel door: `gatehouse tunnel RES` opens a control WebSocket on the API listener,
 * signed in like every door (a launch ticket or the gateway password through the broker's
 * one login path) and decided once (port.open); the tunnel is then one live broker session.
 * Each TCP connection the user's client makes to the CLI's local listener is carried over a
 * data WebSocket of its own, authenticated by the tunnel's token, and connected only to the
 * resource's own host and port. Teardown closes every carried connection (both sides) and
 * the control socket with 1008 and the reason.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer, type RawData } from 'ws';
import type { SessionHandle } from '../../src/broker/adapter.js';
import type { GatewayPort, GatewaySession, Refusal } from '../../src/broker/port.js';
import { refusals } from '../../src/broker/refusals.js';
import { UpstreamError } from '../../src/broker/upstream-error.js';
import type { Protocol, Resource, TerminationReason } from '../../src/core/model.js';
import { isTunneled, type TunneledProtocol as TunnelProtocol } from '../registry.js';
import { STATUS_OF } from '../shared/http-status.js';
import { clientAddress } from '../shared/listener.js';
import { withDeadline } from '../shared/upstream-tls.js';
import { Close, CONNECT_PATH, credentialOf, loginOf, OPEN_PATH, SECRET_SCHEME, type ControlMessage, type RefusalBody } from './codec.js';


export interface TunnelDoorOptions {
  /** Connect to the target (default 10 s). */
  upstreamTimeoutMs?: number;
  /** Bytes queued towards a slow side before the other side is paused (default 1 MiB). */
  highWaterBytes?: number;
  /** Largest WebSocket message accepted from a client (default 1 MiB; the CLI sends at most 64 KiB). */
  maxMessageBytes?: number;
}

/** One carried TCP connection. */
interface Carried {
  ws: WebSocket;
  tcp: Socket;
}

/** A live tunnel: the broker's session, its control socket and its carried connections. */
class Tunnel implements SessionHandle {
  readonly id = randomUUID();
  readonly token = randomBytes(32).toString('base64url');
  readonly carried = new Set<Carried>();
  control: WebSocket | undefined;
  ended: { reason: TerminationReason; message: string } | undefined;

  constructor(
    readonly session: GatewaySession,
    private readonly door: TunnelDoor,
  ) {}

  get resource(): Resource {
    return this.session.resource;
  }

  warn(message: string): void {
    this.send({ type: 'warning', message });
  }

  close(reason: TerminationReason, message: string): void {
    if (this.ended) return;
    this.ended = { reason, message };
    this.door.forget(this);
    const why = Buffer.from(message, 'utf8').subarray(0, 123).toString('utf8').replace(/\uFFFD+$/, '');
    for (const c of this.carried) {
      c.tcp.destroy();
      c.ws.close(Close.ended, why);
    }
    this.send({ type: 'ended', reason, message });
    this.control?.close(Close.ended, why);
  }

  send(m: ControlMessage): void {
    if (this.control?.readyState === WebSocket.OPEN) this.control.send(JSON.stringify(m));
  }
}

export class TunnelDoor {
  private readonly tunnels = new Map<string, Tunnel>();
  private readonly wss: WebSocketServer;
  private readonly timeoutMs: number;
  private readonly highWater: number;

  constructor(
    private readonly ports: Record<TunnelProtocol, GatewayPort>,
    opts: TunnelDoorOptions = {},
  ) {
    this.timeoutMs = opts.upstreamTimeoutMs ?? 10_000;
    this.highWater = opts.highWaterBytes ?? 1024 * 1024;
    this.wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxMessageBytes ?? 1024 * 1024, perMessageDeflate: false });
  }

  /** Whether an upgrade request is for this door. */
  handles(path: string): boolean {
    return path === OPEN_PATH || path === CONNECT_PATH;
  }

  /** Live tunnels on this node (tests, metrics). */
  get live(): number {
    return this.tunnels.size;
  }

  async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => {});
    const url = new URL(req.url ?? '/', 'https://gateway.invalid');
    try {
      if (url.pathname === OPEN_PATH) await this.open(url, req, socket, head);
      else await this.connect(req, socket, head);
    } catch (err) {
      this.ports.tcp.log.error({ err }, 'tunnel upgrade failed');
      this.reject(socket, refusals.internalError());
    }
  }

  forget(t: Tunnel): void {
    this.tunnels.delete(t.token);
  }

  // ------------------------------------------------------------------------------------
  // The control socket: sign-in, decision, target check, then the tunnel is live.

  private async open(url: URL, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const client = clientAddress(req.socket as Socket);
    const protocol = url.searchParams.get('protocol') ?? 'tcp';
    if (!isTunneled(protocol as Protocol)) return this.reject(socket, refusals.protocolError(`no tunnels for protocol ${protocol.slice(0, 20)}`));
    const port = this.ports[protocol as TunnelProtocol];
    const login = loginOf(url);
    const secret = credentialOf(req.headers.authorization, SECRET_SCHEME) ?? '';
    if (!login) {
      const r = refusals.badLoginName('', 'gatehouse tunnel RESOURCE');
      port.refused(client, r, 'tunnel open without a login');
      return this.reject(socket, r);
    }
    const signedIn = await port.login({ name: login, secret: { kind: 'password', value: secret }, client });
    if (!signedIn.ok) return this.reject(socket, signedIn.refusal);
    const opened = await port.open({ user: signedIn.user, resource: signedIn.resource, client, mfa: signedIn.mfa });
    if (!opened.ok) return this.reject(socket, opened.refusal);
    const session = opened.session;
    try {
      await this.probe(session.resource);
    } catch (e) {
      const err = e instanceof UpstreamError ? e : new UpstreamError('unreachable', e instanceof Error ? e.message : String(e));
      session.discard(err.refusalCode, err.message);
      return this.reject(socket, refusals.target(err.refusalCode, session.resource.name, err.message, err.hint));
    }
    if (socket.destroyed) return session.discard('handshake_timeout', 'the client left before the tunnel was ready');
    const tunnel = new Tunnel(session, this);
    const handOut = protocol === 'rdp' && session.resource.options.handOutCredentials === true && session.credentials?.login !== undefined;
    this.tunnels.set(tunnel.token, tunnel);
    try {
      await session.live(tunnel, { tunnel: tunnel.id, ...(handOut ? { credentialsHandedOut: true } : {}) });
    } catch (err) {
      this.tunnels.delete(tunnel.token);
      port.log.error({ err, session: session.id }, 'could not record a live tunnel');
      session.end('error', 'Gatehouse: the tunnel could not be recorded; try again.');
      return this.reject(socket, refusals.internalError());
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      tunnel.control = ws;
      ws.on('error', () => {});
      // The control socket only listens; its close (the CLI stopped, or its host went away) ends the tunnel.
      ws.on('message', () => undefined);
      ws.once('close', () => {
        if (!tunnel.ended) session.end('client_closed', 'the tunnel client closed the tunnel');
      });
      if (tunnel.ended) return void ws.close(Close.ended, tunnel.ended.message.slice(0, 123));
      const r = session.resource;
      const creds = session.credentials;
      tunnel.send({
        type: 'ready', tunnel: tunnel.id, token: tunnel.token, resource: r.name, protocol: r.protocol,
        ...(session.deadline ? { deadline: session.deadline.toISOString() } : {}),
        ...(r.options.tunnelConnectionLimit ? { connectionLimit: r.options.tunnelConnectionLimit } : {}),
        ...(handOut && creds ? { credentials: { login: creds.login, ...(creds.password !== undefined ? { password: creds.password } : {}) } } : {}),
      });
    });
  }

  /** The target answers on its host and port (the only place a tunnel ever connects to). */
  private probe(r: Resource): Promise<void> {
    return withDeadline({ host: r.host, port: r.port, timeoutMs: this.timeoutMs }, async (onSocket) => {
      const s = await this.dial(r, onSocket);
      s.destroy();
    });
  }

  private dial(r: Resource, onSocket: (s: Socket) => void = () => {}): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = netConnect({ host: r.host, port: r.port, allowHalfOpen: true, noDelay: true });
      onSocket(s);
      s.once('connect', () => resolve(s));
      s.once('error', (e) => reject(new UpstreamError('unreachable', `cannot connect to ${r.host}:${r.port}: ${e.message}`)));
    });
  }

  // ------------------------------------------------------------------------------------
  // A carried connection.

  private async connect(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const client = clientAddress(req.socket as Socket);
    const token = credentialOf(req.headers.authorization, 'Bearer');
    const tunnel = token ? this.tunnels.get(token) : undefined;
    const port = tunnel && isTunneled(tunnel.resource.protocol) ? this.ports[tunnel.resource.protocol] : this.ports.tcp;
    if (!tunnel || tunnel.ended) {
      const r = refusals.notAllowed('a tunnel connection without a live tunnel', 'start the tunnel again: gatehouse tunnel RESOURCE');
      port.refused(client, r, token ? 'unknown or ended tunnel token' : 'no tunnel token');
      return this.reject(socket, r, 401);
    }
    const limit = tunnel.resource.options.tunnelConnectionLimit;
    if (limit !== undefined && tunnel.carried.size >= limit) {
      const r = refusals.notAllowed(`a connection beyond the tunnel's limit of ${limit}`, `close a connection through the tunnel first`);
      port.refused(client, r, 'tunnel connection limit');
      return this.reject(socket, r, 429);
    }
    let tcp: Socket;
    try {
      tcp = await withDeadline({ host: tunnel.resource.host, port: tunnel.resource.port, timeoutMs: this.timeoutMs }, (onSocket) => this.dial(tunnel.resource, onSocket));
    } catch (e) {
      const err = e instanceof UpstreamError ? e : new UpstreamError('unreachable', String(e));
      return this.reject(socket, refusals.target(err.refusalCode, tunnel.resource.name, err.message));
    }
    if (tunnel.ended || socket.destroyed) return void tcp.destroy();
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      if (tunnel.ended) {
        tcp.destroy();
        return void ws.close(Close.ended, tunnel.ended.message.slice(0, 123));
      }
      const c: Carried = { ws, tcp };
      tunnel.carried.add(c);
      tunnel.session.operation({ op: 'connect', connections: tunnel.carried.size });
      this.relay(tunnel, c);
    });
  }

  /**
   * Bytes both ways with backpressure: the TCP side pauses while the WebSocket has more than
   * the high-water mark queued, and the WebSocket side pauses while the TCP socket cannot
   * take more. A zero-length binary message is an end of stream in its direction (half-close).
   */
  private relay(t: Tunnel, c: Carried): void {
    const { ws, tcp } = c;
    let tcpEnded = false;
    let wsEnded = false;
    const done = (): void => {
      t.carried.delete(c);
    };
    ws.on('error', () => {});
    tcp.on('error', () => {});
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (!isBinary) return; // the data path is binary only
      // ws hands a Buffer for a binary message (binaryType nodebuffer): no copy.
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      if (buf.length === 0) {
        wsEnded = true;
        tcp.end();
        if (tcpEnded) ws.close(Close.normal);
        return;
      }
      t.session.bytesIn += buf.length;
      if (!tcp.write(buf)) ws.pause();
    });
    tcp.on('drain', () => ws.resume());
    tcp.on('data', (chunk: Buffer) => {
      t.session.bytesOut += chunk.length;
      ws.send(chunk, { binary: true }, () => {
        if (ws.bufferedAmount < this.highWater && tcp.isPaused()) tcp.resume();
      });
      if (ws.bufferedAmount >= this.highWater) tcp.pause();
    });
    tcp.on('end', () => {
      tcpEnded = true;
      if (ws.readyState === WebSocket.OPEN) ws.send(Buffer.alloc(0), { binary: true });
      if (wsEnded) ws.close(Close.normal);
    });
    tcp.on('close', () => {
      done();
      // A socket paused for backpressure would not read the client's close frame: resume it first.
      ws.resume();
      if (ws.readyState === WebSocket.OPEN && !t.ended) ws.close(tcpEnded && wsEnded ? Close.normal : Close.target, 'the target closed the connection');
    });
    ws.on('close', () => {
      done();
      tcp.destroy();
    });
  }

  /** A refusal before the upgrade: an HTTP status from the table and the refusal as JSON. */
  private reject(socket: Duplex, r: Refusal, status = STATUS_OF[r.code]): void {
    if (socket.destroyed) return;
    const body = JSON.stringify({ error: { code: r.code, message: r.message, ...(r.hint ? { hint: r.hint } : {}) } } satisfies RefusalBody);
    socket.end(`HTTP/1.1 ${status} Refused\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  }
}
