/**
 * One client connection: authentication (key, password or ticket through the broker's one
 * login path, then TOTP when the resource wants it), the decision, the target connection,
 * and the relays. It is the broker's SessionHandle once live; the broker alone decides when
 * it ends.
 */
import type { Socket } from 'node:net';
import type { AuthContext, Client, ClientChannel, Connection, KeyboardAuthContext, ServerChannel, Session } from 'ssh2';
import type { SessionHandle } from '../../src/broker/adapter.js';
import type { GatewayPort, GatewaySession, LoginResult, MfaProof, Refusal } from '../../src/broker/port.js';
import { printable, refusals } from '../../src/broker/refusals.js';
import type { Logger } from '../../src/core/log.js';
import type { Resource, TerminationReason } from '../../src/core/model.js';
import type { DoorConnection } from '../shared/listener.js';
import { checkPrimary, PRIMARY_METHODS, RETRYABLE } from './auth.js';
import { SessionRelay, splice, type RelayHost } from './channels.js';
import {
  DISCONNECT, interceptChannelOpen, OPEN_FAILURE, openAgentChannel, protocolOf, sendBanner, sendDisconnect,
  type ChannelOpenInfo, type ProtocolInternals,
} from './codec.js';
import { channelRefusals, SshRefusal } from './errors.js';
import { ClientAgentRelay, connectUpstream } from './upstream.js';

export interface SshSessionOptions {
  /** From TCP accept to the first authentication request. */
  handshakeTimeoutMs: number;
  /** From the first authentication request to being logged in (a person may be typing a TOTP code). */
  loginGraceMs: number;
  maxAuthAttempts: number;
  upstreamTimeoutMs: number;
  /** How long a closing socket may linger before it is destroyed. */
  lingerMs: number;
}

const Phases = { handshake: 'handshake', primary: 'primary', mfa: 'mfa', opening: 'opening', live: 'live', closed: 'closed' } as const;
type Phase = (typeof Phases)[keyof typeof Phases];

const LOOPBACK = new Set(['localhost', '127.0.0.1', '::1']);
const SERVER_ONLY_CHANNELS = new Set(['x11', 'forwarded-tcpip', 'auth-agent@openssh.com', 'forwarded-streamlocal@openssh.com']);

/** How long teardown waits for the client to close its channels before disconnecting. */
const GOODBYE_WAIT_MS = 150;

/** Who the broker signed in. */
interface SignedIn {
  user: string;
  resource: string;
}

export class SshSession implements SessionHandle {
  private phase: Phase = Phases.handshake;
  private conn: Connection | undefined;
  private who: SignedIn | undefined;
  private failures = 0;
  private lastFailure: Refusal | undefined;
  private upstream: Client | undefined;
  /** Passed the decision, target not reached yet: discarded if anything goes wrong. */
  private pending: GatewaySession | undefined;
  private session: GatewaySession | undefined;
  private relayHost: RelayHost | undefined;
  private readonly relays = new Set<SessionRelay>();
  private relaysDrained: (() => void) | undefined;
  private readonly pendingTunnels = new WeakMap<object, ClientChannel>();
  private loginTimer: NodeJS.Timeout;
  private authStarted = false;
  private readonly socket: Socket;
  private readonly client: string;
  private readonly log: Logger;
  private hangUpCode: number = DISCONNECT.BY_APPLICATION;

  constructor(
    private readonly door: DoorConnection,
    private readonly port: GatewayPort,
    private readonly opts: SshSessionOptions,
  ) {
    this.socket = door.socket;
    this.client = door.client;
    this.log = port.log;
    this.loginTimer = this.armLoginTimer(opts.handshakeTimeoutMs);
    // The listener's own timer is a backstop (this session's timers fire first); either way
    // the user reads why.
    door.onHandshakeTimeout(() => this.timedOut());
    this.socket.once('close', () => this.onSocketClosed());
  }

