/**
 * A client cannot tell the gateway from the MariaDB behind it: the greeting carries the
 * target's own version, capability flags (MariaDB's extended ones included) and collation,
 * learned at the first target login, so mysql2 treats the target as the MariaDB it is (JSON
 * columns parse, JSON and array parameters work) and gets the server's own errors, and the
 * mariadb CLI reports the same server. What differs is what the gateway cannot relay
 * (compression, expired-password sandboxing), the connection id, and the auth plugin.
 */
import { readFileSync } from 'node:fs';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import { Cap, CLIENT_MYSQL, MariaCap } from '../../protocols/mysql/codec.js';
import { common, GATEWAY_CAPS, RELAYED_CAPS, TargetProfiles, type TargetProfile } from '../../protocols/mysql/profile.js';
import { addMyResource, GATEWAY_PASSWORD, myDoor, mariadb, startMyGateway, type MyGateway } from './mysql-harness.js';

let g: MyGateway;
let targetCa: string;
const listeners: Listener[] = [];

beforeAll(async () => {
  g = await startMyGateway();
  await addMyResource(g, {}, 'open-mysql');
  targetCa = readFileSync(g.target.ca, 'utf8');
});

afterAll(async () => {
  for (const l of listeners) await l.close();
  await g?.close();
});

/** A listener of its own: an adapter that has not logged in to any target yet. */
async function freshGateway(upstreamCa: Record<string, string> = { '*': targetCa }): Promise<number> {
  const l = await (await myDoor({ upstreamCa })).listen({
    host: '127.0.0.1', port: 0, broker: g.gw.broker, log: silentLogger, tls: { cert: g.gw.pki.certPem, key: g.gw.pki.keyPem, ca: g.gw.pki.caCertPem },
  });
  listeners.push(l);
  return l.address.port;
}

const direct = () => mysql.createConnection({ host: g.target.host, port: g.target.port, user: g.target.user, password: g.target.password, database: g.target.database });
const through = (port = g.port, resource = 'open-mysql') => mysql.createConnection({ ...g.my2(`alice:${resource}`, GATEWAY_PASSWORD), port });

interface Hello {
  serverVersion: string;
  capabilityFlags: number;
  mariadbExtendedCapabilityFlags: number;
  characterSet: number;
  statusFlags: number;
}
/** What mysql2 read in the server's HandshakeV10, and what it made of it. */
function hello(c: mysql.Connection): Hello & { isMariaDB: boolean; extendedMetadata: boolean } {
  const inner = (c as unknown as { connection: { _handshakePacket: Hello; _isMariaDB: boolean; _mariadbExtendedMetadata: boolean } }).connection;
  return { ...inner._handshakePacket, isMariaDB: inner._isMariaDB, extendedMetadata: inner._mariadbExtendedMetadata };
}

/** What mysql2 users see of a few statements: rows, parsed JSON, and the server's errors with their wording. */
async function scenario(c: mysql.Connection, table: string): Promise<unknown[]> {
  const out: unknown[] = [];
  const step = async (f: () => Promise<unknown>): Promise<void> => {
    try {
      out.push(await f());
    } catch (e) {
      const err = e as { errno?: number; code?: string; sqlState?: string; message: string };
      out.push({ errno: err.errno, code: err.code, sqlState: err.sqlState, message: err.message.replaceAll(table, 'T') });
    }
  };
  await c.query(`create table ${table} (id int primary key, doc json, tags json)`);
  try {
    await step(async () => (await c.execute(`insert into ${table} (id, doc, tags) values (?, ?, ?)`, [1, { a: [1, 2], b: 'x' }, ['red', 'blue']]))[0]);
    await step(async () => (await c.execute(`select id, doc, tags, json_length(tags) as n from ${table} where id = ?`, [1]))[0]);
    await step(async () => (await c.query(`select doc, json_object('k', 1) as j from ${table}`))[0]);
    await step(async () => (await c.execute("select json_length(?) as n, json_extract(?, '$.a[1]') as second", [[1, 2, 3], { a: [5, 6] }]))[0]);
    await step(() => c.execute(`insert into ${table} (id, doc) values (?, ?)`, [1, {}]));
    await step(() => c.query('selec 1'));
    await step(() => c.execute(`select nope from ${table}`));
    await step(() => c.query(`insert into ${table} (id, doc) values (2, '{not json')`));
  } finally {
    await c.query(`drop table ${table}`);
  }
  return out;
}

