/**
 * Issue 17, crash acceptance: `gatehouse serve` makes a temporary PostgreSQL role for a
 * check-out, is killed with SIGKILL during the grant, and starts again after the grant's
 * deadline. Its first JIT sweep must remove the orphaned role (and audit it) while a role
 * made by hand with a similar name, without the Gatehouse marker, survives.
 *
 * The deadline passes while the node is down by moving the lease's and the account's times
 * back in the store: the node runs on the real clock, and an hour-long wait is no test.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres, type PostgresTarget } from '../targets/index.js';
import { ALWAYS, freshDatabase, PASSWORD, pgUrl, seedPeople, startNode, tempDir } from './cluster-harness.js';
import { ensureBuilt, ServeProcess } from './serve-process.js';

let target: PostgresTarget;
let storeUrl = '';
let dir = '';
let node: ServeProcess;
let token = '';

async function onTarget<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: pgUrl(target) });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

async function onStore<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: storeUrl });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

const roleExists = async (name: string): Promise<boolean> => (await onTarget('SELECT 1 FROM pg_roles WHERE rolname = $1', [name])).length === 1;

async function until(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    if (await check()) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}\n${node.log()}`);
}

beforeAll(async () => {
  ensureBuilt();
  target = await startPostgres();
  storeUrl = await freshDatabase(target);
  dir = tempDir('gh-jit-crash-');
  const seeder = await startNode('seed', storeUrl, dir);
  const adminPassword = seeder.firstRunAdmin!.password!;
  await seedPeople(seeder);
  const d = seeder.engine.directory;
  await d.addResource('admin', {
    name: 'db', type: 'database', protocol: 'postgres', host: target.host, port: target.port, database: target.database, owner: 'bob',
    access: [{ team: 'eng' }], credentials: { login: target.superuser, password: target.superuserPassword },
    settings: { limitAccessTime: ALWAYS, singleUser: true },
  });
  await d.setJit('admin', 'db', { ephemeral: { grants: ['pg_read_all_data'] } });
  await seeder.close();
  const passwordFile = join(dir, 'admin-password');
  writeFileSync(passwordFile, adminPassword, { mode: 0o600 });
  node = new ServeProcess({ name: 'n', storeUrl, dataDir: join(dir, 'n'), adminPasswordFile: passwordFile });
  await node.start();
  const res = await fetch(`${node.api}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'alice', password: PASSWORD }) });
  token = ((await res.json()) as { token: string }).token;
}, 300_000);

afterAll(async () => {
  await node?.kill();
  await target?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('JIT accounts across a gateway crash', () => {
  it('removes the orphaned account of an ended grant in the first sweep after a SIGKILL, and never a look-alike without the marker', async () => {
    const checkout = await fetch(`${node.api}/api/v1/resources/db/checkout`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    expect(checkout.status).toBe(200);
    const client = new pg.Client({
      host: 'localhost', port: node.postgresPort, user: 'alice:db', password: PASSWORD, database: target.database,
      ssl: { ca: readFileSync(node.caPath, 'utf8') }, connectionTimeoutMillis: 10_000,
    });
    client.on('error', () => undefined);
    await client.connect();
    const account = (await client.query<{ current_user: string }>('select current_user')).rows[0]!.current_user;
    expect(account).toMatch(/^gh_alice_[a-z0-9]{8}$/);
    // A role an administrator made by hand, named like Gatehouse's but without its marker.
    const lookalike = `${account.slice(0, -8)}byhand00`;
    await onTarget(`CREATE ROLE ${lookalike} LOGIN PASSWORD 'x'`);

    await node.kill();
    await client.end().catch(() => undefined);
    expect(await roleExists(account)).toBe(true);
    const [rec] = await onStore<{ state: string; lease_id: string }>('SELECT state, lease_id FROM jit_accounts WHERE account = $1', [account]);
    expect(rec?.state).toBe('active');
    // The grant's deadline passes while the node is down.
    await onStore("UPDATE leases SET started_at = started_at - interval '2 hours', expires_at = now() - interval '1 minute' WHERE id = $1", [rec!.lease_id]);
    await onStore("UPDATE jit_accounts SET deadline = now() - interval '1 minute' WHERE account = $1", [account]);

    await node.start();
    const ms = await until(`${account} to be removed`, async () => !(await roleExists(account)));
    expect(ms).toBeLessThan(10_000);
    const audit = await onStore<{ action: string; data: { account?: string; reason?: string } }>(
      "SELECT action, data::jsonb AS data FROM audit WHERE action LIKE 'jit.%' ORDER BY seq",
    );
    expect(audit.map((a) => a.action)).toEqual(['jit.create', 'jit.remove']);
    expect(audit[1]!.data.account).toBe(account);
    const [after] = await onStore<{ state: string }>('SELECT state FROM jit_accounts WHERE account = $1', [account]);
    expect(after?.state).toBe('gone');
    expect(await roleExists(lookalike)).toBe(true);
    await onTarget(`DROP ROLE ${lookalike}`);
  }, 120_000);
});
