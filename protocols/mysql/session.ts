/**
 * One client connection: handshake and password, the decision, the vaulted login upstream,
 * then the relay until one side goes or the broker closes the session.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Broker, BrokerSession } from '../../src/broker/broker.js';
import type { SessionHandle } from '../../src/broker/adapter.js';
import type { Logger } from '../../src/core/log.js';
import type { TerminationReason } from '../../src/core/model.js';
import type { VerifiedPasswords } from '../../src/broker/password-cache.js';
import { checkLogin } from './auth.js';
import { acceptClient, ClientRefused, type ClientAuthOptions, type ClientLogin } from './client-auth.js';
import { Cap, encodeOk, encodePacket, MysqlDecodeError } from './codec.js';
import { closingRefusal, fromDenial, MysqlRefusal, refusals } from './errors.js';
import { PacketReader, PeerClosedError } from './reader.js';
import { ClientFramer, ServerFramer, type StatementEvent } from './relay.js';
import { connectUpstream, killThread, UpstreamError, type UpstreamConnection, type UpstreamOptions, type UpstreamTlsMode } from './upstream.js';

export interface AdapterStats {
  connections: number;
  upstreamConnects: number;
  refusals: number;
  changeUserRefused: number;
  threadKills: number;
  upstreamTlsResumed: number;
}

export interface SessionDeps {
  stats: AdapterStats;
  broker: Broker;
  log: Logger;
  auth: Omit<ClientAuthOptions, 'connectionId'>;
  passwords: VerifiedPasswords;
  maxPacket: number;
  handshakeTimeoutMs: number;
  auditSqlLimit: number;
  onStatement: ((e: StatementEvent) => void) | undefined;
  upstream(resource: BrokerSession['resource']): { ca?: string; tls: UpstreamTlsMode; timeoutMs: number; tlsSessions: UpstreamOptions['tlsSessions'] };
}

/** Errors on the target leg whose own text is the most useful thing to show. */
const RELAYED_TARGET_ERRORS = new Set([1044, 1049]);
/** A client that does not read its goodbye is cut off after this long. */
const GOODBYE_GRACE_MS = 1000;

