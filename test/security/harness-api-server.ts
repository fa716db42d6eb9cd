/**
 * A real API server on loopback over the workflow harness (fake clock, in-memory SQLite), for
 * the security tests that attack the control plane: HTTP calls, WebSockets, the CLI against it.
 */
import WebSocket from 'ws';
import { AuthService } from '../../src/api/auth.js';
import type { ApiDeps } from '../../src/api/deps.js';
import { createApiServer, type ApiServer, type ApiServerOptions } from '../../src/api/server.js';
import { silentLogger } from '../../src/core/log.js';
import { hashPassword } from '../../src/secrets/passwords.js';
import { BUSINESS_HOURS, makeHarness, seed, type Harness } from '../unit/workflow/harness.js';

export const PW = 'password-123';

export interface ApiHarness {
  h: Harness;
  api: ApiServer;
  base: string;
  close(): Promise<void>;
}

export interface Reply {
  status: number;
  json: Record<string, any>;
}

/**
 * admin; bob owns prod-pg; dave and erin approve (dba); alice and carol are engineers; every
 * user's password is PW. prod-pg needs an approval with a reason.
 */
export async function startApi(opts: { deps?: Partial<ApiDeps>; server?: ApiServerOptions; host?: string } = {}): Promise<ApiHarness> {
  const h = makeHarness();
  await seed(h, { limitAccessTime: BUSINESS_HOURS, requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, requireReason: true, requireTicket: false, startOn: 'approval' } });
  const hash = await hashPassword(PW);
  for (const u of await h.store.listUsers()) await h.store.putUser({ ...u, passwordHash: hash });
  const auth = new AuthService(h.engine, { maxFailures: 3 });
  const api = createApiServer({ engine: h.engine, auth, log: silentLogger, listeners: {}, sessions: { kill: async () => false }, ...opts.deps }, opts.server);
  const a = await api.listen(opts.host ?? '127.0.0.1', 0);
  return {
    h,
    api,
    base: `${opts.server?.tls ? 'https' : 'http'}://127.0.0.1:${a.port}`,
    async close() {
      await api.close();
      await h.store.close();
    },
  };
}

export async function call(c: ApiHarness, method: string, path: string, opts: { token?: string; body?: unknown } = {}): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(c.base + path, { method, headers, ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}) });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, any>) : {} };
}

export async function login(c: ApiHarness, user: string, password = PW): Promise<string> {
  const r = await call(c, 'POST', '/api/v1/auth/login', { body: { user, password } });
  if (r.status !== 200) throw new Error(`login ${user}: ${r.status} ${JSON.stringify(r.json)}`);
  return r.json.token as string;
}

/** An open notification socket and everything it received, in order. */
export interface Listener {
  ws: WebSocket;
  messages: Array<Record<string, any>>;
  /** Resolves with the close code and reason once the server closes the socket. */
  closed: Promise<{ code: number; reason: string }>;
  /** Resolves with the first message (after those already seen) that matches. */
  next(match: (m: Record<string, any>) => boolean): Promise<Record<string, any>>;
}

/** Opens /api/v1/events with a token and waits for the server's hello. */
export async function listen(c: ApiHarness, token: string): Promise<Listener> {
  const ws = new WebSocket(`${c.base.replace(/^http/, 'ws')}/api/v1/events?token=${encodeURIComponent(token)}`);
  const messages: Array<Record<string, any>> = [];
  const waiters: Array<{ match: (m: Record<string, any>) => boolean; resolve: (m: Record<string, any>) => void; from: number }> = [];
  ws.on('message', (data) => {
    const m = JSON.parse(String(data)) as Record<string, any>;
    messages.push(m);
    for (const w of [...waiters]) {
      if (w.match(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  const listener: Listener = {
    ws,
    messages,
    closed,
    next(match) {
      return new Promise((resolve) => waiters.push({ match, resolve, from: messages.length }));
    },
  };
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  if (!messages.some((m) => m.type === 'hello')) await listener.next((m) => m.type === 'hello');
  return listener;
}

/** Resolves with what `p` gives, or with 'timeout' after ms: a socket that should close but never does fails the test, it does not hang it. */
export function within<T>(p: Promise<T>, ms = 2000): Promise<T | 'timeout'> {
  return Promise.race([p, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), ms).unref())]);
}
