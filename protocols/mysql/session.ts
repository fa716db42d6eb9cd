/**
 * One client connection: handshake and password, the login and the decision through the
 * gateway port, the vaulted login upstream, then the relay until one side goes or the
 * broker closes the session.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { SessionHandle } from '../../src/broker/adapter.js';
import type { GatewayPort, GatewaySession } from '../../src/broker/port.js';
import { refusalFamily, refusals } from '../../src/broker/refusals.js';
import { UpstreamError } from '../../src/broker/upstream-error.js';
import type { Resource, TerminationReason } from '../../src/core/model.js';
import type { DoorConnection } from '../shared/listener.js';
import { acceptClient, ClientRefused, type ClientAuthOptions, type ClientLogin, type ClientStep } from './client-auth.js';
import { Cap, Cmd, encodeOk, encodePacket, MariaCap, MysqlDecodeError } from './codec.js';
import { accessRefused, closingPacket, killRefused, MysqlRefusal, protocolRefusal, relayedTargetError } from './errors.js';
import { describeKill, rewriteKill, type KillRequest, type KillUnreadable } from './kill.js';
import type { Greeting, TargetProfiles } from './profile.js';
import { PacketReader, PeerClosedError } from './reader.js';
import { MysqlNativeRelay } from './native.js';
import { ClientFramer, ServerFramer, type FramerOutput, type KillVerdict, type StatementEvent } from './relay.js';
import { ResponseTracker } from './response.js';
import type { LiveThread, ThreadRegistry } from './threads.js';
import { connectUpstream, killThread, type UpstreamConnection, type UpstreamOptions, type UpstreamTlsMode } from './upstream.js';
import { How, NativeEndpoint, START_FAILED, type NativeLoop, type TlsRecords } from '../shared/native.js';

export interface AdapterStats {
  connections: number;
  upstreamConnects: number;
  refusals: number;
  changeUserRefused: number;
  /** Target threads ended from a second login (a session the gateway ended mid-statement). */
  threadKills: number;
  /** Sessions the gateway ended while the target was idle: COM_QUIT, no second login. */
  upstreamQuits: number;
  /** KILLs mapped to the caller's own target thread, and KILLs refused. */
  killsMapped: number;
  killsRefused: number;
  upstreamTlsResumed: number;
}

export interface SessionDeps {
  stats: AdapterStats;
  port: GatewayPort;
  auth: Omit<ClientAuthOptions, 'connectionId' | 'greeting'>;
  /** Connection ids and their target threads, for KILL. */
  threads: ThreadRegistry;
  /** What the targets greet with, learned at every target login. */
  profiles: TargetProfiles;
  maxPacket: number;
  auditSqlLimit: number;
  onStatement: ((e: StatementEvent) => void) | undefined;
  upstream(resource: Resource): { ca?: string; tls: UpstreamTlsMode; plaintextAllowed: boolean; timeoutMs: number; tlsSessions: UpstreamOptions['tlsSessions'] };
  /**
   * The native data path (native.ts), where it is in use: a client whose TLS the addon runs
   * (`auth.native`) gets its target leg and its relay there too.
   */
  native?: { loop: NativeLoop; records: TlsRecords };
}

/** The steps of one connection, in order; `closing` is reachable from every one. */
const Phase = {
  /** HandshakeV10, the TLS upgrade and the password. */
  handshake: 'handshake',
  /** The login and the decision, through the port. */
  opening: 'opening',
  /** The vaulted login to the target. */
  connecting: 'connecting',
  /** The session is being recorded live; the client still waits for its OK. */
  goingLive: 'going_live',
  /** Bytes flow both ways. */
  relaying: 'relaying',
  /** The last word (an ERR, or nothing) is said; the client socket is going away. */
  closing: 'closing',
} as const;
type Phase = (typeof Phase)[keyof typeof Phase];

/** Errors on the target leg whose own number and text are the most useful thing to show. */
const RELAYED_TARGET_ERRORS = new Set([
  1044, // ER_DBACCESS_DENIED_ERROR: the vaulted login may not use that database
  1049, // ER_BAD_DB_ERROR: unknown database
]);
/** A client that does not read its goodbye is cut off after this long. */
const GOODBYE_GRACE_MS = 1000;
/** A target that does not close its side after our FIN (a statement still running) is cut off after this long. */
const UPSTREAM_CLOSE_GRACE_MS = 10_000;
const COM_QUIT = encodePacket(0, Buffer.from([Cmd.Quit]));

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

