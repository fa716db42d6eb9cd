/**
 * Ephemeral accounts and elevation on a real MariaDB (issue 17): the MySQL door's provisioner
 * against the server, checked with mysql2 logged in to the target directly (as the temporary
 * account, the vaulted login, or root), never through the provisioner's own code. The
 * vaulted login `gh_admin` holds exactly the rights README.md lists; the roles are made by
 * root, and handed to gh_admin WITH ADMIN OPTION where a test needs it.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JitError, type AccountSpec, type JitTarget, type Provisioner } from '../../src/broker/provisioner.js';
import { dialectOf } from '../../protocols/mysql/provision.js';
import type { JitSettings, Resource, TargetCredentials } from '../../src/core/model.js';
import { freePort } from '../targets/index.js';
import { BERLIN_DAYTIME } from './gateway-harness.js';
import { addMyResource, eventually, GATEWAY_PASSWORD, LiveMariadb, mariadb, startMyGateway, type MyGateway } from './mysql-harness.js';

let g: MyGateway;
let provisioner: Provisioner;
let resource: Resource;
let ca: string;

const secret = (): string => randomBytes(12).toString('hex');
const ADMIN: TargetCredentials = { login: 'gh_admin', password: secret() };
/** A login with every right but CREATE USER. */
const WEAK: TargetCredentials = { login: 'gh_weak', password: secret() };
/** A login with every right but PROCESS. */
const BLIND: TargetCredentials = { login: 'gh_blind', password: secret() };
/** The vaulted login of an elevated resource: holds jit_writer WITH ADMIN OPTION, not as a default role. */
const ELEV: TargetCredentials = { login: 'gh_elev', password: secret() };

/** The rights README.md lists for the vaulted login on MariaDB, less `except`. */
function adminGrants(login: string, except: string): string[] {
  const who = `'${login}'@'%'`;
  const global = ['CREATE USER', 'PROCESS', 'CONNECTION ADMIN'].filter((r) => r !== except);
  return [
    `GRANT ${global.join(', ')} ON *.* TO ${who}`,
    `GRANT SELECT ON mysql.roles_mapping TO ${who}`,
    `GRANT CREATE, SELECT, INSERT, UPDATE ON gatehouse_jit.* TO ${who}`,
    `GRANT jit_reader TO ${who} WITH ADMIN OPTION`,
    `GRANT jit_reader2 TO ${who} WITH ADMIN OPTION`,
  ];
}

beforeAll(async () => {
  g = await startMyGateway();
  ca = readFileSync(g.target.ca, 'utf8');
  const setup = [
    'CREATE TABLE appdb.jit_granted (a INT)',
    'CREATE TABLE appdb.jit_granted2 (a INT)',
    'CREATE TABLE appdb.jit_other (a INT)',
    'INSERT INTO appdb.jit_granted VALUES (1)',
    'INSERT INTO appdb.jit_granted2 VALUES (2)',
    'INSERT INTO appdb.jit_other VALUES (3)',
    'CREATE ROLE jit_reader',
    'GRANT SELECT ON appdb.jit_granted TO jit_reader',
    'CREATE ROLE jit_reader2',
    'GRANT SELECT ON appdb.jit_granted2 TO jit_reader2',
    'CREATE ROLE jit_secret',
    'GRANT SELECT ON appdb.jit_other TO jit_secret',
    'CREATE ROLE jit_writer',
    'GRANT SELECT, INSERT ON appdb.jit_granted TO jit_writer',
  ];
  for (const c of [ADMIN, WEAK, BLIND, ELEV]) setup.push(`CREATE USER '${c.login}'@'%' IDENTIFIED BY '${c.password}'`);
  setup.push(...adminGrants(ADMIN.login, ''), ...adminGrants(WEAK.login, 'CREATE USER'), ...adminGrants(BLIND.login, 'PROCESS'));
  setup.push(`GRANT PROCESS, CONNECTION ADMIN ON *.* TO 'gh_elev'@'%'`, `GRANT jit_writer TO 'gh_elev'@'%' WITH ADMIN OPTION`);
  for (const sql of setup) await g.superQuery(sql);
  await g.gw.addResource({ name: 'jit-mysql', type: 'database', protocol: 'mysql', host: g.target.host, port: g.target.port, database: g.target.database, credentials: ADMIN });
  resource = (await g.gw.store.getResource('jit-mysql'))!;
  provisioner = g.adapter.provisioner(g.gw.broker.portFor({ protocol: 'mysql', loginExample: '' }));
}, 300_000);

