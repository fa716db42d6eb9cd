/**
 * Live teardown of PostgreSQL sessions: force check-in, expiry with its warning, kill. The
 * workflow runs on a FakeClock; sockets, psql and PostgreSQL are real. Bounds are measured
 * with performance.now(), not slept.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { addPgResource, APPROVAL_SETTINGS, GATEWAY_PASSWORD, LivePsql, startPgGateway, type PgGateway } from './postgres-harness.js';
import { until } from './gateway-harness.js';

let g: PgGateway;

beforeAll(async () => {
  g = await startPgGateway();
  await addPgResource(g, { ...APPROVAL_SETTINGS, singleUser: true }, 'prod-pg');
  await addPgResource(g, { limitAccessTime: APPROVAL_SETTINGS.limitAccessTime }, 'timed-pg');
  await addPgResource(g, {}, 'open-pg');
});

afterAll(async () => {
  await g?.close();
});

async function connect(resource: string): Promise<pg.Client> {
  const c = new pg.Client(g.pgConfig(`alice:${resource}`, GATEWAY_PASSWORD));
  await c.connect();
  // After the FATAL, pg also reports the closed socket; tests look at the first error only.
  c.on('error', () => {});
  return c;
}

/** The next 'error' event of a client, with the time it arrived. */
function nextError(c: pg.Client): Promise<{ err: pg.DatabaseError; at: number }> {
  return new Promise((resolve) => c.once('error', (err) => resolve({ err: err as pg.DatabaseError, at: performance.now() })));
}

async function targetBackends(): Promise<number> {
  const r = await g.superQuery(`select count(*)::int as n from pg_stat_activity where usename = '${g.target.user}'`);
  return r.rows[0].n as number;
}

async function eventually(check: () => Promise<boolean>, ms = 5_000): Promise<boolean> {
  const start = performance.now();
  while (performance.now() - start < ms) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return check();
}