export class MysqlSession implements SessionHandle {
  private phase: Phase = Phase.handshake;
  private clientReader: PacketReader | undefined;
  private upReader: PacketReader | undefined;
  private client: Duplex;
  private upstream: Duplex | undefined;
  private session: GatewaySession | undefined;
  /** What the client was told when the connection was refused, for the audit of what follows. */
  private refusedWith: MysqlRefusal | undefined;
  private readonly cframer: ClientFramer;
  private sframer = new ServerFramer();
  /** Whether the target still owes the client a reply; set once relaying. */
  private tracker: ResponseTracker | undefined;
  /** How to log in to the target again, and which thread to end there, once live. */
  private target: { options: Omit<UpstreamOptions, 'database' | 'onReader' | 'onGreeting'>; thread: LiveThread } | undefined;
  /** The live session's relay on the native data path. */
  private native: MysqlNativeRelay | undefined;
  /** When each step of the login ended (performance.now()), from accept: for the debug log's `login timings`. */
  private readonly marks: number[] = [performance.now()];
  /** When each of the client's steps ended (client-auth.ts), within `marks`' first step. */
  private readonly clientSteps: [ClientStep, number][] = [];
  private idReleased = false;

  constructor(
    private readonly conn: DoorConnection,
    private readonly connectionId: number,
    private readonly greeting: Greeting,
    private readonly deps: SessionDeps,
  ) {
    this.client = conn.socket;
    // The connection id is the session's until its client is gone: on the native data path
    // Node's socket goes when the relay starts, and the id when the relay ends.
    conn.socket.once('close', () => {
      if (!this.native) this.releaseId();
    });
    this.cframer = new ClientFramer(deps.maxPacket, deps.auditSqlLimit, {
      onStatement: deps.onStatement ? (kind, sql, truncated) => this.audit(kind, sql, truncated) : undefined,
      onCommand: (cmd) => this.tracker?.command(cmd),
      onKill: (kill) => this.kill(kill),
      replyOwed: () => this.tracker !== undefined && !this.targetSettled(),
      onEmptyPacket: () => this.tracker?.fileSent(),
    });
  }

  /** Never rejects: every failure ends in an ERR packet (when the client can still read one) and a close. */
  async run(): Promise<void> {
    this.conn.onHandshakeTimeout(() => this.handshakeTimedOut());
    try {
      const login = await acceptClient(this.conn.socket, { ...this.deps.auth, onStep: (step) => this.clientSteps.push([step, performance.now()]), connectionId: this.connectionId, greeting: this.greeting, overLimit: this.conn.overLimit }, (r) => {
        this.clientReader = r;
        this.client = r.stream;
      });
      this.phase = Phase.opening;
      this.marks.push(performance.now());
      const opened = await this.open(login);
      this.marks.push(performance.now());
      if (opened instanceof MysqlRefusal) return this.refuse(opened);
      this.session = opened;
      if (this.isClosing()) return opened.discard(this.refusedWith?.code ?? 'handshake_timeout', 'the client was refused while the decision ran');
      this.phase = Phase.connecting;
      const up = await this.connect(login, opened);
      if (!up) return;
      if (this.isClosing()) {
        up.reader.stream.destroy();
        return opened.discard(this.refusedWith?.code ?? 'handshake_timeout', 'the client was refused while the target login ran');
      }
      this.marks.push(performance.now());
      this.conn.established();
      this.phase = Phase.goingLive;
      await this.goLive(login, up, opened);
    } catch (err) {
      this.upstream?.destroy();
      const refusal = this.refusedWith ?? this.refusalFor(err);
      this.session?.discard(refusal.code, messageOf(err));
      // A peer that went away (or broke the TLS handshake) was not refused by anyone: no audit row.
      this.refuse(refusal, { detail: messageOf(err), audit: !(err instanceof PeerClosedError) });
    }
  }

  warn(message: string): void {
    // MySQL has no asynchronous notice a client would show; the broker also pushes the
    // warning to the user's UI and WebSocket clients.
    this.deps.port.log.info({ session: this.session?.id, message }, 'mysql: expiry warning has no in-band channel');
  }

