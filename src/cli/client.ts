import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { CliError } from './cli-error.js';

export const API_BASE = '/api/v1';
const TIMEOUT_MS = 30_000;
const MAX_ERROR_TEXT = 200;

export interface HttpRequest {
  method: string;
  url: URL;
  headers: Record<string, string>;
  body?: string;
}

export interface HttpResponse {
  status: number;
  body: string;
}

/** One HTTP exchange; a network failure rejects, any HTTP status resolves. */
export type Transport = (req: HttpRequest) => Promise<HttpResponse>;

/**
 * node:http, or node:https trusting exactly `caPem` when given (the gateway's own CA) and
 * the system's CAs otherwise. Not the global fetch: its first call loads undici, 25-35 ms
 * where node:http takes 8 on an idle machine here, several times that under load
 * (BENCHMARKS.md, "CLI start-up"); and it takes no per-request CA. Redirects are not
 * followed: the API sends none, and a bearer token has no business following one.
 */
export function httpTransport(caPem?: string): Transport {
  return (req) =>
    new Promise((resolve, reject) => {
      const onResponse = (res: IncomingMessage): void => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      };
      const options = { method: req.method, headers: req.headers, timeout: TIMEOUT_MS };
      const r = req.url.protocol === 'https:'
        ? httpsRequest(req.url, caPem !== undefined ? { ...options, ca: caPem } : options, onResponse)
        : httpRequest(req.url, options, onResponse);
      r.on('timeout', () => r.destroy(Object.assign(new Error(`no answer within ${TIMEOUT_MS / 1000} s`), { code: 'ETIMEDOUT' })));
      r.on('error', reject);
      r.end(req.body);
    });
}

export interface ApiClientOptions {
  server: string;
  token?: string;
  /** PEM text of the CA to trust for an https:// server. */
  caPem?: string;
  transport?: Transport;
}

export type Query = Record<string, string | number | boolean | undefined>;

/** A thin typed client for /api/v1: JSON in, JSON out, every failure a CliError. */
export class ApiClient {
  readonly server: string;
  readonly token: string | undefined;
  readonly caPem: string | undefined;
  private readonly transport: Transport;

  constructor(opts: ApiClientOptions) {
    this.server = opts.server;
    this.token = opts.token;
    this.caPem = opts.caPem;
    this.transport = opts.transport ?? httpTransport(opts.caPem);
  }

  get<T>(path: string, query?: Query): Promise<T> {
    return this.request<T>('GET', path, undefined, query);
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  put<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PUT', path, body);
  }

  delete<T>(path: string): Promise<T> {
    return this.request<T>('DELETE', path);
  }

  /** The ws:// or wss:// URL of an API path, for the notification stream. */
  wsUrl(path: string): string {
    return this.url(path).toString().replace(/^http/, 'ws');
  }

  async request<T>(method: string, path: string, body?: unknown, query?: Query): Promise<T> {
    const url = this.url(path, query);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const req: HttpRequest = { method, url, headers };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      req.body = JSON.stringify(body);
    }
    let res: HttpResponse;
    try {
      res = await this.transport(req);
    } catch (e) {
      throw networkError(this.server, e);
    }
    if (res.status >= 200 && res.status < 300) {
      if (res.body.trim() === '') return undefined as T;
      try {
        return JSON.parse(res.body) as T;
      } catch {
        throw new CliError('BAD_RESPONSE', `the gateway at ${this.server} answered ${method} ${path} with something that is not JSON`);
      }
    }
    throw this.apiError(res);
  }

  private url(path: string, query?: Query): URL {
    const url = new URL(`${API_BASE}${path}`, this.server);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    return url;
  }

  private apiError(res: HttpResponse): CliError {
    const parsed = parseErrorBody(res.body);
    if (!parsed) {
      const text = res.body.replace(/\s+/g, ' ').trim().slice(0, MAX_ERROR_TEXT);
      return new CliError(`HTTP_${res.status}`, `the gateway answered HTTP ${res.status}${text ? `: ${text}` : ''}`, { status: res.status });
    }
    let message = parsed.message;
    if (parsed.code === 'UNAUTHENTICATED') {
      if (!this.token) message = 'not signed in; run gatehouse login --user NAME';
      else if (!message.includes('gatehouse login')) message = `${message} (sign in again: gatehouse login --user NAME)`;
    }
    const hint = parsed.details?.hint;
    if (typeof hint === 'string' && hint !== '' && !message.includes(hint)) message = `${message} (try: ${hint})`;
    const opts: ConstructorParameters<typeof CliError>[2] = { status: res.status };
    if (parsed.details) opts.details = parsed.details;
    return new CliError(parsed.code, message, opts);
  }
}

function parseErrorBody(body: string): { code: string; message: string; details?: Record<string, unknown> } | undefined {
  try {
    const data = JSON.parse(body) as { error?: { code?: unknown; message?: unknown; details?: unknown } };
    const e = data.error;
    if (!e || typeof e.code !== 'string' || typeof e.message !== 'string') return undefined;
    const out: { code: string; message: string; details?: Record<string, unknown> } = { code: e.code, message: e.message };
    if (e.details && typeof e.details === 'object') out.details = e.details as Record<string, unknown>;
    return out;
  } catch {
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

/** A connect attempt to several addresses fails with an AggregateError: the first real reason is the one to show. */
export function networkError(server: string, e: unknown): CliError {
  let cause: unknown = e;
  while (cause instanceof AggregateError && cause.errors.length > 0) cause = cause.errors[0];
  const err = cause as { code?: string; message?: string };
  let reason = err.message || err.code || String(cause);
  if (err.code && TLS_TRUST_CODES.has(err.code)) {
    reason += ' (trust the gateway CA with --ca FILE or GATEHOUSE_CA)';
  }
  return new CliError('NETWORK', `cannot reach the gateway at ${server}: ${reason}`);
}
