/**
 * The Store contract against a real PostgreSQL, plus what only a shared database adds:
 * migrations guarded against two nodes starting at once, and check-out races between
 * separate connection pools (separate "nodes"), which only the database can settle.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { GatehouseError } from '../../../src/core/errors.js';
import type { Logger } from '../../../src/core/log.js';
import { postgresMigrations } from '../../../src/store/migrations/postgres.js';
import { openStore } from '../../../src/store/open.js';
import { migrate } from '../../../src/store/postgres/migrate.js';
import { PostgresStore } from '../../../src/store/postgres/postgres-store.js';
import { startPostgres, type PostgresTarget } from '../../targets/index.js';
import { storeContract } from './contract.js';
import * as f from './fixtures.js';

const TABLES = [
  'users', 'teams', 'roles', 'resources', 'requests', 'leases', 'delegations',
  'totp_steps', 'tickets', 'tokens', 'sessions', 'jit_accounts', 'audit', 'meta',
];

let target: PostgresTarget | undefined;
let admin: pg.Client | undefined;
let url = '';

function urlFor(t: PostgresTarget, database: string): string {
  const auth = `${encodeURIComponent(t.superuser)}:${encodeURIComponent(t.superuserPassword)}`;
  return `postgres://${auth}@${t.host}:${t.port}/${database}`;
}

/** A fresh, empty database on the shared server. */
async function createDatabase(): Promise<string> {
  if (!target || !admin) throw new Error('PostgreSQL target not started');
  const name = `gh_store_${randomBytes(6).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${name}`);
  return urlFor(target, name);
}

beforeAll(async () => {
  target = await startPostgres();
  admin = new pg.Client({ connectionString: urlFor(target, 'postgres') });
  await admin.connect();
  url = await createDatabase();
  // Migrate once up front, so each contract test only truncates.
  await (await PostgresStore.open(url)).close();
});

afterAll(async () => {
  await admin?.end();
  await target?.stop();
});

storeContract(
  'PostgresStore',
  async () => {
    const store = await PostgresStore.open(url, { poolSize: 4 });
    const raw = new pg.Client({ connectionString: url });
    await raw.connect();
    try {
      await raw.query(`TRUNCATE ${TABLES.join(', ')}`);
    } finally {
      await raw.end();
    }
    return { store, reopen: () => PostgresStore.open(url, { poolSize: 4 }), cleanup: async () => {} };
  },
  { persistent: true },
);

