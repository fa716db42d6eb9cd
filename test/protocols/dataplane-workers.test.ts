/**
 * The PostgreSQL door served by two data-path workers (src/dataplane): what only a split
 * data path can get wrong. Every other PostgreSQL suite also runs against workers (the
 * `data-path workers` project in vitest.config.ts); this one pins the split itself: sessions
 * spread over both processes, a CancelRequest that lands in the other worker, a mass teardown
 * across both, and a worker that dies. Real PostgreSQL, real pg clients.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { loadConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import { startGateway } from '../../src/gateway.js';
import { hashPassword } from '../../src/secrets/passwords.js';
import { DataPath, type WorkerDoor } from '../../src/dataplane/pool.js';
import { MysqlAdapter } from '../../protocols/mysql/index.js';
import { PostgresAdapter } from '../../protocols/postgres/index.js';
import { eventually, within } from './contract-driver.js';
import { GATEWAY_PASSWORD, makeGateway, type GatewayHarness } from './gateway-harness.js';
import { APPROVAL_SETTINGS } from './postgres-harness.js';
import { startMariadb, startPostgres, type PostgresTarget } from '../targets/index.js';

let gw: GatewayHarness;
let target: PostgresTarget;
let pool: DataPath;
let door: WorkerDoor;
let listener: Listener;

beforeAll(async () => {
  [gw, target] = await Promise.all([makeGateway(), startPostgres()]);
  pool = new DataPath(2, silentLogger);
  await pool.start();
  const options = { upstreamCa: { '*': readFileSync(target.ca, 'utf8') } };
  door = pool.door('postgres', new PostgresAdapter(options));
  listener = await door.listen(listenerConfig());
  for (const name of ['open-pg', 'other-pg']) {
    await gw.addResource({
      name, type: 'database', protocol: 'postgres', host: target.host, port: target.port, database: target.database,
      credentials: { login: target.user, password: target.password }, settings: {},
    });
  }
  await gw.addResource({
    name: 'prod-pg', type: 'database', protocol: 'postgres', host: target.host, port: target.port, database: target.database,
    credentials: { login: target.user, password: target.password }, settings: { ...APPROVAL_SETTINGS, singleUser: true },
  });
});

afterAll(async () => {
  await listener?.close();
  await gw?.cleanup();
  await pool?.stop();
  await target?.stop();
});

/** The listener settings every door in this file gets: loopback, a free port, the gateway's broker and TLS. */
const listenerConfig = () => ({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem } });

/** A pg client to a listener on `port` as `login`, TLS verified against the gateway CA (not yet connected). */
const pgClient = (port: number, login: string): pg.Client => new pg.Client({ host: 'localhost', port, user: login, password: GATEWAY_PASSWORD, ssl: { ca: gw.pki.caCertPem } });

/** A pool of the test's own (beside the file's), stopped when the test ends. */
async function ownPool(workers: number, opts: { hangMs?: number } = {}): Promise<DataPath> {
  const p = new DataPath(workers, silentLogger, opts);
  onTestFinished(() => p.stop());
  await p.start();
  return p;
}

/** `p`'s PostgreSQL door on a free port (the target's CA unless `adapter` says otherwise), closed when the test ends. */
async function pgListener(p: DataPath, adapter = new PostgresAdapter({ upstreamCa: { '*': readFileSync(target.ca, 'utf8') } })): Promise<Listener> {
  const l = await p.door('postgres', adapter).listen(listenerConfig());
  onTestFinished(() => l.close());
  return l;
}

/** `n` TCP connections to `port` that say nothing (a login not begun), closed when the test ends. */
async function quietConnections(port: number, n: number): Promise<Socket[]> {
  const sockets = await Promise.all(Array.from({ length: n }, () => new Promise<Socket>((resolve, reject) => {
    const s = netConnect(port, '127.0.0.1', () => resolve(s)).once('error', reject);
  })));
  onTestFinished(() => sockets.forEach((s) => s.destroy()));
  return sockets;
}

/** A client logs in through the listener on `port` and gets its answer to `select n`. */
async function servesQuery(port: number, n: number): Promise<void> {
  const c = pgClient(port, 'alice:other-pg');
  await c.connect();
  expect((await c.query(`select ${n} as n`)).rows).toEqual([{ n }]);
  await c.end();
}

