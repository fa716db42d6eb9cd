/**
 * KILL through the gateway, with real clients against a real MariaDB: the connection id a
 * client holds (the handshake's, mysql2's `threadId`, what the mariadb CLI's Ctrl-C sends)
 * and its target thread id (CONNECTION_ID()) both reach the caller's own session, and
 * nothing else: another user's session, a direct client's thread, a session on another
 * resource, KILL USER and any KILL the gateway cannot read are refused before the target
 * sees them, and interrupt nothing.
 */
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cap, Cmd, decodeErr, Reply } from '../../protocols/mysql/codec.js';
import { encodeHandshakeResponse } from '../../protocols/mysql/handshake.js';
import { parseKillStatement, parseProcessKill, rewriteKill, startsWithKill } from '../../protocols/mysql/kill.js';
import { ThreadRegistry, type ThreadChange } from '../../protocols/mysql/threads.js';
import { addMyResource, eventually, GATEWAY_PASSWORD, LiveMariadb, rawTlsStart, runClient, startMyGateway, until, type MyGateway } from './mysql-harness.js';

let g: MyGateway;
/** The target's superuser, directly: the process list, and a way out for probes left running. */
let root: mysql.Connection;

beforeAll(async () => {
  g = await startMyGateway();
  await addMyResource(g, {}, 'open-mysql');
  await addMyResource(g, {}, 'other-mysql');
  root = await mysql.createConnection({ host: g.target.host, port: g.target.port, user: g.target.superuser, password: g.target.superuserPassword });
});

afterAll(async () => {
  await root?.end();
  await g?.close();
});

const NOT_YOURS_HINT = "KILL through Gatehouse ends only your own sessions on open-mysql through this gateway node: use your connection's thread id or CONNECTION_ID()";
const UNREADABLE_HINT = 'send KILL [QUERY|CONNECTION] <thread id> as a plain statement on its own; it ends only your own sessions on open-mysql';

const through = (user: string, resource = 'open-mysql') => mysql.createConnection(g.my2(`${user}:${resource}`, GATEWAY_PASSWORD));

/** The target thread running a statement that carries `marker`, if any. */
async function running(marker: string): Promise<number | undefined> {
  const [rows] = await root.query('select id from information_schema.processlist where info like ? and id <> connection_id()', [`%${marker}%`]);
  return (rows as Array<{ id: number }>)[0]?.id;
}

async function startedOnTarget(marker: string): Promise<number> {
  await eventually(async () => (await running(marker)) !== undefined, 10_000, `${marker} to run on the target`);
  return (await running(marker))!;
}

/**
 * Ends a probe left running by a failed test: otherwise closing its connection waits out the
 * sleep(60) behind it, and the test's timeout hides the failure.
 */
async function endProbe(marker: string): Promise<void> {
  const id = await running(marker);
  if (id !== undefined) await root.query(`KILL QUERY ${id}`).catch(() => undefined);
}

/**
 * Waits for the door's counter `key` to reach `value`. From data-path workers the counts come
 * to this process over IPC and may follow the client's answer by a moment.
 */
async function counted(key: 'killsMapped' | 'killsRefused', value: number): Promise<void> {
  await until(() => g.adapter.stats[key] >= value, 5000, `${key} to reach ${value}`);
  expect(g.adapter.stats[key]).toBe(value);
}

async function connectionId(c: mysql.Connection): Promise<number> {
  const [rows] = await c.query('select connection_id() as id');
  return Number((rows as Array<{ id: number }>)[0]!.id);
}

/** A statement that runs for a minute unless it is killed: how it ended (its rows, or its error). */
const sleeper = (c: mysql.Connection, marker: string): Promise<unknown> =>
  c.query(`select sleep(60) as s, '${marker}' as m`).then(([rows]) => rows, (err: unknown) => err);

/** What a statement ended by KILL QUERY reports. */
const INTERRUPTED = { errno: 1317, sqlState: '70100', message: 'Query execution was interrupted' };

/** The connection is closed under mysql2: its own connection (under the promise wrapper) says 'end', or a fatal 'error'. */
function ended(c: mysql.Connection): Promise<unknown> {
  const inner = (c as unknown as { connection: NodeJS.EventEmitter }).connection;
  return new Promise((resolve) => {
    inner.once('end', resolve);
    inner.on('error', resolve);
  });
}

