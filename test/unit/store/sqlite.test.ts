import Database from 'better-sqlite3';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreError } from '../../../src/core/errors.js';
import { sqliteMigrations } from '../../../src/store/migrations/sqlite.js';
import { openStore } from '../../../src/store/open.js';
import { migrate } from '../../../src/store/sqlite/migrate.js';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store.js';
import { storeContract } from './contract.js';
import { at, T0 } from './fixtures.js';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'gatehouse-store-'));
}

storeContract(
  'SqliteStore (file)',
  async () => {
    const dir = await tempDir();
    const path = join(dir, 'gatehouse.db');
    return {
      store: SqliteStore.open(path),
      reopen: async () => SqliteStore.open(path),
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  },
  { persistent: true },
);

storeContract('SqliteStore (:memory:)', async () => ({ store: SqliteStore.open(':memory:'), cleanup: async () => {} }));

describe('SqliteStore specifics', () => {
  let dir: string;
  let path: string;
  const open: SqliteStore[] = [];
  const raw: Database.Database[] = [];

  beforeEach(async () => {
    dir = await tempDir();
    path = join(dir, 'gatehouse.db');
  });
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
    for (const db of raw.splice(0)) db.close();
    await rm(dir, { recursive: true, force: true });
  });

  function openStoreAt(p = path): SqliteStore {
    const s = SqliteStore.open(p);
    open.push(s);
    return s;
  }
  function rawDb(): Database.Database {
    const db = new Database(path);
    raw.push(db);
    return db;
  }
  const versions = (db: Database.Database): number[] =>
    db.prepare('SELECT version FROM schema_version ORDER BY version').pluck().all() as number[];

  it('numbers migrations uniquely and in ascending order', () => {
    const numbers = sqliteMigrations.map((m) => m.version);
    expect(numbers[0]).toBe(1);
    expect(numbers).toEqual([...new Set(numbers)].sort((a, b) => a - b));
  });

  it('records every migration on a fresh file and re-applies none on reopen', async () => {
    await openStoreAt().close();
    await openStoreAt().close();
    expect(versions(rawDb())).toEqual(sqliteMigrations.map((m) => m.version));
  });

  it('applies only migrations newer than the stored version', async () => {
    await openStoreAt().close();
    const db = rawDb();
    const next = { version: 1000, name: 'extra', sql: 'CREATE TABLE extra (x INTEGER);' };
    // Re-running 001 would fail on CREATE TABLE users, so success proves it was skipped.
    migrate(db, [...sqliteMigrations, next]);
    expect(versions(db)).toContain(1000);
    expect(db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'extra'").pluck().get()).toBe(1);
  });

  it('rolls a failing migration back completely', async () => {
    await openStoreAt().close();
    const db = rawDb();
    const broken = { version: 1000, name: 'broken', sql: 'CREATE TABLE half (x); SELECT * FROM missing_table;' };
    expect(() => migrate(db, [...sqliteMigrations, broken])).toThrow(/missing_table/);
    expect(versions(db)).not.toContain(1000);
    expect(db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'half'").pluck().get()).toBe(0);
  });

  it('refuses a database written by a newer schema', async () => {
    await openStoreAt().close();
    rawDb().prepare("INSERT INTO schema_version (version, name) VALUES (9999, 'future')").run();
    const err = (() => {
      try {
        openStoreAt();
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).message).toMatch(/schema version 9999 is newer/);
  });

  it('uses WAL journaling and stores times as ISO strings', async () => {
    const store = openStoreAt();
    await store.putTeam({ name: 'ops', createdAt: T0 });
    const db = rawDb();
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.prepare("SELECT created_at FROM teams WHERE name = 'ops'").pluck().get()).toBe(T0.toISOString());
  });

  it('prunes TOTP steps older than a day while recording new ones', async () => {
    const store = openStoreAt();
    await store.useTotpStep('alice', 1, at(0));
    await store.useTotpStep('alice', 2, at(60));
    await store.useTotpStep('alice', 3, at(25 * 60));
    const steps = rawDb().prepare("SELECT step FROM totp_steps WHERE user = 'alice' ORDER BY step").pluck().all();
    expect(steps).toEqual([2, 3]);
  });

  it('fails to open an unreachable path with STORE_FAILURE', () => {
    expect(() => openStoreAt(join(dir, 'no', 'such', 'dir', 'db.sqlite'))).toThrow(
      expect.objectContaining({ code: 'STORE_FAILURE' }),
    );
  });
});

describe('openStore', () => {
  it('opens the SQLite store by default', async () => {
    const store = openStore({ path: ':memory:' });
    expect(store.kind).toBe('sqlite');
    await store.setMeta('k', 'v');
    expect(await store.getMeta('k')).toBe('v');
    await store.close();
  });

  it('rejects an unknown kind with CONFIG_INVALID naming the field', () => {
    const opts = { kind: 'postgres', path: 'x' } as unknown as Parameters<typeof openStore>[0];
    expect(() => openStore(opts)).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringMatching(/store\.kind.*postgres/) }),
    );
  });
});
