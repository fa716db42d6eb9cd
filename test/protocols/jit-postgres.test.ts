/**
 * Ephemeral roles and elevation on a real PostgreSQL (issue 17): the door's provisioner,
 * called directly as the broker's JitManager calls it, with the vaulted logins the README
 * describes (CREATEROLE, no superuser). What a role can do is checked by logging in as it.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JitError, type AccountSpec, type JitTarget, type Provisioner, type RemoveResult } from '../../src/broker/provisioner.js';
import type { JitSettings } from '../../src/core/model.js';
import { eventually as pollFor } from './contract-driver.js';
import { BERLIN_DAYTIME } from './gateway-harness.js';
import { addPgResource, GATEWAY_PASSWORD, LivePsql, psql, startPgGateway, type PgGateway } from './postgres-harness.js';

let g: PgGateway;
let prov: Provisioner;
/** A vaulted login with CREATEROLE and nothing else. */
let admin: { login: string; password: string };
/** Another, for the elevation test (unelevate ends every other session of its login). */
let elevAdmin: { login: string; password: string };
/** The vaulted login of the elevated resource behind the gateway. */
let gwElevAdmin: { login: string; password: string };

const secret = (): string => randomBytes(18).toString('base64url');
const unique = (prefix: string): string => `${prefix}_${randomBytes(5).toString('hex')}`;

beforeAll(async () => {
  g = await startPgGateway();
  admin = { login: 'gh_admin', password: secret() };
  elevAdmin = { login: 'gh_elev_admin', password: secret() };
  gwElevAdmin = { login: 'gh_elev_gw', password: secret() };
  await g.superQuery(`
    CREATE ROLE gh_admin LOGIN CREATEROLE PASSWORD '${admin.password}';
    CREATE ROLE gh_elev_admin LOGIN CREATEROLE PASSWORD '${elevAdmin.password}';
    CREATE ROLE gh_elev_gw LOGIN CREATEROLE PASSWORD '${gwElevAdmin.password}';
    CREATE ROLE app_read NOLOGIN;
    CREATE ROLE app_ddl NOLOGIN;
    CREATE ROLE app_elev NOLOGIN;
    CREATE TABLE public.orders (id int);
    INSERT INTO public.orders VALUES (1), (2);
    CREATE TABLE public.payroll (salary int);
    CREATE TABLE public.elev_secret (x int);
    GRANT SELECT ON public.orders TO app_read;
    GRANT USAGE, CREATE ON SCHEMA public TO app_ddl;
    GRANT SELECT ON public.elev_secret TO app_elev;
  `);
  await g.superQuery('CREATE DATABASE otherdb');
  await g.superQuery('CREATE DATABASE lockeddb');
  for (const db of ['otherdb', 'lockeddb']) await dbQuery(db, 'GRANT USAGE, CREATE ON SCHEMA public TO app_ddl');
  await addPgResource(g, {}, 'prod-pg', admin);
  prov = g.adapter.provisioner!(g.gw.broker.portFor({ protocol: 'postgres', loginExample: '' }));
});

afterAll(async () => {
  await g?.close();
});

async function target(jit: JitSettings, login = admin): Promise<JitTarget> {
  const resource = await g.gw.store.getResource('prod-pg');
  return { resource: resource!, admin: login, jit };
}

function spec(name: string, note = `alice via request r-1 (lease none)`): AccountSpec {
  return { name, owner: { user: 'alice', accountId: 'acc-1', requestId: 'r-1' }, deadline: new Date(g.gw.clock.now().getTime() + 2 * 3600_000), note };
}

/** A pg client straight to the target (no gateway) as `user`. */
async function direct(user: string, password: string, database = g.target.database): Promise<pg.Client> {
  const c = new pg.Client({ host: g.target.host, port: g.target.port, user, password, database, connectionTimeoutMillis: 10_000 });
  await c.connect();
  return c;
}

async function dbQuery(database: string, sql: string): Promise<pg.QueryResult> {
  const c = await direct(g.target.superuser, g.target.superuserPassword, database);
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
}

async function role(name: string): Promise<{ rolcanlogin: boolean; note: string | null; rolvaliduntil: Date | null; rolpassword: string } | undefined> {
  const r = await g.superQuery(`SELECT rolcanlogin, shobj_description(oid, 'pg_authid') AS note, rolvaliduntil, rolpassword FROM pg_authid WHERE rolname = '${name}'`);
  return r.rows[0];
}