describe('the greeting is the target\'s', () => {
  it('before its first target login a gateway greets with a fixed, conservative greeting; from then on as the target does', async () => {
    const port = await freshGateway();
    const first = await through(port);
    expect(hello(first)).toMatchObject({ serverVersion: '8.0.99-Gatehouse', mariadbExtendedCapabilityFlags: 0, isMariaDB: false });
    expect(hello(first).capabilityFlags & CLIENT_MYSQL).toBe(CLIENT_MYSQL);
    expect((await first.query('select 1 as one'))[0]).toEqual([{ one: 1 }]);
    await first.end();

    const d = await direct();
    const second = await through(port);
    try {
      const want = hello(d);
      const got = hello(second);
      expect(want.serverVersion).toMatch(/MariaDB/);
      expect(got).toMatchObject({
        serverVersion: want.serverVersion, characterSet: want.characterSet, statusFlags: want.statusFlags,
        mariadbExtendedCapabilityFlags: want.mariadbExtendedCapabilityFlags, isMariaDB: true, extendedMetadata: true,
      });
      // Every flag the target offers except what the gateway cannot relay.
      expect(got.capabilityFlags >>> 0).toBe((want.capabilityFlags & ~Cap.COMPRESS & ~Cap.CAN_HANDLE_EXPIRED_PASSWORDS) >>> 0);
    } finally {
      await d.end();
      await second.end();
    }
  });

  it('mysql2 gets the same results through the gateway as directly: JSON columns parse, JSON and array parameters work, errors carry the server\'s wording', async () => {
    // The shared listener has logged in to the target by now (or does so here).
    await (await through()).end();
    const d = await direct();
    const gw = await through();
    try {
      const want = await scenario(d, 'fid_direct');
      const got = await scenario(gw, 'fid_gateway');
      expect(got).toEqual(want);
      // And they are the MariaDB answers, not strings and ER_WRONG_ARGUMENTS.
      expect(want[1]).toEqual([{ id: 1, doc: { a: [1, 2], b: 'x' }, tags: ['red', 'blue'], n: 2 }]);
      expect(want[2]).toEqual([{ doc: { a: [1, 2], b: 'x' }, j: { k: 1 } }]);
      expect(want[3]).toEqual([{ n: 3, second: 6 }]);
      expect(want[5]).toMatchObject({ errno: 1064, message: expect.stringContaining('corresponds to your MariaDB server version') });
    } finally {
      await d.end();
      await gw.end();
    }
  });

  it("the mariadb client reports the target's server, version and character set through the gateway", async () => {
    await (await through()).end();
    const fields = (out: string) => Object.fromEntries(out.split('\n').filter((l) => /^(Server|Server version|Protocol version|Server characterset):/.test(l)).map((l) => l.split(/:\s+/, 2)));
    const dir = await mariadb(['--no-defaults', '-h', g.target.host, '-P', String(g.target.port), '-u', g.target.user, `--password=${g.target.password}`, '-e', 'status']);
    const gw = await mariadb([...g.cli('alice:open-mysql', GATEWAY_PASSWORD), '-e', 'status']);
    expect(gw.stderr).toBe('');
    expect(fields(dir.stdout)).toMatchObject({ Server: 'MariaDB', 'Protocol version': '10' });
    expect(fields(gw.stdout)).toEqual(fields(dir.stdout));
  });

  it('a target that lacks what the greeting promised is refused once, naming the flag; the gateway then greets with what its targets share', async () => {
    // C: a fresh listener in front of the same MariaDB; until it logs in anywhere it greets as a MySQL server, without MariaDB's flags.
    const c = await freshGateway();
    await g.gw.addResource({ name: 'via-fresh', type: 'database', protocol: 'mysql', host: '127.0.0.1', port: c, credentials: { login: 'alice:open-mysql', password: GATEWAY_PASSWORD } });
    // A: a fresh listener that first learns the MariaDB.
    const a = await freshGateway({ 'open-mysql': targetCa, 'via-fresh': g.gw.pki.caCertPem });
    await (await through(a)).end();

    const maria = await through(a);
    expect(hello(maria)).toMatchObject({ isMariaDB: true, extendedMetadata: true });
    await maria.end();
    // mysql2 took the extended metadata A offered; C cannot give it: refused before any login, not misread.
    await expect(through(a, 'via-fresh')).rejects.toMatchObject({
      errno: 1429, sqlState: 'HY000',
      message: 'Gatehouse: could not open via-fresh: the target does not support MARIADB_CLIENT_EXTENDED_METADATA, which this client relies on (target_protocol) To fix: try again; if it persists, tell the owner of via-fresh',
    });
    // A learned C's greeting: MySQL and MariaDB behind one listener share no MariaDB flags, nor a version.
    const again = await through(a, 'via-fresh');
    try {
      expect(hello(again)).toMatchObject({ serverVersion: '8.0.99-Gatehouse', mariadbExtendedCapabilityFlags: 0, isMariaDB: false });
      expect((await again.query('select current_user() as u'))[0]).toEqual([{ u: `${g.target.user}@127.0.0.1` }]);
    } finally {
      await again.end();
    }
  });
});

