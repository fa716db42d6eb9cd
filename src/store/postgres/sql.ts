/** SQL helpers for PostgresStore: row cell shapes, identifier quoting, filters, statements, transactions. */
import pg from 'pg';
import type { Row } from '../sqlite/rows.js';

const JSON_OIDS = new Set([114, 3802]);

type Filters = Record<string, string | number | undefined>;
type Queryable = pg.Pool | pg.ClientBase;

/** JSON columns come back as their text (what rows.ts parses); every other type as pg parses it. */
export function getTypeParser(oid: number, format?: string): (value: string) => unknown {
  if (JSON_OIDS.has(oid)) return (value: string) => value;
  return (pg.types.getTypeParser as (oid: number, format?: string) => (value: string) => unknown)(oid, format);
}

/** Brings a PostgreSQL row to the cell shapes rows.ts reads: ISO text times, 0/1 flags. */
export function toCells(row: Record<string, unknown>): Row {
  const out: Row = {};
  for (const [key, value] of Object.entries(row)) {
    if (value instanceof Date) out[key] = value.toISOString();
    else if (typeof value === 'boolean') out[key] = value ? 1 : 0;
    else out[key] = value as string | number | null;
  }
  return out;
}

// Every column is quoted: `user` is reserved in PostgreSQL, and unquoted means current_user.
export function quote(column: string): string {
  return `"${column}"`;
}

export function where(filters: Filters): { clause: string; params: unknown[] } {
  const params: unknown[] = [];
  const terms: string[] = [];
  for (const [column, value] of Object.entries(filters)) {
    if (value === undefined) continue;
    params.push(value);
    terms.push(`${quote(column)} = $${params.length}`);
  }
  return { clause: terms.length ? ` WHERE ${terms.join(' AND ')}` : '', params };
}

/** Names the database without its password, for error messages. */
export function redactUrl(connectionString: string): string {
  try {
    const url = new URL(connectionString);
    return `postgres://${url.host}${url.pathname}`;
  } catch {
    return 'database';
  }
}

/** Runs `fn` in one transaction on one pooled connection; any throw rolls it back. */
export async function transaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  // A checked-out client has no pool listener; a connection lost mid-transaction must
  // reject the query in flight, not crash the process with an unhandled 'error' event.
  const onError = (): void => undefined;
  client.on('error', onError);
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (e) {
    await client.query('ROLLBACK').catch((rollbackError: unknown) => {
      broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
    });
    throw e;
  } finally {
    client.removeListener('error', onError);
    // Releasing with an error destroys a connection whose transaction state is unknown.
    client.release(broken);
  }
}

// Column names come from the row mappers in rows.ts, never from input.
export async function insert(db: Queryable, table: string, row: Row): Promise<void> {
  const cols = Object.keys(row);
  const sql = `INSERT INTO ${table} (${cols.map(quote).join(', ')}) VALUES (${placeholders(cols.length)})`;
  await db.query(sql, cols.map((c) => row[c]));
}

export async function upsert(db: Queryable, table: string, key: string, row: Row): Promise<void> {
  const cols = Object.keys(row);
  const updates = cols.filter((c) => c !== key).map((c) => `${quote(c)} = excluded.${quote(c)}`);
  const sql =
    `INSERT INTO ${table} (${cols.map(quote).join(', ')}) VALUES (${placeholders(cols.length)}) ` +
    `ON CONFLICT (${quote(key)}) DO UPDATE SET ${updates.join(', ')}`;
  await db.query(sql, cols.map((c) => row[c]));
}

/**
 * Several rows in one statement per chunk (PostgreSQL takes at most 65535 parameters), each
 * `INSERT ... ON CONFLICT DO UPDATE` when `key` is given. Every row must have the same columns
 * (rows.ts mappers give every column, null when absent); no two rows of a chunk may share a key.
 */
export async function insertMany(db: Queryable, table: string, list: readonly Row[], key?: string): Promise<void> {
  if (list.length === 0) return;
  const cols = Object.keys(list[0]!);
  const perChunk = Math.max(1, Math.floor(65535 / cols.length));
  const conflict = key
    ? ` ON CONFLICT (${quote(key)}) DO UPDATE SET ${cols.filter((c) => c !== key).map((c) => `${quote(c)} = excluded.${quote(c)}`).join(', ')}`
    : '';
  for (let at = 0; at < list.length; at += perChunk) {
    const chunk = list.slice(at, at + perChunk);
    const values = chunk.map((_, r) => `(${cols.map((_c, i) => `$${r * cols.length + i + 1}`).join(', ')})`);
    const sql = `INSERT INTO ${table} (${cols.map(quote).join(', ')}) VALUES ${values.join(', ')}${conflict}`;
    await db.query(sql, chunk.flatMap((row) => cols.map((c) => row[c])));
  }
}

function placeholders(n: number): string {
  return Array.from({ length: n }, (_, i) => `$${i + 1}`).join(', ');
}