/** The SQLSTATE a promise rejects with. */
async function sqlstate(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(() => undefined, (e: unknown) => (e as { code?: string }).code ?? String(e));
}

async function jitError(p: Promise<unknown>): Promise<JitError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(JitError);
  return e as JitError;
}

/** The first 'error' event of a client (the FATAL a terminated backend sends). */
function firstError(c: pg.Client): Promise<pg.DatabaseError> {
  return new Promise((resolve) => c.once('error', (e) => {
    c.on('error', () => {});
    resolve(e as pg.DatabaseError);
  }));
}

describe('PostgreSQL provisioner: temporary roles', () => {
  it('create gives a role that logs in as itself with the granted role\'s rights and no more, the owner note and VALID UNTIL on the target\'s clock', async () => {
    const name = unique('gh_alice');
    const note = "alice's grant, request r-1 \\ lease -";
    const creds = await prov.create(await target({ ephemeral: { grants: ['app_read'] } }), spec(name, note));
    expect(creds.login).toBe(name);
    expect(creds.password!.length).toBeGreaterThanOrEqual(24);

    const c = await direct(name, creds.password!);
    try {
      expect((await c.query('SELECT current_user')).rows[0].current_user).toBe(name);
      expect((await c.query('SELECT count(*)::int AS n FROM public.orders')).rows[0].n).toBe(2);
      expect(await sqlstate(c.query('INSERT INTO public.orders VALUES (3)'))).toBe('42501');
      expect(await sqlstate(c.query('SELECT * FROM public.payroll'))).toBe('42501');
      expect(await sqlstate(c.query('CREATE TABLE public.mine (x int)'))).toBe('42501');
    } finally {
      await c.end();
    }

    const r = (await role(name))!;
    expect(r.note).toBe(note);
    // The gateway's clock is the fake one (January); the target's is real: the role gets the
    // grant's remaining two hours on the target's own clock.
    expect(Math.abs(r.rolvaliduntil!.getTime() - (Date.now() + 2 * 3600_000))).toBeLessThan(60_000);
    // The target was given a SCRAM verifier, never the password.
    expect(r.rolpassword).toMatch(/^SCRAM-SHA-256\$4096:/);
    expect(await prov.listMarked(await target({ ephemeral: { grants: [] } }))).toContain(name);
    expect((await prov.remove(await target({ ephemeral: { grants: ['app_read'] } }), name)).done).toBe(true);
  });

  it('remove ends the live session, hands its tables in every database to the inheritor, drops the role, and is done when run again', async () => {
    const name = unique('gh_alice');
    const t = await target({ ephemeral: { grants: ['app_read', 'app_ddl'] } });
    const creds = await prov.create(t, spec(name));
    const here = await direct(name, creds.password!);
    const there = await direct(name, creds.password!, 'otherdb');
    await here.query(`CREATE TABLE public.${name}_t (x int)`);
    await there.query(`CREATE TABLE public.${name}_o (x int)`);
    const hereError = firstError(here);
    const thereError = firstError(there);

    const result = await prov.remove(t, name);
    expect(result).toEqual({ done: true });
    for (const e of await Promise.all([hereError, thereError])) {
      expect(e.code).toBe('57P01');
      expect(e.message).toMatch(/terminating connection due to administrator command/);
    }
    expect(await role(name)).toBeUndefined();
    const owner = async (db: string, table: string): Promise<string> => (await dbQuery(db, `SELECT tableowner FROM pg_tables WHERE tablename = '${table}'`)).rows[0].tableowner;
    expect(await owner(g.target.database, `${name}_t`)).toBe('gatehouse_inheritor');
    expect(await owner('otherdb', `${name}_o`)).toBe('gatehouse_inheritor');

    expect(await prov.remove(t, name)).toEqual({ done: true, detail: `no role ${name} on prod-pg` });
    await Promise.allSettled([here.end(), there.end()]);
  });

  it('a role the target cannot drop yet (objects in a database that allows no connections) stays locked, is reported, and goes on the next attempt', async () => {
    const name = unique('gh_alice');
    const t = await target({ ephemeral: { grants: ['app_ddl'] } });
    const creds = await prov.create(t, spec(name));
    const c = await direct(name, creds.password!, 'lockeddb');
    await c.query(`CREATE TABLE public.${name}_l (x int)`);
    await c.end();
    await g.superQuery('ALTER DATABASE lockeddb ALLOW_CONNECTIONS false');
    try {
      const first = await prov.remove(t, name);
      expect(first.done).toBe(false);
      expect(first.detail).toMatch(/locked \(NOLOGIN\) but not dropped: role ".*" cannot be dropped because some objects depend on it/);
      expect(first.detail).toMatch(/database lockeddb does not allow connections/);
      expect((await role(name))!.rolcanlogin).toBe(false);
      expect(await sqlstate(direct(name, creds.password!))).toBe('28000');
    } finally {
      await g.superQuery('ALTER DATABASE lockeddb ALLOW_CONNECTIONS true');
    }
    expect(await prov.remove(t, name)).toEqual({ done: true });
    expect(await role(name)).toBeUndefined();
    expect((await dbQuery('lockeddb', `SELECT tableowner FROM pg_tables WHERE tablename = '${name}_l'`)).rows[0].tableowner).toBe('gatehouse_inheritor');
  });

  it('a role made by hand with a similar name but no marker is never removed nor listed; neither is one holding only ADMIN OPTION on the marker', async () => {
    const t = await target({ ephemeral: { grants: ['app_read'] } });
    const made = await prov.create(t, spec(unique('gh_alice')));
    const handmade = unique('gh_alice');
    const adminOnly = unique('gh_alice');
    const pw = secret();
    await g.superQuery(`CREATE ROLE ${handmade} LOGIN PASSWORD '${pw}'; CREATE ROLE ${adminOnly} LOGIN; GRANT gatehouse_ephemeral TO ${adminOnly} WITH ADMIN OPTION`);
    const c = await direct(handmade, pw);
    const errors: unknown[] = [];
    c.on('error', (e) => errors.push(e));

    const marked = await prov.listMarked(t);
    expect(marked).toContain(made.login);
    expect(marked).not.toContain(handmade);
    expect(marked).not.toContain(adminOnly);
    expect(marked).not.toContain(admin.login);
    for (const name of [handmade, adminOnly]) {
      expect(await prov.remove(t, name)).toEqual({ done: true, detail: `the role ${name} on prod-pg is not a member of gatehouse_ephemeral: Gatehouse did not make it and left it alone` });
      expect((await role(name))!.rolcanlogin).toBe(true);
    }
    expect((await c.query('SELECT current_user')).rows[0].current_user).toBe(handmade);
    expect(errors).toEqual([]);
    // Names Gatehouse never gives are not even looked up.
    expect((await prov.remove(t, 'Postgres')).detail).toMatch(/not a name Gatehouse gives/);
    await c.end();
    await prov.remove(t, made.login);
  });

  it('a vaulted login without CREATEROLE: create fails with missing_right naming CREATEROLE, and no role is left behind', async () => {
    const name = unique('gh_alice');
    const t = await target({ ephemeral: { grants: ['app_read'] } }, { login: g.target.user, password: g.target.password });
    const e = await jitError(prov.create(t, spec(name)));
    expect(e.kind).toBe('missing_right');
    expect(e.code).toBe('JIT_FAILED');
    expect(e.message).toMatch(new RegExp(`^the vaulted login ${g.target.user} lacks CREATEROLE on prod-pg \\(PostgreSQL said: permission denied to create role`));
    expect(await role(name)).toBeUndefined();
  });

  it('a refusal after CREATE ROLE (a superuser role granted, a role that does not exist) rolls the whole creation back', async () => {
    const t = await target({ ephemeral: { grants: ['app_read', 'postgres'] } });
    const name = unique('gh_alice');
    const e = await jitError(prov.create(t, spec(name)));
    expect(e.kind).toBe('missing_right');
    expect(e.message).toMatch(/^the vaulted login gh_admin lacks the right to grant role postgres \(CREATEROLE; superuser for a superuser role\) on prod-pg \(PostgreSQL said: must be superuser/);
    expect(await role(name)).toBeUndefined();

    const missing = unique('gh_alice');
    const e2 = await jitError(prov.create(await target({ ephemeral: { grants: ['app_read', 'no_such_role'] } }), spec(missing)));
    expect(e2.kind).toBe('invalid');
    expect(e2.message).toMatch(/granting no_such_role .* role "no_such_role" does not exist/);
    expect(await role(missing)).toBeUndefined();
  });

  it('an unreachable target is a JitError unreachable', async () => {
    const t = await target({ ephemeral: { grants: [] } });
    const e = await jitError(prov.create({ ...t, resource: { ...t.resource, port: 1 } }, spec(unique('gh_alice'))));
    expect(e.kind).toBe('unreachable');
    expect(e.message).toMatch(/^cannot reach prod-pg to manage temporary accounts: cannot connect to 127\.0\.0\.1:1/);
  });

  it('check names what does not apply to PostgreSQL and what would leak between grants', () => {
    expect(prov.nameLimit).toBe(63);
    expect(prov.check({ ephemeral: { grants: ['app_read'] } })).toEqual([]);
    expect(prov.check({ ephemeral: { grants: ['gatehouse_inheritor'], sudo: 'ALL' } })).toEqual([
      'ephemeral.sudo applies to Linux machines, not PostgreSQL',
      'ephemeral.grants cannot include gatehouse_inheritor: it owns what earlier temporary accounts created',
    ]);
    expect(prov.check({ elevate: { grants: ['gatehouse_ephemeral'] } })).toEqual(['elevate.grants cannot include gatehouse_ephemeral: a member of it is a temporary account to Gatehouse']);
  });
});

describe('PostgreSQL provisioner: elevation', () => {
  it('the vaulted login lacks R before, has it after elevate; unelevate ends a session that ran SET ROLE R and takes R away', async () => {
    const t = await target({ elevate: { grants: ['app_elev'] } }, elevAdmin);
    const has = async (): Promise<boolean> => (await g.superQuery(`SELECT pg_has_role('${elevAdmin.login}', 'app_elev', 'MEMBER') AS m`)).rows[0].m;
    expect(await has()).toBe(false);
    await prov.elevate(t, { user: 'alice', accountId: 'acc-2' });
    await prov.elevate(t, { user: 'alice', accountId: 'acc-2' });
    expect(await has()).toBe(true);

    const c = await direct(elevAdmin.login, elevAdmin.password);
    await c.query('SET ROLE app_elev');
    expect((await c.query('SELECT current_user')).rows[0].current_user).toBe('app_elev');
    expect((await c.query('SELECT count(*)::int AS n FROM public.elev_secret')).rows[0].n).toBe(0);
    const ended = firstError(c);

    expect(await prov.unelevate(t)).toEqual({ done: true });
    expect((await ended).code).toBe('57P01');
    expect(await has()).toBe(false);
    expect(await prov.unelevate(t)).toEqual({ done: true });
    await c.end().catch(() => {});
  });
});

/** Polls `check` (real time: the target works in real time) within the 2 s the issue allows. */
const eventually = (check: () => Promise<boolean>): Promise<boolean> => pollFor(check, 2_000);

/**
 * Through the gateway: the broker's JitManager with this door's provisioner, sessions of
 * real clients (pg, psql) as alice, the workflow on the fake clock.
 */
describe('PostgreSQL door with temporary roles', () => {
  const SINGLE_USER = { limitAccessTime: BERLIN_DAYTIME, singleUser: true };
  const APPROVAL = { limitAccessTime: BERLIN_DAYTIME, requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, startOn: 'approval' } };

  beforeAll(async () => {
    await g.gw.useDoor(g.adapter);
  });

  async function jitResource(settings: object, jit: JitSettings, login: { login: string; password: string } = admin): Promise<string> {
    const name = unique('pg').replace(/_/g, '-');
    await addPgResource(g, settings as Record<string, unknown>, name, login);
    await g.gw.engine.directory.setJit('admin', name, jit);
    return name;
  }

  async function gatewayClient(resource: string): Promise<pg.Client> {
    const c = new pg.Client(g.pgConfig(`alice:${resource}`, GATEWAY_PASSWORD));
    await c.connect();
    return c;
  }

  const backends = async (user: string): Promise<number> => (await g.superQuery(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = '${user}'`)).rows[0].n;
  const tableOwner = async (table: string): Promise<string> => (await g.superQuery(`SELECT tableowner FROM pg_tables WHERE tablename = '${table}'`)).rows[0].tableowner;

  it('a check-out runs as its own temporary role with the granted rights; check-in ends the live session and removes the role within 2 s, its table now the inheritor\'s', async () => {
    const res = await jitResource(SINGLE_USER, { ephemeral: { grants: ['app_read', 'app_ddl'] } });
    await g.gw.engine.leases.checkout('alice', res);
    const c = await gatewayClient(res);
    const name: string = (await c.query('SELECT current_user')).rows[0].current_user;
    expect(name).toMatch(/^gh_alice_[a-z0-9]{8}$/);
    expect((await c.query('SELECT count(*)::int AS n FROM public.orders')).rows[0].n).toBe(2);
    expect(await sqlstate(c.query('INSERT INTO public.orders VALUES (3)'))).toBe('42501');
    expect(await sqlstate(c.query('SELECT * FROM public.payroll'))).toBe('42501');
    await c.query(`CREATE TABLE public.${name}_gw (x int)`);
    // Another connection of the same grant: the same role.
    const again = await psql(g.conninfo(`alice:${res}`), GATEWAY_PASSWORD, ['-c', 'SELECT current_user']);
    expect(again.stdout.trim(), again.stderr).toBe(name);
    expect((await role(name))!.note).toMatch(/^gatehouse: alice lease:/);
    const sessions = await g.gw.store.listSessions({ resource: res });
    expect(new Set(sessions.map((s) => s.account))).toEqual(new Set([name]));
    const ended = firstError(c);

    const t0 = performance.now();
    await g.gw.engine.leases.checkin('alice', res);
    expect(await eventually(async () => (await role(name)) === undefined)).toBe(true);
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect((await ended).code).toBe('57P01');
    expect(await backends(name)).toBe(0);
    expect(await tableOwner(`${name}_gw`)).toBe('gatehouse_inheritor');
    const [record] = await g.gw.store.listJitAccounts({ resource: res });
    expect(record).toMatchObject({ account: name, state: 'gone', kind: 'ephemeral', user: 'alice' });
    await c.end().catch(() => {});
  });

  it('a force check-in ends the open psql session and removes its role within 2 s', async () => {
    // dave may force a check-in as an approver of the resource.
    const res = await jitResource({ ...APPROVAL, singleUser: true }, { ephemeral: { grants: ['app_read'] } });
    await g.gw.approve('alice', res);
    await g.gw.engine.leases.checkout('alice', res);
    const live = new LivePsql(g.conninfo(`alice:${res}`), GATEWAY_PASSWORD);
    try {
      live.send('SELECT current_user;');
      const name = (await live.waitFor(/^gh_alice_[a-z0-9]{8}$/m)).match(/^(gh_alice_[a-z0-9]{8})$/m)![1]!;
      expect(await backends(name)).toBe(1);

      const t0 = performance.now();
      await g.gw.engine.leases.forceCheckin('dave', res, 'incident OPS-42 is over');
      expect(await eventually(async () => (await role(name)) === undefined)).toBe(true);
      expect(performance.now() - t0).toBeLessThan(2_000);
      live.send('SELECT 1;');
      await live.waitFor(/FATAL: +57P01: Gatehouse: .*force checked in by dave: incident OPS-42 is over/);
      expect(await live.exited).not.toBe(0);
    } finally {
      live.kill();
    }
  });

  it('an approval that expires (fake clock) ends the session and removes the role within 2 s', async () => {
    const res = await jitResource(APPROVAL, { ephemeral: { grants: ['app_read', 'app_ddl'] } });
    const requestId = await g.gw.approve('alice', res);
    const c = await gatewayClient(res);
    const name: string = (await c.query('SELECT current_user')).rows[0].current_user;
    await c.query(`CREATE TABLE public.${name}_exp (x int)`);
    const [record] = await g.gw.store.listJitAccounts({ resource: res });
    expect(record).toMatchObject({ requestId, grant: `request:${requestId}`, state: 'active', account: name });
    const ended = firstError(c);

    const t0 = performance.now();
    g.gw.clock.advance(121 * 60_000);
    await g.gw.engine.sweep();
    expect(await eventually(async () => (await role(name)) === undefined)).toBe(true);
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect((await ended).code).toBe('57P01');
    expect(await tableOwner(`${name}_exp`)).toBe('gatehouse_inheritor');
    await c.end().catch(() => {});
  });

  it('elevation: the vaulted login lacks R before the check-out, has it during; check-in ends the session that ran SET ROLE R and takes R away', async () => {
    const res = await jitResource(SINGLE_USER, { elevate: { grants: ['app_elev'] } }, gwElevAdmin);
    const has = async (): Promise<boolean> => (await g.superQuery(`SELECT pg_has_role('${gwElevAdmin.login}', 'app_elev', 'MEMBER') AS m`)).rows[0].m;
    expect(await has()).toBe(false);
    await g.gw.engine.leases.checkout('alice', res);
    const live = new LivePsql(g.conninfo(`alice:${res}`), GATEWAY_PASSWORD);
    try {
      live.send('SET ROLE app_elev;');
      live.send(`SELECT current_user || ' sees ' || count(*) FROM public.elev_secret;`);
      await live.waitFor(/^app_elev sees 0$/m);
      expect(await has()).toBe(true);

      const t0 = performance.now();
      await g.gw.engine.leases.checkin('alice', res);
      expect(await eventually(async () => !(await has()))).toBe(true);
      expect(performance.now() - t0).toBeLessThan(2_000);
      expect(await eventually(async () => (await backends(gwElevAdmin.login)) === 0)).toBe(true);
      live.send('SELECT 1;');
      await live.waitFor(/FATAL: +57P01/);
    } finally {
      live.kill();
    }
  });

  it('a vaulted login without CREATEROLE: the connection is refused naming CREATEROLE, the failure is on the session, and no role is left', async () => {
    const res = await jitResource(SINGLE_USER, { ephemeral: { grants: ['app_read'] } }, { login: g.target.user, password: g.target.password });
    await g.gw.engine.leases.checkout('alice', res);
    const r = await psql(g.conninfo(`alice:${res}`), GATEWAY_PASSWORD, ['-c', 'SELECT current_user']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`the vaulted login ${g.target.user} lacks CREATEROLE on ${res} (PostgreSQL said: permission denied to create role`);
    expect(r.stderr).toContain('(target_provisioning)');
    const [session] = await g.gw.store.listSessions({ resource: res });
    expect(session).toMatchObject({ state: 'ended', endReason: 'error' });
    expect(session!.endMessage).toContain('lacks CREATEROLE');
    const [record] = await g.gw.store.listJitAccounts({ resource: res });
    expect(record).toMatchObject({ state: 'failed' });
    expect(await role(record!.account)).toBeUndefined();
  });

  it('the reconciler removes a marked role no grant owns (what a crash leaves) and audits it; a hand-made role with a similar name survives', async () => {
    // The reconciler looks at the targets of resources with ephemeral accounts.
    await jitResource(SINGLE_USER, { ephemeral: { grants: ['app_read'] } });
    const t = await target({ ephemeral: { grants: ['app_read'] } });
    const orphan = unique('gh_alice');
    await prov.create(t, spec(orphan));
    const handmade = unique('gh_alice');
    await g.superQuery(`CREATE ROLE ${handmade} LOGIN`);

    expect(await g.gw.broker.jit.reconcile()).toBeGreaterThanOrEqual(1);
    expect(await role(orphan)).toBeUndefined();
    expect((await role(handmade))!.rolcanlogin).toBe(true);
    const audit = await g.gw.store.listAudit({ action: 'jit.reconcile' });
    expect(audit.map((e) => e.data.account)).toContain(orphan);
  });

  it('removing the resource during a grant ends its session and removes the role, from the record of the resource as it was', async () => {
    const res = await jitResource(SINGLE_USER, { ephemeral: { grants: ['app_read'] } });
    await g.gw.engine.leases.checkout('alice', res);
    const c = await gatewayClient(res);
    const name: string = (await c.query('SELECT current_user')).rows[0].current_user;
    const ended = firstError(c);
    await g.gw.engine.directory.removeResource('admin', res);
    expect(await eventually(async () => (await role(name)) === undefined)).toBe(true);
    expect((await ended).code).toBe('57P01');
    const [record] = await g.gw.store.listJitAccounts({ resource: res });
    expect(record).toMatchObject({ account: name, state: 'gone' });
    expect((await g.gw.store.listAudit({ action: 'jit.remove' })).find((e) => e.data.account === name)?.data.reason).toBe('resource removed');
    await c.end().catch(() => {});
  });
});

describe('PostgreSQL provisioner: the marker holds for every change remove makes (security review)', () => {
  /** `remove(name)`, with `change` run right after the provisioner's own look-up of `name` (a change racing the removal). */
  async function removeRacing(t: JitTarget, name: string, change: () => Promise<unknown>): Promise<RemoveResult> {
    const p = prov as unknown as { run: (...args: unknown[]) => Promise<unknown> };
    const original = p.run;
    p.run = async function (this: unknown, ...args: unknown[]) {
      const r = await original.apply(this, args);
      const steps = args[2] as Array<{ what: string }>;
      if (steps[0]?.what === `looking up ${name}`) await change();
      return r;
    };
    try {
      return await prov.remove(t, name);
    } finally {
      p.run = original;
    }
  }

  it('a role that loses its marker after the look-up is not locked, not emptied, its session not ended, not dropped', async () => {
    const t = await target({ ephemeral: { grants: ['app_ddl'] } });
    const name = unique('gh_alice');
    const creds = await prov.create(t, spec(name));
    const c = await direct(name, creds.password!);
    await c.query(`CREATE TABLE public.${name}_k (x int)`);
    const errors: unknown[] = [];
    c.on('error', (e) => errors.push(e));
    const result = await removeRacing(t, name, () => g.superQuery(`REVOKE gatehouse_ephemeral FROM ${name}`));
    expect(result.done).toBe(true);
    expect(result.detail).toMatch(/left alone/);
    expect((await role(name))!.rolcanlogin).toBe(true);
    expect((await g.superQuery(`SELECT tableowner FROM pg_tables WHERE tablename = '${name}_k'`)).rows[0].tableowner).toBe(name);
    expect((await c.query('SELECT current_user')).rows[0].current_user).toBe(name);
    expect(errors).toEqual([]);
    await c.end();
    await g.superQuery(`DROP TABLE public.${name}_k; DROP ROLE ${name}`);
  });

  it('a role dropped and made again by hand under the same name after the look-up is left alone', async () => {
    const t = await target({ ephemeral: { grants: ['app_read'] } });
    const name = unique('gh_alice');
    await prov.create(t, spec(name));
    const pw = secret();
    const result = await removeRacing(t, name, () => g.superQuery(`DROP ROLE ${name}; CREATE ROLE ${name} LOGIN PASSWORD '${pw}'`));
    expect(result.done).toBe(true);
    expect((await role(name))!.rolcanlogin).toBe(true);
    const c = await direct(name, pw);
    expect((await c.query('SELECT current_user')).rows[0].current_user).toBe(name);
    await c.end();
    await g.superQuery(`DROP ROLE ${name}`);
  });
});

describe('PostgreSQL provisioner: the inheritor must hold no rights (security review)', () => {
  it('refuses an inheritor that can log in, has role attributes or memberships, or is a superuser, and leaves no role behind', async () => {
    const owner = unique('app_owner');
    await g.superQuery(`CREATE ROLE ${owner} LOGIN PASSWORD '${secret()}'; GRANT SELECT ON public.payroll TO ${owner}`);
    // Objects a temporary role made (a SECURITY DEFINER function, say) would run with the inheritor's rights once handed over.
    for (const [inheritor, login] of [[owner, admin], ['postgres', { login: g.target.superuser, password: g.target.superuserPassword }]] as const) {
      const name = unique('gh_alice');
      const e = await jitError(prov.create(await target({ ephemeral: { grants: ['app_ddl'], inheritor } }, login), spec(name)));
      expect(e.kind).toBe('invalid');
      expect(e.message).toContain(`the inheritor ${inheritor}`);
      expect(await role(name)).toBeUndefined();
    }
    // The default inheritor, made by Gatehouse, is fine.
    const ok = unique('gh_alice');
    const t = await target({ ephemeral: { grants: ['app_read'] } });
    await prov.create(t, spec(ok));
    expect(await prov.remove(t, ok)).toEqual({ done: true });
  });
});
