/**
 * The browser door's requests: one origin per app (`<resource>.<appsDomain>`), entered
 * through `/.gatehouse/enter` with a launch ticket (the decision runs there), then every
 * request and WebSocket of that browser session relayed to the app with the credentials
 * injected, the headers rebuilt from an allow-list, and the session's cookie checked. A
 * browser session is one broker session: its teardown closes every WebSocket with 1008,
 * ends every open response, and turns the cookie into a page saying why.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { createProxyServer, type ProxyServer } from 'http-proxy-3';
import WebSocket, { WebSocketServer, type RawData } from 'ws';
import type { SessionHandle } from '../../src/broker/adapter.js';
import type { GatewayPort, GatewaySession, Refusal } from '../../src/broker/port.js';
import { refusals } from '../../src/broker/refusals.js';
import { UpstreamError } from '../../src/broker/upstream-error.js';
import type { HttpAuth, Resource, TerminationReason } from '../../src/core/model.js';
import type { AssertionSigner } from './assertion.js';
import {
  appOf, cookieName, framingProblem, GATEHOUSE_PREFIX, HOP_BY_HOP, hostOnlyCookie, parseCookies, rewriteLocation, safeNext, SESSION_COOKIE, upstreamHeaders,
} from './codec.js';
import { refusalPage, STATUS_OF } from './errors.js';
import { appTarget, formLogin, injectedHeaders, probeApp, type AppTarget } from './upstream.js';

export interface HttpDoorContext {
  port: GatewayPort;
  appsDomain: string;
  /** The port browsers use in app origins (the listener's own unless configured). */
  publicPort(): number;
  /** Where the vault is, for the links on the gateway's pages. */
  vaultUrl?: string;
  signer: AssertionSigner;
  /** Headers a request may carry; one that reaches it is refused (see framingProblem). */
  maxHeaders: number;
  /** CA bundles for apps' TLS, by resource name ('*' for all); otherwise the certificate is pinned. */
  upstreamCa?: Record<string, string>;
  upstreamTimeoutMs: number;
  /** Lifetime of a signed assertion (it never outlives the grant). */
  assertionTtlMs: number;
  /** A browser session with no request and no open WebSocket or stream for this long ends (client_closed). */
  idleTimeoutMs: number;
}

/** A browser session on one app: the broker's session, the cookie, and what is open. */
class AppSession implements SessionHandle {
  readonly sockets = new Set<WebSocket>();
  readonly responses = new Set<ServerResponse>();
  ended: { reason: TerminationReason; message: string } | undefined;
  private idle: NodeJS.Timeout | undefined;
  /** The identity headers of the current second: the claims only change when the second does. */
  identity: { second: number; audience: string; headers: Record<string, string> } | undefined;

  constructor(
    readonly token: string,
    readonly session: GatewaySession,
    readonly target: AppTarget,
    readonly inject: Record<string, string>,
    readonly jar: Map<string, string> | undefined,
    /** Where the app's own login landed (its start page after sign-in), if it redirected. */
    readonly landing: string | undefined,
    private readonly door: HttpDoor,
  ) {}

  /**
   * A request came, or something closed: the idle timer starts again. HTTP has no connection
   * that says "I am done", so a session nobody uses ends by itself (a tab left open keeps its
   * WebSockets and streams, which count as use).
   */
  touch(idleMs: number): void {
    clearTimeout(this.idle);
    if (this.ended) return;
    this.idle = setTimeout(() => {
      if (this.sockets.size === 0 && this.responses.size === 0) this.session.end('client_closed', 'Gatehouse: the browser session was idle too long; launch again.');
      else this.touch(idleMs);
    }, idleMs);
    this.idle.unref();
  }

  warn(): void {
    // The warning reaches the user through the vault's live notices (sent by the broker).
  }

  /** Every WebSocket gets 1008 with the reason, every open response ends, the cookie stops working. */
  close(reason: TerminationReason, message: string): void {
    if (this.ended) return;
    this.ended = { reason, message };
    clearTimeout(this.idle);
    this.door.retire(this);
    const why = Buffer.from(message, 'utf8').subarray(0, 123).toString('utf8').replace(/\uFFFD+$/, '');
    for (const ws of this.sockets) ws.close(1008, why);
    for (const res of this.responses) res.destroy();
    this.target.agent.destroy();
  }
}