/**
 * A bare client for COM_PROCESS_KILL, which no stock client here sends any more (mariadb-admin
 * sends `KILL n` as text): TLS, then mysql_clear_password, then one command at a time.
 */
async function rawClient(login: string): Promise<{ command(payload: Buffer): Promise<Buffer>; close(): void }> {
  const caps = Cap.LONG_PASSWORD | Cap.PROTOCOL_41 | Cap.SECURE_CONNECTION | Cap.PLUGIN_AUTH | Cap.PLUGIN_AUTH_LENENC_CLIENT_DATA | Cap.SSL | Cap.TRANSACTIONS;
  const { secure, reader, seq } = await rawTlsStart(g, caps);
  reader.seq = seq;
  reader.write(encodeHandshakeResponse({ capabilities: caps, maxPacket: 1 << 24, charset: 45, user: login, authResponse: Buffer.from(`${GATEWAY_PASSWORD}\0`), authPlugin: 'mysql_clear_password' }));
  const ok = (await reader.read()).payload;
  if (ok[0] !== Reply.Ok) throw new Error(`login refused: ${decodeErr(ok).message}`);
  return {
    async command(payload) {
      reader.resetSeq();
      reader.write(payload);
      return (await reader.read()).payload;
    },
    close() {
      reader.resetSeq();
      reader.write(Buffer.from([Cmd.Quit]));
      secure.end();
    },
  };
}

const processKill = (id: number) => {
  const p = Buffer.alloc(5);
  p[0] = Cmd.ProcessKill;
  p.writeUInt32LE(id, 1);
  return p;
};

