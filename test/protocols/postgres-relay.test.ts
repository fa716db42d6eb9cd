/**
 * What flows through a live PostgreSQL session: COPY both ways, the extended protocol,
 * LISTEN/NOTIFY, CancelRequest, the upstream auth methods, and upstream TLS.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_CIPHERS, type TLSSocket } from 'node:tls';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import type { BrokerSession } from '../../src/broker/broker.js';
import { PostgresAdapter } from '../../protocols/postgres/index.js';
import { until } from './gateway-harness.js';
import { addPgResource, GATEWAY_PASSWORD, pgDoor, psql, startPgGateway, type PgGateway } from './postgres-harness.js';

let g: PgGateway;
let dir: string;

beforeAll(async () => {
  g = await startPgGateway();
  dir = mkdtempSync(join(tmpdir(), 'gh-pg-relay-'));
  await addPgResource(g, {}, 'open-pg');
  await addPgResource(g, {}, 'md5-pg', { login: g.target.md5User, password: g.target.md5Password });
});

afterAll(async () => {
  await g?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function client(resource = 'open-pg'): Promise<pg.Client> {
  const c = new pg.Client(g.pgConfig(`alice:${resource}`, GATEWAY_PASSWORD));
  await c.connect();
  return c;
}

function sha256(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path).on('data', (d) => h.update(d)).on('end', () => resolve(h.digest('hex'))).on('error', reject);
  });
}

describe('a live PostgreSQL session through the gateway', () => {
  it('reaches the target over verified TLS', async () => {
    const c = await client();
    const r = await c.query('select ssl, pid from pg_stat_ssl where pid = pg_backend_pid()');
    await c.end();
    expect(r.rows).toEqual([{ ssl: true, pid: expect.any(Number) }]);
    // The client holds the gateway's cancel key, never the target's backend pid.
    expect(keyOf(c).processID).not.toBe(r.rows[0].pid);
  });

  it('COPY in and out of 50 MB with psql', async () => {
    const src = join(dir, 'in.tsv');
    const row = (i: number): string => `${i}\t${randomBytes(48).toString('hex')}\n`;
    const lines: string[] = [];
    for (let i = 0; i < 520_000; i++) lines.push(row(i));
    writeFileSync(src, lines.join(''));
    expect(statSync(src).size).toBeGreaterThan(50 * 1024 * 1024);
    const conn = g.conninfo('alice:open-pg');
    await psql(conn, GATEWAY_PASSWORD, ['-c', 'create table big (id int, payload text)']);
    const load = await psql(conn, GATEWAY_PASSWORD, ['-c', `\\copy big from '${src}'`], undefined, 120_000);
    expect(load.stderr).toBe('');
    expect(load.stdout.trim()).toBe('COPY 520000');
    const out = join(dir, 'out.tsv');
    const dump = await psql(conn, GATEWAY_PASSWORD, ['-c', `\\copy (select * from big order by id) to '${out}'`], undefined, 120_000);
    expect(dump.stdout.trim()).toBe('COPY 520000');
    expect(await sha256(out)).toBe(await sha256(src));
  }, 180_000);

  it('extended protocol: parameters, prepared statements, bytea, nulls, transactions', async () => {
    const c = await client();
    await c.query('create temp table kv (k text primary key, v bytea, n int)');
    const blob = randomBytes(70_000);
    await c.query('begin');
    for (let i = 0; i < 20; i++) {
      await c.query({ name: 'ins', text: 'insert into kv values ($1, $2, $3)', values: [`key-${i}`, i === 0 ? blob : Buffer.from([i]), i % 2 ? null : i] });
    }
    await c.query('commit');
    const one = await c.query({ name: 'get', text: 'select v, n from kv where k = $1', values: ['key-0'] });
    expect(Buffer.compare(one.rows[0].v as Buffer, blob)).toBe(0);
    const agg = await c.query({ name: 'count', text: 'select count(*)::int as c, count(n)::int as nn from kv where k like $1', values: ['key-%'] });
    expect(agg.rows[0]).toEqual({ c: 20, nn: 10 });
    const err = await c.query({ text: 'select 1/$1::int', values: [0] }).catch((e: pg.DatabaseError) => e);
    expect(err).toMatchObject({ code: '22012' });
    // The session survives an error inside the extended protocol.
    expect((await c.query({ name: 'get', text: 'select v, n from kv where k = $1', values: ['key-2'] })).rows[0].n).toBe(2);
    await c.end();
  });

  it('LISTEN/NOTIFY between two gateway sessions', async () => {
    const listener = await client();
    const notifier = await client();
    await listener.query('listen gatehouse_events');
    const got = new Promise<pg.Notification>((resolve) => listener.on('notification', resolve));
    await notifier.query(`select pg_notify('gatehouse_events', 'hello through the gate')`);
    const n = await got;
    expect(n).toMatchObject({ channel: 'gatehouse_events', payload: 'hello through the gate' });
    await Promise.all([listener.end(), notifier.end()]);
  });

  it('cancels select pg_sleep(30) through the gateway with pg (CancelRequest)', async () => {
    const c = await client();
    const cancels = g.adapter.stats.cancelsForwarded;
    const started = performance.now();
    const err = await cancelledSleep(c, { ...g.pgConfig('alice:open-pg', GATEWAY_PASSWORD), ssl: false });
    expect(err).toMatchObject({ code: '57014', message: 'canceling statement due to user request' });
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(g.adapter.stats.cancelsForwarded).toBe(cancels + 1);
    expect((await c.query('select 1 as still_here')).rows).toEqual([{ still_here: 1 }]);
    await c.end();
  });

  it('psql interrupted with SIGINT cancels its statement through the gateway', async () => {
    const child = spawn('psql', ['-X', '-w', g.conninfo('alice:open-pg'), '-c', 'select pg_sleep(30)'], { env: { ...process.env, PGPASSWORD: GATEWAY_PASSWORD } });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    await waitForActivity('select pg_sleep(30)');
    const t0 = performance.now();
    child.kill('SIGINT');
    const code = await exited;
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(code).not.toBe(0);
    expect(err).toContain('ERROR:  canceling statement due to user request');
  });

  it('a cancel key the gateway did not issue is ignored', async () => {
    const c = await client();
    const q = c.query('select pg_sleep(1.5) as slept');
    await waitForActivity('select pg_sleep(1.5) as slept');
    const stranger = new pg.Client({ ...g.pgConfig('alice:open-pg', GATEWAY_PASSWORD), ssl: false });
    (stranger as unknown as { cancel(c: unknown, q: unknown): void }).cancel({ processID: keyOf(c).processID, secretKey: keyOf(c).secretKey ^ 1, activeQuery: 'x' }, 'x');
    expect((await q).rows).toHaveLength(1);
    await c.end();
  });

  it('logs in upstream with md5 and with cleartext as well as SCRAM', async () => {
    const md5 = await client('md5-pg');
    expect((await md5.query('select current_user as u')).rows).toEqual([{ u: g.target.md5User }]);
    await md5.end();

    await g.superQuery(`create role app_clear login password 'clear-pw-1'`);
    await g.superQuery(`grant connect on database ${g.target.database} to app_clear`);
    const hba = join(g.target.dir, 'data', 'pg_hba.conf');
    writeFileSync(hba, `host all app_clear 127.0.0.1/32 password\n${readFileSync(hba, 'utf8')}`);
    await g.superQuery('select pg_reload_conf()');
    await addPgResource(g, {}, 'clear-pg', { login: 'app_clear', password: 'clear-pw-1' });
    const clear = await client('clear-pg');
    expect((await clear.query('select current_user as u')).rows).toEqual([{ u: 'app_clear' }]);
    await clear.end();
  });

  it('refuses a target whose certificate does not chain to the configured CA; plaintext only for a resource that allows it', async () => {
    const tls = { cert: g.gw.pki.certPem, key: g.gw.pki.keyPem, ca: g.gw.pki.caCertPem };
    const wrongCa = await pgDoor({ upstreamCa: { 'open-pg': g.gw.pki.caCertPem } });
    const l1 = await wrongCa.listen({ host: '127.0.0.1', port: 0, broker: g.gw.broker, log: silentLogger, tls });
    const c1 = new pg.Client({ ...g.pgConfig('alice:open-pg', GATEWAY_PASSWORD), port: l1.address.port });
    const err = await c1.connect().then(() => undefined, (e: unknown) => e as pg.DatabaseError);
    expect(err).toMatchObject({
      code: '08001', severity: 'FATAL', detail: 'The target could not be used (target_identity).',
      hint: 'check the CA configured for open-pg and the certificate the target presents',
    });
    expect(err?.message).toMatch(/^Gatehouse: could not open open-pg: its TLS certificate does not verify against the configured CA \([A-Z_]+\)$/);

    // upstreamTls 'disable' (benchmarks, tests) skips TLS only where the resource allows a
    // plaintext target; SCRAM then runs in plaintext, and the session's audit says so.
    await g.gw.addResource({
      name: 'lab-pg', type: 'database', protocol: 'postgres', host: g.target.host, port: g.target.port, database: g.target.database,
      credentials: { login: g.target.user, password: g.target.password }, settings: {}, options: { allowPlaintextUpstream: true },
    });
    const plain = await pgDoor({ upstreamTls: 'disable' });
    const l2 = await plain.listen({ host: '127.0.0.1', port: 0, broker: g.gw.broker, log: silentLogger, tls });
    const sslOf = async (resource: string): Promise<unknown> => {
      const c = new pg.Client({ ...g.pgConfig(`alice:${resource}`, GATEWAY_PASSWORD), port: l2.address.port });
      await c.connect();
      try {
        return (await c.query('select ssl from pg_stat_ssl where pid = pg_backend_pid()')).rows;
      } finally {
        await c.end();
      }
    };
    expect(await sslOf('lab-pg')).toEqual([{ ssl: false }]);
    expect(await sslOf('open-pg')).toEqual([{ ssl: true }]);
    // The plaintext leg is on the session's audit record, not only in a log line.
    const starts = await g.gw.store.listAudit({ action: 'session.start' });
    expect(starts.filter((a) => a.data.resource === 'lab-pg').map((a) => a.data.upstreamTls)).toEqual([false]);
    expect(starts.filter((a) => a.data.resource === 'open-pg').every((a) => a.data.upstreamTls === true)).toBe(true);
    await Promise.all([l1.close(), l2.close()]);
    expect(() => new PostgresAdapter({ upstreamCa: { x: 'not a pem' } })).toThrow(/upstreamCa\.x/);
    // 'prefer' (the old default) is gone: a plaintext target is a per-resource decision.
    expect(() => new PostgresAdapter({ upstreamTls: 'prefer' as never })).toThrow(/upstreamTls: must be 'require' or 'disable'/);
  });

  it('a plaintext target leg: a 4 MB result among three statements, a cancel, the byte counts and a kill', async () => {
    await g.gw.addResource({
      name: 'lab-pg-relay', type: 'database', protocol: 'postgres', host: g.target.host, port: g.target.port, database: g.target.database,
      credentials: { login: g.target.user, password: g.target.password }, settings: {}, options: { allowPlaintextUpstream: true },
    });
    const door = await pgDoor({ upstreamTls: 'disable' });
    const l = await door.listen({ host: '127.0.0.1', port: 0, broker: g.gw.broker, log: silentLogger, tls: { cert: g.gw.pki.certPem, key: g.gw.pki.keyPem, ca: g.gw.pki.caCertPem } });
    try {
      const c = new pg.Client({ ...g.pgConfig('alice:lab-pg-relay', GATEWAY_PASSWORD), port: l.address.port });
      await c.connect();
      // Three statements in one Query message, right behind the login.
      const results = (await c.query(
        "select ssl from pg_stat_ssl where pid = pg_backend_pid(); select repeat('x', 4 * 1024 * 1024) as big; select sum(i)::int as s from generate_series(1, 1000) i",
      )) as unknown as pg.QueryResult[];
      expect(results).toHaveLength(3);
      expect(results[0]!.rows).toEqual([{ ssl: false }]);
      expect(results[1]!.rows[0].big).toHaveLength(4 * 1024 * 1024);
      expect(results[2]!.rows).toEqual([{ s: 500500 }]);

      expect(await cancelledSleep(c, { ...g.pgConfig('alice:lab-pg-relay', GATEWAY_PASSWORD), port: l.address.port, ssl: false })).toMatchObject({ code: '57014' });
      expect((await c.query('select 1 as still_here')).rows).toEqual([{ still_here: 1 }]);

      const session = g.gw.broker.live().find((s: BrokerSession) => s.resource.name === 'lab-pg-relay');
      expect(session).toBeDefined();
      const errors: Error[] = [];
      c.on('error', (e) => errors.push(e));
      await g.gw.broker.kill(session!.id, 'dave');
      await until(() => errors.length > 0, 5_000, 'the client hears the teardown');
      expect(errors[0]).toMatchObject({ code: '57P01', message: expect.stringContaining('ended by dave') });
      // Every byte of the 4 MB result went through the relay and was counted (final once kill resolved).
      expect(session!.bytesOut).toBeGreaterThan(4 * 1024 * 1024);
      expect(session!.bytesIn).toBeGreaterThan(0);
    } finally {
      await l.close();
    }
  });

  it('picks AES-128-GCM for the client leg although the client offers AES-256-GCM first (TLS 1.3, the server order)', async () => {
    const c = await client();
    const socket = (c as unknown as { connection: { stream: TLSSocket } }).connection.stream;
    // Node's client offers TLS_AES_256_GCM_SHA384 first, as libpq does.
    expect(DEFAULT_CIPHERS.indexOf('TLS_AES_256_GCM_SHA384')).toBeLessThan(DEFAULT_CIPHERS.indexOf('TLS_AES_128_GCM_SHA256'));
    expect(socket.getProtocol()).toBe('TLSv1.3');
    expect(socket.getCipher().name).toBe('TLS_AES_128_GCM_SHA256');
    await c.end();
  });

  it('counts the bytes of a session both ways; a Terminate ends it as client_closed', async () => {
    const c = await client();
    await c.query(`select repeat('x', 100000) as big`);
    // From data-path workers the counts of a live session reach the broker once a second.
    const counted = (): BrokerSession | undefined => g.gw.broker.live().find((s) => s.resource.name === 'open-pg' && s.bytesOut > 100_000);
    expect(await eventually(async () => counted() !== undefined)).toBe(true);
    const session = counted();
    expect(session!.bytesIn).toBeGreaterThan(20);
    await c.end();
    expect(await eventually(async () => (await g.gw.store.getSession(session!.id))?.state === 'ended')).toBe(true);
    expect(await g.gw.store.getSession(session!.id)).toMatchObject({ endReason: 'client_closed', bytesOut: session!.bytesOut });
  });

  it('a backend terminated on the target reaches the client as the target said it, and ends as target_closed', async () => {
    const c = await client();
    c.on('error', () => {});
    const pid = (await c.query('select pg_backend_pid() as pid')).rows[0].pid as number;
    const session = g.gw.broker.live().find((s) => s.resource.name === 'open-pg')!;
    const failed = new Promise<pg.DatabaseError>((resolve) => c.once('error', (e) => resolve(e as pg.DatabaseError)));
    await g.superQuery(`select pg_terminate_backend(${pid})`);
    expect(await failed).toMatchObject({ code: '57P01', message: 'terminating connection due to administrator command' });
    expect(await eventually(async () => (await g.gw.store.getSession(session.id))?.state === 'ended')).toBe(true);
    expect(await g.gw.store.getSession(session.id)).toMatchObject({ endReason: 'target_closed' });
  });
});

async function eventually(check: () => Promise<boolean>, ms = 5_000): Promise<boolean> {
  const start = performance.now();
  while (performance.now() - start < ms) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return check();
}

/** The BackendKeyData pg keeps (untyped in @types/pg): the gateway's key, not the target's. */
function keyOf(c: pg.Client): { processID: number; secretKey: number } {
  const k = c as unknown as { processID: number; secretKey: number };
  return { processID: k.processID, secretKey: k.secretKey };
}

/**
 * Runs select pg_sleep(30) on `c` and cancels it once the target runs it, with pg's cancel: a
 * fresh connection to `via` sending CancelRequest (in plaintext, as libpq before 17 does; pg is
 * handed the key fields directly, Client.activeQuery being deprecated). Resolves with the query's error.
 */
async function cancelledSleep(c: pg.Client, via: pg.ClientConfig): Promise<unknown> {
  const query = new pg.Query('select pg_sleep(30)');
  const failed = new Promise<unknown>((resolve) => {
    query.on('error', resolve);
    query.on('end', () => resolve(undefined));
  });
  c.query(query);
  await waitForActivity('select pg_sleep(30)');
  const canceller = new pg.Client(via);
  (canceller as unknown as { cancel(c: unknown, q: unknown): void }).cancel({ activeQuery: query, ...keyOf(c) }, query);
  return failed;
}

async function waitForActivity(query: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const r = await g.superQuery(`select count(*)::int as n from pg_stat_activity where query = '${query}' and state = 'active'`);
    if (r.rows[0].n > 0) return;
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error(`${query} never became active on the target`);
}
