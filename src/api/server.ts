import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { GatehouseError } from '../core/errors.js';
import { isLoopback } from '../core/net.js';
import type { ApiDeps } from './deps.js';
import { CredentialService } from './credentials.js';
import { matchRoute, readJsonBody, requestUrl, sendError, sendJson, type AuthedContext, type RequestContext, type Route } from './http.js';
import { RateLimiter } from '../core/limits.js';
import { Metrics } from './metrics.js';
import { openApiDocument } from './openapi.js';
import { accountRoutes } from './routes/account.js';
import { credentialRoutes } from './routes/credentials.js';
import { directoryRoutes } from './routes/directory.js';
import { operationRoutes } from './routes/operations.js';
import { requestRoutes } from './routes/requests.js';
import { resourceRoutes } from './routes/resources.js';
import { NotificationHub } from './ws.js';

export interface ApiServerOptions {
  /** TLS material; required unless the server listens on loopback only. */
  tls?: { cert: string; key: string };
  /** Serves anything outside /api, /healthz and /metrics (the web vault). */
  fallback?: (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;
  version?: string;
}

export interface ApiServer {
  server: Server;
  hub: NotificationHub;
  credentials: CredentialService;
  metrics: Metrics;
  routes: Route[];
  listen(host: string, port: number): Promise<AddressInfo>;
  close(): Promise<void>;
}

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

/** Browsers that once reached the gateway over HTTPS never try plain HTTP on it again (a year). */
const HSTS = 'max-age=31536000';

/** The control-plane HTTP server: JSON API, WebSocket notifications, health and metrics. */
export function createApiServer(deps: ApiDeps, opts: ApiServerOptions = {}): ApiServer {
  const { engine, auth, log } = deps;
  const credentials = new CredentialService(engine, auth, deps.apiTokenTtlMs !== undefined ? { apiTokenTtlMs: deps.apiTokenTtlMs } : {});
  const routes = [
    ...accountRoutes(deps), ...credentialRoutes(deps, credentials), ...directoryRoutes(deps), ...resourceRoutes(deps), ...requestRoutes(deps), ...operationRoutes(deps),
  ];
  const doc = openApiDocument(routes, opts.version ?? '0.1.0');
  const hub = new NotificationHub({ auth, credentials, bus: engine.ctx.bus, clock: engine.ctx.clock, log });
  const metrics = new Metrics(engine);
  const limiter = new RateLimiter(engine.ctx.clock, { rate: 50, perMs: 1000, burst: 200 });
  /** Set by listen(); until then the server counts as reachable from elsewhere. */
  let listensOnLoopback = false;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    if (opts.tls) res.setHeader('strict-transport-security', HSTS);
    const ip = req.socket.remoteAddress ?? 'unknown';
    try {
      const url = requestUrl(req.url);
      if (url.pathname === '/healthz') return sendJson(res, 200, { ok: true });
      if (url.pathname === '/metrics') {
        if (!limiter.take(ip)) throw new GatehouseError('RATE_LIMITED', 'too many requests; slow down');
        // On loopback only local clients reach the port. Anywhere else a local address proves
        // nothing (a reverse proxy on the same host): a scraper shows a token.
        if (listensOnLoopback) {
          if (!isLoopback(ip)) throw new GatehouseError('FORBIDDEN', 'metrics are served to loopback only');
        } else {
          await auth.authenticate(req.headers.authorization);
        }
        const text = await metrics.registry.metrics();
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(text);
        return;
      }
      if (url.pathname === '/api/v1/openapi.json') return sendJson(res, 200, doc);
      if (!url.pathname.startsWith('/api/')) {
        if (opts.fallback && (await opts.fallback(req, res))) return;
        throw new GatehouseError('NOT_FOUND', `nothing at ${url.pathname}`);
      }
      if (!limiter.take(ip)) throw new GatehouseError('RATE_LIMITED', 'too many requests; slow down');
      const match = matchRoute(routes, req.method ?? 'GET', url.pathname);
      if (match === 'method') throw new GatehouseError('BAD_REQUEST', `${req.method} is not allowed on ${url.pathname}`);
      if (!match) throw new GatehouseError('NOT_FOUND', `no API endpoint ${req.method} ${url.pathname}`);
      const body = req.method === 'POST' || req.method === 'PUT' ? await readJsonBody(req) : undefined;
      const ctx: RequestContext = { req, res, params: match.params, query: url.searchParams, user: undefined, tokenId: undefined, body, ip };
      if (!match.route.public) {
        const who = await auth.authenticate(req.headers.authorization);
        ctx.user = who.user;
        ctx.tokenId = who.tokenId;
      }
      const result = await (match.route.handler as (c: AuthedContext) => Promise<unknown>)(ctx as AuthedContext);
      sendJson(res, 200, result ?? { ok: true });
    } catch (err) {
      sendError(res, err, log);
    }
  };

  const listener = (req: IncomingMessage, res: ServerResponse): void => void handle(req, res);
  const server: Server = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, listener) : createHttpServer(listener);
  server.headersTimeout = 20_000;
  server.requestTimeout = 60_000;
  server.on('upgrade', (req: IncomingMessage, socket, head: Buffer) => {
    let path: string;
    try {
      path = requestUrl(req.url).pathname;
    } catch {
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
      return;
    }
    if (deps.tunnels?.handles(path)) return void deps.tunnels.upgrade(req, socket, head);
    if (path !== '/api/v1/events') {
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\n');
      return;
    }
    void hub.handleUpgrade(req, socket, head);
  });
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });

  return {
    server,
    hub,
    credentials,
    metrics,
    routes,
    listen(host: string, port: number): Promise<AddressInfo> {
      if (!opts.tls && !isLoopback(host)) {
        return Promise.reject(new GatehouseError('CONFIG_INVALID', `the API listens on ${host}, which is not loopback: HTTPS is required there`));
      }
      listensOnLoopback = isLoopback(host);
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve(server.address() as AddressInfo);
        });
      });
    },
    close(): Promise<void> {
      hub.close();
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
