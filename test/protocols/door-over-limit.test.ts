/**
 * The database doors past `maxConnections` (protocols/shared/listener.ts): a connection over
 * the limit is refused on the door's own wire, where the stock clients show the gateway's
 * words, and audited with its address; up to BUSY_HEADROOM at a time, and past those closed
 * unanswered. Each listener here allows one connection, held by a client that sends nothing.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import { MysqlAdapter } from '../../protocols/mysql/index.js';
import { PostgresAdapter } from '../../protocols/postgres/index.js';
import { BUSY_HEADROOM } from '../../protocols/shared/listener.js';
import { addMyResource, mariadb, startMyGateway, type MyGateway } from './mysql-harness.js';
import { addPgResource, GATEWAY_PASSWORD, psql, startPgGateway, type PgGateway } from './postgres-harness.js';
import { until } from './gateway-harness.js';
import type { GatewayHarness } from './gateway-harness.js';

const REFUSED = 'Gatehouse: the gateway has too many connections; try again shortly.';

/** A client that connects and says nothing: it holds a place (or a refusal slot) until destroyed. */
async function silent(port: number): Promise<{ socket: Socket; bytes: () => number; closed: () => boolean }> {
  const socket = netConnect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  let bytes = 0;
  let closed = false;
  socket.on('data', (d: Buffer) => (bytes += d.length));
  socket.on('close', () => (closed = true));
  await new Promise<void>((r) => socket.once('connect', () => r()));
  return { socket, bytes: () => bytes, closed: () => closed };
}

/**
 * Runs `attempt` (a stock client) until it exits 0 or 10 s have passed: the listener counts a
 * holder that left until its close is seen, so the first try may still be over the limit.
 */
async function untilServed(attempt: () => Promise<{ code: number | null; stdout: string; stderr: string }>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const start = performance.now();
  for (;;) {
    const r = await attempt();
    if (r.code === 0 || performance.now() - start > 10_000) return r;
  }
}

/** The door.refuse rows for too_many_connections. */
async function overLimitRows(gw: GatewayHarness): Promise<Array<Record<string, unknown>>> {
  return (await gw.store.listAudit({ action: 'door.refuse' })).map((e) => e.data).filter((d) => d.code === 'too_many_connections');
}