describe('KILL through the gateway', () => {
  it("KILL QUERY with the id mysql2 got in the handshake ends that connection's statement, sent from a second connection of the same user", async () => {
    const a = await through('alice');
    const b = await through('alice');
    try {
      const thread = await connectionId(a);
      // The handshake's id is the gateway's own, not the target thread's.
      expect(a.threadId).not.toBe(thread);
      const q = sleeper(a, 'kill-probe-1');
      expect(await startedOnTarget('kill-probe-1')).toBe(thread);
      const mapped = g.adapter.stats.killsMapped;
      const t0 = performance.now();
      await b.query(`KILL QUERY ${a.threadId}`);
      expect(await q).toMatchObject(INTERRUPTED);
      expect(performance.now() - t0).toBeLessThan(5000);
      expect(await running('kill-probe-1')).toBeUndefined();
      await counted('killsMapped', mapped + 1);
      // QUERY, not CONNECTION: the connection goes on.
      expect((await a.query('select 2 as two'))[0]).toEqual([{ two: 2 }]);
    } finally {
      await endProbe('kill-probe-1');
      await a.end();
      await b.end();
    }
  });

  it('CONNECTION_ID() names the same session: a KILL in any case, spacing and comments reaches it, and KILL CONNECTION ends it', async () => {
    const a = await through('alice');
    const b = await through('alice');
    try {
      const thread = await connectionId(a);
      const q = sleeper(a, 'kill-probe-2');
      await startedOnTarget('kill-probe-2');
      await b.query(`  kIlL /* the target's own id */ query\n\t${thread} ; -- done`);
      expect(await q).toMatchObject(INTERRUPTED);

      const closed = ended(a);
      await b.query(`KILL ${a.threadId}`);
      await closed;
      await expect(a.query('select 1')).rejects.toThrow();
      await eventually(async () => !(await threadExists(thread)), 5000, 'the killed thread to go');
    } finally {
      a.destroy();
      await b.end();
    }
  });

  it('the same KILL from another user is refused with ER_NO_SUCH_THREAD, audited, and interrupts nothing', async () => {
    const a = await through('alice');
    const c = await through('carol');
    const audited = (await g.gw.store.listAudit({ action: 'door.refuse' })).length;
    try {
      const thread = await connectionId(a);
      const q = sleeper(a, 'kill-probe-3');
      await startedOnTarget('kill-probe-3');
      const refused = g.adapter.stats.killsRefused;
      for (const [sql, what] of [
        [`KILL QUERY ${a.threadId}`, `KILL QUERY ${a.threadId}`],
        [`KILL QUERY ${thread}`, `KILL QUERY ${thread}`],
        [`kill ${a.threadId}`, `KILL ${a.threadId}`],
      ] as const) {
        await expect(c.query(sql)).rejects.toMatchObject({
          errno: 1094, sqlState: 'HY000', message: `Gatehouse: ${what} is not allowed through the gateway. (not_allowed) To fix: ${NOT_YOURS_HINT}`,
        });
      }
      await counted('killsRefused', refused + 3);
      // Carol's connection goes on; Alice's statement still runs.
      expect((await c.query('select 3 as three'))[0]).toEqual([{ three: 3 }]);
      expect(await running('kill-probe-3')).toBe(thread);

      let rows: Array<{ data: Record<string, unknown> }> = [];
      await eventually(async () => (rows = (await g.gw.store.listAudit({ action: 'door.refuse' })).slice(audited)).length > 0, 5000, 'the refusal audit');
      expect(rows[0]!.data).toMatchObject({ door: 'mysql', code: 'not_allowed', detail: expect.stringContaining(`KILL QUERY ${a.threadId} via COM_QUERY (not_yours)`) });

      await root.query(`KILL QUERY ${thread}`);
      expect(await q).toMatchObject(INTERRUPTED);
    } finally {
      await endProbe('kill-probe-3');
      await a.end();
      await c.end();
    }
  });

  it('a KILL reaches only sessions on the same resource: the same user through another resource is refused', async () => {
    const a = await through('alice');
    const o = await through('alice', 'other-mysql');
    try {
      const thread = await connectionId(a);
      const q = sleeper(a, 'kill-probe-4');
      await startedOnTarget('kill-probe-4');
      await expect(o.query(`KILL QUERY ${a.threadId}`)).rejects.toMatchObject({ errno: 1094, message: expect.stringContaining('own sessions on other-mysql') });
      expect(await running('kill-probe-4')).toBe(thread);
      await root.query(`KILL QUERY ${thread}`);
      expect(await q).toMatchObject(INTERRUPTED);
    } finally {
      await endProbe('kill-probe-4');
      await a.end();
      await o.end();
    }
  });

  it("a KILL naming a direct client's thread id is refused and interrupts nothing", async () => {
    const direct = await mysql.createConnection({ host: g.target.host, port: g.target.port, user: g.target.user, password: g.target.password, database: g.target.database });
    const a = await through('alice');
    try {
      const q = sleeper(direct, 'kill-probe-5');
      expect(await startedOnTarget('kill-probe-5')).toBe(direct.threadId);
      for (const sql of [`KILL QUERY ${direct.threadId}`, `KILL ${direct.threadId}`, `KILL CONNECTION ${direct.threadId}`]) {
        await expect(a.query(sql)).rejects.toMatchObject({ errno: 1094, sqlState: 'HY000', message: expect.stringContaining(`is not allowed through the gateway. (not_allowed) To fix: ${NOT_YOURS_HINT}`) });
      }
      expect(await running('kill-probe-5')).toBe(direct.threadId);
      await root.query(`KILL QUERY ${direct.threadId}`);
      expect(await q).toMatchObject(INTERRUPTED);
    } finally {
      await endProbe('kill-probe-5');
      await direct.end();
      await a.end();
    }
  });

  it('KILL forms the gateway cannot map (KILL USER, query ids, expressions, executable comments, a prepared KILL) are refused before the target sees them', async () => {
    const a = await through('alice');
    const b = await through('alice');
    try {
      const thread = await connectionId(a);
      const q = sleeper(a, 'kill-probe-6');
      await startedOnTarget('kill-probe-6');
      for (const [sql, what] of [
        // The vaulted login is every Gatehouse user's: KILL USER would end them all.
        [`KILL USER ${g.target.user}`, 'KILL USER'],
        ['KILL QUERY ID 1', 'KILL QUERY ID'],
        [`KILL ${thread} + 0`, 'this KILL statement'],
        ['KILL @id', 'this KILL statement'],
        [`KILL ${thread}; select 1`, 'this KILL statement'],
        [`/*!KILL*/ QUERY ${thread}`, 'a KILL inside an executable comment'],
        // A server older than 99.99.99 reads this comment as a comment, and then a KILL.
        [`/*!999999 select 1 */ KILL QUERY ${thread}`, 'a KILL inside an executable comment'],
      ] as const) {
        await expect(b.query(sql)).rejects.toMatchObject({
          errno: 1227, sqlState: '42000', message: `Gatehouse: ${what} is not allowed through the gateway. (not_allowed) To fix: ${UNREADABLE_HINT}`,
        });
      }
      // A prepared KILL would take its id as a parameter of COM_STMT_EXECUTE, unmapped: refused at COM_STMT_PREPARE.
      await expect(b.execute('KILL QUERY ?', [a.threadId])).rejects.toMatchObject({
        errno: 1227, sqlState: '42000', message: `Gatehouse: KILL as a prepared statement is not allowed through the gateway. (not_allowed) To fix: ${UNREADABLE_HINT}`,
      });
      expect(await running('kill-probe-6')).toBe(thread);
      expect((await b.query('select 4 as four'))[0]).toEqual([{ four: 4 }]);
      expect((await b.execute('select ? as five', [5]))[0]).toEqual([{ five: 5 }]);
      await b.query(`KILL QUERY ${a.threadId}`);
      expect(await q).toMatchObject(INTERRUPTED);
    } finally {
      await endProbe('kill-probe-6');
      await a.end();
      await b.end();
    }
  });

  it('COM_PROCESS_KILL and mariadb-admin kill are mapped the same way', async () => {
    const a = await through('alice');
    const carol = await rawClient('carol:open-mysql');
    const alice = await rawClient('alice:open-mysql');
    try {
      const refused = decodeErr(await carol.command(processKill(a.threadId)));
      expect(refused).toEqual({ errno: 1094, sqlstate: 'HY000', message: `Gatehouse: KILL ${a.threadId} is not allowed through the gateway. (not_allowed) To fix: ${NOT_YOURS_HINT}` });
      expect((await a.query('select 5 as five'))[0]).toEqual([{ five: 5 }]);
      const gone = ended(a);
      expect((await alice.command(processKill(a.threadId)))[0]).toBe(Reply.Ok);
      await gone;
    } finally {
      carol.close();
      alice.close();
      a.destroy();
    }

    const b = await through('alice');
    try {
      const theirs = await runClient('mariadb-admin', [...g.cli('carol:open-mysql', GATEWAY_PASSWORD), 'kill', String(b.threadId)]);
      expect(theirs.code).toBe(1);
      expect(theirs.stderr).toContain(`kill failed on ${b.threadId}; error: 'Gatehouse: KILL ${b.threadId} is not allowed through the gateway. (not_allowed)`);
      expect((await b.query('select 6 as six'))[0]).toEqual([{ six: 6 }]);
      const gone = ended(b);
      const mine = await runClient('mariadb-admin', [...g.cli('alice:open-mysql', GATEWAY_PASSWORD), 'kill', String(b.threadId)]);
      expect(mine).toMatchObject({ code: 0, stderr: '' });
      await gone;
    } finally {
      b.destroy();
    }
  });

  it("the mariadb client's Ctrl-C cancels its own running statement through the gateway", async () => {
    const m = new LiveMariadb([...g.cli('alice:open-mysql', GATEWAY_PASSWORD), '-v', '-N', '-B', '-e', "select sleep(60), 'kill-probe-7'"]);
    try {
      const thread = await startedOnTarget('kill-probe-7');
      const mapped = g.adapter.stats.killsMapped;
      const t0 = performance.now();
      m.child.kill('SIGINT');
      // As against the server directly: the statement ends with ER_QUERY_INTERRUPTED, the client exits 1.
      expect(await m.exited).toBe(1);
      expect(performance.now() - t0).toBeLessThan(5000);
      // The client names the id the gateway greeted it with; the gateway made it the statement's thread.
      const sent = /Ctrl-C -- sending "KILL QUERY (\d+)" to server \.\.\./.exec(m.out);
      expect(sent).not.toBeNull();
      expect(Number(sent![1])).not.toBe(thread);
      expect(m.out).toContain('Ctrl-C -- query killed.');
      expect(m.out).toContain('ERROR 1317 (70100) at line 1: Query execution was interrupted');
      expect(await running('kill-probe-7')).toBeUndefined();
      await counted('killsMapped', mapped + 1);
    } finally {
      m.kill();
    }
  });

  it("with a launch ticket the CLI's Ctrl-C cannot log in again (a ticket is single-use): it says so, and the statement runs on", async () => {
    const { ticket } = await g.gw.engine.mfa.issueTicket('alice', 'open-mysql', false);
    const m = new LiveMariadb([...g.cli('alice:open-mysql', ticket), '-N', '-B', '-e', "select sleep(60), 'kill-probe-8'"]);
    try {
      const thread = await startedOnTarget('kill-probe-8');
      m.child.kill('SIGINT');
      await m.waitFor(/Ctrl-C -- sorry, cannot connect to server to kill query, giving up \.\.\./);
      expect(await running('kill-probe-8')).toBe(thread);
      await root.query(`KILL QUERY ${thread}`);
      expect(await m.exited).toBe(1);
    } finally {
      m.kill();
    }
  });
});

