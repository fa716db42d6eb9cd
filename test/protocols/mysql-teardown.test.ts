/**
 * Teardown of live MySQL sessions: force check-in, expiry on the (fake) workflow clock and
 * an admin kill each end the session with an ERR packet the real client shows, within a
 * second, and the statement running on the target is ended too.
 */
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERLIN_DAYTIME } from './gateway-harness.js';
import { addMyResource, APPROVAL_SETTINGS, GATEWAY_PASSWORD, LiveMariadb, startMyGateway, until, type MyGateway } from './mysql-harness.js';

let g: MyGateway;

beforeAll(async () => {
  g = await startMyGateway();
  await addMyResource(g, { limitAccessTime: BERLIN_DAYTIME, singleUser: true }, 'lease-mysql');
  await addMyResource(g, APPROVAL_SETTINGS, 'timed-mysql');
  await addMyResource(g, {}, 'open-mysql');
});

afterAll(async () => {
  await g?.close();
});

/** Waits for a live session of `user` on `resource` that was not live before. */
async function newSession(user: string, resource: string, before: Set<string>): Promise<string> {
  const find = () => g.gw.broker.live().find((s) => !before.has(s.id) && s.user === user && s.resource.name === resource);
  await until(() => find() !== undefined, 15_000, `a live session of ${user} on ${resource}`);
  return find()!.id;
}

const liveIds = () => new Set(g.gw.broker.live().map((s) => s.id));

async function targetThreads(pattern: string): Promise<number> {
  const rows = (await g.superQuery('select count(*) as n from information_schema.processlist where info like ? and id <> connection_id()', [pattern])) as Array<{ n: number }>;
  return Number(rows[0]!.n);
}

describe('MySQL session teardown', () => {
  it('force check-in ends a running statement in the mariadb client within 1 s, with the reason', async () => {
    await g.gw.engine.leases.checkout('alice', 'lease-mysql');
    const before = liveIds();
    const m = new LiveMariadb([...g.cli('alice:lease-mysql', GATEWAY_PASSWORD), '-N', '-B', '-e', "select benchmark(50000000000, crc32('x')) /* teardown-probe */"]);
    try {
      await newSession('alice', 'lease-mysql', before);
      // The statement has reached the target before the check-in.
      const start = performance.now();
      while ((await targetThreads('%teardown-probe%')) === 0) {
        if (performance.now() - start > 10_000) throw new Error('the statement never reached the target');
      }

      const t0 = performance.now();
      await g.gw.engine.leases.forceCheckin('bob', 'lease-mysql', 'incident 42');
      const code = await m.exited;
      const elapsed = performance.now() - t0;
      expect(elapsed).toBeLessThan(1000);
      expect(code).toBe(1);
      expect(m.out).toContain('ERROR 1927 (70100) at line 1: Gatehouse: lease-mysql was force checked in by bob: incident 42; session closed. (force_checked_in)');

      // The target thread goes too, not just the client's socket.
      const gone = performance.now();
      while ((await targetThreads('%teardown-probe%')) > 0) {
        if (performance.now() - gone > 1500) throw new Error('the statement kept running on the target');
      }
      expect(g.adapter.stats.threadKills).toBeGreaterThan(0);
    } finally {
      m.kill();
    }
  });

  it('expiry on the workflow clock closes an idle mysql2 connection with ERR 1927; the warning before it is not in-band', async () => {
    await g.gw.approve('alice', 'timed-mysql');
    const before = liveIds();
    const c = await mysql.createConnection(g.my2('alice:timed-mysql', GATEWAY_PASSWORD));
    const errors: Array<Error & { errno?: number; code?: unknown }> = [];
    c.on('error', (e) => errors.push(e));
    const id = await newSession('alice', 'timed-mysql', before);

    // 116 minutes in: the 5-minute warning fires; MySQL has no channel for it, the session goes on.
    g.gw.clock.advance(116 * 60_000);
    expect(g.gw.notices.some((n) => n.kind === 'access_expiring' && n.resource === 'timed-mysql')).toBe(true);
    const [rows] = await c.query('select 1 as one');
    expect(rows).toEqual([{ one: 1 }]);

    const t0 = performance.now();
    g.gw.clock.advance(5 * 60_000);
    await until(() => errors.length > 0, 1000, 'the client to see the ERR');
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(errors[0]!.message).toBe('Gatehouse: your access grant for timed-mysql has ended; session closed. (expired)');
    expect(errors[0]!.code).toBe(1927);
    await until(() => !g.gw.broker.live().some((s) => s.id === id), 1000);
    const rec = await g.gw.store.getSession(id);
    expect(rec).toMatchObject({ state: 'ended', endReason: 'expired' });
  });

  it('an admin kill reaches an idle mariadb client: its next statement shows who ended the session', async () => {
    const before = liveIds();
    const m = new LiveMariadb([...g.cli('alice:open-mysql', GATEWAY_PASSWORD), '-N', '-B', '-n']);
    try {
      m.send('select 41 + 1;');
      await m.waitFor(/^42$/m);
      const id = await newSession('alice', 'open-mysql', before);
      expect(await g.gw.broker.kill(id, 'dave')).toBe(true);
      m.send('select 2;');
      expect(await m.exited).toBe(1);
      expect(m.out).toContain('ERROR 1927 (70100) at line 2: Gatehouse: this session was ended by dave. (killed)');
    } finally {
      m.kill();
    }
  });
});