/** The rows after the first `from`, once there are `n` of them (the audit is written asynchronously). */
async function newRows(gw: GatewayHarness, from: number, n: number): Promise<Array<Record<string, unknown>>> {
  const start = performance.now();
  for (;;) {
    const rows = (await overLimitRows(gw)).slice(from);
    if (rows.length >= n || performance.now() - start > 10_000) return rows;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('the PostgreSQL door over maxConnections', () => {
  let g: PgGateway;
  let l: Listener;
  let port: number;
  const conninfo = (): string => `host=localhost port=${port} user=alice:open-pg sslmode=verify-full sslrootcert=${g.gw.pki.caPath} connect_timeout=10`;

  beforeAll(async () => {
    g = await startPgGateway();
    await addPgResource(g, {}, 'open-pg');
    const door = new PostgresAdapter({ upstreamCa: { '*': readFileSync(g.target.ca, 'utf8') }, maxConnections: 1 });
    l = await door.listen({ host: '127.0.0.1', port: 0, broker: g.gw.broker, log: silentLogger, tls: { cert: g.gw.pki.certPem, key: g.gw.pki.keyPem, ca: g.gw.pki.caCertPem } });
    port = l.address.port;
  });

  afterAll(async () => {
    await l?.close();
    await g?.close();
  });

  it('psql and pg over the limit read FATAL 53300 in the gateway\'s words after TLS, each refusal is audited with its address, and the place comes back when its holder leaves', async () => {
    const holder = await silent(port);
    const before = (await overLimitRows(g.gw)).length;
    const r = await psql(conninfo(), GATEWAY_PASSWORD, ['-c', 'select 1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`FATAL:  ${REFUSED}`);
    const c = new pg.Client({ host: 'localhost', port, user: 'alice:open-pg', password: GATEWAY_PASSWORD, ssl: { ca: g.gw.pki.caCertPem }, connectionTimeoutMillis: 10_000 });
    c.on('error', () => undefined);
    await expect(c.connect()).rejects.toMatchObject({ code: '53300', severity: 'FATAL', message: REFUSED });
    const rows = await newRows(g.gw, before, 2);
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row).toMatchObject({ door: 'postgres', detail: 'over maxConnections', client: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    expect(g.gw.broker.live()).toHaveLength(0);

    holder.socket.destroy();
    const ok = await untilServed(() => psql(conninfo(), GATEWAY_PASSWORD, ['-c', 'select 41 + 1']));
    expect(ok).toMatchObject({ code: 0, stdout: '42\n' });
  });

  it('a CancelRequest over the limit still reaches the statement it names: psql interrupted with SIGINT while its session holds the only place', async () => {
    const child = spawn('psql', ['-X', '-w', conninfo(), '-c', 'select pg_sleep(30)'], { env: { ...process.env, PGPASSWORD: GATEWAY_PASSWORD } });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const sleeping = async (): Promise<boolean> => (await g.superQuery(`select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(30)'`)).rows[0].n === 1;
    const start = performance.now();
    while (!(await sleeping())) {
      if (performance.now() - start > 15_000) throw new Error('psql never started its statement');
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill('SIGINT');
    expect(await exited).not.toBe(0);
    expect(err).toContain('ERROR:  canceling statement due to user request');
  });

  it(`past ${BUSY_HEADROOM} refusals under way, one more connection is closed without a byte; those under way are still answered`, async () => {
    const holder = await silent(port);
    const refusing = await Promise.all(Array.from({ length: BUSY_HEADROOM }, () => silent(port)));
    const dropped = await silent(port);
    await until(() => dropped.closed(), 10_000, 'the connection past the headroom to be closed');
    expect(dropped.bytes()).toBe(0);
    // One of those under way is answered as usual: 'S' to its SSLRequest.
    const first = refusing[0]!;
    first.socket.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]));
    await until(() => first.bytes() > 0, 10_000, "the gateway's answer to the SSLRequest");
    expect(first.closed()).toBe(false);
    for (const s of [holder, ...refusing]) s.socket.destroy();
  });
});

describe('the MySQL door over maxConnections', () => {
  let g: MyGateway;
  let l: Listener;
  let port: number;

  beforeAll(async () => {
    g = await startMyGateway();
    await addMyResource(g, {}, 'open-mysql');
    const door = new MysqlAdapter({ upstreamCa: { '*': readFileSync(g.target.ca, 'utf8') }, maxConnections: 1 });
    l = await door.listen({ host: '127.0.0.1', port: 0, broker: g.gw.broker, log: silentLogger, tls: { cert: g.gw.pki.certPem, key: g.gw.pki.keyPem, ca: g.gw.pki.caCertPem } });
    port = l.address.port;
  });

  afterAll(async () => {
    await l?.close();
    await g?.close();
  });

  const cli = (extra: string[]): string[] => [
    '--no-defaults', '-h', '127.0.0.1', '-P', String(port), '-u', 'alice:open-mysql', `--password=${GATEWAY_PASSWORD}`,
    `--ssl-ca=${g.gw.pki.caPath}`, '--ssl-verify-server-cert', '--connect-timeout=10', ...extra,
  ];

  it('the mariadb CLI and mysql2 over the limit read ERROR 1040 (08004) in the greeting\'s place, each refusal is audited with its address, and the place comes back when its holder leaves', async () => {
    const holder = await silent(port);
    const before = (await overLimitRows(g.gw)).length;
    const r = await mariadb(cli(['-e', 'select 1']));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`ERROR 1040 (08004): ${REFUSED} (too_many_connections)`);
    await expect(mysql.createConnection({ host: '127.0.0.1', port, user: 'alice:open-mysql', password: GATEWAY_PASSWORD, ssl: { ca: g.gw.pki.caCertPem }, connectTimeout: 10_000 }))
      .rejects.toMatchObject({ errno: 1040, sqlState: '08004', sqlMessage: `${REFUSED} (too_many_connections)` });
    const rows = await newRows(g.gw, before, 2);
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row).toMatchObject({ door: 'mysql', detail: 'over maxConnections', client: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    expect(g.gw.broker.live()).toHaveLength(0);

    holder.socket.destroy();
    const ok = await untilServed(() => mariadb(cli(['-N', '-e', 'select 41 + 1'])));
    expect(ok).toMatchObject({ code: 0, stdout: '42\n' });
  });
});