describe('PostgreSQL teardown', () => {
  it('force check-in: the open psql session and an idle pg connection get FATAL 57P01 with the reason within 1 s', async () => {
    await g.gw.approve('alice', 'prod-pg');
    await g.gw.engine.leases.checkout('alice', 'prod-pg');
    const live = new LivePsql(g.conninfo('alice:prod-pg'), GATEWAY_PASSWORD);
    live.send('select current_user;');
    await live.waitFor(new RegExp(`^${g.target.user}$`, 'm'));
    const idle = await connect('prod-pg');
    const idleError = nextError(idle);
    expect(g.gw.broker.live().filter((s) => s.resource.name === 'prod-pg')).toHaveLength(2);

    const t0 = performance.now();
    await g.gw.engine.leases.forceCheckin('dave', 'prod-pg', 'incident OPS-42 is over');
    const { err, at } = await idleError;
    expect(at - t0).toBeLessThan(1_000);
    expect(err).toMatchObject({ code: '57P01', severity: 'FATAL' });
    expect(err.message).toMatch(/^Gatehouse: .*incident OPS-42 is over.*session closed\.$/);

    live.send('select 2;');
    const out = await live.waitFor(/57P01/, 1_000);
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(out).toMatch(/FATAL: {2}57P01: Gatehouse: .*incident OPS-42 is over/);
    expect(await live.exited).not.toBe(0);

    expect(g.gw.broker.live().filter((s) => s.resource.name === 'prod-pg')).toHaveLength(0);
    expect(await eventually(async () => (await targetBackends()) === 0)).toBe(true);
    expect(g.adapter.stats.cancelKeys).toBe(0);
  });

  it('after a force check-in the resource is refused with the reason and the fix', async () => {
    const c = new pg.Client(g.pgConfig('alice:prod-pg', GATEWAY_PASSWORD));
    const err = await c.connect().then(() => undefined, (e: unknown) => e as pg.DatabaseError);
    expect(err).toMatchObject({ code: '42501', severity: 'FATAL' });
    expect(err?.message).toBe('Gatehouse: Your access to prod-pg has ended (incident OPS-42 is over); request it again.');
    expect(err?.hint).toBe('gatehouse request prod-pg --reason "..."');
  });

  it('a kill during a running statement ends the session and cancels the statement on the target', async () => {
    const c = await connect('open-pg');
    const running = c.query('select pg_sleep(30)').then(() => undefined, (e: pg.DatabaseError) => e);
    const query = `select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'`;
    expect(await eventually(async () => (await g.superQuery(query)).rows[0].n === 1)).toBe(true);
    const session = g.gw.broker.live().find((s) => s.resource.name === 'open-pg');
    expect(session).toBeDefined();
    const t0 = performance.now();
    await g.gw.broker.kill(session!.id, 'dave');
    const err = await running;
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(err).toMatchObject({ code: '57P01', message: 'Gatehouse: this session was ended by dave.' });
    // The statement does not outlive the access: the gateway cancelled it on the target.
    expect(await eventually(async () => (await g.superQuery(query)).rows[0].n === 0, 3_000)).toBe(true);
    // close() again is harmless.
    expect(() => session!.handle!.close('killed', 'again')).not.toThrow();
  });

  it('a teardown in the middle of a COPY stream still delivers a FATAL the client can parse', async () => {
    const live = new LivePsql(g.conninfo('alice:open-pg'), GATEWAY_PASSWORD);
    live.send(`\\copy (select repeat(md5(g::text), 15) from generate_series(1, 20000000) g) to '/dev/null'`);
    const streaming = await eventually(async () => g.gw.broker.live().some((s) => s.resource.name === 'open-pg' && s.bytesOut > 4_000_000), 20_000);
    expect(streaming).toBe(true);
    const session = g.gw.broker.live().find((s) => s.resource.name === 'open-pg')!;
    const t0 = performance.now();
    await g.gw.broker.kill(session.id, 'dave');
    await live.waitFor(/57P01/, 2_000);
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(live.out).toContain('FATAL:  57P01: Gatehouse: this session was ended by dave.');
    expect(live.out).not.toMatch(/lost synchronization|unexpected message type|invalid message/i);
    expect(await live.exited).not.toBe(0);
  });

  it('a session whose live record cannot be written ends at once: the client reads why, and the target leg closes', async () => {
    const backends = await targetBackends();
    const audit = g.gw.engine.ctx.audit;
    const record = audit.record.bind(audit);
    audit.record = (...args: Parameters<typeof record>) => (args[1] === 'session.start' ? Promise.reject(new Error('the audit chain is down')) : record(...args));
    onTestFinished(() => void (audit.record = record));
    const c = new pg.Client({ ...g.pgConfig('alice:open-pg', GATEWAY_PASSWORD), connectionTimeoutMillis: 10_000 });
    c.on('error', () => {});
    const err = await c.connect().then(() => undefined, (e: Error) => e);
    // In a data-path worker the door's end once never reached its relay: the client waited until its timeout.
    expect(err?.message).toBe('Gatehouse: the session could not be recorded; try again.');
    expect(await eventually(async () => (await targetBackends()) === backends)).toBe(true);
    expect(g.gw.broker.live().filter((s) => s.resource.name === 'open-pg')).toHaveLength(0);
  });

  it('warns with a NoticeResponse before expiry, then closes at the deadline', async () => {
    const c = await connect('timed-pg');
    const notices: Array<{ severity?: string; code?: string; message: string }> = [];
    c.on('notice', (n) => notices.push({ severity: n.severity, code: n.code, message: n.message ?? '' }));
    const session = g.gw.broker.live().find((s) => s.resource.name === 'timed-pg')!;
    const { deadline, warnAt } = session.decision;
    expect(warnAt && deadline).toBeTruthy();

    g.gw.clock.set(warnAt!);
    // The warning goes in at the next message boundary; from a data-path worker it may follow
    // a query sent at once, so wait for it, then show the session still answers.
    await until(() => notices.length > 0, 5_000, 'the warning');
    expect((await c.query('select 1 as n')).rows).toEqual([{ n: 1 }]);
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatchObject({ severity: 'WARNING', code: '01000' });
    expect(notices[0]!.message).toMatch(/^Gatehouse: the maximum session time for timed-pg ends in 5 min.*closed then\.$/);

    const closed = nextError(c);
    const t0 = performance.now();
    g.gw.clock.set(deadline!);
    const { err, at } = await closed;
    expect(at - t0).toBeLessThan(1_000);
    expect(err).toMatchObject({ code: '57P01', message: 'Gatehouse: the maximum session time for timed-pg has ended; session closed.' });
    // From a data-path worker the record may follow the goodbye by a moment.
    expect(await eventually(async () => (await g.gw.store.getSession(session.id))?.state === 'ended')).toBe(true);
    const rec = await g.gw.store.getSession(session.id);
    expect(rec).toMatchObject({ state: 'ended', endReason: 'expired' });
    expect(rec!.bytesOut).toBeGreaterThan(0);
  });
});