export class MysqlSession implements SessionHandle {
  private clientReader: PacketReader | undefined;
  private upReader: PacketReader | undefined;
  private client: Duplex;
  private upstream: Duplex | undefined;
  private session: BrokerSession | undefined;
  private readonly cframer: ClientFramer;
  private readonly sframer = new ServerFramer();
  private closing = false;
  private relaying = false;
  /** How to log in to the target again, and which thread to end there, once live. */
  private target: { options: Omit<UpstreamOptions, 'database' | 'onReader'>; thread: number } | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly connectionId: number,
    private readonly deps: SessionDeps,
  ) {
    this.client = socket;
    socket.setNoDelay(true);
    socket.on('error', () => {}); // reported through 'close' / the handshake readers
    this.cframer = new ClientFramer(deps.maxPacket, deps.auditSqlLimit, deps.onStatement ? (kind, sql, truncated) => this.audit(kind, sql, truncated) : undefined);
  }

  /** Never rejects: every failure ends in an ERR packet (when the client can still read one) and a close. */
  async run(): Promise<void> {
    const timer = setTimeout(() => this.abortHandshake(new ClientRefused(refusals.handshakeTimeout())), this.deps.handshakeTimeoutMs);
    try {
      const login = await acceptClient(this.socket, { ...this.deps.auth, connectionId: this.connectionId }, (r) => {
        this.clientReader = r;
        this.client = r.stream;
      });
      const refusal = await this.open(login);
      if (refusal) return this.refuse(refusal);
      const up = await this.connect(login);
      if (!up) return;
      clearTimeout(timer);
      await this.goLive(login, up);
    } catch (err) {
      this.upstream?.destroy();
      this.refuse(this.refusalFor(err));
      this.session?.discard(err instanceof Error ? err.message : String(err));
    } finally {
      clearTimeout(timer);
    }
  }

  warn(message: string): void {
    // MySQL has no asynchronous notice a client would show; the broker also pushes the
    // warning to the user's UI and WebSocket clients.
    this.deps.log.info({ session: this.session?.id, message }, 'mysql: expiry warning has no in-band channel');
  }

  close(reason: TerminationReason, message: string): void {
    if (this.closing) return;
    const refusal = closingRefusal(reason, message);
    this.upstream?.destroy();
    this.killTargetThread();
    // Closed between going live and the auth OK: the client still waits for the OK's answer.
    if (!this.relaying) return this.refuse(refusal);
    this.closing = true;
    // An ERR can only be slipped in between server packets, never inside one.
    if (!this.sframer.atBoundary) return void this.client.destroy();
    const seq = (this.cframer.serverSpoke ? this.sframer.lastSeq : this.cframer.lastSeq) + 1;
    this.goodbye(encodePacket(seq, refusal.packet()));
  }

  private killTargetThread(): void {
    const t = this.target;
    if (!t) return;
    this.deps.stats.threadKills++;
    killThread(t.options, t.thread).catch((err: unknown) =>
      this.deps.log.warn({ err, session: this.session?.id, thread: t.thread }, 'mysql: could not end the target thread of a closed session'),
    );
  }

  private abortHandshake(err: Error): void {
    // Mid TLS upgrade there is no packet channel to say anything on.
    if (this.clientReader?.detached) this.client.destroy();
    this.clientReader?.abort(err);
    this.upReader?.abort(err);
    this.upstream?.destroy();
  }

  /** Checks the password or launch ticket and runs the decision; a refusal, or undefined once `this.session` is set. */
  private async open(login: ClientLogin): Promise<MysqlRefusal | undefined> {
    const { broker } = this.deps;
    const who = await checkLogin(broker, this.deps.passwords, login.login, login.password);
    if (!who.ok) return who.refusal;
    const { user, resource, mfa } = who;
    const res = await broker.open({ user, resource, protocol: 'mysql', client: `${this.socket.remoteAddress}:${this.socket.remotePort}`, mfa });
    if (!res.ok) return fromDenial(res.denial, resource);
    this.session = res.session;
    if (res.session.resource.protocol !== 'mysql') {
      res.session.discard('not a mysql resource');
      return refusals.wrongProtocol(resource, res.session.resource.protocol);
    }
    return undefined;
  }

  private async connect(login: ClientLogin): Promise<UpstreamConnection | undefined> {
    const s = this.session!;
    const r = s.resource;
    const creds = s.credentials;
    if (!creds?.password) {
      s.discard('no vaulted password');
      this.refuse(refusals.targetUnreachable(r.name, 'it has no vaulted MySQL password'));
      return undefined;
    }
    const database = login.database ?? r.database;
    const target = this.deps.upstream(r);
    this.deps.stats.upstreamConnects++;
    const options = {
      host: r.host, port: r.port, login: creds.login, password: creds.password, clientCapabilities: login.capabilities,
      charset: login.charset, maxPacket: Math.min(login.maxPacket || this.deps.maxPacket, this.deps.maxPacket),
      ...(target.ca ? { ca: target.ca } : {}), tls: target.tls, timeoutMs: target.timeoutMs, tlsSessions: target.tlsSessions,
      pin: (fp: string) => this.deps.broker.pinTargetIdentity(r.name, fp),
    };
    try {
      const up = await connectUpstream({
        ...options,
        ...(database ? { database } : {}),
        onReader: (rd) => {
          this.upReader = rd;
          this.upstream = rd.stream;
        },
      });
      this.target = { options, thread: up.connectionId };
      if (up.tlsResumed) this.deps.stats.upstreamTlsResumed++;
      return up;
    } catch (err) {
      this.upstream?.destroy();
      const why = err instanceof Error ? err.message : String(err);
      s.discard(why);
      if (!(err instanceof UpstreamError)) throw err;
      if (err.err && RELAYED_TARGET_ERRORS.has(err.err.errno)) {
        this.refuse(new MysqlRefusal('target_error', err.err.errno, err.err.sqlstate, `Gatehouse: ${r.name}: ${err.err.message}`));
      } else {
        this.refuse(err.kind === 'identity' ? refusals.targetIdentity(r.name, why) : refusals.targetUnreachable(r.name, why));
      }
      return undefined;
    }
  }

  private async goLive(login: ClientLogin, up: UpstreamConnection): Promise<void> {
    const s = this.session!;
    try {
      await s.live(this);
    } catch (err) {
      this.deps.log.error({ err, session: s.id }, 'mysql: could not record a live session');
      this.upstream?.destroy();
      s.end('error', 'Gatehouse could not record the session.');
      return this.refuse(refusals.targetUnreachable(s.resource.name, 'the gateway could not record the session'));
    }
    if (this.closing) return;
    login.reader.write(encodeOk({ status: up.status, sessionTrack: (login.capabilities & Cap.SESSION_TRACK) !== 0 }));
    this.relay(login.reader, up.reader, s);
  }

  private relay(clientReader: PacketReader, upReader: PacketReader, s: BrokerSession): void {
    const client = this.client;
    const upstream = upReader.stream;
    const fromClient = clientReader.detach();
    const fromServer = upReader.detach();
    this.relaying = true;
    const onClient = (chunk: Buffer): void => {
      if (this.closing) return;
      const out = this.cframer.feed(chunk);
      if (out instanceof MysqlRefusal) return this.refuseLive(out, s);
      if (out.length === 0) return;
      s.bytesIn += out.length;
      if (!upstream.write(out)) client.pause();
    };
    const onServer = (chunk: Buffer): void => {
      if (this.closing) return;
      s.bytesOut += chunk.length;
      this.sframer.observe(chunk);
      this.cframer.serverSpoke = true;
      if (!client.write(chunk)) upstream.pause();
    };
    client.on('data', onClient);
    upstream.on('data', onServer);
    client.on('drain', () => upstream.resume());
    upstream.on('drain', () => client.resume());
    client.on('error', () => {});
    upstream.on('error', () => {});
    client.on('close', () => {
      upstream.destroy();
      s.end('client_closed');
    });
    upstream.on('close', () => {
      if (!this.closing) client.end();
      s.end(this.cframer.quit ? 'client_closed' : 'target_closed');
    });
    if (fromServer.length) onServer(fromServer);
    if (fromClient.length) onClient(fromClient);
    client.resume();
    upstream.resume();
  }

  private audit(kind: StatementEvent['kind'], sql: string, truncated: boolean): void {
    const s = this.session;
    if (s) this.deps.onStatement?.({ sessionId: s.id, user: s.user, resource: s.resource.name, kind, sql, truncated });
  }

  private refuseLive(refusal: MysqlRefusal, s: BrokerSession): void {
    this.closing = true;
    this.deps.stats.refusals++;
    if (refusal.code === 'change_user') this.deps.stats.changeUserRefused++;
    this.upstream?.destroy();
    this.goodbye(encodePacket(this.cframer.lastSeq + 1, refusal.packet()));
    s.end('error', refusal.text());
  }

  /** Handshake-phase refusal: ERR with the next sequence id on the current client leg, then close. */
  private refuse(refusal: MysqlRefusal): void {
    if (this.closing) return;
    this.closing = true;
    this.deps.stats.refusals++;
    const reader = this.clientReader;
    // Without a packet channel (mid TLS upgrade) there is nothing to say: a plaintext ERR would be noise.
    if (!reader || reader.detached || reader.stream !== this.client || this.client.destroyed) return void this.client.destroy();
    reader.detach();
    this.goodbye(encodePacket((reader.seq + 1) & 0xff, refusal.packet()));
  }

  private goodbye(packet: Buffer): void {
    const c = this.client;
    if (c.destroyed) return;
    const t = setTimeout(() => c.destroy(), GOODBYE_GRACE_MS);
    t.unref();
    c.once('close', () => clearTimeout(t));
    c.on('error', () => {});
    c.end(packet);
    // Keep reading (and dropping) so unread input does not turn our FIN into a reset.
    c.resume();
  }

  private refusalFor(err: unknown): MysqlRefusal {
    if (err instanceof ClientRefused) return err.refusal;
    if (err instanceof MysqlDecodeError) return refusals.protocol(err.errno, err.sqlstate, err.message);
    if (err instanceof PeerClosedError) return refusals.protocol(1043, '08S01', err.message);
    this.deps.log.error({ err }, 'mysql: connection failed');
    return refusals.protocol(1105, 'HY000', 'internal error; see the gateway log');
  }
}
