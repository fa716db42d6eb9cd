import { request as httpsRequest } from 'node:https';
import { CliError } from './cli-error.js';
export const API_BASE = '/api/v1';
const TIMEOUT_MS = 30_000;
const MAX_ERROR_TEXT = 200;
/** Node's global fetch: plain HTTP, and HTTPS against the system's trusted CAs. */
export const fetchTransport = async (req) => {
    const init = { method: req.method, headers: req.headers, signal: AbortSignal.timeout(TIMEOUT_MS) };
    if (req.body !== undefined)
        init.body = req.body;
    const res = await fetch(req.url, init);
    return { status: res.status, body: await res.text() };
};
/**
 * HTTPS trusting exactly `caPem` (the gateway's own CA). Node's fetch takes no per-request
 * CA without importing undici, which is not a dependency here, so this path uses node:https.
 */
export function caTransport(caPem) {
    return (req) => new Promise((resolve, reject) => {
        const r = httpsRequest(req.url, { method: req.method, headers: req.headers, ca: caPem, timeout: TIMEOUT_MS }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
            res.on('error', reject);
        });
        r.on('timeout', () => r.destroy(Object.assign(new Error(`no answer within ${TIMEOUT_MS / 1000} s`), { code: 'ETIMEDOUT' })));
        r.on('error', reject);
        r.end(req.body);
    });
}
/** A thin typed client for /api/v1: JSON in, JSON out, every failure a CliError. */
export class ApiClient {
    server;
    token;
    caPem;
    transport;
    constructor(opts) {
        this.server = opts.server;
        this.token = opts.token;
        this.caPem = opts.caPem;
        const secure = new URL(opts.server).protocol === 'https:';
        this.transport = opts.transport ?? (secure && opts.caPem !== undefined ? caTransport(opts.caPem) : fetchTransport);
    }
    get(path, query) {
        return this.request('GET', path, undefined, query);
    }
    post(path, body = {}) {
        return this.request('POST', path, body);
    }
    put(path, body) {
        return this.request('PUT', path, body);
    }
    delete(path) {
        return this.request('DELETE', path);
    }
    /** The ws:// or wss:// URL of an API path, for the notification stream. */
    wsUrl(path) {
        return this.url(path).toString().replace(/^http/, 'ws');
    }
    async request(method, path, body, query) {
        const url = this.url(path, query);
        const headers = { accept: 'application/json' };
        if (this.token)
            headers.authorization = `Bearer ${this.token}`;
        const req = { method, url, headers };
        if (body !== undefined) {
            headers['content-type'] = 'application/json';
            req.body = JSON.stringify(body);
        }
        let res;
        try {
            res = await this.transport(req);
        }
        catch (e) {
            throw networkError(this.server, e);
        }
        if (res.status >= 200 && res.status < 300) {
            if (res.body.trim() === '')
                return undefined;
            try {
                return JSON.parse(res.body);
            }
            catch {
                throw new CliError('BAD_RESPONSE', `the gateway at ${this.server} answered ${method} ${path} with something that is not JSON`);
            }
        }
        throw this.apiError(res);
    }
    url(path, query) {
        const url = new URL(`${API_BASE}${path}`, this.server);
        for (const [k, v] of Object.entries(query ?? {}))
            if (v !== undefined)
                url.searchParams.set(k, String(v));
        return url;
    }
    apiError(res) {
        const parsed = parseErrorBody(res.body);
        if (!parsed) {
            const text = res.body.replace(/\s+/g, ' ').trim().slice(0, MAX_ERROR_TEXT);
            return new CliError(`HTTP_${res.status}`, `the gateway answered HTTP ${res.status}${text ? `: ${text}` : ''}`, { status: res.status });
        }
        let message = parsed.message;
        if (parsed.code === 'UNAUTHENTICATED') {
            message = this.token ? `${message} (sign in again: gatehouse login --user NAME)` : 'not signed in; run gatehouse login --user NAME';
        }
        const hint = parsed.details?.hint;
        if (typeof hint === 'string' && hint !== '' && !message.includes(hint))
            message = `${message} (try: ${hint})`;
        const opts = { status: res.status };
        if (parsed.details)
            opts.details = parsed.details;
        return new CliError(parsed.code, message, opts);
    }
}
function parseErrorBody(body) {
    try {
        const data = JSON.parse(body);
        const e = data.error;
        if (!e || typeof e.code !== 'string' || typeof e.message !== 'string')
            return undefined;
        const out = { code: e.code, message: e.message };
        if (e.details && typeof e.details === 'object')
            out.details = e.details;
        return out;
    }
    catch {
        return undefined;
    }
}
const TLS_TRUST_CODES = new Set([
    'SELF_SIGNED_CERT_IN_CHAIN',
    'DEPTH_ZERO_SELF_SIGNED_CERT',
    'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
    'CERT_UNTRUSTED',
]);
/** fetch hides the reason in `cause` (sometimes an AggregateError); dig out the first real one. */
export function networkError(server, e) {
    let cause = e;
    while (cause instanceof Error && (cause.message === 'fetch failed' || cause instanceof AggregateError)) {
        const next = cause instanceof AggregateError ? cause.errors[0] : cause.cause;
        if (next === undefined)
            break;
        cause = next;
    }
    const err = cause;
    let reason = err.message || err.code || String(cause);
    if (err.name === 'TimeoutError')
        reason = `no answer within ${TIMEOUT_MS / 1000} s`;
    if (err.code && TLS_TRUST_CODES.has(err.code)) {
        reason += ' (trust the gateway CA with --ca FILE or GATEHOUSE_CA)';
    }
    return new CliError('NETWORK', `cannot reach the gateway at ${server}: ${reason}`);
}
//# sourceMappingURL=client.js.map