/**
 * Fail closed across nodes (issue 13, item 6). A node that loses its event feed (the LISTEN
 * connection is terminated, or stalls) may be missing revocations made on other nodes: it
 * re-checks its live sessions against the store at once and keeps polling until the feed is
 * back. While the store itself is unreachable, new connections are refused and live
 * sessions end at the deadlines they already know.
 *
 * Live sessions are real psql processes through node B's PostgreSQL door, running
 * `\watch 0.2` so they notice within a fifth of a second when the gateway ends them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock, MINUTE } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/log.js';
import { EventBus, type RevokeEvent } from '../../src/events/bus.js';
import { PgEventBridge } from '../../src/events/pg-bridge.js';
import type { Gateway } from '../../src/gateway.js';
import { PostgresAdapter } from '../../protocols/postgres/index.js';
import { startPostgres, type PostgresTarget } from '../targets/index.js';
import { ALWAYS, call, feedState, freshDatabase, PASSWORD, pgUrl, seedPeople, startNode, tempDir, terminateListener, tokenFor, type NodeOptions } from './cluster-harness.js';
import { StallProxy } from './stall-proxy.js';

let target: PostgresTarget;
beforeAll(async () => {
  target = await startPostgres();
});
afterAll(async () => {
  await target?.stop();
});

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function track<T extends { close(): Promise<void> | void }>(x: T): T {
  cleanups.push(() => x.close());
  return x;
}

/** A psql session through a node's PostgreSQL door, querying every 0.2 s until the gateway ends it. */
interface Psql {
  output(): string;
  /** Resolves once the first query result is printed (the session is live). */
  live: Promise<void>;
  /** Resolves when psql exits, with what it printed and when (performance.now()). */
  exited: Promise<{ code: number | null; stderr: string; at: number }>;
}

function psql(gw: Gateway, user: string, db: PostgresTarget): Psql {
  const port = gw.addresses.postgres!.port;
  const conn = `host=localhost port=${port} user=${user}:db dbname=${db.database} sslmode=verify-full sslrootcert=${gw.pki.caPath}`;
  const child: ChildProcess = spawn('psql', ['-X', '-v', 'ON_ERROR_STOP=1', conn], { env: { ...process.env, PGPASSWORD: PASSWORD, PGCONNECT_TIMEOUT: '10' } });
  cleanups.push(() => void child.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  let onOut: (() => void) | undefined;
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    onOut?.();
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; stderr: string; at: number }>((resolve) => child.on('exit', (code) => resolve({ code, stderr, at: performance.now() })));
  const live = new Promise<void>((resolve, reject) => {
    onOut = () => {
      if (stdout.includes('alive')) resolve();
    };
    void exited.then((e) => reject(new Error(`psql exited with ${e.code} before its first result:\n${e.stderr}`)));
  });
  live.catch(() => undefined); // a refused connection is awaited through `exited`
  child.stdin!.write('select 1 as alive \\watch 0.2\n');
  return { output: () => stdout + stderr, live, exited };
}

/** Nodes a and b sharing a fresh database; b has a PostgreSQL door; `db` is the file's PostgreSQL target, single-user. */
async function cluster(b: NodeOptions = {}, storeUrl?: (url: string) => Promise<string>): Promise<{ a: Gateway; b: Gateway; url: string }> {
  const url = await freshDatabase(target);
  const dir = tempDir('gh-cluster-failover-');
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const a = track(await startNode('a', url, dir));
  const nodeB = track(await startNode('b', storeUrl ? await storeUrl(url) : url, dir, { listen: ['postgres=127.0.0.1:0'], adapters: { postgres: new PostgresAdapter() }, ...b }));
  await seedPeople(a);
  await a.engine.directory.addResource('admin', {
    name: 'db', type: 'database', protocol: 'postgres', host: target.host, port: target.port, database: target.database, owner: 'bob',
    access: [{ team: 'eng' }], credentials: { login: target.user, password: target.password }, settings: { limitAccessTime: ALWAYS, singleUser: true },
  });
  return { a, b: nodeB, url };
}

