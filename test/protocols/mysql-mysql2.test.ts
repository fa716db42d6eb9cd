/**
 * mysql2 through the gateway against a real MariaDB: server-side prepared statements with
 * parameters, a 20 MB result, COM_CHANGE_USER refused, pools, and the caching_sha2 RSA
 * exchange a client without TLS uses on a loopback listener.
 */
import { createHash, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { authPlugins } from 'mysql2';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import { MysqlAdapter } from '../../protocols/mysql/index.js';
import { addMyResource, eventually, GATEWAY_PASSWORD, myDoor, mariadb, startMyGateway, until, type MyGateway } from './mysql-harness.js';

let g: MyGateway;

beforeAll(async () => {
  g = await startMyGateway({ allowPlaintext: true });
  await addMyResource(g, {}, 'open-mysql');
});

afterAll(async () => {
  await g?.close();
});

describe('mysql2 through the gateway', () => {
  it('execute() runs server-side prepared statements with parameters', async () => {
    const c = await mysql.createConnection(g.my2('alice:open-mysql', GATEWAY_PASSWORD));
    try {
      await c.query('create table people (id int primary key auto_increment, name varchar(64), born date, photo blob)');
      const photo = Buffer.from([0, 1, 2, 255, 254, 0x11, 0x03]);
      const [ins] = await c.execute('insert into people (name, born, photo) values (?, ?, ?)', ['Ada', '1815-12-10', photo]);
      expect((ins as mysql.ResultSetHeader).insertId).toBe(1);
      await c.execute('insert into people (name, born, photo) values (?, ?, ?)', ['Grace', '1906-12-09', null]);
      const [rows] = await c.execute('select id, name, photo, current_user() as who from people where name = ? or id = ? order by id', ['Grace', 1]);
      expect(rows).toEqual([
        { id: 1, name: 'Ada', photo, who: `${g.target.user}@127.0.0.1` },
        { id: 2, name: 'Grace', photo: null, who: `${g.target.user}@127.0.0.1` },
      ]);
      // The same statement again: mysql2 reuses the prepared statement (COM_STMT_EXECUTE only).
      const [again] = await c.execute('select id, name, photo, current_user() as who from people where name = ? or id = ? order by id', ['Ada', 0]);
      expect((again as Array<{ name: string }>).map((r) => r.name)).toEqual(['Ada']);
    } finally {
      await c.end();
    }
    const inserts = (): number => g.statements.filter((s) => s.kind === 'prepare' && s.sql.startsWith('insert into people')).length;
    await until(() => inserts() > 0, 5_000, 'the prepare audited');
    expect(inserts()).toBe(1);
  });

  it('a 20 MB result comes back intact', async () => {
    const c = await mysql.createConnection(g.my2('alice:open-mysql', GATEWAY_PASSWORD));
    try {
      // 20 rows of 1 MiB, each a distinct pseudo-random string the server makes itself.
      const [rows] = await c.query(
        "with recursive n(i) as (select 1 union all select i + 1 from n where i < 20) select i, repeat(sha2(concat('row', i), 256), 16384) as v, sha2(repeat(sha2(concat('row', i), 256), 16384), 256) as h from n order by i",
      );
      const list = rows as Array<{ i: number; v: string; h: string }>;
      expect(list.length).toBe(20);
      expect(list.reduce((n, r) => n + r.v.length, 0)).toBe(20 * 1024 * 1024);
      for (const r of list) expect(createHash('sha256').update(r.v).digest('hex')).toBe(r.h);
    } finally {
      await c.end();
    }
  });

  it('COM_CHANGE_USER is refused with an ERR and the connection is closed; the gateway keeps serving', async () => {
    const c = await mysql.createConnection(g.my2('alice:open-mysql', GATEWAY_PASSWORD));
    const refused = g.adapter.stats.changeUserRefused;
    const audited = (await g.gw.store.listAudit({ action: 'door.refuse' })).length;
    await expect(c.changeUser({ user: 'root', password: g.target.superuserPassword })).rejects.toMatchObject({
      errno: 1227, sqlState: '42000', message: 'Gatehouse: COM_CHANGE_USER is not allowed through the gateway. (not_allowed) To fix: open a new connection as USER:RESOURCE',
    });
    await expect(c.query('select 1')).rejects.toThrow();
    expect(g.adapter.stats.changeUserRefused).toBe(refused + 1);
    // Audited without holding up the client: poll for it.
    let entries = (await g.gw.store.listAudit({ action: 'door.refuse' })).slice(audited);
    for (let i = 0; entries.length === 0 && i < 200; i++) {
      await new Promise((r) => setTimeout(r, 10));
      entries = (await g.gw.store.listAudit({ action: 'door.refuse' })).slice(audited);
    }
    expect(entries.map((e) => e.data)).toEqual([expect.objectContaining({ door: 'mysql', code: 'not_allowed' })]);
    const next = await mysql.createConnection(g.my2('alice:open-mysql', GATEWAY_PASSWORD));
    const [rows] = await next.query('select current_user() as u');
    expect(rows).toEqual([{ u: `${g.target.user}@127.0.0.1` }]);
    await next.end();
  });

  it('a pool of 16 connections with the gateway password pays for one password check', async () => {
    // The scrypt check inside the broker's login path, which caches a verified password.
    const logins = g.gw.broker.logins as unknown as { checkPassword(user: string, password: string): Promise<boolean> };
    const check = logins.checkPassword.bind(logins);
    let checks = 0;
    logins.checkPassword = (u, p) => {
      checks++;
      return check(u, p);
    };
    const pool = mysql.createPool({ ...g.my2('carol:open-mysql', GATEWAY_PASSWORD), connectionLimit: 16 });
    try {
      const results = await Promise.all(Array.from({ length: 64 }, (_, i) => pool.execute('select ? as n, connection_id() as c', [i])));
      expect(results.map(([rows]) => (rows as Array<{ n: number }>)[0]!.n)).toEqual(Array.from({ length: 64 }, (_, i) => i));
      const threads = new Set(results.map(([rows]) => (rows as Array<{ c: number }>)[0]!.c));
      expect(threads.size).toBeGreaterThan(1);
      expect(checks).toBe(1);
    } finally {
      logins.checkPassword = check;
      await pool.end();
    }
  });

  it("without TLS (loopback listener) the password travels RSA-encrypted, to the gateway's RSA key (the same in every worker)", async () => {
    const offered: string[] = [];
    for (let i = 0; i < 2; i++) {
      const c = await mysql.createConnection({
        ...g.my2('alice:open-mysql', GATEWAY_PASSWORD),
        ssl: undefined,
        authPlugins: { caching_sha2_password: authPlugins.caching_sha2_password({ onServerPublicKey: (k) => offered.push(k.toString()) }) },
      });
      try {
        const [rows] = await c.query('select current_user() as u');
        expect(rows).toEqual([{ u: `${g.target.user}@127.0.0.1` }]);
      } finally {
        await c.end();
      }
    }
    // The gateway's TLS key is ECDSA (src/pki), which cannot encrypt: rsa-key.pem is offered instead.
    expect(createPublicKey(g.gw.pki.certPem).asymmetricKeyType).toBe('ec');
    const gatewayKey = createPublicKey(g.gw.pki.rsaKeyPem).export({ type: 'spki', format: 'pem' });
    expect(offered).toEqual([gatewayKey, gatewayKey]);
  });

  it('a listener given no RSA key makes one on first use and keeps it (the TLS key being ECDSA)', async () => {
    const adapter = new MysqlAdapter({ upstreamCa: { '*': readFileSync(g.target.ca, 'utf8') } });
    const listener = await adapter.listen({
      host: '127.0.0.1', port: 0, broker: g.gw.broker, log: silentLogger, allowPlaintext: true,
      tls: { cert: g.gw.pki.certPem, key: g.gw.pki.keyPem, ca: g.gw.pki.caCertPem },
    });
    try {
      const offered: string[] = [];
      for (let i = 0; i < 2; i++) {
        const c = await mysql.createConnection({
          ...g.my2('alice:open-mysql', GATEWAY_PASSWORD), port: listener.address.port, ssl: undefined,
          authPlugins: { caching_sha2_password: authPlugins.caching_sha2_password({ onServerPublicKey: (k) => offered.push(k.toString()) }) },
        });
        try {
          const [rows] = await c.query('select 1 as one');
          expect(rows).toEqual([{ one: 1 }]);
        } finally {
          await c.end();
        }
      }
      expect(offered).toHaveLength(2);
      expect(createPublicKey(offered[0]!).asymmetricKeyType).toBe('rsa');
      expect(offered[1]).toBe(offered[0]);
      expect(offered[0]).not.toBe(createPublicKey(g.gw.pki.rsaKeyPem).export({ type: 'spki', format: 'pem' }));
    } finally {
      await listener.close();
    }
  });

  it('the mariadb client with --skip-ssl uses the same RSA exchange on a loopback listener', async () => {
    const r = await mariadb(['--no-defaults', '-h', '127.0.0.1', '-P', String(g.port), '-u', 'alice:open-mysql', `--password=${GATEWAY_PASSWORD}`, '--skip-ssl', '-N', '-B', '-e', "select current_user(), variable_value from information_schema.session_status where variable_name = 'Ssl_version'"]);
    expect(r.stderr).toBe('');
    // The client leg is plaintext; the target leg is still TLS.
    expect(r.stdout.trim()).toMatch(new RegExp(`^${g.target.user}@127\\.0\\.0\\.1\tTLSv1\\.[23]$`));
  });

  it("upstreamTls 'disable' keeps the target leg in plaintext; the client leg stays TLS", async () => {
    const plain = await (await myDoor({ upstreamTls: 'disable' })).listen({
      host: '127.0.0.1', port: 0, broker: g.gw.broker, log: silentLogger, tls: { cert: g.gw.pki.certPem, key: g.gw.pki.keyPem, ca: g.gw.pki.caCertPem },
    });
    try {
      const c = await mysql.createConnection({ ...g.my2('alice:open-mysql', GATEWAY_PASSWORD), port: plain.address.port });
      const [rows] = await c.query("select current_user() as u, variable_value as tls from information_schema.session_status where variable_name = 'Ssl_version'");
      expect(rows).toEqual([{ u: `${g.target.user}@127.0.0.1`, tls: '' }]);
      await c.end();
    } finally {
      await plain.close();
    }
  });

  it('bytes in and out are counted on the session record', async () => {
    const before = new Set(g.gw.broker.live().map((s) => s.id));
    const c = await mysql.createConnection(g.my2('alice:open-mysql', GATEWAY_PASSWORD));
    await until(() => g.gw.broker.live().some((s) => !before.has(s.id)));
    const id = g.gw.broker.live().find((s) => !before.has(s.id))!.id;
    await c.query("select repeat('x', 100000) as v");
    await c.end();
    await until(() => !g.gw.broker.live().some((s) => s.id === id));
    // The record is written once the door's close is answered, a moment after the session left the broker.
    await eventually(async () => (await g.gw.store.getSession(id))?.state === 'ended', 5_000, 'the session record to be ended');
    const rec = await g.gw.store.getSession(id);
    expect(rec?.state).toBe('ended');
    expect(rec?.endReason).toBe('client_closed');
    expect(rec?.bytesOut).toBeGreaterThan(100_000);
    expect(rec?.bytesIn).toBeGreaterThan(30);
  });
});