/** Ended sessions' reasons, by cookie, for the page the next request gets (bounded). */
const ENDED_KEPT = 10_000;

export class HttpDoor {
  private readonly sessions = new Map<string, AppSession>();
  private readonly ended = new Map<string, { resource: string; message: string; code: string }>();
  private readonly proxy: ProxyServer;
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 * 1024 });
  /** The app and session of each relayed request (its headers are the upstream's by the time the response comes). */
  private readonly relayed = new WeakMap<IncomingMessage, { app: string; s: AppSession }>();

  constructor(private readonly ctx: HttpDoorContext) {
    // No proxyTimeout: it is an idle timeout, and a quiet event stream is not a dead app (the agent's socket timeout is).
    this.proxy = createProxyServer({ xfwd: false, changeOrigin: true, ws: false, followRedirects: false });
    this.proxy.on('proxyRes', (proxyRes, req) => this.rewriteResponse(proxyRes, req));
    this.proxy.on('error', (err, req, res) => this.proxyFailed(err, req, res));
  }

  private origin(app: string): string {
    const p = this.ctx.publicPort();
    return `https://${app}.${this.ctx.appsDomain}${p === 443 ? '' : `:${p}`}`;
  }

  // ------------------------------------------------------------------------------------
  // Requests

  /** A connection over the listener's limit: every request on it gets 503 and the connection closes. */
  overLimit(res: ServerResponse, client: string): void {
    const r = refusals.tooManyConnections();
    this.ctx.port.refused(client, r, 'over maxConnections');
    res.shouldKeepAlive = false;
    this.page(res, 503, 'Too many connections', r, { connection: 'close', 'retry-after': '1' });
  }

  /** The same for a WebSocket upgrade. */
  overLimitUpgrade(socket: Duplex, client: string): void {
    socket.on('error', () => {});
    this.ctx.port.refused(client, refusals.tooManyConnections(), 'over maxConnections');
    socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n');
  }

  async request(req: IncomingMessage, res: ServerResponse, client: string): Promise<void> {
    const problem = framingProblem(req, this.ctx.maxHeaders);
    if (problem) return this.badRequest(res, client, problem);
    const app = appOf(req.headers.host, this.ctx.appsDomain);
    if (!app) return this.page(res, 404, 'No app here', { code: 'resource_unknown', message: `this address is not an app of this gateway (apps are at RESOURCE.${this.ctx.appsDomain}).` });
    const url = new URL(req.url!, 'https://app.invalid');
    if (url.pathname.startsWith(GATEHOUSE_PREFIX)) return this.gatehouseRoute(app, url, req, res, client);
    const s = this.sessionOf(req, app);
    if (!s) return this.notEntered(req, res, app);
    this.relay(s, app, req, res);
  }

  private async gatehouseRoute(app: string, url: URL, req: IncomingMessage, res: ServerResponse, client: string): Promise<void> {
    switch (url.pathname) {
      case `${GATEHOUSE_PREFIX}enter`:
        if (req.method !== 'GET') return this.badRequest(res, client, 'enter takes GET');
        return this.enter(app, url, res, client);
      case `${GATEHOUSE_PREFIX}logout`: {
        // Ends this browser's session on the app (GET from a link is fine: it only ends access).
        const s = this.sessionOf(req, app);
        s?.session.end('client_closed', 'Gatehouse: you left the app.');
        return this.page(res, 200, 'Signed out of the app', { code: 'client_closed', message: `you left ${app}; its session is closed.`, hint: `gatehouse connect ${app}` });
      }
      case `${GATEHOUSE_PREFIX}jwks.json`:
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' });
        return void res.end(JSON.stringify(this.ctx.signer.jwks));
      default:
        return this.page(res, 404, 'Not found', { code: 'not_found', message: `${url.pathname} is not a Gatehouse page.` });
    }
  }

  /** `/.gatehouse/enter?user=alice&ticket=...&next=/path`: sign-in with the ticket, the decision, the app, the cookie. */
  private async enter(app: string, url: URL, res: ServerResponse, client: string): Promise<void> {
    const port = this.ctx.port;
    const next = safeNext(url.searchParams.get('next'));
    if (next === undefined) {
      const r = refusals.notAllowed('a redirect off the app (next must be a path on this app)');
      port.refused(client, r, 'open redirect attempt');
      return this.page(res, 400, 'Refused', r);
    }
    const user = url.searchParams.get('user') ?? '';
    const ticket = url.searchParams.get('ticket') ?? '';
    const login = await port.login({ name: `${user}:${app}`, secret: { kind: 'password', value: ticket }, client });
    if (!login.ok) return this.page(res, STATUS_OF[login.refusal.code], 'Access refused', login.refusal);
    if (login.via !== 'ticket') {
      // A password in a URL ends up in histories and logs: the enter link takes tickets only.
      const r = refusals.badTicket(app);
      port.refused(client, r, 'a password in the enter link');
      return this.page(res, STATUS_OF[r.code], 'Access refused', r);
    }
    const opened = await port.open({ user: login.user, resource: login.resource, client, mfa: login.mfa });
    if (!opened.ok) return this.page(res, STATUS_OF[opened.refusal.code], 'Access refused', opened.refusal);
    const session = opened.session;
    const resource = session.resource;
    let s: AppSession;
    try {
      s = await this.reachApp(session, resource);
    } catch (e) {
      const err = e instanceof UpstreamError ? e : new UpstreamError('protocol', e instanceof Error ? e.message : String(e));
      session.discard(err.refusalCode, err.message);
      return this.page(res, STATUS_OF[err.refusalCode], 'The app could not be opened', refusals.target(err.refusalCode, resource.name, err.message, err.hint));
    }
    this.sessions.set(s.token, s);
    s.touch(this.ctx.idleTimeoutMs);
    try {
      await session.live(s, { app: this.origin(app), upstream: s.target.origin });
    } catch (err) {
      this.sessions.delete(s.token);
      port.log.error({ err, session: session.id }, 'could not record a live session');
      session.end('error', 'Gatehouse: the session could not be recorded; try again.');
      return this.page(res, 500, 'Error', refusals.internalError());
    }
    res.writeHead(302, {
      // Without a `next`, where the app's own sign-in landed (Adminer: its page for that login).
      location: url.searchParams.has('next') || !s.landing ? next : (safeNext(s.landing) ?? '/'),
      'set-cookie': `${SESSION_COOKIE}=${s.token}; Path=/; Secure; HttpOnly; SameSite=Lax`,
      'cache-control': 'no-store',
      'referrer-policy': 'no-referrer',
    });
    res.end();
  }

  /** The app's leg: its address from the resource, its identity checked, the form login done. */
  private async reachApp(session: GatewaySession, r: Resource): Promise<AppSession> {
    const port = this.ctx.port;
    const ca = this.ctx.upstreamCa?.[r.name] ?? this.ctx.upstreamCa?.['*'];
    const target = appTarget(r, { verify: (id) => port.verifyTarget(r.name, id), ...(ca ? { ca } : {}), timeoutMs: this.ctx.upstreamTimeoutMs });
    await probeApp(target, (id) => port.verifyTarget(r.name, id), ca);
    const auth: HttpAuth | undefined = r.options.httpAuth;
    const inject = injectedHeaders(auth, session.credentials);
    const login = auth?.kind === 'form' ? await formLogin(target, auth, session.credentials) : undefined;
    return new AppSession(randomBytes(32).toString('base64url'), session, target, inject, login?.jar, login?.landing, this);
  }

  retire(s: AppSession): void {
    this.sessions.delete(s.token);
    if (this.ended.size >= ENDED_KEPT) this.ended.delete(this.ended.keys().next().value!);
    this.ended.set(s.token, { resource: s.session.resource.name, message: s.ended!.message, code: s.ended!.reason });
  }

  private sessionOf(req: IncomingMessage, app: string): AppSession | undefined {
    const token = parseCookies(req.headers.cookie).find(([k]) => k === SESSION_COOKIE)?.[1];
    const s = token ? this.sessions.get(token) : undefined;
    return s && !s.ended && s.session.resource.name === app ? s : undefined;
  }

  /** No live session: why (it ended, or it never began), and the way back in. */
  private notEntered(req: IncomingMessage, res: ServerResponse, app: string): void {
    const token = parseCookies(req.headers.cookie).find(([k]) => k === SESSION_COOKIE)?.[1];
    const ended = token ? this.ended.get(token) : undefined;
    if (ended && ended.resource === app) {
      return this.page(res, 403, 'Session ended', { code: ended.code, message: ended.message.replace(/^Gatehouse: /, ''), hint: `gatehouse launch ${app} (or Launch in the vault)` });
    }
    this.page(res, 401, 'Enter through Gatehouse', {
      code: 'not_entered', message: `${app} is reached through Gatehouse: open it from the vault (Launch) or with gatehouse connect ${app}.`, hint: `gatehouse connect ${app}`,
    });
  }

  /** The request to the app: headers rebuilt, credentials and identity added, the response tracked. */
  private relay(s: AppSession, app: string, req: IncomingMessage, res: ServerResponse): void {
    const appOrigin = this.origin(app);
    this.relayed.set(req, { app, s });
    req.headers = upstreamHeaders(req.headers, { targetOrigin: s.target.origin, appOrigin, ...(s.jar ? { jar: s.jar } : {}), set: this.identityHeaders(s, appOrigin) }) as IncomingMessage['headers'];
    s.responses.add(res);
    s.touch(this.ctx.idleTimeoutMs);
    res.once('close', () => s.responses.delete(res));
    s.session.bytesIn += Number(req.headers['content-length'] ?? 0) || 0;
    void this.proxy.web(req, res, { target: s.target.origin, agent: s.target.agent, secure: false });
  }

  private identityHeaders(s: AppSession, audience: string): Record<string, string> {
    const now = this.ctx.port.clock.now().getTime();
    // An ES256 signature costs tens of microseconds: one per session per second is enough.
    const second = Math.floor(now / 1000);
    if (s.identity?.second === second && s.identity.audience === audience) return s.identity.headers;
    const deadline = s.session.deadline?.getTime();
    const exp = Math.floor(Math.min(now + this.ctx.assertionTtlMs, deadline ?? Infinity) / 1000);
    const assertion = this.ctx.signer.sign({ user: s.session.user, resource: s.session.resource.name, session: s.session.id, audience, iat: Math.floor(now / 1000), exp });
    const headers = { ...s.inject, 'x-gatehouse-user': s.session.user, 'x-gatehouse-assertion': assertion };
    s.identity = { second, audience, headers };
    return headers;
  }

  /** The app's answer on its way to the browser: Location onto the app origin, cookies host-only, the login's cookies kept back. */
  private rewriteResponse(proxyRes: IncomingMessage, req: IncomingMessage): void {
    const { app, s } = this.relayed.get(req) ?? {};
    for (const h of Object.keys(proxyRes.headers)) if (HOP_BY_HOP.has(h)) delete proxyRes.headers[h];
    const location = proxyRes.headers.location;
    if (location && s && app) proxyRes.headers.location = rewriteLocation(location, [s.target.origin, s.target.origin.replace(/:(80|443)$/, '')], this.origin(app));
    const cookies = proxyRes.headers['set-cookie'];
    if (cookies) {
      const kept: string[] = [];
      for (const c of cookies) {
        const name = cookieName(c);
        // The gateway's own cookie name is not the app's to set.
        if (name === SESSION_COOKIE) continue;
        // A cookie of the gateway's login stays in its jar: the browser never holds the app's session.
        if (s?.jar?.has(name)) {
          s.jar.set(name, c.split(';', 1)[0]!.slice(name.length + 1));
          continue;
        }
        kept.push(hostOnlyCookie(c));
      }
      proxyRes.headers['set-cookie'] = kept;
    }
    if (s) s.session.bytesOut += Number(proxyRes.headers['content-length'] ?? 0) || 0;
  }

  private proxyFailed(err: Error, req: IncomingMessage, res: ServerResponse | Duplex): void {
    this.ctx.port.log.warn({ err: err.message, url: req.url }, 'app request failed');
    if (!('writeHead' in res)) return void res.destroy();
    if (res.headersSent) return void res.destroy();
    const app = this.relayed.get(req)?.app ?? 'the app';
    const kind = err instanceof UpstreamError ? err.refusalCode : 'target_unreachable';
    this.page(res, STATUS_OF[kind], 'The app did not answer', refusals.target(kind, app, err.message));
  }

  // ------------------------------------------------------------------------------------
  // WebSockets: terminated here on both legs (ws), so a teardown can send a close frame.

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, client: string): void {
    socket.on('error', () => {});
    const refuse = (status: number, why: string): void => {
      this.ctx.port.refused(client, refusals.notAllowed(`this WebSocket (${why})`), why);
      socket.end(`HTTP/1.1 ${status} ${status === 403 ? 'Forbidden' : status === 401 ? 'Unauthorized' : 'Bad Request'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    const problem = framingProblem(req, this.ctx.maxHeaders);
    if (problem) return refuse(400, problem);
    const app = appOf(req.headers.host, this.ctx.appsDomain);
    if (!app) return refuse(400, 'no app at this host');
    const s = this.sessionOf(req, app);
    if (!s) return refuse(401, 'no live Gatehouse session on this app');
    // Only the app's own pages may open its WebSockets (the cookie is Lax; a WebSocket is not).
    const appOrigin = this.origin(app);
    if (req.headers.origin !== appOrigin) return refuse(403, `Origin ${String(req.headers.origin).slice(0, 100)} is not ${appOrigin}`);
    const protocols = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter(Boolean);
    const headers = upstreamHeaders(req.headers, { targetOrigin: s.target.origin, appOrigin, ...(s.jar ? { jar: s.jar } : {}), set: this.identityHeaders(s, appOrigin) });
    for (const h of ['upgrade', 'connection', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol', 'sec-websocket-extensions', 'origin']) delete headers[h];
    const upstream = new WebSocket(`${s.target.origin.replace(/^http/, 'ws')}${req.url}`, protocols, {
      headers: headers as Record<string, string>, agent: s.target.agent, origin: s.target.origin, followRedirects: false, handshakeTimeout: this.ctx.upstreamTimeoutMs, maxPayload: 64 * 1024 * 1024,
    });
    upstream.on('error', () => {});
    upstream.once('unexpected-response', (_r, response) => {
      refuse(502, `the app refused the WebSocket (${response.statusCode ?? '?'})`);
      upstream.terminate();
    });
    upstream.once('open', () => {
      if (s.ended) {
        upstream.close(1008);
        return void socket.destroy();
      }
      this.wss.handleUpgrade(req, socket, head, (browser) => {
        s.sockets.add(browser);
        s.sockets.add(upstream);
        const done = (): void => {
          s.sockets.delete(browser);
          s.sockets.delete(upstream);
        };
        pipeMessages(browser, upstream, (n) => (s.session.bytesIn += n));
        pipeMessages(upstream, browser, (n) => (s.session.bytesOut += n));
        browser.once('close', (code, reason) => {
          done();
          if (upstream.readyState === WebSocket.OPEN) upstream.close(code === 1005 ? 1000 : code, reason);
        });
        upstream.once('close', (code, reason) => {
          done();
          if (browser.readyState === WebSocket.OPEN) browser.close(code === 1005 || code === 1006 ? 1011 : code, reason);
        });
      });
    });
  }

  // ------------------------------------------------------------------------------------

  private badRequest(res: ServerResponse, client: string, why: string): void {
    const r = refusals.protocolError(why);
    this.ctx.port.refused(client, r, why);
    res.shouldKeepAlive = false;
    this.page(res, 400, 'Bad request', r, { connection: 'close' });
  }

  private page(res: ServerResponse, status: number, title: string, r: Refusal | { code: string; message: string; hint?: string }, extra: Record<string, string> = {}): void {
    if (res.headersSent) return void res.destroy();
    const body = refusalPage(title, r, this.ctx.vaultUrl);
    res.writeHead(status, {
      'content-type': 'text/html; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
      'x-content-type-options': 'nosniff',
      ...extra,
    });
    res.end(body);
  }
}

/** Messages from one WebSocket to the other, with backpressure: the source pauses while the sink is behind. */
function pipeMessages(from: WebSocket, to: WebSocket, count: (n: number) => void): void {
  const HIGH = 4 * 1024 * 1024;
  from.on('message', (data: RawData, isBinary: boolean) => {
    if (to.readyState !== WebSocket.OPEN) return;
    const size = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : (data as Buffer).byteLength;
    count(size);
    to.send(data, { binary: isBinary }, () => {
      if (to.bufferedAmount < HIGH && from.isPaused) from.resume();
    });
    if (to.bufferedAmount >= HIGH) from.pause();
  });
}