/** alice checks db out through node A and connects with psql through node B. */
async function aliceConnectedThroughB(a: Gateway, b: Gateway): Promise<Psql> {
  expect((await call(a, await tokenFor(a, 'alice'), 'POST', '/api/v1/resources/db/checkout')).status).toBe(200);
  const session = psql(b, 'alice', target);
  await session.live;
  expect(b.broker.live().map((s) => s.user)).toEqual(['alice']);
  return session;
}

async function forceCheckinOnA(a: Gateway): Promise<number> {
  const at = performance.now();
  const r = await call(a, await tokenFor(a, 'bob'), 'POST', '/api/v1/resources/db/force-checkin', { reason: 'incident 9' });
  expect(r.status).toBe(200);
  return at;
}

describe('a node that loses its event feed', () => {
  it('with its LISTEN connection terminated and not coming back, still ends a psql session force checked in on another node within 2 s', async () => {
    // Node B will not listen again for a minute: only the re-check against the store can end the session.
    const { a, b } = await cluster({ eventFeed: { reconnectMs: 60_000, maxReconnectMs: 60_000 } });
    const session = await aliceConnectedThroughB(a, b);

    const down = feedState(b, 'down');
    expect(await terminateListener(pgUrl(target), 'b')).toBe(1);
    await down;
    const forced = await forceCheckinOnA(a);
    const ended = await session.exited;
    expect(ended.at - forced).toBeLessThan(2000);
    expect(ended.stderr).toMatch(/FATAL: {2}Gatehouse: db was force checked in by bob: incident 9; session closed\./);
    expect(b.eventFeed?.feed).toBe('down');
    expect(b.broker.live()).toEqual([]);
    const [rec] = await b.store.listSessions({ user: 'alice' });
    expect(rec).toMatchObject({ state: 'ended', endReason: 'force_checked_in', node: 'b' });
  });

  it('listens again after its LISTEN connection is terminated, and then hears a force check-in at once', async () => {
    const { a, b } = await cluster();
    const session = await aliceConnectedThroughB(a, b);
    const back = feedState(b, 'down').then(() => feedState(b, 'up'));
    expect(await terminateListener(pgUrl(target), 'b')).toBe(1);
    await back;

    const forced = await forceCheckinOnA(a);
    const ended = await session.exited;
    expect(ended.at - forced).toBeLessThan(1000);
    expect(ended.stderr).toMatch(/FATAL: {2}Gatehouse: db was force checked in by bob: incident 9; session closed\./);
  });

  it('with its LISTEN connection stalled (no bytes, no reset), notices within 2 s and ends a psql session force checked in elsewhere within 2 s', async () => {
    let proxy: StallProxy | undefined;
    const { a, b } = await cluster({}, async (url) => {
      const started = await StallProxy.start({ host: target.host, port: target.port });
      proxy = started.proxy;
      cleanups.push(() => started.proxy.close());
      const u = new URL(url);
      u.port = String(started.port);
      return u.toString();
    });
    const session = await aliceConnectedThroughB(a, b);

    const down = feedState(b, 'down').then(() => performance.now());
    const stalled = performance.now();
    proxy!.stall('gatehouse-events b');
    expect((await down) - stalled).toBeLessThan(2000);

    const forced = await forceCheckinOnA(a);
    const ended = await session.exited;
    expect(ended.at - forced).toBeLessThan(2000);
    expect(ended.stderr).toMatch(/FATAL: {2}Gatehouse: db was force checked in by bob: incident 9; session closed\./);

    // The stall ends: the feed is back, and what node A sends is heard on node B again.
    const up = feedState(b, 'up');
    proxy!.resume();
    await up;
    const heard = new Promise<RevokeEvent>((resolve) => b.engine.ctx.bus.on('revoke', (e) => e.kind === 'user_disabled' && resolve(e)));
    await a.engine.directory.setDisabled('admin', 'carol', true);
    expect(await heard).toMatchObject({ kind: 'user_disabled', user: 'carol' });
  });

  it('reports its feed down and up again to whoever watches it, and sends nothing of what it receives back out', async () => {
    const url = await freshDatabase(target);
    const busA = new EventBus();
    const busB = new EventBus();
    const bridgeA = new PgEventBridge(url, busA, silentLogger, { applicationName: 'gatehouse-events x' });
    const bridgeB = new PgEventBridge(url, busB, silentLogger, { applicationName: 'gatehouse-events y' });
    cleanups.push(() => bridgeA.stop(), () => bridgeB.stop());
    await bridgeA.start();
    await bridgeB.start();
    const states: string[] = [];
    bridgeB.onFeed((s) => states.push(s));
    const back = new Promise<void>((resolve) => bridgeB.onFeed((s) => s === 'up' && resolve()));
    expect(await terminateListener(url, 'y')).toBe(1);
    await back;
    expect(states).toEqual(['down', 'up']);

    // A revoke from A reaches B once; B does not send it back, so A's bus sees only its own.
    const onA: RevokeEvent[] = [];
    busA.on('revoke', (e) => onA.push(e));
    const onB = new Promise<RevokeEvent>((resolve) => busB.on('revoke', resolve));
    busA.publishRevoke({ kind: 'resource_removed', resource: 'db', message: 'gone' });
    expect(await onB).toEqual({ kind: 'resource_removed', resource: 'db', message: 'gone' });
    const marker = new Promise<RevokeEvent>((resolve) => busA.on('revoke', (e) => e.kind === 'user_disabled' && resolve(e)));
    busB.publishRevoke({ kind: 'user_disabled', user: 'x', message: 'marker' });
    await marker;
    expect(onA.map((e) => e.kind)).toEqual(['resource_removed', 'user_disabled']);
  });
});

