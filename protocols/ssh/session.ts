/**
 * One client connection: authentication (key or password or ticket, then TOTP when the
 * resource wants it), the decision, the target connection, and the relays. It is the
 * broker's SessionHandle once live; the broker alone decides when it ends.
 */
import type { Socket } from 'node:net';
import type { AuthContext, Client, ClientChannel, Connection, KeyboardAuthContext, ServerChannel, Session } from 'ssh2';
import type { SessionHandle } from '../../src/broker/adapter.js';
import type { Broker, BrokerSession } from '../../src/broker/broker.js';
import type { Logger } from '../../src/core/log.js';
import type { Resource, TerminationReason } from '../../src/core/model.js';
import type { MfaProof } from '../../src/workflow/decide.js';
import { checkPrimary, PRIMARY_METHODS } from './auth.js';
import { SessionRelay, splice, type RelayHost } from './channels.js';
import {
  DISCONNECT, interceptChannelOpen, OPEN_FAILURE, openAgentChannel, parseLogin, protocolOf, sendBanner, sendDisconnect,
  type ChannelOpenInfo, type GatewayLogin, type ProtocolInternals,
} from './codec.js';
import { channelRefusals, fromDenial, refusals, SshRefusal } from './errors.js';
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

const Steps = { handshake: 'handshake', primary: 'primary', mfa: 'mfa', opening: 'opening', live: 'live', closed: 'closed' } as const;
type Step = (typeof Steps)[keyof typeof Steps];

const LOOPBACK = new Set(['localhost', '127.0.0.1', '::1']);
const SERVER_ONLY_CHANNELS = new Set(['x11', 'forwarded-tcpip', 'auth-agent@openssh.com', 'forwarded-streamlocal@openssh.com']);

/** How long teardown waits for the client to close its channels before disconnecting. */
const GOODBYE_WAIT_MS = 150;

export class SshSession implements SessionHandle {
  private step: Step = Steps.handshake;
  private conn: Connection | undefined;
  private login: GatewayLogin | undefined;
  private failures = 0;
  private upstream: Client | undefined;
  private session: BrokerSession | undefined;
  private relayHost: RelayHost | undefined;
  private readonly relays = new Set<SessionRelay>();
  private relaysDrained: (() => void) | undefined;
  private readonly pendingTunnels = new WeakMap<object, ClientChannel>();
  private loginTimer: NodeJS.Timeout;
  private authStarted = false;
  private readonly clientAddr: string;
  private hangUpCode: number = DISCONNECT.BY_APPLICATION;

  constructor(
    private readonly socket: Socket,
    private readonly broker: Broker,
    private readonly log: Logger,
    private readonly opts: SshSessionOptions,
  ) {
    this.clientAddr = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
    this.loginTimer = this.armLoginTimer(opts.handshakeTimeoutMs);
    socket.on('error', (err) => this.log.debug({ err, client: this.clientAddr }, 'ssh client socket error'));
    socket.once('close', () => this.onSocketClosed());
  }

  /** ssh2 read the client's version line and built the connection object. */
  attach(conn: Connection): void {
    if (this.step !== Steps.handshake) return void conn.end();
    this.conn = conn;
    this.step = Steps.primary;
    conn.on('error', (err: Error) => this.log.debug({ err, client: this.clientAddr }, 'ssh client protocol error'));
    conn.on('authentication', (ctx: AuthContext) => void this.onAuth(ctx).catch((err: unknown) => this.fail(err)));
    conn.on('session', (accept: () => Session | undefined, reject: () => void) => this.onSession(accept, reject));
    conn.on('tcpip', (accept: () => ServerChannel | undefined, reject: () => void, info: object) => this.onTunnelAccepted(accept, reject, info));
    conn.on('request', (accept: ((port?: number) => void) | undefined, reject: (() => void) | undefined, name: string, info: { bindAddr: string; bindPort: number }) =>
      this.onGlobalRequest(accept, reject, name, info),
    );
    interceptChannelOpen(conn, (info, proto, passOn) => this.onChannelOpen(info, proto, passOn));
  }

  get isLive(): boolean {
    return this.step === Steps.live;
  }

  // ---- SessionHandle -------------------------------------------------------------------

  warn(message: string): void {
    for (const r of this.relays) r.warn(message);
  }

  close(_reason: TerminationReason, message: string): void {
    if (this.step === Steps.closed) return;
    this.step = Steps.closed;
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
    if (this.step !== Steps.primary && this.step !== Steps.mfa) return ctx.reject();
    if (!this.authStarted) {
      this.authStarted = true;
      clearTimeout(this.loginTimer);
      this.loginTimer = this.armLoginTimer(this.opts.loginGraceMs);
    }
    const login = parseLogin(ctx.username);
    if (!login) return this.refuse(refusals.badLogin(ctx.username));
    this.login = login;
    if (this.step === Steps.mfa) {
      if (ctx.method !== 'keyboard-interactive') return ctx.reject(['keyboard-interactive'], true);
      return this.promptTotp(ctx);
    }
    const r = await checkPrimary(this.broker, login, ctx);
    if (this.step !== Steps.primary) return;
    switch (r.kind) {
      case 'key_ok':
        return ctx.accept();
      case 'fail':
        if (r.counts && ++this.failures >= this.opts.maxAuthAttempts) return this.refuse(refusals.badCredentials());
        return ctx.reject([...PRIMARY_METHODS]);
      case 'ok':
        if (r.mfa.kind === 'none' && (await this.needsTotp(login))) {
          if (this.step !== Steps.primary) return;
          this.step = Steps.mfa;
          return ctx.reject(['keyboard-interactive'], true);
        }
        return this.open(ctx, r.mfa);
      default: {
        const never: never = r;
        throw new Error(`unknown auth result ${JSON.stringify(never)}`);
      }
    }
  }

