import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { GatehouseError } from '../core/errors.js';
import { matchRoute, readJsonBody, sendError, sendJson } from './http.js';
import { RateLimiter } from './limits.js';
import { Metrics } from './metrics.js';
import { openApiDocument } from './openapi.js';
import { accountRoutes } from './routes/account.js';
import { directoryRoutes } from './routes/directory.js';
import { operationRoutes } from './routes/operations.js';
import { requestRoutes } from './routes/requests.js';
import { resourceRoutes } from './routes/resources.js';
import { NotificationHub } from './ws.js';
const SECURITY_HEADERS = {
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
};
export function isLoopback(host) {
    return host === '127.0.0.1' || host === '::1' || host === 'localhost' || host.startsWith('127.');
}
/** The control-plane HTTP server: JSON API, WebSocket notifications, health and metrics. */
export function createApiServer(deps, opts = {}) {
    const { engine, auth, log } = deps;
    const routes = [...accountRoutes(deps), ...directoryRoutes(deps), ...resourceRoutes(deps), ...requestRoutes(deps), ...operationRoutes(deps)];
    const doc = openApiDocument(routes, opts.version ?? '0.1.0');
    const hub = new NotificationHub(auth, engine.ctx.bus, log);
    const metrics = new Metrics(engine);
    const limiter = new RateLimiter(engine.ctx.clock, { rate: 50, perMs: 1000, burst: 200 });
    const handle = async (req, res) => {
        for (const [k, v] of Object.entries(SECURITY_HEADERS))
            res.setHeader(k, v);
        const url = new URL(req.url ?? '/', 'http://gatehouse');
        const ip = req.socket.remoteAddress ?? 'unknown';
        try {
            if (url.pathname === '/healthz')
                return sendJson(res, 200, { ok: true });
            if (url.pathname === '/metrics') {
                if (!isLoopback(ip.replace(/^::ffff:/, '')))
                    throw new GatehouseError('FORBIDDEN', 'metrics are served to loopback only');
                const text = await metrics.registry.metrics();
                res.writeHead(200, { 'content-type': metrics.registry.contentType });
                res.end(text);
                return;
            }
            if (url.pathname === '/api/v1/openapi.json')
                return sendJson(res, 200, doc);
            if (!url.pathname.startsWith('/api/')) {
                if (opts.fallback && (await opts.fallback(req, res)))
                    return;
                throw new GatehouseError('NOT_FOUND', `nothing at ${url.pathname}`);
            }
            if (!limiter.take(ip))
                throw new GatehouseError('RATE_LIMITED', 'too many requests; slow down');
            const match = matchRoute(routes, req.method ?? 'GET', url.pathname);
            if (match === 'method')
                throw new GatehouseError('BAD_REQUEST', `${req.method} is not allowed on ${url.pathname}`);
            if (!match)
                throw new GatehouseError('NOT_FOUND', `no API endpoint ${req.method} ${url.pathname}`);
            const body = req.method === 'POST' || req.method === 'PUT' ? await readJsonBody(req) : undefined;
            const ctx = { req, res, params: match.params, query: url.searchParams, user: undefined, tokenId: undefined, body, ip };
            if (!match.route.public) {
                const who = await auth.authenticate(req.headers.authorization);
                ctx.user = who.user;
                ctx.tokenId = who.tokenId;
            }
            const result = await match.route.handler(ctx);
            sendJson(res, 200, result ?? { ok: true });
        }
        catch (err) {
            sendError(res, err, log);
        }
    };
    const listener = (req, res) => void handle(req, res);
    const server = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, listener) : createHttpServer(listener);
    server.headersTimeout = 20_000;
    server.requestTimeout = 60_000;
    server.on('upgrade', (req, socket, head) => {
        const path = new URL(req.url ?? '/', 'http://x').pathname;
        if (path !== '/api/v1/events') {
            socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\n\r\n');
            return;
        }
        void hub.handleUpgrade(req, socket, head);
    });
    server.on('clientError', (_err, socket) => {
        if (socket.writable)
            socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
        else
            socket.destroy();
    });
    return {
        server,
        hub,
        metrics,
        routes,
        listen(host, port) {
            if (!opts.tls && !isLoopback(host)) {
                return Promise.reject(new GatehouseError('CONFIG_INVALID', `the API listens on ${host}, which is not loopback: HTTPS is required there`));
            }
            return new Promise((resolve, reject) => {
                server.once('error', reject);
                server.listen(port, host, () => {
                    server.off('error', reject);
                    resolve(server.address());
                });
            });
        },
        close() {
            hub.close();
            return new Promise((resolve) => {
                server.close(() => resolve());
                server.closeAllConnections();
            });
        },
    };
}
//# sourceMappingURL=server.js.map