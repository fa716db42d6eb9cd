/**
 * Teardown of live MySQL sessions: force check-in, expiry on the (fake) workflow clock and
 * an admin kill each end the session with an ERR packet the real client shows, within a
 * second, and a statement running on the target is ended too (from a second login). A
 * session that ends normally, or that the gateway ends while the target is idle, closes on
 * the target as a direct client's would: COM_QUIT, one login, no aborted connection.
 */
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERLIN_DAYTIME } from './gateway-harness.js';
import { addMyResource, APPROVAL_SETTINGS, eventually, GATEWAY_PASSWORD, LiveMariadb, mariadb, startMyGateway, until, type MyGateway } from './mysql-harness.js';

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

/** The target's superuser, directly. */
const rootConnection = () => mysql.createConnection({ host: g.target.host, port: g.target.port, user: g.target.superuser, password: g.target.superuserPassword });

/** The target's own counters of logins and of connections that ended without COM_QUIT. */
async function counters(root: mysql.Connection): Promise<Record<'Connections' | 'Aborted_clients' | 'Aborted_connects', number>> {
  const [rows] = await root.query("show global status where variable_name in ('Connections', 'Aborted_clients', 'Aborted_connects')");
  return Object.fromEntries((rows as Array<{ Variable_name: string; Value: string }>).map((r) => [r.Variable_name, Number(r.Value)])) as never;
}

/** Waits until no thread of the vaulted login is left on the target (every session has closed there). */
async function quiet(root: mysql.Connection): Promise<void> {
  await eventually(async () => {
    const [rows] = await root.query('select count(*) as n from information_schema.processlist where user = ?', [g.target.user]);
    return Number((rows as Array<{ n: number }>)[0]!.n) === 0;
  }, 10_000, 'the target threads of the vaulted login to end');
}

/**
 * Threads of the vaulted login running a statement like `pattern`. Only that login's: the
 * superuser's own earlier polls (whose text holds the pattern) can linger in the process
 * list for a moment after they were answered.
 */
async function targetThreads(pattern: string): Promise<number[]> {
  const rows = (await g.superQuery('select id from information_schema.processlist where user = ? and info like ?', [g.target.user, pattern])) as Array<{ id: number }>;
  return rows.map((r) => Number(r.id));
}

