import { z } from 'zod';
import { GatehouseError, isGatehouseError } from '../core/errors.js';
import { zodToValidationError } from '../workflow/settings.js';
export const MAX_BODY_BYTES = 64 * 1024;
export function route(method, path, summary, handler, opts = {}) {
    const keys = [];
    const pattern = new RegExp('^' + path.replace(/:([a-zA-Z]+)/g, (_, k) => {
        keys.push(k);
        return '([^/]+)';
    }) + '$');
    return { method, path, pattern, keys, public: opts.public ?? false, summary, handler };
}
export function matchRoute(routes, method, pathname) {
    let pathMatched = false;
    for (const r of routes) {
        const m = r.pattern.exec(pathname);
        if (!m)
            continue;
        pathMatched = true;
        if (r.method !== method)
            continue;
        const params = {};
        r.keys.forEach((k, i) => {
            params[k] = decodeURIComponent(m[i + 1] ?? '');
        });
        return { route: r, params };
    }
    return pathMatched ? 'method' : undefined;
}
/** Reads a JSON body, refusing more than MAX_BODY_BYTES and anything that is not JSON. */
export async function readJsonBody(req) {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY_BYTES)
        throw new GatehouseError('PAYLOAD_TOO_LARGE', `request body is larger than ${MAX_BODY_BYTES} bytes`);
    const chunks = [];
    let size = 0;
    for await (const chunk of req) {
        size += chunk.length;
        if (size > MAX_BODY_BYTES)
            throw new GatehouseError('PAYLOAD_TOO_LARGE', `request body is larger than ${MAX_BODY_BYTES} bytes`);
        chunks.push(chunk);
    }
    if (size === 0)
        return undefined;
    const type = req.headers['content-type'] ?? '';
    if (!type.includes('application/json'))
        throw new GatehouseError('BAD_REQUEST', 'request body must be application/json');
    try {
        return JSON.parse(Buffer.concat(chunks).toString('utf8'));
    }
    catch {
        throw new GatehouseError('BAD_REQUEST', 'request body is not valid JSON');
    }
}
/** Validates a body with a strict zod schema; unknown fields are an error naming the field. */
export function parseBody(schema, body) {
    const r = schema.safeParse(body ?? {});
    if (!r.success)
        throw zodToValidationError(r.error);
    return r.data;
}
export function sendJson(res, status, value) {
    const body = JSON.stringify(value);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
    res.end(body);
}
export function sendError(res, err, log) {
    if (res.headersSent) {
        res.destroy();
        return;
    }
    if (isGatehouseError(err)) {
        sendJson(res, err.status, { error: { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) } });
        return;
    }
    log.error({ err }, 'unhandled API error');
    sendJson(res, 500, { error: { code: 'INTERNAL', message: 'internal error' } });
}
//# sourceMappingURL=http.js.map