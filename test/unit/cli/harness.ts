import { createServer, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer, Server as HttpsServer } from 'node:https';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { WebSocketServer } from 'ws';
import { FakeClock } from '../../../src/core/clock.js';
import { terminalSafe, type CliInput, type CliIo } from '../../../src/cli/io.js';
import { main } from '../../../src/cli/main.js';

export interface Call {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body: unknown;
}

export interface Reply {
  status?: number;
  body?: unknown;
  /** Sent as is, not JSON-encoded. */
  raw?: string;
}

export type Handler = (call: Call) => Reply | Promise<Reply>;

/** A stand-in for the gateway API: routes keyed "METHOD /path" under /api/v1, every call recorded. */
export class FakeApi {
  readonly calls: Call[] = [];
  readonly routes = new Map<string, Handler>();
  readonly server: Server;
  readonly wss: WebSocketServer;
  url = '';

  constructor(tls?: { cert: string; key: string }) {
    const listener: RequestListener = (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'http://x');
        const text = Buffer.concat(chunks).toString('utf8');
        const call: Call = { method: req.method ?? 'GET', path: url.pathname.replace(/^\/api\/v1/, ''), query: url.searchParams, headers: req.headers, body: text ? JSON.parse(text) : undefined };
        this.calls.push(call);
        const handler = this.routes.get(`${call.method} ${call.path}`);
        Promise.resolve(handler ? handler(call) : { status: 404, body: { error: { code: 'NOT_FOUND', message: `no route ${call.method} ${call.path}` } } }).then((reply) => {
          res.writeHead(reply.status ?? 200, { 'content-type': 'application/json' });
          res.end(reply.raw ?? JSON.stringify(reply.body ?? {}));
        });
      });
    };
    this.server = tls ? createHttpsServer(tls, listener) : createServer(listener);
    this.wss = new WebSocketServer({
      server: this.server,
      path: '/api/v1/events',
      verifyClient: (info, done) => (this.acceptSocket(info.req.headers) ? done(true) : done(false, 401)),
    });
    this.wss.on('connection', (ws, req) => {
      this.socketHeaders.push(req.headers);
      if (this.sayHello) ws.send(JSON.stringify({ type: 'hello', user: 'alice' }));
    });
  }

  /** Decides whether a WebSocket upgrade is let in (default: always). */
  acceptSocket: (headers: IncomingMessage['headers']) => boolean = () => true;
  sayHello = true;
  readonly socketHeaders: Array<IncomingMessage['headers']> = [];

  /** Sends a message to every open notification socket. */
  push(message: unknown): void {
    for (const ws of this.wss.clients) ws.send(JSON.stringify(message));
  }

  on(route: string, handler: Handler | Reply): this {
    this.routes.set(route, typeof handler === 'function' ? handler : () => handler);
    return this;
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `${this.server instanceof HttpsServer ? 'https' : 'http'}://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export function apiError(status: number, code: string, message: string, details?: Record<string, unknown>): Reply {
  return { status, body: { error: { code, message, ...(details ? { details } : {}) } } };
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  stdin?: string;
  tty?: boolean;
}

/** A temporary GATEHOUSE_HOME and a way to run `gatehouse ...` in-process against it. */
export class CliHarness {
  readonly home = mkdtempSync(join(tmpdir(), 'gatehouse-cli-'));
  readonly clock = new FakeClock('2026-01-05T12:00:00Z');
  env: Record<string, string | undefined> = { GATEHOUSE_HOME: this.home };

  async run(args: string[], opts: RunOptions = {}): Promise<Run> {
    let stdout = '';
    let stderr = '';
    const stdin = Readable.from(opts.stdin !== undefined ? [Buffer.from(opts.stdin)] : []) as Readable & CliInput;
    if (opts.tty) stdin.isTTY = true;
    const io: CliIo = {
      stdout: (t) => void (stdout += t),
      stderr: (t) => void (stderr += t),
      stdin,
      env: { ...this.env, ...opts.env },
      clock: this.clock,
      zone: 'Europe/Berlin',
    };
    // The same output boundary as processIo(): what a test reads is what a terminal would get.
    const code = await main(['node', 'gatehouse', ...args], terminalSafe(io));
    return { code, stdout, stderr };
  }

  cleanup(): void {
    rmSync(this.home, { recursive: true, force: true });
  }
}