describe('PostgresStore specifics', () => {
  async function withClient<T>(dbUrl: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const c = new pg.Client({ connectionString: dbUrl });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  }
  const versions = (dbUrl: string): Promise<number[]> =>
    withClient(dbUrl, async (c) => {
      const { rows } = await c.query<{ version: number }>('SELECT version FROM schema_version ORDER BY version');
      return rows.map((r) => r.version);
    });

  it('migrates a fresh database once when several nodes open it at the same moment', async () => {
    const dbUrl = await createDatabase();
    const stores = await Promise.all(Array.from({ length: 5 }, () => PostgresStore.open(dbUrl, { poolSize: 2 })));
    await Promise.all(stores.map((s) => s.close()));
    expect(await versions(dbUrl)).toEqual(postgresMigrations.map((m) => m.version));
  });

  it('applies only newer migrations, rolls a failing one back, and refuses a newer schema', async () => {
    const dbUrl = await createDatabase();
    await (await PostgresStore.open(dbUrl)).close();
    await withClient(dbUrl, async (c) => {
      // Re-running 001 would fail on CREATE TABLE users, so success proves it was skipped.
      await migrate(c, [...postgresMigrations, { version: 1000, name: 'extra', sql: 'CREATE TABLE extra (x int)' }]);
      const broken = { version: 1001, name: 'broken', sql: 'CREATE TABLE half (x int); SELECT * FROM missing_table' };
      await expect(migrate(c, [...postgresMigrations, broken])).rejects.toThrow(/missing_table/);
      expect((await c.query("SELECT to_regclass('half') AS t")).rows[0].t).toBeNull();
      expect((await c.query("SELECT to_regclass('extra') AS t")).rows[0].t).toBe('extra');
      await c.query("INSERT INTO schema_version (version, name) VALUES (9999, 'future')");
    });
    expect(await versions(dbUrl)).toEqual([...postgresMigrations.map((m) => m.version), 1000, 9999]);
    await expect(PostgresStore.open(dbUrl)).rejects.toMatchObject({
      code: 'STORE_FAILURE',
      message: expect.stringMatching(/schema version 9999 is newer/),
    });
  });

  it('stores times as timestamptz and flags as booleans, and keeps audit data text verbatim', async () => {
    const dbUrl = await createDatabase();
    const store = await PostgresStore.open(dbUrl);
    try {
      await store.insertTicket(f.ticket('h1'));
      const data = { z: 1, a: { y: 2, b: 3 } };
      await store.appendAudit({ at: f.T0, actor: 'a', action: 'x', subject: 's', data }, f.seal);
      await withClient(dbUrl, async (c) => {
        const t = (await c.query('SELECT expires_at, mfa FROM tickets')).rows[0];
        expect(t.expires_at).toEqual(f.at(1));
        expect(t.mfa).toBe(true);
        expect((await c.query('SELECT data::text AS d FROM audit')).rows[0].d).toBe('{"z":1,"a":{"y":2,"b":3}}');
      });
    } finally {
      await store.close();
    }
  });

  it('fails to open an unreachable server with STORE_FAILURE, without the password in the message', async () => {
    const opening = PostgresStore.open('postgres://gh:s3cret-pw@127.0.0.1:1/nope');
    const err = (await opening.catch((e: unknown) => e)) as GatehouseError;
    expect(err.code).toBe('STORE_FAILURE');
    expect(err.message).toMatch(/127\.0\.0\.1:1\/nope/);
    expect(err.message).not.toContain('s3cret-pw');
  });

  it('survives the server killing its idle connections: logs a warning and reconnects', async () => {
    const dbUrl = await createDatabase();
    const warn = vi.fn();
    const store = await PostgresStore.open(dbUrl, { log: { warn } as unknown as Logger });
    try {
      await store.setMeta('k', 'before');
      const database = new URL(dbUrl).pathname.slice(1);
      await admin?.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [database]);
      await vi.waitFor(() => expect(warn).toHaveBeenCalled());
      expect(warn.mock.calls[0]?.[1]).toMatch(/idle PostgreSQL connection failed/);
      expect(await store.getMeta('k')).toBe('before');
    } finally {
      await store.close();
    }
  });

  it('admits exactly one of 100 check-outs racing from 10 separate nodes', async () => {
    const dbUrl = await createDatabase();
    const nodes = await Promise.all(Array.from({ length: 10 }, () => PostgresStore.open(dbUrl, { poolSize: 5 })));
    try {
      // Warm every pool so the attempts hit the database together rather than queue on connects.
      await Promise.all(nodes.flatMap((n) => Array.from({ length: 5 }, () => n.getMeta('warm'))));
      const attempts = nodes.flatMap((node, n) =>
        Array.from({ length: 10 }, (_, i) => node.insertLease(f.lease(`l-${n}-${i}`, { holder: `u-${n}-${i}` }))),
      );
      const settled = await Promise.allSettled(attempts);
      const winners = settled.flatMap((s, i) => (s.status === 'fulfilled' ? [i] : []));
      expect(winners).toHaveLength(1);
      const winner = `u-${Math.floor((winners[0] ?? 0) / 10)}-${(winners[0] ?? 0) % 10}`;
      const losers = settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as GatehouseError] : []));
      expect(losers.map((e) => e.code)).toEqual(Array(99).fill('CHECKED_OUT'));
      for (const e of losers) expect(e.details).toMatchObject({ resource: 'prod-pg', holder: winner });
      expect(await nodes[0]?.listLeases({ resource: 'prod-pg' })).toHaveLength(1);
      expect((await nodes[9]?.getHeldLease('prod-pg'))?.holder).toBe(winner);
    } finally {
      await Promise.all(nodes.map((n) => n.close()));
    }
  });

  it('keeps one gapless, linked audit chain when separate nodes append at once', async () => {
    const dbUrl = await createDatabase();
    const nodes = await Promise.all(Array.from({ length: 5 }, () => PostgresStore.open(dbUrl, { poolSize: 4 })));
    try {
      const draft = (actor: string) => ({ at: f.T0, actor, action: 'race', subject: 'chain', data: {} });
      const appends = nodes.flatMap((node, n) =>
        Array.from({ length: 10 }, (_, i) => node.appendAudit(draft(`a${n}-${i}`), f.seal)),
      );
      await Promise.all(appends);
      const chain = (await nodes[0]?.listAudit()) ?? [];
      expect(chain.map((e) => e.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
      chain.forEach((e, i) => expect(e.prev).toBe(i === 0 ? f.GENESIS : chain[i - 1]?.mac));
    } finally {
      await Promise.all(nodes.map((n) => n.close()));
    }
  });

  it('is what openStore returns for kind postgres', async () => {
    const store = await openStore({ kind: 'postgres', url });
    try {
      expect(store.kind).toBe('postgres');
      await store.setMeta('via-open', 'yes');
      expect(await store.getMeta('via-open')).toBe('yes');
    } finally {
      await store.close();
    }
  });
});