async function connect(resource: string): Promise<pg.Client> {
  const c = new pg.Client({ host: 'localhost', port: listener.address.port, user: `alice:${resource}`, password: GATEWAY_PASSWORD, ssl: { ca: gw.pki.caCertPem }, connectionTimeoutMillis: 10_000 });
  await c.connect();
  // After a FATAL, pg also reports the closed socket; tests look at the first error only.
  c.on('error', () => {});
  return c;
}

const nextError = (c: pg.Client): Promise<pg.DatabaseError> => new Promise((resolve) => c.once('error', (e) => resolve(e as pg.DatabaseError)));
const sessionsOf = (resource: string): number => gw.broker.live().filter((s) => s.resource.name === resource).length;

async function waitForSleep(n: number): Promise<void> {
  const c = new pg.Client({ host: target.host, port: target.port, user: target.superuser, password: target.superuserPassword, database: target.database });
  await c.connect();
  try {
    expect(await eventually(async () => (await c.query(`select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'`)).rows[0].n === n)).toBe(true);
  } finally {
    await c.end();
  }
}

describe('the PostgreSQL door in two data-path workers', () => {
  it('spreads sessions over both worker processes, each relaying to the target as the vaulted login', async () => {
    const clients = await Promise.all([1, 2, 3, 4].map(() => connect('open-pg')));
    const load = pool.load();
    expect(load.map((l) => l.sessions)).toEqual([2, 2]);
    expect(new Set(load.map((l) => l.pid)).size).toBe(2);
    expect(load.every((l) => l.pid !== process.pid)).toBe(true);
    expect(sessionsOf('open-pg')).toBe(4);
    for (const c of clients) expect((await c.query('select current_user as u')).rows).toEqual([{ u: target.user }]);
    await Promise.all(clients.map((c) => c.end()));
    expect(await eventually(async () => sessionsOf('open-pg') === 0)).toBe(true);
    expect(pool.load().map((l) => l.sessions)).toEqual([0, 0]);
  });

  /**
   * A pool of two workers of the test's own, its PostgreSQL listener at `maxConnections` (each
   * worker holds half), and four sessions opened one after the other (each worker in turn, the
   * second and fourth in the same worker) of which those two have ended: one worker holds two
   * sessions, the other none.
   */
  async function oneWorkerEmptied(maxConnections: number): Promise<{ p: DataPath; port: number; open: () => Promise<pg.Client>; kept: pg.Client[] }> {
    const p = await ownPool(2);
    const l = await pgListener(p, new PostgresAdapter({ maxConnections, upstreamCa: { '*': readFileSync(target.ca, 'utf8') } }));
    const open = async (): Promise<pg.Client> => {
      const c = pgClient(l.address.port, 'alice:open-pg');
      await c.connect();
      c.on('error', () => {});
      return c;
    };
    const clients: pg.Client[] = [];
    for (let i = 0; i < 4; i++) clients.push(await open());
    expect(p.load().map((w) => `${w.sessions}/${w.connections}`)).toEqual(['2/2', '2/2']);
    await Promise.all([clients[1]!.end(), clients[3]!.end()]);
    expect(await eventually(async () => p.load().map((w) => `${w.sessions}/${w.connections}`).join() === '2/2,0/0')).toBe(true);
    return { p, port: l.address.port, open, kept: [clients[0]!, clients[2]!] };
  }

  it("hands a connection to the worker holding fewer of the listener's connections: sessions that ended in one worker leave room there, and the other's share of maxConnections is not hit first", async () => {
    // maxConnections 4: each of the two workers holds 2.
    const { p, open, kept } = await oneWorkerEmptied(4);
    // In turn the next would go to the full worker and be refused (53300) with the other empty.
    const more = [await open(), await open()];
    expect(p.load().map((w) => w.sessions)).toEqual([2, 2]);
    for (const c of [...more, ...kept]) expect((await c.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    await Promise.all([...more, ...kept].map((c) => c.end()));
  });

  it('counts the connections still logging in: a burst of them is not all handed to the worker with fewer sessions, and a client still finds the room the other worker has', async () => {
    // maxConnections 6: each of the two workers holds 3.
    const { p, port, open, kept } = await oneWorkerEmptied(6);
    const connections = (): string => p.load().map((w) => w.connections).join();
    // Three connections that say nothing yet: logins in progress, not sessions (the handshake timeout is far off).
    const quiet = await quietConnections(port, 3);
    expect(await eventually(async () => p.load().reduce((n, w) => n + w.connections, 0) === 5)).toBe(true);
    expect(p.load().map((w) => w.connections).sort()).toEqual([2, 3]);
    expect(p.load().map((w) => w.sessions)).toEqual([2, 0]);
    // By sessions alone all three would be in the second worker, its share full, and this client refused (53300).
    const late = await open();
    expect((await late.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    expect(connections()).toBe('3,3');
    // The quiet ones gone, their places are free again in the primary's count.
    for (const s of quiet) s.destroy();
    expect(await eventually(async () => p.load().reduce((n, w) => n + w.connections, 0) === 3)).toBe(true);
    await Promise.all([late, ...kept].map((c) => c.end()));
    expect(await eventually(async () => connections() === '0,0')).toBe(true);
  });

  it('a CancelRequest handed to the other worker cancels the statement of the session it names', async () => {
    const [a, b] = [await connect('open-pg'), await connect('open-pg')];
    expect(pool.load().map((l) => l.sessions)).toEqual([1, 1]);
    const cancels = door.stats.cancelsForwarded ?? 0;
    const failures = [a, b].map((c) => {
      const q = new pg.Query('select pg_sleep(30)');
      c.query(q);
      return { q, failed: new Promise<unknown>((resolve) => q.on('error', resolve).on('end', () => resolve(undefined))) };
    });
    await waitForSleep(2);
    // Connections are handed to the workers in turn, so b's canceller lands where a lives and a's where b lives.
    for (const [i, c] of [[1, b], [0, a]] as const) {
      const key = c as unknown as { processID: number; secretKey: number };
      const canceller = new pg.Client({ host: 'localhost', port: listener.address.port, user: 'alice:open-pg', ssl: false });
      (canceller as unknown as { cancel(c: unknown, q: unknown): void }).cancel({ activeQuery: failures[i]!.q, processID: key.processID, secretKey: key.secretKey }, failures[i]!.q);
    }
    for (const f of failures) expect(await f.failed).toMatchObject({ code: '57014', message: 'canceling statement due to user request' });
    expect(await eventually(async () => door.stats.cancelsForwarded === cancels + 2)).toBe(true);
    for (const c of [a, b]) expect((await c.query('select 1 as still_here')).rows).toEqual([{ still_here: 1 }]);
    await Promise.all([a.end(), b.end()]);
  });

  it('one force check-in ends the sessions in both workers: every client gets FATAL 57P01, every record its byte counts', async () => {
    await gw.approve('alice', 'prod-pg');
    await gw.engine.leases.checkout('alice', 'prod-pg');
    const clients = await Promise.all([1, 2, 3, 4, 5, 6].map(() => connect('prod-pg')));
    expect(pool.load().every((l) => l.sessions === 3)).toBe(true);
    for (const c of clients) await c.query(`select repeat('x', 1000)`);
    const ids = gw.broker.live().filter((s) => s.resource.name === 'prod-pg').map((s) => s.id);
    const errors = clients.map((c) => nextError(c));
    await gw.engine.leases.forceCheckin('dave', 'prod-pg', 'incident OPS-7 is over');
    for (const e of await Promise.all(errors)) {
      expect(e).toMatchObject({ code: '57P01', severity: 'FATAL' });
      expect(e.message).toMatch(/incident OPS-7 is over/);
    }
    expect(await eventually(async () => (await Promise.all(ids.map((id) => gw.store.getSession(id)))).every((r) => r?.state === 'ended'))).toBe(true);
    for (const id of ids) {
      const rec = await gw.store.getSession(id);
      expect(rec).toMatchObject({ state: 'ended', endReason: 'force_checked_in' });
      expect(rec!.bytesOut).toBeGreaterThan(1000);
      expect(rec!.bytesIn).toBeGreaterThan(20);
    }
    expect(pool.load().map((l) => l.sessions)).toEqual([0, 0]);
  });

  it('a worker that dies ends its sessions as errors; a new worker takes its place and serves', async () => {
    const clients = await Promise.all([1, 2].map(() => connect('other-pg')));
    const before = gw.broker.live().filter((s) => s.resource.name === 'other-pg').map((s) => s.id);
    expect(before).toHaveLength(2);
    expect(await eventually(() => door.stats.cancelKeys === 2)).toBe(true);
    const [dead, alive] = pool.load();
    process.kill(dead!.pid!, 'SIGKILL');
    expect(await eventually(async () => sessionsOf('other-pg') === 1)).toBe(true);
    // A gauge (live cancel keys) loses the dead worker's share; counts of events keep it.
    expect(door.stats.cancelKeys).toBe(1);
    const [lost] = before.filter((id) => !gw.broker.live().some((s) => s.id === id));
    expect(await eventually(async () => (await gw.store.getSession(lost!))?.state === 'ended')).toBe(true);
    expect(await gw.store.getSession(lost!)).toMatchObject({ endReason: 'error', endMessage: expect.stringMatching(/stopped; connect again/) });
    // The other worker's session goes on; the dead one's client lost its connection.
    const results = await Promise.all(clients.map((c) => c.query('select 1 as n').then(() => 'ok', () => 'gone')));
    expect(results.sort()).toEqual(['gone', 'ok']);
    expect(await eventually(async () => ![undefined, dead!.pid].includes(pool.load()[0]!.pid) && pool.load()[0]!.listeners === 1)).toBe(true);
    expect(pool.load()[1]!.pid).toBe(alive!.pid);
    const fresh = await Promise.all([1, 2, 3].map(() => connect('other-pg')));
    for (const c of fresh) expect((await c.query('select 2 as n')).rows).toEqual([{ n: 2 }]);
    expect(pool.load().every((l) => l.sessions >= 1)).toBe(true);
    await Promise.all([...fresh, ...clients].map((c) => c.end().catch(() => undefined)));
  });

  it('connections still waiting to be handed to a worker that dies are closed and audited, not left hanging', async () => {
    const p = await ownPool(1);
    const l = await pgListener(p);
    const pid = p.load()[0]!.pid!;
    // Stopped, it takes no connection: the first one handed over waits for its acknowledgement, the others queue behind it.
    process.kill(pid, 'SIGSTOP');
    onTestFinished(() => {
      // Killed below; a test that failed before that leaves no stopped worker behind.
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    });
    const quiet = await quietConnections(l.address.port, 3);
    const closed = Promise.all(quiet.map((s) => new Promise<void>((resolve) => s.once('close', () => resolve()))));
    expect(await eventually(async () => p.load()[0]!.connections === 3)).toBe(true);
    process.kill(pid, 'SIGKILL');
    await within(closed, 5_000, 'the three client sockets to close');
    expect(await eventually(async () => (await gw.store.listAudit({ action: 'door.refuse' })).some((a) => a.data.detail === 'data-path worker 0 stopped before it took the connection'))).toBe(true);
  });

  it('a worker whose event loop stops answering is killed: its sessions end as errors, its client sockets close, a new worker serves', async () => {
    const watched = await ownPool(2, { hangMs: 1_000 });
    const l = await pgListener(watched);
    const c = pgClient(l.address.port, 'alice:other-pg');
    await c.connect();
    const closed = new Promise<void>((resolve) => c.on('error', () => undefined).on('end', () => resolve()));
    const id = gw.broker.live().find((s) => s.resource.name === 'other-pg')!.id;
    const stuck = watched.load().find((w) => w.sessions === 1)!.pid!;
    // Frozen, as a worker whose loop is stuck: it can neither relay nor end its sessions.
    process.kill(stuck, 'SIGSTOP');
    expect(await eventually(async () => (await gw.store.getSession(id))?.state === 'ended', 10_000)).toBe(true);
    expect(await gw.store.getSession(id)).toMatchObject({ endReason: 'error' });
    await closed;
    expect(alive(stuck)).toBe(false);
    expect(await eventually(() => watched.load().every((w) => w.pid !== stuck && w.listeners === 1), 10_000)).toBe(true);
    await servesQuery(l.address.port, 3);
  });

  it('a worker that keeps dying right after it starts is replaced after a growing delay, while the other serves', async () => {
    const p = await ownPool(2);
    const l = await pgListener(p);
    /** Kills the worker in slot 1; how long until its replacement serves. */
    const killSlot1 = async (): Promise<number> => {
      const pid = p.load()[1]!.pid!;
      const t0 = performance.now();
      process.kill(pid, 'SIGKILL');
      expect(await eventually(() => p.load()[1]!.pid !== pid && p.load()[1]!.listeners === 1, 15_000)).toBe(true);
      return performance.now() - t0;
    };
    // Each of these workers dies within 5 s of its start: the first is replaced at once, the
    // second such death in a row waits 250 ms before the next worker, then 500, 1000, 2000 ms.
    const first = await killSlot1();
    const waits = [await killSlot1(), await killSlot1(), await killSlot1(), await killSlot1()];
    expect(waits[0]).toBeGreaterThanOrEqual(250);
    expect(waits[3]).toBeGreaterThanOrEqual(2000);
    // A start takes the same time each time; what grows is the wait before it.
    expect(waits[3]! - first).toBeGreaterThan(1500);
    await servesQuery(l.address.port, 4);
  });

  it('a connection no worker can take is closed and audited as a refusal of the door, with its address', async () => {
    const lone = await ownPool(1);
    const l = await pgListener(lone, new PostgresAdapter());
    await lone.stop();
    const c = pgClient(l.address.port, 'alice:open-pg');
    await expect(c.connect()).rejects.toThrow();
    expect(await eventually(async () => (await gw.store.listAudit({ action: 'door.refuse' })).some((a) => a.data.detail === 'no data-path worker is serving this listener'))).toBe(true);
    const row = (await gw.store.listAudit({ action: 'door.refuse' })).find((a) => a.data.detail === 'no data-path worker is serving this listener')!;
    expect(row.data).toMatchObject({ door: 'postgres', code: 'internal_error', client: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
  });

  it('gatehouse serve with workers: 2 serves the PostgreSQL door from two processes and ends them when it stops', async () => {
    expect(loadConfig({}).workers).toBe(1);
    expect(() => loadConfig({ workers: '0' })).toThrow(/--workers: '0' is not a number from 1 to 64 or auto/);
    expect(loadConfig({ workers: 'auto' }).workers).toBeGreaterThanOrEqual(1);
    const dir = mkdtempSync(join(tmpdir(), 'gh-workers-'));
    const cfg = loadConfig({ data: dir, listen: ['api=127.0.0.1:0', 'postgres=127.0.0.1:0'], workers: '2', cwd: dir });
    const served = await startGateway(cfg, { log: silentLogger, adapters: { postgres: new PostgresAdapter({ upstreamCa: { '*': readFileSync(target.ca, 'utf8') } }) } });
    try {
      const d = served.engine.directory;
      await d.addUser('admin', { name: 'alice', teams: [], passwordHash: await hashPassword(GATEWAY_PASSWORD) });
      await d.addResource('admin', {
        name: 'db', type: 'database', protocol: 'postgres', host: target.host, port: target.port, database: target.database, owner: 'admin',
        access: [{ user: 'alice' }], credentials: { login: target.user, password: target.password }, settings: {},
      });
      const workers = new Set<number>();
      for (let i = 0; i < 2; i++) {
        const c = new pg.Client({ host: 'localhost', port: served.addresses.postgres!.port, user: 'alice:db', password: GATEWAY_PASSWORD, ssl: { ca: served.pki.caCertPem } });
        await c.connect();
        expect((await c.query('select current_user as u')).rows).toEqual([{ u: target.user }]);
        await c.end();
      }
      for (const line of (await import('node:child_process')).execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' }).split('\n')) {
        if (line.includes('dataplane/worker')) workers.add(Number(line.trim().split(/\s+/)[0]));
      }
      // This file's own pool (2) and the gateway's (2).
      expect(workers.size).toBe(4);
      const ours = new Set(pool.load().map((l) => l.pid));
      const its = [...workers].filter((p) => !ours.has(p));
      expect(its).toHaveLength(2);
      await served.close();
      for (const pid of its) expect(await eventually(() => !alive(pid))).toBe(true);
    } finally {
      await served.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a worker that dies while the decision for one of its connections is still being made: that session is discarded and audited, not left open', async () => {
    const lone = await ownPool(1);
    let asked: () => void = () => undefined;
    const askedP = new Promise<void>((resolve) => (asked = resolve));
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const opened: string[] = [];
    // The broker's own port, its decision held until the worker that asked is gone.
    const broker = {
      portFor: (door: Parameters<typeof gw.broker.portFor>[0], log?: Parameters<typeof gw.broker.portFor>[1]) => {
        const p = gw.broker.portFor(door, log);
        return {
          ...p,
          open: async (req: Parameters<typeof p.open>[0]) => {
            asked();
            await gate;
            const r = await p.open(req);
            if (r.ok) opened.push(r.session.id);
            return r;
          },
        };
      },
    };
    const l = await lone.door('postgres', new PostgresAdapter()).listen({ ...listenerConfig(), broker });
    onTestFinished(() => l.close());
    try {
      const c = pgClient(l.address.port, 'alice:open-pg');
      c.on('error', () => {});
      const connecting = c.connect().then(() => 'connected', () => 'refused');
      await askedP;
      const [dead] = lone.load();
      process.kill(dead!.pid!, 'SIGKILL');
      expect(await eventually(() => ![undefined, dead!.pid].includes(lone.load()[0]!.pid))).toBe(true);
      release();
      expect(await connecting).toBe('refused');
      expect(await eventually(() => opened.length === 1)).toBe(true);
      const discarded = async (): Promise<boolean> => (await gw.store.listAudit({ action: 'session.discard' })).some((a) => a.subject === opened[0]);
      expect(await eventually(discarded)).toBe(true);
    } finally {
      release();
    }
  });

  it('a connection accepted while the workers are still starting the listener is served once they are, not left hanging', async () => {
    const lone = await ownPool(1);
    const child = (lone as unknown as { workers: Array<{ child: import('node:child_process').ChildProcess }> }).workers[0]!.child;
    const emit = child.emit.bind(child);
    const held: unknown[] = [];
    // The worker's 'listening' is held back: the primary has bound the port, the listener is not started yet.
    child.emit = ((ev: string, ...args: unknown[]) => {
      if (ev === 'message' && (args[0] as { t?: string }).t === 'listening') return held.push(args[0]), true;
      return emit(ev, ...args);
    }) as typeof child.emit;
    const free = createServer();
    await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve));
    const port = (free.address() as { port: number }).port;
    await new Promise((resolve) => free.close(resolve));
    const starting = lone.door('postgres', new PostgresAdapter()).listen({ ...listenerConfig(), port });
    let l: Listener | undefined;
    try {
      expect(await eventually(() => held.length === 1)).toBe(true);
      const early = netConnect(port, '127.0.0.1');
      await new Promise((resolve, reject) => early.once('connect', resolve).once('error', reject));
      child.emit = emit;
      emit('message', held[0]);
      l = await starting;
      // An SSLRequest: PostgreSQL's door answers 'S'.
      const answer = new Promise<string>((resolve) => {
        early.once('data', (d) => resolve(d.toString('latin1', 0, 1)));
        early.once('close', () => resolve('closed'));
      });
      early.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]));
      expect(await within(answer, 5_000, 'an answer to the SSLRequest')).toBe('S');
      early.destroy();
    } finally {
      child.emit = emit;
      await l?.close();
    }
  });

  it('a worker that dies before it is ready: start() waits for its replacement instead of hanging', async () => {
    const fresh = new DataPath(1, silentLogger);
    const starting = fresh.start();
    // Killed right after the fork: it cannot have said 'ready' yet.
    process.kill(fresh.load()[0]!.pid!, 'SIGKILL');
    try {
      await within(starting, 15_000, 'the data-path workers to start');
      expect(alive(fresh.load()[0]!.pid!)).toBe(true);
    } finally {
      await fresh.stop();
    }
  });

  it('a worker that dies while starting a listener: the listener starts with its replacement instead of failing after 30 s', async () => {
    const lone = await ownPool(1);
    const child = (lone as unknown as { workers: Array<{ child: import('node:child_process').ChildProcess }> }).workers[0]!.child;
    const emit = child.emit.bind(child);
    let answered = false;
    // Its 'listening' never reaches the primary: the worker dies first.
    child.emit = ((ev: string, ...args: unknown[]) => {
      if (ev === 'message' && (args[0] as { t?: string }).t === 'listening') return (answered = true);
      return emit(ev, ...args);
    }) as typeof child.emit;
    const starting = lone.door('postgres', new PostgresAdapter()).listen(listenerConfig());
    starting.catch(() => undefined);
    let l: Listener | undefined;
    try {
      expect(await eventually(() => answered)).toBe(true);
      child.kill('SIGKILL');
      l = await within(starting, 10_000, 'the listener to start');
      expect(await eventually(() => lone.load()[0]!.listeners === 1)).toBe(true);
      await servesQuery(l.address.port, 4);
    } finally {
      await l?.close();
    }
  });

  it('SIGINT or SIGTERM to the process group (Ctrl-C, a service manager) leaves the workers to the primary: sessions go on until it ends them', async () => {
    const clients = await Promise.all([1, 2].map(() => connect('other-pg')));
    const pids = pool.load().map((l) => l.pid!);
    for (const pid of pids) {
      process.kill(pid, 'SIGINT');
      process.kill(pid, 'SIGTERM');
    }
    // Relaying a query needs the worker to run, so a fatal signal would have been taken by then.
    for (const c of clients) expect((await c.query('select 3 as n')).rows).toEqual([{ n: 3 }]);
    expect(pool.load().map((l) => l.pid)).toEqual(pids);
    expect(pids.every((pid) => alive(pid))).toBe(true);
    await Promise.all(clients.map((c) => c.end()));
  });

  it('a client that leaves as the broker closes its session: the record has the byte counts the worker ended it with', async () => {
    const c = await connect('other-pg');
    const [s] = gw.broker.live().filter((x) => x.resource.name === 'other-pg');
    const w = (pool as unknown as { workers: Array<{ child: import('node:child_process').ChildProcess }> }).workers.find((x) => x.child.pid === pool.load().find((l) => l.sessions === 1)?.pid)!;
    // The worker's periodic byte reports are kept from the primary; its 'end' is held back until the broker has closed.
    const emit = w.child.emit.bind(w.child);
    const held: Array<{ t: string; bytesIn?: number; bytesOut?: number }> = [];
    let holding = true;
    w.child.emit = ((ev: string, ...args: unknown[]) => {
      const m = args[0] as { t?: string; session?: string; sessions?: Array<[string]> } | undefined;
      if (ev === 'message' && m?.t === 'bytes') return true;
      if (ev === 'message' && holding && m?.t === 'end' && m.session === s!.id) return held.push(m as never), true;
      return emit(ev, ...args);
    }) as typeof w.child.emit;
    try {
      await c.query(`select repeat('x', 5000)`);
      await c.end();
      expect(await eventually(() => held.length === 1)).toBe(true);
      const killed = gw.broker.kill(s!.id, 'dave');
      holding = false;
      emit('message', held[0]);
      await killed;
      const rec = await gw.store.getSession(s!.id);
      expect(rec).toMatchObject({ state: 'ended', bytesIn: held[0]!.bytesIn, bytesOut: held[0]!.bytesOut });
      expect(rec!.bytesOut).toBeGreaterThan(5000);
    } finally {
      w.child.emit = emit;
    }
  });
});

describe('the MySQL door in two data-path workers', () => {
  it("a worker started in place of a dead one learns the other's live sessions: a KILL QUERY sent through it reaches a session in the other worker", async () => {
    const maria = await startMariadb();
    const my = await ownPool(2);
    const l = await my.door('mysql', new MysqlAdapter({ upstreamCa: { '*': readFileSync(maria.ca, 'utf8') } })).listen(listenerConfig());
    const clients: mysql.Connection[] = [];
    const through = async (): Promise<mysql.Connection> => {
      const c = await mysql.createConnection({ host: '127.0.0.1', port: l.address.port, user: 'alice:open-mysql', password: GATEWAY_PASSWORD, ssl: { ca: gw.pki.caCertPem } });
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    };
    try {
      await gw.addResource({
        name: 'open-mysql', type: 'database', protocol: 'mysql', host: maria.host, port: maria.port, database: maria.database,
        credentials: { login: maria.user, password: maria.password }, settings: {},
      });
      const a = await through();
      expect(my.load().map((w) => w.sessions)).toEqual([1, 0]);
      const dead = my.load()[1]!.pid!;
      process.kill(dead, 'SIGKILL');
      expect(await eventually(() => my.load()[1]!.pid !== dead && my.load()[1]!.listeners === 1, 10_000)).toBe(true);
      // Connections are handed out in turn: the next one that lands in the new worker.
      let b = await through();
      while (my.load()[1]!.sessions === 0) b = await through();
      const q = a.query('select sleep(60) as s').then(() => undefined, (err: unknown) => err);
      expect(await eventually(async () => {
        const c = await mysql.createConnection({ host: maria.host, port: maria.port, user: maria.superuser, password: maria.superuserPassword });
        try {
          const [rows] = await c.query("select count(*) as n from information_schema.processlist where info like 'select sleep(60)%'");
          return Number((rows as Array<{ n: number }>)[0]!.n) === 1;
        } finally {
          await c.end();
        }
      })).toBe(true);
      await b.query(`KILL QUERY ${a.threadId}`);
      expect(await q).toMatchObject({ errno: 1317, message: 'Query execution was interrupted' });
      expect((await a.query('select 2 as two'))[0]).toEqual([{ two: 2 }]);
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
      await l.close();
      await maria.stop();
    }
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