  /** ssh2 read the client's version line and built the connection object. */
  attach(conn: Connection): void {
    if (this.phase !== Phases.handshake) return void conn.end();
    this.conn = conn;
    this.phase = Phases.primary;
    conn.on('error', (err: Error & { level?: string }) => this.onConnError(err));
    conn.on('authentication', (ctx: AuthContext) => void this.onAuth(ctx).catch((err: unknown) => this.fail(err)));
    conn.on('session', (accept: () => Session | undefined, reject: () => void) => this.onSession(accept, reject));
    conn.on('tcpip', (accept: () => ServerChannel | undefined, reject: () => void, info: object) => this.onTunnelAccepted(accept, reject, info));
    conn.on('request', (accept: ((port?: number) => void) | undefined, reject: (() => void) | undefined, name: string, info: { bindAddr: string; bindPort: number }) =>
      this.onGlobalRequest(accept, reject, name, info),
    );
    interceptChannelOpen(conn, (info, proto, passOn) => this.onChannelOpen(info, proto, passOn));
  }

  // ---- SessionHandle -------------------------------------------------------------------

  warn(message: string): void {
    for (const r of this.relays) r.warn(message);
  }

  close(_reason: TerminationReason, message: string): void {
    if (this.phase === Phases.closed) return;
    this.phase = Phases.closed;
    for (const r of this.relays) r.goodbye(message);
    if (this.relays.size === 0) return this.hangUp(this.hangUpCode, message);
    // OpenSSH drops channel output it has not yet written out when a disconnect arrives in
    // the same read, so the goodbye on the terminal waits for the client to close its channels
    // (it prints what it got first), for at most GOODBYE_WAIT_MS.
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.relaysDrained = undefined;
      this.hangUp(this.hangUpCode, message);
    };
    const timer = setTimeout(finish, GOODBYE_WAIT_MS);
    this.relaysDrained = finish;
  }

  // ---- authentication ------------------------------------------------------------------

  private async onAuth(ctx: AuthContext): Promise<void> {
    // Over the listener's limit: refused at the first attempt, where OpenSSH shows the banner.
    if (this.door.overLimit) return this.refuseByDoor(refusals.tooManyConnections(), 'over maxConnections');
    if (!this.authStarted) {
      this.authStarted = true;
      clearTimeout(this.loginTimer);
      this.loginTimer = this.armLoginTimer(this.opts.loginGraceMs);
    }
    switch (this.phase) {
      case Phases.primary:
        return this.onFirstFactor(ctx);
      case Phases.mfa:
        return this.onSecondFactor(ctx);
      case Phases.handshake:
      case Phases.opening:
      case Phases.live:
      case Phases.closed:
        return ctx.reject();
      default: {
        const never: never = this.phase;
        throw new Error(`unknown ssh session phase ${String(never)}`);
      }
    }
  }

  private async onFirstFactor(ctx: AuthContext): Promise<void> {
    const r = await checkPrimary(this.port, ctx, this.client);
    if (this.phase !== Phases.primary) return;
    switch (r.kind) {
      case 'probe':
        return ctx.reject([...PRIMARY_METHODS]);
      case 'key_ok':
        return ctx.accept();
      case 'key_unknown':
      case 'unsupported':
        return this.failedAttempt(ctx);
      case 'login':
        return this.afterLogin(ctx, r.result);
      case 'refused':
        this.port.refused(this.client, r.refusal, 'before any secret');
        return this.refuse(new SshRefusal(r.refusal));
      default: {
        const never: never = r;
        throw new Error(`unknown auth result ${JSON.stringify(never)}`);
      }
    }
  }

  private async afterLogin(ctx: AuthContext, r: LoginResult): Promise<void> {
    // A wrong secret is SSH's "try another method"; anything else (locked, throttled, a
    // malformed login, a ticket for another protocol...) ends the connection with its reason.
    if (!r.ok) return RETRYABLE.has(r.code) ? this.failedAttempt(ctx, r.refusal) : this.refuse(new SshRefusal(r.refusal));
    this.who = { user: r.user, resource: r.resource };
    if (r.mfa.kind === 'none' && (await this.port.needsMfa(r.user, r.resource))) {
      if (this.phase !== Phases.primary) return;
      this.phase = Phases.mfa;
      return ctx.reject(['keyboard-interactive'], true);
    }
    if (this.phase !== Phases.primary) return;
    return this.open(ctx, r.mfa);
  }

  /** A real failed attempt (not the `none` probe): sshd's MaxAuthTries, then the last reason. */
  private failedAttempt(ctx: AuthContext, refusal?: Refusal): void {
    if (refusal) this.lastFailure = refusal;
    if (++this.failures < this.opts.maxAuthAttempts) return ctx.reject([...PRIMARY_METHODS]);
    const last = this.lastFailure ?? refusals.badKey(printable(ctx.username, 64));
    this.refuse(new SshRefusal(last, undefined, 'Too many failed authentication attempts.'));
  }

  private onSecondFactor(ctx: AuthContext): void {
    // The TOTP step belongs to the login the first factor proved (ssh2 disconnects a client
    // that changes the user name between requests), so the name is not read again here.
    const who = this.who!;
    if (ctx.method !== 'keyboard-interactive') return ctx.reject(['keyboard-interactive'], true);
    this.promptTotp(ctx, who.resource);
  }

  private armLoginTimer(ms: number): NodeJS.Timeout {
    const t = setTimeout(() => this.timedOut(), ms);
    t.unref();
    return t;
  }

  private timedOut(): void {
    this.refuseByDoor(refusals.handshakeTimeout(), this.authStarted ? 'login not finished in time' : 'no login started in time');
  }

  private promptTotp(ctx: KeyboardAuthContext, resource: string): void {
    ctx.prompt([{ prompt: `Gatehouse TOTP code for ${resource}: `, echo: false }], 'Gatehouse MFA', '', (answers: string[] | Error) => {
      if (!Array.isArray(answers) || this.phase !== Phases.mfa) return;
      void this.open(ctx, { kind: 'totp', code: (answers[0] ?? '').trim() }).catch((err: unknown) => this.fail(err));
    });
  }

  /** The decision, then the target; only once both succeed is the client let in. */
  private async open(ctx: AuthContext, mfa: MfaProof): Promise<void> {
    const who = this.who!;
    this.phase = Phases.opening;
    const r = await this.port.open({ user: who.user, resource: who.resource, client: this.client, mfa });
    if (!r.ok) return this.refuse(new SshRefusal(r.refusal, who.resource));
    const s = r.session;
    if (this.phase !== Phases.opening) return s.end('client_closed', 'the client went away before the target was reached');
    this.pending = s;
    const opt = s.resource.options;
    const up = await connectUpstream({
      port: this.port, resource: s.resource, credentials: s.credentials, timeoutMs: this.opts.upstreamTimeoutMs,
      ...(opt.allowAgentForwarding && this.conn ? { agent: new ClientAgentRelay((cb) => openAgentChannel(this.conn!, cb)) } : {}),
    });
    this.pending = undefined;
    if (this.phase !== Phases.opening) {
      if (up.ok) up.conn.end();
      return s.end('client_closed', 'the client went away before the target was reached');
    }
    if (!up.ok) {
      const e = up.error;
      // Audited once, as the discarded session's code (as the database doors do).
      s.discard(e.refusalCode, e.message);
      return this.refuse(new SshRefusal(refusals.target(e.refusalCode, s.resource.name, e.message, e.hint), s.resource.name));
    }
    this.session = s;
    this.upstream = up.conn;
    this.relayHost = { resource: s.resource, session: s, upstream: up.conn, log: this.log };
    up.conn.on('error', (err: Error) => this.log.debug({ err, session: s.id }, 'target connection error'));
    up.conn.once('close', () => s.end('target_closed', `Gatehouse: ${s.resource.name} closed the connection.`));
    up.conn.on('tcp connection', (info: { destIP: string; destPort: number; srcIP: string; srcPort: number }, accept: () => ClientChannel, reject: () => void) =>
      this.onRemoteForward(info, accept, reject),
    );
    up.conn.on('x11', (info: { srcIP: string; srcPort: number }, accept: () => ClientChannel, reject: () => void) => this.onX11(info, accept, reject));
    this.phase = Phases.live;
    clearTimeout(this.loginTimer);
    this.door.established();
    await s.live(this);
    if (this.phase === Phases.live) ctx.accept();
  }

  // ---- channels ------------------------------------------------------------------------

  private onSession(accept: () => Session | undefined, reject: () => void): void {
    const host = this.relayHost;
    if (!host || this.phase !== Phases.live) return reject();
    const session = accept();
    if (!session) return;
    const opt = host.resource.options;
    const relay = new SessionRelay(host, session, { x11: !!opt.allowX11, agent: !!opt.allowAgentForwarding }, (r) => {
      this.relays.delete(r);
      if (this.relays.size === 0) this.relaysDrained?.();
    });
    this.relays.add(relay);
  }

  /** Every channel open passes here first, so a refusal can say why. */
  private onChannelOpen(info: ChannelOpenInfo, proto: ProtocolInternals, passOn: () => void): boolean {
    if (this.phase !== Phases.live) return false;
    const resource = this.relayHost!.resource;
    const refuse = (text: string, code: number = OPEN_FAILURE.ADMINISTRATIVELY_PROHIBITED): boolean => {
      proto.channelOpenFail(info.sender, code, text);
      return true;
    };
    switch (info.type) {
      case 'session':
        return false;
      case 'direct-tcpip':
        return this.onTunnelOpen(info, resource, refuse, passOn);
      case 'direct-streamlocal@openssh.com':
        return refuse(channelRefusals.streamLocal(resource.name));
      default:
        if (SERVER_ONLY_CHANNELS.has(info.type)) return refuse(channelRefusals.serverOnly(info.type));
        refuse(channelRefusals.unknown(info.type), OPEN_FAILURE.UNKNOWN_CHANNEL_TYPE);
        // Nothing a stock client sends: treat it as a protocol error and hang up.
        this.hangUpCode = DISCONNECT.PROTOCOL_ERROR;
        this.session!.end('error', channelRefusals.unknown(info.type));
        return true;
    }
  }

  /** `-L`: only to the resource's own host (as the target sees it) and its allowed ports. */
  private onTunnelOpen(info: ChannelOpenInfo, resource: Resource, refuse: (text: string, code?: number) => boolean, passOn: () => void): boolean {
    const d = info.data as { destIP?: unknown; destPort?: unknown; srcIP?: unknown; srcPort?: unknown };
    const host = String(d.destIP ?? '');
    const port = Number(d.destPort);
    if (host !== resource.host && !LOOPBACK.has(host.toLowerCase())) return refuse(channelRefusals.tunnelHost(resource.name, host, port));
    const allowed = resource.options.allowedTunnelPorts?.length ? resource.options.allowedTunnelPorts : [resource.port];
    if (!allowed.includes(port)) return refuse(channelRefusals.tunnelPort(resource.name, port, allowed));
    const srcIP = typeof d.srcIP === 'string' ? d.srcIP : '127.0.0.1';
    const srcPort = Number(d.srcPort) || 0;
    const failed = (why: string): boolean => refuse(`Gatehouse: ${resource.name} could not connect to ${host}:${port} (${why})`, OPEN_FAILURE.CONNECT_FAILED);
    try {
      this.upstream!.forwardOut(srcIP, srcPort, host, port, (err, up) => {
        if (this.phase !== Phases.live) return up?.close();
        if (err || !up) return void failed(err?.message ?? 'no channel');
        this.pendingTunnels.set(info.data, up);
        passOn();
      });
    } catch (err) {
      return failed((err as Error).message);
    }
    return true;
  }

  private onTunnelAccepted(accept: () => ServerChannel | undefined, reject: () => void, info: object): void {
    const up = this.pendingTunnels.get(info);
    this.pendingTunnels.delete(info);
    if (!up || !this.session) return reject();
    const ch = accept();
    if (!ch) return void up.close();
    splice(this.session, ch, up);
  }

  /** `-R` (tcpip-forward) only where the resource allows remote forwarding. */
  private onGlobalRequest(accept: ((port?: number) => void) | undefined, reject: (() => void) | undefined, name: string, info: { bindAddr: string; bindPort: number }): void {
    const host = this.relayHost;
    if (!host || !this.upstream) return reject?.();
    const up = this.upstream;
    try {
      if (name === 'tcpip-forward' && host.resource.options.allowRemoteForwarding) {
        up.forwardIn(info.bindAddr, info.bindPort, (err, port) => (err ? reject?.() : accept?.(port)));
        return;
      }
      if (name === 'cancel-tcpip-forward' && host.resource.options.allowRemoteForwarding) {
        up.unforwardIn(info.bindAddr, info.bindPort, (err) => (err ? reject?.() : accept?.()));
        return;
      }
    } catch (err) {
      this.log.debug({ err }, 'remote forwarding request failed');
      return reject?.();
    }
    if (name === 'tcpip-forward') this.notify(channelRefusals.notAllowed('remote port forwarding', host.resource.name));
    reject?.();
  }

  private onRemoteForward(info: { destIP: string; destPort: number; srcIP: string; srcPort: number }, accept: () => ClientChannel, reject: () => void): void {
    if (!this.conn || !this.session || this.phase !== Phases.live) return reject();
    const s = this.session;
    try {
      this.conn.forwardOut(info.destIP, info.destPort, info.srcIP, info.srcPort, (err, ch) => (err ? reject() : splice(s, ch, accept())));
    } catch {
      reject();
    }
  }

  private onX11(info: { srcIP: string; srcPort: number }, accept: () => ClientChannel, reject: () => void): void {
    if (!this.conn || !this.session || this.phase !== Phases.live || !this.relayHost?.resource.options.allowX11) return reject();
    const s = this.session;
    try {
      this.conn.x11(info.srcIP, info.srcPort, (err, ch) => (err ? reject() : splice(s, ch, accept())));
    } catch {
      reject();
    }
  }

  private notify(message: string): void {
    for (const r of this.relays) r.warn(message);
  }

  // ---- endings -------------------------------------------------------------------------

  /** Refuses before login: the reason as a banner (full text) and as the disconnect line. */
  private refuse(r: SshRefusal): void {
    if (this.phase === Phases.closed || this.phase === Phases.live) return;
    this.phase = Phases.closed;
    const proto = this.conn ? protocolOf(this.conn) : undefined;
    try {
      if (proto) sendBanner(proto, r.banner());
    } catch (err) {
      this.log.debug({ err }, 'could not send the refusal banner');
    }
    this.hangUp(r.reason, r.line());
  }

  /** A refusal the door makes itself (the broker audits its own login and decision refusals). */
  private refuseByDoor(refusal: Refusal, detail: string, resource?: string): void {
    if (this.phase === Phases.closed || this.phase === Phases.live) return;
    this.port.refused(this.client, refusal, detail);
    this.refuse(new SshRefusal(refusal, resource));
  }

  /** ssh2 hit a protocol error and has already disconnected: record it if it came before login. */
  private onConnError(err: Error & { level?: string }): void {
    this.log.debug({ err, client: this.client }, 'ssh client protocol error');
    if (err.level !== 'protocol' && err.level !== 'handshake') return;
    if (this.phase === Phases.closed || this.phase === Phases.live) return;
    this.phase = Phases.closed;
    this.port.refused(this.client, refusals.protocolError(err.message), err.level);
  }

  private hangUp(reason: number, text: string): void {
    this.phase = Phases.closed;
    clearTimeout(this.loginTimer);
    const socket = this.socket;
    try {
      if (this.conn && !socket.destroyed) sendDisconnect(protocolOf(this.conn), reason, text);
    } catch (err) {
      this.log.debug({ err }, 'could not send disconnect');
    }
    socket.end();
    setTimeout(() => socket.destroy(), this.opts.lingerMs).unref();
    const up = this.upstream;
    if (up) {
      up.end();
      setTimeout(() => up.destroy(), this.opts.lingerMs).unref();
    }
  }

  private onSocketClosed(): void {
    const wasLive = this.phase === Phases.live;
    this.phase = Phases.closed;
    clearTimeout(this.loginTimer);
    this.upstream?.end();
    if (wasLive) this.session?.end('client_closed');
    else this.pending?.end('client_closed', 'the client went away before the target was reached');
  }

  private fail(err: unknown): void {
    this.log.error({ err, client: this.client }, 'ssh session failed');
    if (this.session && this.phase === Phases.live) return this.session.end('error', 'Gatehouse: internal error; session closed.');
    const detail = err instanceof Error ? err.message : String(err);
    this.pending?.discard('internal_error', detail);
    this.pending = undefined;
    this.refuseByDoor(refusals.internalError(), detail);
  }
}