  close(reason: TerminationReason, message: string): void | Promise<void> {
    switch (this.phase) {
      case Phase.closing:
        return;
      case Phase.handshake:
      case Phase.opening:
      case Phase.connecting:
        // No target login has finished: there is no thread to end.
        this.upstream?.destroy();
        return this.lastWord(closingPacket(reason, message));
      case Phase.goingLive:
        // Closed between going live and the auth OK: the client still waits for the OK's answer.
        this.stopUpstream();
        return this.lastWord(closingPacket(reason, message));
      case Phase.relaying: {
        if (this.native) {
          this.phase = Phase.closing;
          this.deps.threads.unregister(this.connectionId);
          // The addon says COM_QUIT or cuts the target off (its end tells which), and frames the ERR.
          return this.native.close(closingPacket(reason, message));
        }
        this.stopUpstream();
        this.phase = Phase.closing;
        // An ERR can only be slipped in between server packets, never inside one.
        if (!this.sframer.atBoundary) return void this.client.destroy();
        const seq = (this.cframer.serverSpoke ? this.sframer.lastSeq : this.cframer.lastSeq) + 1;
        return this.goodbye(encodePacket(seq, closingPacket(reason, message)));
      }
      default: {
        const never: never = this.phase;
        throw new Error(`unknown mysql session phase ${String(never)}`);
      }
    }
  }

  /** A method, not a property read: TypeScript would keep `this.phase` narrowed across awaits. */
  private isClosing(): boolean {
    return this.phase === Phase.closing;
  }

  /**
   * The gateway ends a live session. An idle target gets COM_QUIT and closes as it would
   * for any client; a statement still running there is ended from a second login (the
   * server would only notice the vanished client at its next write).
   */
  private stopUpstream(): void {
    const up = this.upstream;
    this.deps.threads.unregister(this.connectionId);
    if (!up || up.destroyed) return;
    const idle = this.tracker?.idle ?? true;
    if (idle && this.cframer.forwardedWhole) {
      this.deps.stats.upstreamQuits++;
      up.write(COM_QUIT);
      return this.releaseUpstream(up);
    }
    up.destroy();
    if (!idle) this.killTargetThread();
  }

  /** Ends our side of the target connection and lets the target close its own. */
  private releaseUpstream(up: Duplex): void {
    up.end();
    const t = setTimeout(() => up.destroy(), UPSTREAM_CLOSE_GRACE_MS);
    t.unref();
    up.once('close', () => clearTimeout(t));
  }

  private killTargetThread(): void {
    const t = this.target;
    if (!t) return;
    this.deps.stats.threadKills++;
    killThread(t.options, t.thread.threadId).catch((err: unknown) =>
      this.deps.port.log.warn({ err, session: this.session?.id, thread: t.thread.threadId }, 'mysql: could not end the target thread of a closed session'),
    );
  }

  /** A KILL from this client: rewritten to one of its own sessions' target thread, or refused. */
  private kill(kill: KillRequest | KillUnreadable): KillVerdict {
    const me = this.target?.thread;
    const s = this.session;
    if (!me || !s) throw new Error('a KILL before the session was live');
    const name = s.resource.name;
    let refusal: MysqlRefusal;
    let detail: string;
    if (!('id' in kill)) {
      detail = kill.what;
      refusal = killRefused(refusals.notAllowed(kill.what, `send KILL [QUERY|CONNECTION] <thread id> as a plain statement on its own; it ends only your own sessions on ${name}`), false);
    } else {
      const hint = `KILL through Gatehouse ends only your own sessions on ${name} through this gateway node: use your connection's thread id or CONNECTION_ID()`;
      const found = this.deps.threads.resolve(me, kill.id);
      if (found.ok) {
        this.deps.stats.killsMapped++;
        return { forward: rewriteKill(kill, found.thread.threadId) };
      }
      // An id that is both one own session's gateway id and another's thread id is not guessed at.
      refusal = killRefused(refusals.notAllowed(describeKill(kill), hint), true);
      detail = `${describeKill(kill)} via ${kill.via} (${found.why})`;
    }
    this.deps.stats.killsRefused++;
    this.deps.port.refused(this.conn.client, refusal.refusal, `session ${s.id}: ${detail}`);
    return { answer: refusal.packet() };
  }

