import type pg from 'pg';
import { StoreError } from '../../core/errors.js';
import type { Migration } from '../migrations/sqlite.js';

/**
 * Advisory lock key held while migrating (transaction-scoped, so a crashed node frees it).
 * Any fixed bigint serves; it only has to differ from the other keys Gatehouse takes.
 */
export const MIGRATION_LOCK_KEY = 7_047_150_001;

/**
 * Applies every migration newer than the stored schema version in one transaction. Two
 * nodes starting together queue on the advisory lock, and the second reads the version
 * only after the first committed, so it applies nothing. DDL is transactional in
 * PostgreSQL, so a failing migration leaves no half-built schema behind.
 */
export async function migrate(client: pg.ClientBase, migrations: readonly Migration[]): Promise<void> {
  const latest = migrations.reduce((max, m) => Math.max(max, m.version), 0);
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(
      'CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, ' +
        'applied_at TIMESTAMPTZ NOT NULL DEFAULT now())',
    );
    const sql = 'SELECT coalesce(max(version), 0)::int AS v FROM schema_version';
    const { rows } = await client.query<{ v: number }>(sql);
    const current = rows[0]?.v ?? 0;
    if (current > latest) {
      throw new StoreError(`database schema version ${current} is newer than this Gatehouse supports (${latest})`);
    }
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (m.version <= current) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO schema_version (version, name) VALUES ($1, $2)', [m.version, m.name]);
    }
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  }
}