afterAll(async () => {
  await g?.close();
});

const target = (jit: JitSettings, admin: TargetCredentials = ADMIN, r: Resource = resource): JitTarget => ({ resource: r, admin, jit });
const reader = (): JitSettings => ({ ephemeral: { grants: ['jit_reader'] } });
let serial = 0;
const spec = (user = 'alice'): AccountSpec => {
  const name = `gh_${user}_${randomBytes(4).toString('hex')}`;
  const accountId = `acc-${++serial}`;
  return { name, owner: { user, accountId, requestId: `req-${serial}` }, note: `Gatehouse: ${user}, request req-${serial}, account ${accountId}` };
};

/** mysql2 straight to the target (TLS verified against its CA). */
const connect = (c: TargetCredentials): Promise<mysql.Connection> =>
  mysql.createConnection({ host: g.target.host, port: g.target.port, user: c.login, password: c.password!, ssl: { ca }, connectTimeout: 10_000 });

async function query<T = Record<string, unknown>>(c: mysql.Connection, sql: string): Promise<T[]> {
  const [rows] = await c.query(sql);
  return rows as T[];
}

/** The target's errno for a statement that must fail. */
async function errnoOf(p: Promise<unknown>): Promise<number | undefined> {
  const err = await p.then(() => undefined, (e: unknown) => e as { errno?: number });
  expect(err, 'the statement was expected to fail').toBeDefined();
  return err!.errno;
}

const rows = async (sql: string, values?: unknown[]): Promise<Array<Record<string, unknown>>> => (await g.superQuery(sql, values)) as Array<Record<string, unknown>>;
const accountExists = async (name: string): Promise<boolean> => (await rows("SELECT 1 FROM mysql.user WHERE User = ? AND Host = '%'", [name])).length > 0;
const rolesOf = async (name: string): Promise<string[]> => (await rows('SELECT Role FROM mysql.roles_mapping WHERE User = ? ORDER BY Role', [name])).map((r) => String(r.Role));
const threadsOf = async (name: string): Promise<number> => (await rows('SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?', [name])).length;

/** Resolves when the server ends the connection (mysql2 says so with 'error' or 'end'). */
const closed = (c: mysql.Connection): Promise<void> => new Promise((resolve) => c.once('error', () => resolve()).once('end', () => resolve()));

async function jitError(p: Promise<unknown>): Promise<JitError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(JitError);
  return err as JitError;
}