  /** The listener's handshake timer: from accept until the target login is done. */
  private handshakeTimedOut(): void {
    switch (this.phase) {
      case Phase.handshake:
      case Phase.opening:
      case Phase.connecting: {
        const refusal = new MysqlRefusal(refusals.handshakeTimeout());
        // Said now (mid TLS upgrade there is no packet channel, and the socket just closes);
        // then whatever the connection is waiting for fails and finds it refused.
        this.refuse(refusal);
        const stop = new ClientRefused(refusal.refusal);
        this.clientReader?.abort(stop);
        this.upReader?.abort(stop);
        this.upstream?.destroy();
        return;
      }
      case Phase.goingLive:
      case Phase.relaying:
      case Phase.closing:
        return; // the listener stopped the timer at established()
      default: {
        const never: never = this.phase;
        throw new Error(`unknown mysql session phase ${String(never)}`);
      }
    }
  }

  /** The password or launch ticket, then the decision: the session, or what to tell the client. */
  private async open(login: ClientLogin): Promise<GatewaySession | MysqlRefusal> {
    const { port } = this.deps;
    const client = this.conn.client;
    // Both refusals are audited by the broker; the door only renders them.
    const who = await port.login({ name: login.login, secret: { kind: 'password', value: login.password }, client });
    if (!who.ok) return new MysqlRefusal(who.refusal);
    const res = await port.open({ user: who.user, resource: who.resource, client, mfa: who.mfa });
    if (!res.ok) return accessRefused(who.resource, res.refusal);
    return res.session;
  }

  private async connect(login: ClientLogin, s: GatewaySession): Promise<UpstreamConnection | undefined> {
    const r = s.resource;
    const creds = s.credentials;
    if (!creds?.password) return this.targetFailed(s, new UpstreamError('no_credentials', 'it has no vaulted MySQL password'));
    const database = login.database ?? r.database;
    const target = this.deps.upstream(r);
    this.deps.stats.upstreamConnects++;
    const options = {
      host: r.host, port: r.port, login: creds.login, password: creds.password, clientCapabilities: login.capabilities,
      clientMariadbCapabilities: login.mariadbCapabilities, charset: login.charset, maxPacket: Math.min(login.maxPacket || this.deps.maxPacket, this.deps.maxPacket),
      ...(target.ca ? { ca: target.ca } : {}), tls: target.tls, plaintextAllowed: target.plaintextAllowed, timeoutMs: target.timeoutMs, tlsSessions: target.tlsSessions,
      resource: r.name, gateway: this.deps.port,
    };
    // A client on the native data path gets its target leg there too (not the second login of a KILL).
    const native = this.client instanceof NativeEndpoint ? this.deps.native?.loop : undefined;
    try {
      const up = await connectUpstream({
        ...options,
        ...(database ? { database } : {}),
        ...(native ? { native } : {}),
        onReader: (rd) => {
          this.upReader = rd;
          this.upstream = rd.stream;
        },
        onGreeting: (hs) => this.deps.profiles.learn(`${r.name}\0${r.host}\0${r.port}`, hs),
      });
      const thread = { gatewayId: this.connectionId, user: s.user, resource: r.name, target: `${r.host}:${r.port}`, threadId: up.connectionId };
      this.target = { options, thread };
      if (up.tlsResumed) this.deps.stats.upstreamTlsResumed++;
      return up;
    } catch (err) {
      this.upstream?.destroy();
      if (!(err instanceof UpstreamError)) throw err;
      return this.targetFailed(s, err);
    }
  }

  /** The decision allowed the session but the target could not be used: discarded (audited there) and refused. */
  private targetFailed(s: GatewaySession, err: UpstreamError): undefined {
    const name = s.resource.name;
    // Already refused (the handshake timer cut the target login short): that is the reason.
    if (this.isClosing()) return void s.discard(this.refusedWith?.code ?? err.refusalCode, err.message);
    s.discard(err.refusalCode, err.message);
    const said = err.targetSaid;
    const errno = said?.fields?.errno;
    if (said?.message && typeof errno === 'number' && RELAYED_TARGET_ERRORS.has(errno)) {
      const refusal = refusals.target(err.refusalCode, name, said.message, `name a database ${name} may use, or ask the owner of ${name}`);
      this.refuse(relayedTargetError(refusal, said));
    } else {
      this.refuse(new MysqlRefusal(refusals.target(err.refusalCode, name, err.message, err.hint)));
    }
    return undefined;
  }