  private armLoginTimer(ms: number): NodeJS.Timeout {
    const t = setTimeout(() => this.refuse(refusals.authTimeout()), ms);
    t.unref();
    return t;
  }

  /** Whether the resource asks for a TOTP code; a dry run, so nothing is audited or used up. */
  private async needsTotp(login: GatewayLogin): Promise<boolean> {
    const d = await this.broker.engine.explain(login.user, login.resource);
    return d.allow && d.resource.settings.mfa === true;
  }

  private promptTotp(ctx: KeyboardAuthContext): void {
    const resource = this.login?.resource ?? '';
    ctx.prompt([{ prompt: `Gatehouse TOTP code for ${resource}: `, echo: false }], 'Gatehouse MFA', '', (answers: string[] | Error) => {
      if (!Array.isArray(answers) || this.step !== Steps.mfa) return;
      void this.open(ctx, { kind: 'totp', code: (answers[0] ?? '').trim() }).catch((err: unknown) => this.fail(err));
    });
  }

  /** The decision, then the target; only once both succeed is the client let in. */
  private async open(ctx: AuthContext, mfa: MfaProof): Promise<void> {
    const login = this.login!;
    this.step = Steps.opening;
    const r = await this.broker.open({ user: login.user, resource: login.resource, protocol: 'ssh', client: this.clientAddr, mfa });
    if (!r.ok) return this.refuse(fromDenial(r.denial), login.resource);
    const s = r.session;
    if (this.step !== Steps.opening) return s.discard('the client went away');
    if (s.resource.protocol !== 'ssh') {
      s.discard('not an ssh resource');
      return this.refuse(refusals.wrongProtocol(s.resource.name, s.resource.protocol), login.resource);
    }
    const opt = s.resource.options;
    const up = await connectUpstream({
      broker: this.broker, resource: s.resource, credentials: s.credentials, timeoutMs: this.opts.upstreamTimeoutMs,
      ...(opt.allowAgentForwarding && this.conn ? { agent: new ClientAgentRelay((cb) => openAgentChannel(this.conn!, cb)) } : {}),
    });
    if (this.step !== Steps.opening) {
      if (up.ok) up.conn.end();
      return s.discard('the client went away');
    }
    if (!up.ok) {
      s.discard(up.why);
      return this.refuse(up.refusal, login.resource);
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
    this.step = Steps.live;
    clearTimeout(this.loginTimer);
    await s.live(this);
    if (this.step === Steps.live) ctx.accept();
  }

  // ---- channels ------------------------------------------------------------------------

  private onSession(accept: () => Session | undefined, reject: () => void): void {
    const host = this.relayHost;
    if (!host || this.step !== Steps.live) return reject();
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
    if (this.step !== Steps.live) return false;
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
        if (this.step !== Steps.live) return up?.close();
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
    if (!this.conn || !this.session || this.step !== Steps.live) return reject();
    const s = this.session;
    try {
      this.conn.forwardOut(info.destIP, info.destPort, info.srcIP, info.srcPort, (err, ch) => (err ? reject() : splice(s, ch, accept())));
    } catch {
      reject();
    }
  }

  private onX11(info: { srcIP: string; srcPort: number }, accept: () => ClientChannel, reject: () => void): void {
    if (!this.conn || !this.session || this.step !== Steps.live || !this.relayHost?.resource.options.allowX11) return reject();
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
  private refuse(r: SshRefusal, resource?: string): void {
    if (this.step === Steps.closed || this.step === Steps.live) return;
    this.step = Steps.closed;
    const proto = this.conn ? protocolOf(this.conn) : undefined;
    try {
      if (proto && this.conn) sendBanner(proto, r.banner(resource));
    } catch (err) {
      this.log.debug({ err }, 'could not send the refusal banner');
    }
    this.hangUp(DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE, r.line());
  }

  private hangUp(reason: number, text: string): void {
    this.step = Steps.closed;
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
    const wasLive = this.step === Steps.live;
    this.step = Steps.closed;
    clearTimeout(this.loginTimer);
    this.upstream?.end();
    if (wasLive) this.session?.end('client_closed');
  }

  private fail(err: unknown): void {
    this.log.error({ err, client: this.clientAddr }, 'ssh session failed');
    if (this.session && this.step === Steps.live) this.session.end('error', 'Gatehouse: internal error; session closed.');
    else this.refuse(new SshRefusal('gateway_error', 'The gateway hit an internal error; try again.'));
  }
}
