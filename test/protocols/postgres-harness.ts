import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { silentLogger } from '../../src/core/log.js';
import type { Listener, ProtocolAdapter } from '../../src/broker/adapter.js';
import { served } from './data-path.js';
import { decodeMessage, message, type Message } from '../../protocols/postgres/codec.js';
import { PostgresAdapter, type PostgresAdapterOptions, type StatementEvent } from '../../protocols/postgres/index.js';
import { nativeLoop, type NativeLoop } from '../../protocols/postgres/native.js';
import { BERLIN_DAYTIME, GATEWAY_PASSWORD, makeGateway, type GatewayHarness } from './gateway-harness.js';
import { startPostgres, type PostgresTarget } from '../targets/index.js';
import { feed } from './child-input.js';

export { GATEWAY_PASSWORD };

/** Approval by team dba, timer from approval: the usual JIT database. */
export const APPROVAL_SETTINGS = {
  limitAccessTime: BERLIN_DAYTIME,
  requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, startOn: 'approval' },
};

/** The PostgreSQL door as a test holds it: its listen(), and its counters. */
export type PgDoor = ProtocolAdapter & Pick<PostgresAdapter, 'stats'>;

/** The door the PostgreSQL suites test: in this process, or in two data-path workers (see data-path.ts). */
export function pgDoor(options: PostgresAdapterOptions = {}): Promise<PgDoor> {
  return served('postgres', new PostgresAdapter(options));
}

export interface PgGateway {
  gw: GatewayHarness;
  target: PostgresTarget;
  adapter: PgDoor;
  listener: Listener;
  port: number;
  statements: StatementEvent[];
  /** libpq conninfo for the gateway as `user`, TLS verified against the gateway CA. */
  conninfo(user: string, extra?: string): string;
  /** A pg client config through the gateway. */
  pgConfig(user: string, password: string): pg.ClientConfig;
  /** Counts the target's own "connection received" log lines. */
  targetConnections(): number;
  /** Runs SQL on the target directly as its superuser. */
  superQuery(sql: string): Promise<pg.QueryResult>;
  close(): Promise<void>;
}

export async function startPgGateway(options: PostgresAdapterOptions & { allowPlaintext?: boolean } = {}): Promise<PgGateway> {
  const [gw, target] = await Promise.all([makeGateway(), startPostgres()]);
  const statements: StatementEvent[] = [];
  const { allowPlaintext, ...adapterOptions } = options;
  const adapter = await pgDoor({ upstreamCa: { '*': readFileSync(target.ca, 'utf8') }, onStatement: (e) => statements.push(e), ...adapterOptions });
  const listener = await adapter.listen({
    host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger,
    tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem },
    ...(allowPlaintext ? { allowPlaintext } : {}),
  });
  const port = listener.address.port;
  return {
    gw, target, adapter, listener, port, statements,
    conninfo: (user, extra = '') => `host=localhost port=${port} user=${user} sslmode=verify-full sslrootcert=${gw.pki.caPath} connect_timeout=10 ${extra}`.trim(),
    pgConfig: (user, password) => ({ host: 'localhost', port, user, password, ssl: { ca: gw.pki.caCertPem }, connectionTimeoutMillis: 10_000 }),
    targetConnections: () => (readFileSync(target.log, 'utf8').match(/connection received: host=127\.0\.0\.1/g) ?? []).length,
    async superQuery(sql) {
      const c = new pg.Client({ host: target.host, port: target.port, user: target.superuser, password: target.superuserPassword, database: target.database });
      await c.connect();
      try {
        return await c.query(sql);
      } finally {
        await c.end();
      }
    },
    async close() {
      await listener.close();
      await gw.cleanup();
      await target.stop();
    },
  };
}

/** Adds `prod-pg` for the target, logging in as the target's SCRAM role. */
export async function addPgResource(g: PgGateway, settings: Record<string, unknown> = APPROVAL_SETTINGS, name = 'prod-pg', login?: { login: string; password: string }): Promise<void> {
  const t = g.target;
  await g.gw.addResource({
    name, type: 'database', protocol: 'postgres', host: t.host, port: t.port, database: t.database,
    credentials: login ?? { login: t.user, password: t.password }, settings,
  });
}

/**
 * The door on the native data path in this process (`relay: 'native'` and `options`),
 * listening with the gateway's certificate, the resource `open-pg` (no workflow) reaching
 * `target`, and the process's native loop, whose gauges the native suites read.
 */
export async function nativeDoor(gw: GatewayHarness, target: PostgresTarget, options: PostgresAdapterOptions = {}): Promise<{ adapter: PostgresAdapter; listener: Listener; port: number; loop: NativeLoop }> {
  const adapter = new PostgresAdapter({ relay: 'native', ...options });
  const listener = await adapter.listen({
    host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem },
  });
  const n = nativeLoop();
  if (!('loop' in n)) throw new Error(`the native data path did not load: ${n.reason}`);
  await gw.addResource({
    name: 'open-pg', type: 'database', protocol: 'postgres', host: target.host, port: target.port, database: target.database,
    credentials: { login: target.user, password: target.password }, settings: {},
  });
  return { adapter, listener, port: listener.address.port, loop: n.loop };
}

/** The whole messages at the front of `data`, and the rest (a message still arriving). */
export function messagesOf(data: Buffer): { msgs: Message[]; rest: Buffer } {
  const msgs: Message[] = [];
  let rest = data;
  for (let m = decodeMessage(rest, 1 << 30); m; m = decodeMessage(rest, 1 << 30)) {
    msgs.push(m.value);
    rest = rest.subarray(m.size);
  }
  return { msgs, rest };
}

/** A simple-protocol Query message. */
export const queryMessage = (sql: string): Buffer => message(0x51, Buffer.from(`${sql}\0`));

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** psql -X -A -t with PGPASSWORD, never prompting. */
export function psql(conninfo: string, password: string, args: string[], input?: string, timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile('psql', ['-X', '-A', '-t', '-w', conninfo, ...args], {
      env: { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: '10' }, timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024,
    }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
      resolve({ code, stdout, stderr });
    });
    if (input !== undefined) feed(child.stdin, input);
  });
}

/** An interactive-style psql fed through a pipe; output is collected as it comes. */
export class LivePsql {
  readonly child: ChildProcess;
  out = '';
  exited: Promise<number | null>;

  constructor(conninfo: string, password: string, extraArgs: string[] = []) {
    this.child = spawn('psql', ['-X', '-A', '-t', '-w', '-v', 'VERBOSITY=verbose', ...extraArgs, conninfo], {
      env: { ...process.env, PGPASSWORD: password }, stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (d: Buffer) => (this.out += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.out += d.toString()));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** Resolves when the output matches; rejects after `ms`. */
  async waitFor(re: RegExp, ms = 15_000): Promise<string> {
    const start = performance.now();
    while (!re.test(this.out)) {
      if (performance.now() - start > ms) throw new Error(`timed out waiting for ${re}; output so far:\n${this.out}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.out;
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

export function writeTemp(dir: string, name: string, content: string | Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}