  private async goLive(login: ClientLogin, up: UpstreamConnection, s: GatewaySession): Promise<void> {
    try {
      await s.live(this);
    } catch (err) {
      this.deps.port.log.error({ err, session: s.id }, 'mysql: could not record a live session');
      this.stopUpstream();
      s.end('error', 'Gatehouse could not record the session.');
      return this.refuse(new MysqlRefusal(refusals.internalError()));
    }
    // The broker may have closed the session while it was being recorded.
    if (this.isClosing()) return;
    const ok = encodeOk({ status: up.status, sessionTrack: (login.capabilities & Cap.SESSION_TRACK) !== 0 });
    // The target hung up while the session was being recorded (a live record that crosses to the
    // primary from a data-path worker takes long enough): no relay can start on its socket. The
    // client still gets its OK and whatever the target said last (an ERR, say), and the session
    // ends as the target's doing, instead of staying live with no target behind it.
    if (up.reader.stream.destroyed) return this.targetGoneAtStart(login, up, s, ok);
    // The client left while the target login ran or the session was recorded: its 'close' is
    // past, so no relay would ever see it; the target sees what it would from that client.
    if (login.reader.stream.destroyed) return this.clientGoneAtStart(up, s);
    this.deps.threads.register(this.target!.thread);
    if (login.reader.stream instanceof NativeEndpoint) return this.relayNative(login.reader, up, s, ok);
    login.reader.write(ok);
    this.loginTimings(s);
    this.relay(login.reader, up, s);
  }

  private targetGoneAtStart(login: ClientLogin, up: UpstreamConnection, s: GatewaySession, ok: Buffer): void {
    this.phase = Phase.closing;
    this.releaseId();
    const lastWords = up.reader.detach();
    login.reader.write(ok);
    login.reader.detach();
    s.bytesOut += lastWords.length;
    this.goodbye(lastWords);
    s.end('target_closed');
  }

  private clientGoneAtStart(up: UpstreamConnection, s: GatewaySession): void {
    this.phase = Phase.closing;
    this.releaseId();
    up.reader.detach();
    this.releaseUpstream(up.reader.stream);
    s.end('client_closed');
  }

  /**
   * Milliseconds per step of the login, once the client has its OK: `client` (greeting, TLS,
   * the password), `decision` (sign-in and the decision), `target` (the target's connect, TLS
   * and login) and `live` (the live record and the hand-over, up to the OK); then the parts of
   * `client` (ClientStep: `sslRequest`, `tls`, `response`, `auth`; a plaintext client has
   * no `tls` or `response`).
   */
  private loginTimings(s: GatewaySession): void {
    const { log } = this.deps.port;
    if (!log.isLevelEnabled('debug')) return;
    const m = [...this.marks, performance.now()];
    const round = (x: number): number => Math.round(x * 1000) / 1000;
    const ms: Record<string, number> = Object.fromEntries(['client', 'decision', 'target', 'live'].map((n, i) => [n, round(m[i + 1]! - m[i]!)]));
    this.clientSteps.forEach(([step, at], i) => (ms[step] = round(at - (i === 0 ? m[0]! : this.clientSteps[i - 1]![1]))));
    log.debug({ session: s.id, relay: this.client instanceof NativeEndpoint ? 'native' : 'node', ms }, 'login timings');
  }

  private releaseId(): void {
    if (this.idReleased) return;
    this.idReleased = true;
    this.deps.threads.release(this.connectionId);
  }