describe('MySQL session teardown', () => {
  it('force check-in ends a running statement in the mariadb client within 1 s, with the reason', async () => {
    await g.gw.engine.leases.checkout('alice', 'lease-mysql');
    const before = liveIds();
    // The marker is a string, not a comment: the mariadb client drops comments unless told --comments.
    const m = new LiveMariadb([...g.cli('alice:lease-mysql', GATEWAY_PASSWORD), '-N', '-B', '-e', "select benchmark(50000000000, crc32('teardown-probe'))"]);
    try {
      await newSession('alice', 'lease-mysql', before);
      // The statement has reached the target before the check-in.
      await eventually(async () => (await targetThreads('%teardown-probe%')).length > 0, 10_000, 'the statement to reach the target').catch((err: unknown) => {
        throw new Error(`${(err as Error).message}; the client said: ${JSON.stringify(m.out)}, exit ${m.child.exitCode}`);
      });

      const kills = g.adapter.stats.threadKills;
      const t0 = performance.now();
      await g.gw.engine.leases.forceCheckin('bob', 'lease-mysql', 'incident 42');
      const code = await m.exited;
      const elapsed = performance.now() - t0;
      expect(elapsed).toBeLessThan(1000);
      expect(code).toBe(1);
      expect(m.out).toContain('ERROR 1927 (70100) at line 1: Gatehouse: lease-mysql was force checked in by bob: incident 42; session closed. (force_checked_in)');

      // The target thread goes too, not just the client's socket.
      await eventually(async () => (await targetThreads('%teardown-probe%')).length === 0, 1500, 'the statement to end on the target');
      expect(g.adapter.stats.threadKills).toBe(kills + 1);
    } finally {
      m.kill();
      // Ended here if the test failed before the check-in (the tests after this one wait for a
      // quiet target); one that ends meanwhile is an unknown thread by then, which is as good.
      for (const id of await targetThreads('%teardown-probe%')) await g.superQuery(`KILL ${id}`).catch(() => undefined);
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
    const { threadKills, upstreamQuits } = g.adapter.stats;

    const t0 = performance.now();
    g.gw.clock.advance(5 * 60_000);
    await until(() => errors.length > 0, 1000, 'the client to see the ERR');
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(errors[0]!.message).toBe('Gatehouse: your access grant for timed-mysql has ended; session closed. (expired)');
    expect(errors[0]!.code).toBe(1927);
    await until(() => !g.gw.broker.live().some((s) => s.id === id), 1000);
    // From a data-path worker the record may follow the goodbye by a moment.
    await eventually(async () => (await g.gw.store.getSession(id))?.state === 'ended', 2000, 'the session record to be ended');
    const rec = await g.gw.store.getSession(id);
    expect(rec).toMatchObject({ state: 'ended', endReason: 'expired' });
    // Idle (mysql2's result set, ended by an OK without EOF packets): the target just gets COM_QUIT.
    expect(g.adapter.stats).toMatchObject({ threadKills, upstreamQuits: upstreamQuits + 1 });
  });

  it('an admin kill reaches an idle mariadb client: its next statement shows who ended the session', async () => {
    const before = liveIds();
    const m = new LiveMariadb([...g.cli('alice:open-mysql', GATEWAY_PASSWORD), '-N', '-B', '-n']);
    try {
      m.send('select 41 + 1;');
      await m.waitFor(/^42$/m);
      const id = await newSession('alice', 'open-mysql', before);
      const { threadKills, upstreamQuits } = g.adapter.stats;
      expect(await g.gw.broker.kill(id, 'dave')).toBe(true);
      // Idle after a result set with EOF packets and MariaDB's cached metadata: COM_QUIT, no second login.
      expect(g.adapter.stats).toMatchObject({ threadKills, upstreamQuits: upstreamQuits + 1 });
      m.send('select 2;');
      expect(await m.exited).toBe(1);
      expect(m.out).toContain('ERROR 1927 (70100) at line 2: Gatehouse: this session was ended by dave. (killed)');
    } finally {
      m.kill();
    }
  });
  it('20 sessions opened and closed normally log in to the target 20 times and leave no aborted connection', async () => {
    const root = await rootConnection();
    try {
      await quiet(root);
      const before = await counters(root);
      const kills = g.adapter.stats.threadKills;
      for (let i = 0; i < 10; i++) {
        const c = await mysql.createConnection(g.my2('alice:open-mysql', GATEWAY_PASSWORD));
        expect((await c.query('select 1 as one'))[0]).toEqual([{ one: 1 }]);
        await c.end();
      }
      for (let i = 0; i < 10; i++) {
        const r = await mariadb([...g.cli('alice:open-mysql', GATEWAY_PASSWORD), '-N', '-B', '-e', 'select 1']);
        expect(r).toMatchObject({ code: 0, stdout: '1\n', stderr: '' });
      }
      await quiet(root);
      const after = await counters(root);
      expect(after.Connections - before.Connections).toBe(20);
      expect(after.Aborted_clients - before.Aborted_clients).toBe(0);
      expect(after.Aborted_connects - before.Aborted_connects).toBe(0);
      expect(g.adapter.stats.threadKills).toBe(kills);
    } finally {
      await root.end();
    }
  });

  it('a session the gateway ends while the target is idle says COM_QUIT there: no second login, no aborted connection', async () => {
    const root = await rootConnection();
    try {
      await quiet(root);
      const before = await counters(root);
      const { threadKills, upstreamQuits } = g.adapter.stats;
      const live = liveIds();
      const c = await mysql.createConnection(g.my2('alice:open-mysql', GATEWAY_PASSWORD));
      const closed = new Promise<Error & { code?: unknown }>((resolve) => c.on('error', resolve));
      expect((await c.query('select 1 as one'))[0]).toEqual([{ one: 1 }]);
      const id = await newSession('alice', 'open-mysql', live);
      expect(await g.gw.broker.kill(id, 'dave')).toBe(true);
      expect(await closed).toMatchObject({ code: 1927, message: 'Gatehouse: this session was ended by dave. (killed)' });
      c.destroy();
      await quiet(root);
      const after = await counters(root);
      expect(after.Connections - before.Connections).toBe(1);
      expect(after.Aborted_clients - before.Aborted_clients).toBe(0);
      expect(g.adapter.stats).toMatchObject({ threadKills, upstreamQuits: upstreamQuits + 1 });
    } finally {
      await root.end();
    }
  });
});
