import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { GatehouseError, isGatehouseError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { User } from '../core/model.js';
import { zodToValidationError } from '../workflow/settings.js';

export const MAX_BODY_BYTES = 64 * 1024;

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** The signed-in user; routes marked public see undefined. */
  user: User | undefined;
  tokenId: string | undefined;
  body: unknown;
  ip: string;
}

export interface AuthedContext extends RequestContext {
  user: User;
}

export type Handler = (ctx: AuthedContext) => Promise<unknown>;
export type PublicHandler = (ctx: RequestContext) => Promise<unknown>;

export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  pattern: RegExp;
  keys: string[];
  public: boolean;
  summary: string;
  /** The name of the request body's schema under the OpenAPI document's components (openapi.ts), where one is published. */
  body?: string;
  handler: Handler | PublicHandler;
}

/** Builds a route; `:name` segments become params. */
export function route(method: Route['method'], path: string, summary: string, handler: Handler, opts: { public?: false; body?: string }): Route;
export function route(method: Route['method'], path: string, summary: string, handler: PublicHandler, opts: { public: true; body?: string }): Route;
export function route(method: Route['method'], path: string, summary: string, handler: Handler | PublicHandler, opts: { public?: boolean; body?: string } = {}): Route {
  const keys: string[] = [];
  const pattern = new RegExp(
    '^' + path.replace(/:([a-zA-Z]+)/g, (_, k: string) => {
      keys.push(k);
      return '([^/]+)';
    }) + '$',
  );
  return { method, path, pattern, keys, public: opts.public ?? false, summary, ...(opts.body ? { body: opts.body } : {}), handler };
}

export function matchRoute(routes: readonly Route[], method: string, pathname: string): { route: Route; params: Record<string, string> } | 'method' | undefined {
  let pathMatched = false;
  for (const r of routes) {
    const m = r.pattern.exec(pathname);
    if (!m) continue;
    pathMatched = true;
    if (r.method !== method) continue;
    const params: Record<string, string> = {};
    r.keys.forEach((k, i) => {
      try {
        params[k] = decodeURIComponent(m[i + 1] ?? '');
      } catch {
        throw new GatehouseError('BAD_REQUEST', `malformed percent-encoding in the path segment for ${k}`);
      }
    });
    return { route: r, params };
  }
  return pathMatched ? 'method' : undefined;
}

/**
 * The URL of a request, from its request target: a path (`/api/v1/me?x=1`) or the absolute
 * form proxies send. Anything else (`//a:b`, `*`) is a BAD_REQUEST, never an exception
 * that escapes the handler and takes the process down.
 */
export function requestUrl(target: string | undefined): URL {
  const raw = target ?? '/';
  try {
    if (raw.startsWith('/')) return new URL(`http://gatehouse${raw}`);
    if (/^https?:\/\//i.test(raw)) return new URL(raw);
  } catch {
    // fall through
  }
  throw new GatehouseError('BAD_REQUEST', 'the request target is not a URL path');
}

/** Reads a JSON body, refusing more than MAX_BODY_BYTES and anything that is not JSON. */
export async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) throw new GatehouseError('PAYLOAD_TOO_LARGE', `request body is larger than ${MAX_BODY_BYTES} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new GatehouseError('PAYLOAD_TOO_LARGE', `request body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) return undefined;
  const type = req.headers['content-type'] ?? '';
  if (!type.includes('application/json')) throw new GatehouseError('BAD_REQUEST', 'request body must be application/json');
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new GatehouseError('BAD_REQUEST', 'request body is not valid JSON');
  }
}

/** Validates a body with a strict zod schema; unknown fields are an error naming the field. */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  const r = schema.safeParse(body ?? {});
  if (!r.success) throw zodToValidationError(r.error);
  return r.data;
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

export function sendError(res: ServerResponse, err: unknown, log: Logger): void {
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