  /** The relay on the native data path: the addon moves the bytes from here. */
  private async relayNative(clientReader: PacketReader, up: UpstreamConnection, s: GatewaySession, ok: Buffer): Promise<void> {
    const client = clientReader.stream as NativeEndpoint;
    const okPacket = encodePacket((clientReader.seq + 1) & 0xff, ok);
    const clientAhead = clientReader.detach();
    const upstreamAhead = up.reader.detach();
    // A plaintext target leg logged in on Node's socket: the addon takes it now.
    const upstream = up.reader.stream instanceof NativeEndpoint ? up.reader.stream : this.deps.native!.loop.plain(up.reader.stream as Socket);
    upstream.on('error', () => {});
    this.upstream = upstream;
    // The OK goes out now, as on Node's streams; what the client sends after it, and whatever
    // the addon read after the login's last packet, is on its way up: waited for, then relayed.
    client.write(okPacket);
    this.loginTimings(s);
    const [c, u] = await Promise.all([client.stop(), upstream.stop()]);
    if (this.isClosing()) return;
    this.phase = Phase.relaying;
    const release = this.conn.keep();
    const native = new MysqlNativeRelay({
      loop: this.deps.native!.loop,
      records: this.deps.native!.records,
      session: s,
      release,
      maxPacket: this.deps.maxPacket,
      auditLimit: this.deps.auditSqlLimit,
      onStatement: this.deps.onStatement ? (kind, sql, truncated) => this.audit(kind, sql, truncated) : undefined,
      onKill: (kill) => this.kill(kill),
      onRefused: (refusal) => {
        this.phase = Phase.closing;
        this.deps.stats.refusals++;
        if (refusal.code === 'not_allowed') this.deps.stats.changeUserRefused++;
        this.deps.threads.unregister(this.connectionId);
        this.deps.port.refused(this.conn.client, refusal.refusal, `session ${s.id}`);
        s.end('error', refusal.text());
      },
      onEnd: (how, target, why) => {
        this.phase = Phase.closing;
        this.deps.threads.unregister(this.connectionId);
        this.releaseId();
        switch (how) {
          case How.Teardown:
          case How.Violation:
            if (target === 'quit') this.deps.stats.upstreamQuits++;
            else if (target === 'busy') this.killTargetThread();
            return;
          case How.ClientClosed:
            return why ? s.end('error', `client TLS: ${why}`) : s.end('client_closed');
          case How.TargetClosed:
            return why ? s.end('error', `target TLS: ${why}`) : s.end('target_closed');
          case How.TargetBroke:
            return s.end('error', `target protocol violation: ${why ?? 'invalid packet'}`);
        }
      },
    }, client, upstream);
    const clientRest = Buffer.concat([clientAhead, c]);
    try {
      native.start({
        clientRest,
        upstreamRest: Buffer.concat([upstreamAhead, u]),
        deprecateEof: (up.capabilities & Cap.DEPRECATE_EOF) !== 0,
        cacheMetadata: (up.mariadbCapabilities & MariaCap.CACHE_METADATA) !== 0,
      });
    } catch (err) {
      return this.nativeStartFailed(err, s, clientRest, release);
    }
    this.native = native;
  }

  /**
   * The addon would not take the relay (MysqlNativeRelay.start threw): both legs are still the
   * login's. The target, idle behind its login, gets COM_QUIT (stopUpstream); the client, which
   * has its OK, an ERR (answering the first command it sent behind the OK, or unasked); the
   * session ends on record as an error, and the connection's count once the client is gone.
   */
  private nativeStartFailed(err: unknown, s: GatewaySession, clientRest: Buffer, release: () => void): void {
    this.deps.port.log.error({ err, session: s.id }, 'mysql: the native data path could not start the relay');
    this.phase = Phase.closing;
    this.stopUpstream();
    this.releaseId();
    if (this.client.closed) release();
    else this.client.once('close', release);
    const seq = clientRest.length >= 4 ? (clientRest[3]! + 1) & 0xff : 0;
    this.goodbye(encodePacket(seq, closingPacket('error', START_FAILED)));
    s.end('error', START_FAILED);
  }