async function threadExists(id: number): Promise<boolean> {
  const [rows] = await root.query('select count(*) as n from information_schema.processlist where id = ?', [id]);
  return Number((rows as Array<{ n: number }>)[0]!.n) > 0;
}

describe('reading a KILL', () => {
  const sql = (s: string) => Buffer.from(s, 'latin1');

  it('tells a KILL from anything else by its first word, as the server reads it', () => {
    for (const s of ['KILL 5', 'kill query 5', '  \n\tKiLl 5', '/* c */ kill 1', '-- c\nkill 1', '# c\nKILL 1', '/*!KILL*/ 1', '/*!99999 select */ kill 1', '/*M!100000 KILL 1*/']) {
      expect(startsWithKill(sql(s), true)).toBe('kill');
    }
    for (const s of ['select 1', 'KILLER 5', "select 'kill 5'", '`kill` 5', '--kill 5', '', '/* kill 5 */', 'kill_log', 'KILL2']) {
      expect(startsWithKill(sql(s), true)).toBe('other');
    }
    // Incomplete input: the answer may still change.
    for (const s of ['KIL', 'KILL', '  ', '/* open', '-', '/*', '# no newline yet']) expect(startsWithKill(sql(s), false)).toBe('more');
    expect(startsWithKill(sql('KILLX'), false)).toBe('more');
    expect(startsWithKill(sql('KILL '), false)).toBe('kill');
  });

  it('reads the forms it can map, and names the ones it cannot', () => {
    expect(parseKillStatement(sql('KILL 5'))).toEqual({ scope: 'connection', id: 5, via: 'COM_QUERY' });
    expect(parseKillStatement(sql('kill query 7;'))).toEqual({ scope: 'query', id: 7, via: 'COM_QUERY' });
    expect(parseKillStatement(sql('KILL HARD QUERY 9'))).toEqual({ scope: 'query', modifier: 'HARD', id: 9, via: 'COM_QUERY' });
    expect(parseKillStatement(sql('KILL SOFT CONNECTION /* x */ 3 -- bye'))).toEqual({ scope: 'connection', modifier: 'SOFT', id: 3, via: 'COM_QUERY' });
    expect(parseKillStatement(sql('KILL 4294967296'))).toEqual({ scope: 'connection', id: 4294967296, via: 'COM_QUERY' });
    for (const [s, what] of [
      ['KILL USER app', 'KILL USER'],
      ['KILL CONNECTION USER app', 'KILL USER'],
      ['KILL QUERY ID 3', 'KILL QUERY ID'],
      ['KILL 1+1', 'this KILL statement'],
      ['KILL 5; select 1', 'this KILL statement'],
      ['KILL 5;;', 'this KILL statement'],
      ['KILL 0x10', 'this KILL statement'],
      ["KILL '5'", 'this KILL statement'],
      ['KILL -5', 'this KILL statement'],
      ['KILL', 'this KILL statement'],
      ['KILL QUERY', 'this KILL statement'],
      ['KILL 1234567890123456', 'this KILL statement'],
      ['KILL CONNECTION QUERY 5', 'this KILL statement'],
      ['/*!KILL 5*/', 'a KILL inside an executable comment'],
      ['KILL /*!50000 QUERY */ 5', 'a KILL inside an executable comment'],
    ] as const) {
      expect(parseKillStatement(sql(s))).toEqual({ what });
    }
  });

  it('COM_PROCESS_KILL is a command byte and four bytes of id; the rewrite keeps its form where the id fits', () => {
    const ok = parseProcessKill(processKill(77));
    expect(ok).toEqual({ scope: 'connection', id: 77, via: 'COM_PROCESS_KILL' });
    expect(parseProcessKill(Buffer.from([Cmd.ProcessKill, 1, 0, 0]))).toEqual({ what: 'a malformed COM_PROCESS_KILL' });
    expect(rewriteKill({ scope: 'connection', id: 77, via: 'COM_PROCESS_KILL' }, 12)).toEqual(processKill(12));
    expect(rewriteKill({ scope: 'connection', id: 77, via: 'COM_PROCESS_KILL' }, 2 ** 33).toString('latin1')).toBe(`\x03KILL CONNECTION ${2 ** 33}`);
    expect(rewriteKill({ scope: 'query', modifier: 'SOFT', id: 1, via: 'COM_QUERY' }, 12).toString('latin1')).toBe('\x03KILL SOFT QUERY 12');
  });
});