describe('the greeting from what the targets said', () => {
  const maria = (v = '5.5.5-10.11.6-MariaDB', ext = 0x1f): TargetProfile => ({ serverVersion: v, capabilities: 0x81fffffe, mariadbCapabilities: ext, charset: 8, status: 2 });
  const mysql8: TargetProfile = { serverVersion: '8.0.36', capabilities: 0xdfffffff, mariadbCapabilities: 0, charset: 255, status: 2 };
  const fallback = new TargetProfiles('8.0.99-Gatehouse').fallback();

  it('one MariaDB: its version and collation, its flags the gateway can relay plus its own, MariaDB mode without COM_MULTI', () => {
    const gr = common([maria()], fallback);
    expect(gr).toEqual({
      serverVersion: '5.5.5-10.11.6-MariaDB', charset: 8, status: 2,
      capabilities: ((0x81fffffe & RELAYED_CAPS) | GATEWAY_CAPS) >>> 0,
      mariadbCapabilities: MariaCap.PROGRESS | MariaCap.STMT_BULK_OPERATIONS | MariaCap.EXTENDED_METADATA | MariaCap.CACHE_METADATA,
    });
    expect(gr.capabilities & (CLIENT_MYSQL | Cap.COMPRESS | Cap.CAN_HANDLE_EXPIRED_PASSWORDS)).toBe(0);
  });

  it('several MariaDBs: the lowest version and the flags they all have; MySQL and MariaDB mixed: the fallback version, MySQL mode', () => {
    expect(common([maria('5.5.5-10.11.6-MariaDB'), maria('5.5.5-10.6.18-MariaDB', MariaCap.PROGRESS)], fallback)).toMatchObject({
      serverVersion: '5.5.5-10.6.18-MariaDB', mariadbCapabilities: MariaCap.PROGRESS,
    });
    const mixed = common([maria(), mysql8], fallback);
    expect(mixed).toMatchObject({ serverVersion: '8.0.99-Gatehouse', mariadbCapabilities: 0, charset: fallback.charset });
    expect(mixed.capabilities & CLIENT_MYSQL).toBe(CLIENT_MYSQL);
    expect(mixed.capabilities & (Cap.QUERY_ATTRIBUTES | Cap.ZSTD_COMPRESSION | Cap.OPTIONAL_RESULTSET_METADATA | Cap.MULTI_FACTOR_AUTHENTICATION)).toBe(0);
  });

  it('each login refreshes its entry; an entry not refreshed for a day stops counting', () => {
    let now = 0;
    const p = new TargetProfiles('8.0.99-Gatehouse', () => now);
    expect(p.greeting()).toEqual(p.fallback());
    p.learn('db\0h\0 3306', maria('5.5.5-10.6.18-MariaDB'));
    expect(p.greeting().serverVersion).toBe('5.5.5-10.6.18-MariaDB');
    // The target was upgraded: the next login says so, the next greeting follows.
    now += 1000;
    p.learn('db\0h\0 3306', maria('5.5.5-10.11.6-MariaDB'));
    expect(p.greeting().serverVersion).toBe('5.5.5-10.11.6-MariaDB');
    now += 12 * 3600_000;
    p.learn('old\0h2\0 3306', mysql8);
    expect(p.greeting().serverVersion).toBe('8.0.99-Gatehouse');
    now += 13 * 3600_000;
    // 'db' was last seen 25 h ago: only the MySQL target counts now.
    expect(p.greeting().serverVersion).toBe('8.0.36');
  });

  it("a target's version reaches every resource's clients, so it is printable and bounded", () => {
    const p = new TargetProfiles('8.0.99-Gatehouse');
    p.learn('evil\0h\0 3306', { ...mysql8, serverVersion: `8.0.36\x1b]0;owned\x07${'x'.repeat(200)}` });
    expect(p.greeting().serverVersion).toBe(`8.0.36?]0;owned?${'x'.repeat(84)}`);
  });
});