  private relay(clientReader: PacketReader, up: UpstreamConnection, s: GatewaySession): void {
    const client = this.client;
    const upstream = up.reader.stream;
    const fromClient = clientReader.detach();
    const fromServer = up.reader.detach();
    this.tracker = new ResponseTracker((up.capabilities & Cap.DEPRECATE_EOF) !== 0, (up.mariadbCapabilities & MariaCap.CACHE_METADATA) !== 0);
    this.sframer = new ServerFramer(this.tracker);
    this.phase = Phase.relaying;
    const out: FramerOutput = {
      server: (bytes) => {
        s.bytesIn += bytes.length;
        if (!upstream.write(bytes)) client.pause();
      },
      // The gateway's own answer (a refused KILL): the framer sends it only once the target has
      // settled (replyOwed), so it never cuts into a reply and every reply keeps its command's order.
      client: (packet, seq) => {
        client.write(packet);
        this.sframer.said(seq);
      },
    };
    const onClient = (chunk: Buffer): void => {
      if (this.isClosing()) return;
      const refusal = this.cframer.feed(chunk, out);
      if (refusal) this.refuseLive(refusal, s);
      // Behind a refused command whose ERR waits for the target, the client is not read on.
      else if (this.cframer.waiting) client.pause();
    };
    const onServer = (chunk: Buffer): void => {
      if (this.isClosing()) return;
      s.bytesOut += chunk.length;
      this.sframer.observe(chunk);
      this.cframer.serverSpoke = true;
      if (!client.write(chunk)) upstream.pause();
      if (this.cframer.waiting && this.targetSettled()) {
        const refusal = this.cframer.settle(out);
        if (refusal) this.refuseLive(refusal, s);
        else if (!this.cframer.waiting && !upstream.writableNeedDrain) client.resume();
      }
    };
    client.on('data', onClient);
    upstream.on('data', onServer);
    client.on('drain', () => upstream.resume());
    upstream.on('drain', () => {
      if (!this.cframer.waiting) client.resume();
    });
    client.on('error', () => {});
    upstream.on('error', () => {});
    client.on('close', () => {
      this.deps.threads.unregister(this.connectionId);
      if (!this.isClosing()) {
        // The client went (after COM_QUIT, relayed, or without one): the target sees what it
        // would see from that client directly, and closes its side itself.
        this.phase = Phase.closing;
        if (!upstream.destroyed) this.releaseUpstream(upstream);
      }
      s.end('client_closed');
    });
    // The target's FIN (after everything it sent reached the client) ends the session as its
    // doing at once: the client, reading the target's last words, may close before Node has
    // closed the target's socket.
    const targetGone = (): void => {
      this.deps.threads.unregister(this.connectionId);
      if (!this.isClosing()) {
        this.phase = Phase.closing;
        client.end();
      }
      s.end(this.cframer.quit ? 'client_closed' : 'target_closed');
    };
    upstream.once('end', targetGone);
    upstream.on('close', targetGone);
    if (fromServer.length) onServer(fromServer);
    if (fromClient.length) onClient(fromClient);
    client.resume();
    upstream.resume();
  }

  /** The target owes nothing a gateway answer could cut into (relay on Node's streams). */
  private targetSettled(): boolean {
    return this.tracker!.settled && this.sframer.atBoundary;
  }

  private audit(kind: StatementEvent['kind'], sql: string, truncated: boolean): void {
    const s = this.session;
    if (s) this.deps.onStatement?.({ sessionId: s.id, user: s.user, resource: s.resource.name, kind, sql, truncated });
  }

  /** A command refused mid-session (COM_CHANGE_USER, an oversized packet): ERR after it, then the session ends. */
  private refuseLive(refusal: MysqlRefusal, s: GatewaySession): void {
    this.phase = Phase.closing;
    this.deps.stats.refusals++;
    if (refusal.code === 'not_allowed') this.deps.stats.changeUserRefused++;
    this.deps.port.refused(this.conn.client, refusal.refusal, `session ${s.id}`);
    this.stopUpstream();
    this.goodbye(encodePacket(this.cframer.lastSeq + 1, refusal.packet()));
    s.end('error', refusal.text());
  }

  /**
   * Handshake-phase refusal: ERR with the next sequence id on the current client leg, then
   * close. The door's own refusals are audited here; login, decision and target refusals
   * were audited by the broker (the login path, the decision, `discard`).
   */
  private refuse(refusal: MysqlRefusal, opts: { detail?: string; audit?: boolean } = {}): void {
    if (this.isClosing()) return;
    this.refusedWith = refusal;
    this.deps.stats.refusals++;
    if (opts.audit !== false && refusalFamily(refusal.code) === 'door') this.deps.port.refused(this.conn.client, refusal.refusal, opts.detail);
    this.lastWord(refusal.packet());
  }

  private lastWord(payload: Buffer): void {
    this.phase = Phase.closing;
    const reader = this.clientReader;
    // Without a packet channel (mid TLS upgrade) there is nothing to say: a plaintext ERR would be noise.
    if (!reader || reader.detached || reader.stream !== this.client || this.client.destroyed) return void this.client.destroy();
    reader.detach();
    this.goodbye(encodePacket((reader.seq + 1) & 0xff, payload));
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
    if (err instanceof ClientRefused) return new MysqlRefusal(err.refusal);
    if (err instanceof MysqlDecodeError) return protocolRefusal(err);
    if (err instanceof PeerClosedError) return new MysqlRefusal(refusals.protocolError(err.message));
    this.deps.port.log.error({ err }, 'mysql: connection failed');
    return new MysqlRefusal(refusals.internalError());
  }
}