describe('connection ids', () => {
  it('start at a random point, never 0, and wrap around', () => {
    const r = new ThreadRegistry(0xfffffffe);
    expect([r.allocate(), r.allocate(), r.allocate()]).toEqual([0xfffffffe, 0xffffffff, 1]);
    const starts = Array.from({ length: 8 }, () => new ThreadRegistry().allocate());
    expect(new Set(starts).size).toBeGreaterThan(1);
    for (const s of starts) expect(s).toBeGreaterThanOrEqual(1);
  });

  it('resolve only within the caller: same user, resource and target; an id that is two sessions at once is not guessed', () => {
    const r = new ThreadRegistry(100);
    const me = { user: 'alice', resource: 'db', target: '10.0.0.1:3306' };
    r.register({ gatewayId: 100, ...me, threadId: 7 });
    r.register({ gatewayId: 101, ...me, threadId: 100 });
    r.register({ gatewayId: 102, user: 'carol', resource: 'db', target: me.target, threadId: 8 });
    r.register({ gatewayId: 103, user: 'alice', resource: 'db2', target: me.target, threadId: 9 });
    expect(r.resolve(me, 7)).toMatchObject({ ok: true, thread: { gatewayId: 100 } });
    expect(r.resolve(me, 101)).toMatchObject({ ok: true, thread: { threadId: 100 } });
    expect(r.resolve(me, 100)).toEqual({ ok: false, why: 'ambiguous' });
    for (const id of [102, 8, 103, 9, 5]) expect(r.resolve(me, id)).toEqual({ ok: false, why: 'not_yours' });
    expect(r.resolve({ ...me, target: '10.0.0.2:3306' }, 7)).toEqual({ ok: false, why: 'not_yours' });
    r.unregister(100);
    expect(r.resolve(me, 7)).toEqual({ ok: false, why: 'not_yours' });
  });

  it('in data-path workers: each hands out its own residue class of ids, and learns the others\' sessions', () => {
    const told: Array<[number, ThreadChange]> = [];
    const [w0, w1] = [0, 1].map((i) => {
      const r = new ThreadRegistry(0xfffffffc + i);
      r.share(i, 2, (c) => told.push([i, c]));
      return r;
    });
    const ids = [w0!.allocate(), w0!.allocate(), w0!.allocate(), w1!.allocate(), w1!.allocate(), w1!.allocate()];
    expect(ids).toEqual([0xfffffffc, 0xfffffffe, 2, 0xfffffffd, 0xffffffff, 1]);
    const me = { user: 'alice', resource: 'db', target: '10.0.0.1:3306' };
    w1!.register({ gatewayId: 1, ...me, threadId: 70 });
    for (const [from, c] of told.splice(0)) w0!.apply(c, from);
    expect(w0!.resolve(me, 1)).toMatchObject({ ok: true, thread: { threadId: 70 } });
    expect(w0!.resolve(me, 70)).toMatchObject({ ok: true, thread: { gatewayId: 1 } });
    // Only the worker that holds a session can end it in the others.
    w0!.apply({ remove: 1 }, 0);
    expect(w0!.resolve(me, 1).ok).toBe(true);
    w1!.release(1);
    for (const [from, c] of told.splice(0)) w0!.apply(c, from);
    expect(w0!.resolve(me, 1)).toEqual({ ok: false, why: 'not_yours' });
    // A worker that died takes its sessions with it.
    w1!.register({ gatewayId: 0xffffffff, ...me, threadId: 71 });
    for (const [from, c] of told.splice(0)) w0!.apply(c, from);
    expect(w0!.resolve(me, 71).ok).toBe(true);
    w0!.apply({ peerGone: 1 }, 1);
    expect(w0!.resolve(me, 71)).toEqual({ ok: false, why: 'not_yours' });
  });
});