describe('create', () => {
  it('makes an account that logs in as itself with the granted role and nothing more', async () => {
    const s = spec();
    const t0 = performance.now();
    const creds = await provisioner.create(target(reader()), s);
    const ms = performance.now() - t0;
    expect(creds.login).toBe(s.name);
    expect(creds.password!.length).toBeGreaterThanOrEqual(24);
    expect(creds.password).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(ms).toBeLessThan(5_000);

    const c = await connect(creds);
    try {
      expect(await query(c, 'SELECT CURRENT_USER() AS u, CURRENT_ROLE() AS r')).toEqual([{ u: `${s.name}@%`, r: 'jit_reader' }]);
      expect(await query(c, 'SELECT a FROM appdb.jit_granted')).toEqual([{ a: 1 }]);
      expect(await errnoOf(c.query('INSERT INTO appdb.jit_granted VALUES (9)'))).toBe(1142);
      expect(await errnoOf(c.query('SELECT a FROM appdb.jit_other'))).toBe(1142);
      expect(await errnoOf(c.query('SELECT a FROM appdb.jit_granted2'))).toBe(1142);
      // The marker role gives nothing, and the account cannot hand out roles.
      expect(await errnoOf(c.query(`GRANT jit_reader TO '${s.name}'@'%'`))).toBe(1698);
    } finally {
      await c.end();
    }
    // The marker, the connection limit and the owner note, as root sees them.
    expect(await rolesOf(s.name)).toEqual(['gatehouse_ephemeral', 'jit_reader']);
    expect(await rows("SELECT max_user_connections AS m FROM mysql.user WHERE User = ? AND Host = '%'", [s.name])).toEqual([{ m: 10 }]);
    expect(await rows('SELECT gatehouse_user AS u, account_id AS id, note, removed_at AS gone FROM gatehouse_jit.accounts WHERE name = ?', [s.name])).toEqual([
      { u: 'alice', id: s.owner.accountId, note: s.note, gone: null },
    ]);
    expect(await provisioner.listMarked(target(reader()))).toContain(s.name);
    expect((await provisioner.remove(target(reader()), s.name)).done).toBe(true);
  });

  it('bundles two roles in one marked role, MariaDB having one default role per account', async () => {
    const s = spec('carol');
    const jit: JitSettings = { ephemeral: { grants: ['jit_reader', 'jit_reader2'], maxConnections: 3 } };
    const creds = await provisioner.create(target(jit), s);
    const c = await connect(creds);
    try {
      expect(await query(c, 'SELECT CURRENT_ROLE() AS r')).toEqual([{ r: `${s.name}_grants` }]);
      expect(await query(c, 'SELECT a FROM appdb.jit_granted')).toEqual([{ a: 1 }]);
      expect(await query(c, 'SELECT a FROM appdb.jit_granted2')).toEqual([{ a: 2 }]);
      expect(await errnoOf(c.query('SELECT a FROM appdb.jit_other'))).toBe(1142);
    } finally {
      await c.end();
    }
    expect(await rolesOf(`${s.name}_grants`)).toEqual(['gatehouse_ephemeral', 'jit_reader', 'jit_reader2']);
    expect(await rows("SELECT max_user_connections AS m FROM mysql.user WHERE User = ? AND Host = '%'", [s.name])).toEqual([{ m: 3 }]);
    // Listed once: the bundle is a role, not an account.
    expect((await provisioner.listMarked(target(jit))).filter((n) => n.startsWith(s.name))).toEqual([s.name]);

    expect(await provisioner.remove(target(jit), s.name)).toEqual({ done: true });
    expect(await accountExists(s.name)).toBe(false);
    expect(await rows("SELECT 1 FROM mysql.user WHERE User = ? AND is_role = 'Y'", [`${s.name}_grants`])).toEqual([]);
    expect(await rolesOf(`${s.name}_grants`)).toEqual([]);
  });

  it('refuses a vaulted login without CREATE USER, naming the privilege, and leaves nothing behind', async () => {
    const s = spec();
    const e = await jitError(provisioner.create(target(reader(), WEAK), s));
    expect(e.kind).toBe('missing_right');
    expect(e.code).toBe('JIT_FAILED');
    expect(e.message).toMatch(/^the vaulted login gh_weak lacks the CREATE USER privilege on jit-mysql, needed to create the account gh_alice_\w+ \(MariaDB said: Access denied; you need \(at least one of\) the CREATE USER privilege\(s\) for this operation\)$/);
    expect(await accountExists(s.name)).toBe(false);
    expect(await rolesOf(s.name)).toEqual([]);
    expect(await rows('SELECT 1 FROM gatehouse_jit.accounts WHERE name = ?', [s.name]).catch(() => [])).toEqual([]);
  });

  it('undoes the account when a role cannot be granted: no ADMIN OPTION on it, or no such role', async () => {
    const s = spec();
    const e = await jitError(provisioner.create(target({ ephemeral: { grants: ['jit_reader', 'jit_secret'] } }), s));
    expect(e.kind).toBe('missing_right');
    expect(e.message).toContain('lacks the role jit_secret WITH ADMIN OPTION on jit-mysql');
    expect(e.message).not.toContain('IDENTIFIED');
    expect(await accountExists(s.name)).toBe(false);
    expect(await rows("SELECT 1 FROM mysql.user WHERE User = ? AND is_role = 'Y'", [`${s.name}_grants`])).toEqual([]);
    // The note says the account went.
    expect(await rows('SELECT removed_at IS NOT NULL AS gone FROM gatehouse_jit.accounts WHERE name = ?', [s.name])).toEqual([{ gone: 1 }]);

    const s2 = spec();
    const e2 = await jitError(provisioner.create(target({ ephemeral: { grants: ['jit_nosuchrole'] } }), s2));
    expect(e2.kind).toBe('invalid');
    expect(e2.message).toContain('could not grant jit_nosuchrole');
    expect(await accountExists(s2.name)).toBe(false);
    expect(await rolesOf(s2.name)).toEqual([]);
  });

  it('refuses to take over an account that already exists', async () => {
    const name = `gh_alice_${randomBytes(4).toString('hex')}`;
    await g.superQuery(`CREATE USER '${name}'@'%' IDENTIFIED BY '${secret()}'`);
    const e = await jitError(provisioner.create(target(reader()), { ...spec(), name }));
    expect(e.kind).toBe('refused');
    expect(e.message).toContain(`an account named ${name} already exists`);
    expect(await accountExists(name)).toBe(true);
    expect(await rolesOf(name)).toEqual([]);
  });

  it('reports an unreachable target as unreachable', async () => {
    const closed = { ...resource, port: await freePort() };
    const e = await jitError(provisioner.create(target(reader(), ADMIN, closed), spec()));
    expect(e.kind).toBe('unreachable');
    expect(e.message).toMatch(/cannot reach 127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
  });
});

describe('remove', () => {
  it('ends the live connections of the account, then drops it; a second remove is done too', async () => {
    const s = spec();
    const creds = await provisioner.create(target(reader()), s);
    const idle = await connect(creds);
    const busy = await connect(creds);
    const idleClosed = closed(idle);
    const sleeping = busy.query('SELECT SLEEP(60)').then(() => 'finished', (e: { code?: string; errno?: number }) => e.code ?? String(e.errno));
    await eventually(async () => (await rows("SELECT 1 FROM information_schema.PROCESSLIST WHERE USER = ? AND INFO LIKE 'SELECT SLEEP%'", [s.name])).length === 1, 5_000, 'the SLEEP to start');

    const t0 = performance.now();
    expect(await provisioner.remove(target(reader()), s.name)).toEqual({ done: true });
    const ms = performance.now() - t0;
    expect(ms).toBeLessThan(2_000);
    expect(await sleeping).not.toBe('finished');
    await idleClosed;
    expect(await threadsOf(s.name)).toBe(0);
    expect(await accountExists(s.name)).toBe(false);
    expect(await rolesOf(s.name)).toEqual([]);
    expect(await rows('SELECT removed_at IS NOT NULL AS gone FROM gatehouse_jit.accounts WHERE name = ?', [s.name])).toEqual([{ gone: 1 }]);
    expect(await provisioner.listMarked(target(reader()))).not.toContain(s.name);
    idle.destroy();
    busy.destroy();

    const again = await provisioner.remove(target(reader()), s.name);
    expect(again.done).toBe(true);
    expect(again.detail).toContain('nothing removed');
  });

  it('leaves an account without the marker alone, with its connections, and does not list it', async () => {
    const name = `gh_alice_${randomBytes(4).toString('hex')}`;
    const password = secret();
    await g.superQuery(`CREATE USER '${name}'@'%' IDENTIFIED BY '${password}'`);
    await g.superQuery(`GRANT jit_reader TO '${name}'@'%'`);
    const c = await connect({ login: name, password });
    try {
      const r = await provisioner.remove(target(reader()), name);
      expect(r).toEqual({ done: true, detail: `no account ${name} carrying the Gatehouse marker on jit-mysql: nothing removed` });
      expect(await accountExists(name)).toBe(true);
      expect(await query(c, 'SELECT CURRENT_USER() AS u')).toEqual([{ u: `${name}@%` }]);
      const marked = await provisioner.listMarked(target(reader()));
      expect(marked).not.toContain(name);
      // The vaulted login holds the marker role WITH ADMIN OPTION to hand it out: not a temporary account.
      expect(marked).not.toContain(ADMIN.login);
      expect(await provisioner.remove(target(reader()), ADMIN.login)).toMatchObject({ done: true });
      expect(await accountExists(ADMIN.login)).toBe(true);
    } finally {
      await c.end();
    }
  });

  it('does not drop an account that lost its marker after the first check (checked again right before DROP USER)', async () => {
    const s = spec();
    await provisioner.create(target(reader()), s);
    const p = provisioner as unknown as { marked: (...args: unknown[]) => Promise<unknown> };
    const original = p.marked;
    let calls = 0;
    p.marked = async function (this: unknown, ...args: unknown[]) {
      const r = await original.apply(this, args);
      // Someone with ADMIN OPTION on the marker takes it away while the removal runs.
      if (++calls === 1) {
        const c = await connect(ADMIN);
        await c.query(`REVOKE gatehouse_ephemeral FROM '${s.name}'@'%'`);
        await c.end();
      }
      return r;
    };
    try {
      const r = await provisioner.remove(target(reader()), s.name);
      expect(r.done).toBe(true);
      expect(r.detail).toMatch(/lost the Gatehouse marker/);
    } finally {
      p.marked = original;
    }
    expect(await accountExists(s.name)).toBe(true);
    await g.superQuery(`DROP USER '${s.name}'@'%'`);
  });

  it('without PROCESS it reports the missing privilege and leaves the account as it was (it could not see its connections)', async () => {
    const s = spec();
    const creds = await provisioner.create(target(reader()), s);
    const r = await provisioner.remove(target(reader(), BLIND), s.name);
    expect(r.done).toBe(false);
    expect(r.detail).toContain('the vaulted login gh_blind lacks the PROCESS privilege on jit-mysql');
    expect(await accountExists(s.name)).toBe(true);
    const c = await connect(creds);
    await c.end();
    expect(await provisioner.remove(target(reader()), s.name)).toEqual({ done: true });
  });
});

describe('elevation', () => {
  const elevated = (): JitTarget => target({ elevate: { grants: ['jit_writer'] } }, ELEV);

  it('makes the role active for new sessions of the vaulted login during the grant only, and ends the sessions that had it', async () => {
    const before = await connect(ELEV);
    try {
      expect(await query(before, 'SELECT CURRENT_ROLE() AS r')).toEqual([{ r: null }]);
      expect(await errnoOf(before.query('INSERT INTO appdb.jit_granted VALUES (5)'))).toBe(1142);
    } finally {
      await before.end();
    }

    await provisioner.elevate(elevated(), { user: 'alice', accountId: 'acc-elev' });
    const during = await connect(ELEV);
    const duringClosed = closed(during);
    expect(await query(during, 'SELECT CURRENT_ROLE() AS r')).toEqual([{ r: 'jit_writer' }]);
    await during.query('INSERT INTO appdb.jit_granted VALUES (5)');
    await g.superQuery('DELETE FROM appdb.jit_granted WHERE a = 5');

    expect(await provisioner.unelevate(elevated())).toEqual({ done: true });
    await duringClosed;
    during.destroy();
    // The provisioner's own admin connection is the vaulted login too: its COM_QUIT can leave
    // its thread in the process list a moment after unelevate returned.
    await eventually(async () => (await threadsOf(ELEV.login)) === 0, 2_000, 'the vaulted login\'s connections to end');
    const after = await connect(ELEV);
    try {
      expect(await query(after, 'SELECT CURRENT_ROLE() AS r')).toEqual([{ r: null }]);
      expect(await errnoOf(after.query('INSERT INTO appdb.jit_granted VALUES (6)'))).toBe(1142);
    } finally {
      await after.end();
    }
    // Idempotent.
    expect(await provisioner.unelevate(elevated())).toEqual({ done: true });
  });

  it('refuses two roles on MariaDB and a role the vaulted login does not hold', async () => {
    const two = await jitError(provisioner.elevate(target({ elevate: { grants: ['jit_writer', 'jit_reader'] } }, ELEV), { user: 'alice', accountId: 'x' }));
    expect(two.kind).toBe('invalid');
    const missing = await jitError(provisioner.elevate(target({ elevate: { grants: ['jit_secret'] } }, ELEV), { user: 'alice', accountId: 'x' }));
    expect(missing.kind).toBe('missing_right');
    expect(missing.message).toMatch(/^the vaulted login gh_elev lacks the role jit_secret \(granted to it WITH ADMIN OPTION\) on jit-mysql, needed to make jit_secret its default role \(MariaDB said: Invalid role specification `jit_secret`\)$/);
  });
});

describe('check', () => {
  it('names settings that do not apply to MySQL and roles it will not grant', () => {
    expect(provisioner.check(reader())).toEqual([]);
    expect(provisioner.check({ ephemeral: { grants: ['none', 'gatehouse_ephemeral'], inheritor: 'x' } })).toEqual([
      'ephemeral.inheritor applies to PostgreSQL, not MySQL/MariaDB',
      "ephemeral.grants: 'none' cannot be granted by Gatehouse (a keyword in SET DEFAULT ROLE, or the marker role)",
      "ephemeral.grants: 'gatehouse_ephemeral' cannot be granted by Gatehouse (a keyword in SET DEFAULT ROLE, or the marker role)",
    ]);
  });

  it('tells the dialect from the greeting, and refuses servers without the statements it needs', () => {
    expect(dialectOf('5.5.5-10.11.19-MariaDB-0+deb12u1').kind).toBe('mariadb');
    expect(dialectOf('11.4.2-MariaDB').kind).toBe('mariadb');
    expect(dialectOf('8.0.36').kind).toBe('mysql');
    expect(dialectOf('8.4.0-commercial').kind).toBe('mysql');
    expect(() => dialectOf('5.5.5-10.3.39-MariaDB')).toThrow(/MariaDB 10.4.2 or later/);
    expect(() => dialectOf('8.0.20')).toThrow(/MySQL 8.0.21 or later/);
    expect(() => dialectOf('5.7.44-log')).toThrow(JitError);
  });
});

/**
 * Through the gateway: the broker's JitManager with this door's provisioner, real clients
 * (mysql2, the mariadb CLI) as alice, the workflow on the fake clock.
 */
describe('MySQL door with temporary accounts', () => {
  const SINGLE_USER = { limitAccessTime: BERLIN_DAYTIME, singleUser: true };
  const APPROVAL = { limitAccessTime: BERLIN_DAYTIME, requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, startOn: 'approval' } };
  const TEMPORARY = /^gh_alice_[a-z0-9]{8}$/;

  beforeAll(async () => {
    await g.gw.useDoor(g.adapter);
  });

  async function jitResource(settings: object, jit: JitSettings, login: TargetCredentials = ADMIN): Promise<string> {
    const name = `jit-my-${randomBytes(4).toString('hex')}`;
    await addMyResource(g, settings as Record<string, unknown>, name, { login: login.login, password: login.password! });
    await g.gw.engine.directory.setJit('admin', name, jit);
    return name;
  }

  const gatewayClient = (resource: string): Promise<mysql.Connection> => mysql.createConnection(g.my2(`alice:${resource}`, GATEWAY_PASSWORD));
  const whoAmI = async (c: mysql.Connection): Promise<string> => String((await query(c, 'SELECT CURRENT_USER() AS u'))[0]!.u).replace(/@%$/, '');
  /** The client's first error (the gateway's ERR 1927, or the connection's loss). */
  const firstError = (c: mysql.Connection): Promise<{ code?: unknown; errno?: number; message: string }> => new Promise((resolve) => c.once('error', resolve));

  it('a check-out runs as its own temporary account with the granted role; check-in ends the live connection and removes the account within 2 s', async () => {
    const res = await jitResource(SINGLE_USER, { ephemeral: { grants: ['jit_reader'] } });
    await g.gw.engine.leases.checkout('alice', res);
    const c = await gatewayClient(res);
    const name = await whoAmI(c);
    expect(name).toMatch(TEMPORARY);
    expect(await query(c, 'SELECT CURRENT_ROLE() AS r, a FROM appdb.jit_granted')).toEqual([{ r: 'jit_reader', a: 1 }]);
    expect(await errnoOf(c.query('INSERT INTO appdb.jit_granted VALUES (7)'))).toBe(1142);
    expect(await errnoOf(c.query('SELECT a FROM appdb.jit_other'))).toBe(1142);
    // Another connection of the same grant, with the stock CLI: the same account.
    const again = await mariadb([...g.cli(`alice:${res}`, GATEWAY_PASSWORD), '-N', '-B', '-e', 'SELECT CURRENT_USER()']);
    expect(again.stdout.trim(), again.stderr).toBe(`${name}@%`);
    expect(await rows('SELECT gatehouse_user AS u, note FROM gatehouse_jit.accounts WHERE name = ?', [name])).toEqual([{ u: 'alice', note: expect.stringMatching(/^gatehouse: alice lease:/) }]);
    const sessions = await g.gw.store.listSessions({ resource: res });
    expect(new Set(sessions.map((s) => s.account))).toEqual(new Set([name]));
    const ended = firstError(c);

    const t0 = performance.now();
    await g.gw.engine.leases.checkin('alice', res);
    await eventually(async () => !(await accountExists(name)), 2_000, 'the account to be removed');
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect((await ended).code).toBe(1927);
    expect(await threadsOf(name)).toBe(0);
    const [record] = await g.gw.store.listJitAccounts({ resource: res });
    expect(record).toMatchObject({ account: name, state: 'gone', kind: 'ephemeral', user: 'alice' });
    c.destroy();
  });

  it('a force check-in ends the open mariadb client and removes its account within 2 s', async () => {
    const res = await jitResource(SINGLE_USER, { ephemeral: { grants: ['jit_reader', 'jit_reader2'] } });
    await g.gw.engine.leases.checkout('alice', res);
    const live = new LiveMariadb([...g.cli(`alice:${res}`, GATEWAY_PASSWORD), '-N', '-B', '-n']);
    try {
      live.send('SELECT CURRENT_USER();');
      const name = (await live.waitFor(/^gh_alice_[a-z0-9]{8}@%$/m)).match(/^(gh_alice_[a-z0-9]{8})@%$/m)![1]!;
      live.send('SELECT COUNT(*) FROM appdb.jit_granted2;');
      await live.waitFor(/^1$/m);
      expect(await threadsOf(name)).toBe(1);

      const t0 = performance.now();
      await g.gw.engine.leases.forceCheckin('bob', res, 'incident OPS-42 is over');
      await eventually(async () => !(await accountExists(name)), 2_000, 'the account to be removed');
      expect(performance.now() - t0).toBeLessThan(2_000);
      expect(await rolesOf(`${name}_grants`)).toEqual([]);
      live.send('SELECT 1;');
      expect(await live.exited).toBe(1);
      expect(live.out).toContain(`Gatehouse: ${res} was force checked in by bob: incident OPS-42 is over; session closed. (force_checked_in)`);
    } finally {
      live.kill();
    }
  });

  it('an approval that expires (fake clock) ends the connection and removes the account within 2 s', async () => {
    const res = await jitResource(APPROVAL, { ephemeral: { grants: ['jit_reader'] } });
    const requestId = await g.gw.approve('alice', res);
    const c = await gatewayClient(res);
    const name = await whoAmI(c);
    const [record] = await g.gw.store.listJitAccounts({ resource: res });
    expect(record).toMatchObject({ requestId, grant: `request:${requestId}`, state: 'active', account: name });
    const ended = firstError(c);

    const t0 = performance.now();
    g.gw.clock.advance(121 * 60_000);
    await g.gw.engine.sweep();
    await eventually(async () => !(await accountExists(name)), 2_000, 'the account to be removed');
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(await ended).toMatchObject({ code: 1927, message: `Gatehouse: your access grant for ${res} has ended; session closed. (expired)` });
    expect(await threadsOf(name)).toBe(0);
    c.destroy();
  });

  it('elevation: the vaulted login\'s sessions have the role during the check-out only; check-in ends them', async () => {
    const res = await jitResource(SINGLE_USER, { elevate: { grants: ['jit_writer'] } }, ELEV);
    await g.gw.engine.leases.checkout('alice', res);
    const c = await gatewayClient(res);
    expect(await query(c, 'SELECT CURRENT_USER() AS u, CURRENT_ROLE() AS r')).toEqual([{ u: 'gh_elev@%', r: 'jit_writer' }]);
    await c.query('INSERT INTO appdb.jit_granted VALUES (8)');
    await g.superQuery('DELETE FROM appdb.jit_granted WHERE a = 8');
    const ended = firstError(c);

    const t0 = performance.now();
    await g.gw.engine.leases.checkin('alice', res);
    expect((await ended).code).toBe(1927);
    await eventually(async () => (await threadsOf(ELEV.login)) === 0, 2_000, 'the vaulted login\'s connections to end');
    await eventually(async () => (await rows("SELECT DEFAULT_ROLE AS r FROM mysql.user WHERE User = 'gh_elev'"))[0]!.r === '', 2_000, 'the default role to be cleared');
    expect(performance.now() - t0).toBeLessThan(2_000);
    const after = await connect(ELEV);
    try {
      expect(await query(after, 'SELECT CURRENT_ROLE() AS r')).toEqual([{ r: null }]);
    } finally {
      await after.end();
    }
    c.destroy();
  });

  it('a vaulted login without CREATE USER: the connection is refused naming it, the failure is on the session, and no account is left', async () => {
    const res = await jitResource(SINGLE_USER, { ephemeral: { grants: ['jit_reader'] } }, WEAK);
    await g.gw.engine.leases.checkout('alice', res);
    const r = await mariadb([...g.cli(`alice:${res}`, GATEWAY_PASSWORD), '-N', '-B', '-e', 'SELECT CURRENT_USER()']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`the vaulted login gh_weak lacks the CREATE USER privilege on ${res}, needed to create the account gh_alice_`);
    expect(r.stderr).toContain('(target_provisioning)');
    const [session] = await g.gw.store.listSessions({ resource: res });
    expect(session).toMatchObject({ state: 'ended', endReason: 'error' });
    expect(session!.endMessage).toContain('lacks the CREATE USER privilege');
    const [record] = await g.gw.store.listJitAccounts({ resource: res });
    expect(record).toMatchObject({ state: 'failed' });
    expect(await accountExists(record!.account)).toBe(false);
  });

  it('the reconciler removes a marked account no grant owns (what a crash leaves) and audits it; a hand-made one with a similar name survives', async () => {
    await jitResource(SINGLE_USER, { ephemeral: { grants: ['jit_reader'] } });
    const orphan = spec();
    await provisioner.create(target(reader()), orphan);
    const handmade = `gh_alice_${randomBytes(4).toString('hex')}`;
    await g.superQuery(`CREATE USER '${handmade}'@'%' IDENTIFIED BY '${secret()}'`);

    expect(await g.gw.broker.jit.reconcile()).toBeGreaterThanOrEqual(1);
    expect(await accountExists(orphan.name)).toBe(false);
    expect(await accountExists(handmade)).toBe(true);
    const audit = await g.gw.store.listAudit({ action: 'jit.reconcile' });
    expect(audit.map((e) => e.data.account)).toContain(orphan.name);
  });
});