describe('a node whose store is unreachable', () => {
  let store: PostgresTarget | undefined;
  afterEach(async () => {
    await store?.stop();
    store = undefined;
  });

  it('refuses new connections with gateway_unavailable and ends live sessions at the deadlines they already know', async () => {
    store = await startPostgres();
    const clock = new FakeClock(new Date());
    const dir = tempDir('gh-cluster-storedown-');
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const b = track(await startNode('b', pgUrl(store), dir, { clock, listen: ['postgres=127.0.0.1:0'], adapters: { postgres: new PostgresAdapter() } }));
    await seedPeople(b);
    await b.engine.directory.addResource('admin', {
      name: 'db', type: 'database', protocol: 'postgres', host: target.host, port: target.port, database: target.database, owner: 'bob',
      access: [{ team: 'eng' }], credentials: { login: target.user, password: target.password }, settings: { limitAccessTime: ALWAYS, singleUser: true },
    });
    await b.engine.leases.checkout('alice', 'db'); // held for the workflow's 60 minutes
    const session = psql(b, 'alice', target);
    await session.live;

    const down = feedState(b, 'down');
    await store.stop();
    await down;

    // A new connection: alice's password was verified a moment ago, so the decision is what refuses it.
    const again = psql(b, 'alice', target);
    const refused = await again.exited;
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('The gateway could not check your access right now; try again shortly.');
    expect(refused.stderr).toContain('gateway_unavailable');

    // The live session goes on while nothing can be checked (polls find the store unreachable)...
    clock.advance(59 * MINUTE);
    await new Promise((resolve) => setImmediate(resolve));
    expect(b.broker.live()).toHaveLength(1);
    // ...and ends when the check-out it runs under ends.
    const deadline = performance.now();
    clock.advance(MINUTE);
    const ended = await session.exited;
    expect(ended.at - deadline).toBeLessThan(1000);
    expect(ended.stderr).toMatch(/FATAL: {2}Gatehouse: your check-out for db has ended; session closed\./);
  });
});
