import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import mysql from 'mysql2/promise';
import { silentLogger } from '../../src/core/log.js';
import type { Listener, ProtocolAdapter } from '../../src/broker/adapter.js';
import { served } from './data-path.js';
import { MysqlAdapter, type MysqlAdapterOptions, type StatementEvent } from '../../protocols/mysql/index.js';
import { decodeHandshakeV10, encodeSslRequest } from '../../protocols/mysql/handshake.js';
import { PacketReader } from '../../protocols/mysql/reader.js';
import { BERLIN_DAYTIME, GATEWAY_PASSWORD, makeGateway, until, type GatewayHarness } from './gateway-harness.js';
import { startMariadb, type MariadbTarget } from '../targets/index.js';
import { feed } from './child-input.js';

export { GATEWAY_PASSWORD, until };

/** Approval by team dba, timer from approval: the usual JIT database. */
export const APPROVAL_SETTINGS = {
  limitAccessTime: BERLIN_DAYTIME,
  requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, startOn: 'approval' },
};

/** The MySQL door as a test holds it: its listen(), and its counters. */
export type MyDoor = ProtocolAdapter & Pick<MysqlAdapter, 'stats' | 'provisioner'>;

/** The door the MySQL suites test: in this process, or in two data-path workers (see data-path.ts). */
export function myDoor(options: MysqlAdapterOptions = {}): Promise<MyDoor> {
  return served('mysql', new MysqlAdapter(options));
}

export interface MyGateway {
  gw: GatewayHarness;
  target: MariadbTarget;
  adapter: MyDoor;
  listener: Listener;
  port: number;
  statements: StatementEvent[];
  /** `mariadb` CLI arguments through the gateway, TLS verified against the gateway CA. */
  cli(user: string, password: string, extra?: string[]): string[];
  /** A mysql2 config through the gateway (TLS unless `plain`). */
  my2(user: string, password: string, extra?: mysql.ConnectionOptions): mysql.ConnectionOptions;
  /** Runs SQL on the target directly as its superuser. */
  superQuery(sql: string, values?: unknown[]): Promise<unknown>;
  close(): Promise<void>;
}

export async function startMyGateway(options: MysqlAdapterOptions & { allowPlaintext?: boolean } = {}): Promise<MyGateway> {
  const [gw, target] = await Promise.all([makeGateway(), startMariadb()]);
  const statements: StatementEvent[] = [];
  const { allowPlaintext, ...adapterOptions } = options;
  const adapter = await myDoor({ upstreamCa: { '*': readFileSync(target.ca, 'utf8') }, onStatement: (e) => statements.push(e), ...adapterOptions });
  const listener = await adapter.listen({
    host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger,
    tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem, rsaKey: gw.pki.rsaKeyPem },
    ...(allowPlaintext ? { allowPlaintext } : {}),
  });
  const port = listener.address.port;
  return {
    gw, target, adapter, listener, port, statements,
    cli: (user, password, extra = []) => [
      '--no-defaults', '-h', '127.0.0.1', '-P', String(port), '-u', user, `--password=${password}`,
      `--ssl-ca=${gw.pki.caPath}`, '--ssl-verify-server-cert', '--connect-timeout=10', ...extra,
    ],
    my2: (user, password, extra = {}) => ({ host: '127.0.0.1', port, user, password, ssl: { ca: gw.pki.caCertPem }, connectTimeout: 10_000, ...extra }),
    async superQuery(sql, values) {
      const c = await mysql.createConnection({ host: target.host, port: target.port, user: target.superuser, password: target.superuserPassword, database: target.database });
      try {
        const [rows] = await c.query(sql, values);
        return rows;
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

/** Adds `prod-mysql` for the target, logging in as the target's mysql_native_password user. */
export async function addMyResource(g: MyGateway, settings: Record<string, unknown> = APPROVAL_SETTINGS, name = 'prod-mysql', login?: { login: string; password: string }): Promise<void> {
  const t = g.target;
  await g.gw.addResource({
    name, type: 'database', protocol: 'mysql', host: t.host, port: t.port, database: t.database,
    credentials: login ?? { login: t.user, password: t.password }, settings,
  });
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the stock `mariadb` client to completion. */
export function mariadb(args: string[], input?: string, timeoutMs = 60_000): Promise<RunResult> {
  return runClient('mariadb', args, input, timeoutMs);
}

/** Runs a stock client (`mariadb`, or Debian's `mysql`, which is MariaDB's client too). */
export function runClient(bin: string, args: string[], input?: string, timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(bin, args, { timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
      resolve({ code, stdout, stderr });
    });
    if (input !== undefined) feed(child.stdin, input);
  });
}

/** A `mariadb` client kept running; output is collected as it comes. */
export class LiveMariadb {
  readonly child: ChildProcess;
  out = '';
  readonly exited: Promise<number | null>;

  constructor(args: string[]) {
    this.child = spawn('mariadb', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => (this.out += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.out += d.toString()));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

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

/** Polls until `cond` resolves true (state on the target, read by a query); throws after `ms`. */
export async function eventually(cond: () => Promise<boolean>, ms = 15_000, what = 'condition'): Promise<void> {
  const start = performance.now();
  while (!(await cond())) {
    if (performance.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * A bare client's start, for what no stock client sends: the gateway's greeting read, an
 * SSLRequest with `caps`, TLS up (the gateway's CA trusted, its name not checked: the other
 * tests check it), offering `session` to resume, up to `maxVersion`. Returns the TLS socket,
 * a reader on it, the sequence number the handshake response follows and the session tickets
 * the gateway issues.
 */
export async function rawTlsStart(g: MyGateway, caps: number, opts: { session?: Buffer; maxVersion?: 'TLSv1.2' } = {}): Promise<{ secure: TLSSocket; reader: PacketReader; seq: number; tickets: Buffer[] }> {
  const socket = connect(g.port, '127.0.0.1');
  await once(socket, 'connect');
  const plain = new PacketReader(socket, 'gateway');
  decodeHandshakeV10((await plain.read()).payload);
  plain.write(encodeSslRequest({ capabilities: caps, maxPacket: 1 << 24, charset: 45 }));
  const seq = plain.seq;
  plain.detach();
  const secure = tlsConnect({ socket, ca: g.gw.pki.caCertPem, checkServerIdentity: () => undefined, ...(opts.session ? { session: opts.session } : {}), ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}) });
  // The session tickets the gateway issues on this connection (Node's 'session' event), from the start.
  const tickets: Buffer[] = [];
  secure.on('session', (t: Buffer) => tickets.push(t));
  await once(secure, 'secureConnect');
  return { secure, reader: new PacketReader(secure, 'gateway'), seq, tickets };
}
