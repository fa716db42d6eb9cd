import { GatehouseError } from '../core/errors.js';
import { PostgresStore } from './postgres/postgres-store.js';
import { SqliteStore } from './sqlite/sqlite-store.js';
import type { Store } from './store.js';

export interface SqliteStoreOptions {
  /** Backend; SQLite when omitted. */
  kind?: 'sqlite';
  /** Database file, or ':memory:' for a throwaway store. */
  path: string;
}

export interface PostgresStoreOptions {
  kind: 'postgres';
  /** Connection string, e.g. postgres://gatehouse:PW@db:5432/gatehouse. */
  url: string;
}

export type StoreOptions = SqliteStoreOptions | PostgresStoreOptions;

/**
 * Opens the configured store, running pending migrations. SQLite opens synchronously (the
 * embedded default); PostgreSQL resolves once connected and migrated. Configuration
 * mistakes throw CONFIG_INVALID at once; an unreachable database fails with STORE_FAILURE.
 */
export function openStore(opts: SqliteStoreOptions): Store;
export function openStore(opts: PostgresStoreOptions): Promise<Store>;
export function openStore(opts: StoreOptions): Store | Promise<Store>;
export function openStore(opts: StoreOptions): Store | Promise<Store> {
  // Config files are parsed at runtime, so the kind may be anything the user typed.
  const kind: string = opts.kind ?? 'sqlite';
  if (kind === 'sqlite') return SqliteStore.open((opts as SqliteStoreOptions).path);
  if (kind === 'postgres') {
    const url: unknown = (opts as Partial<PostgresStoreOptions>).url;
    if (typeof url !== 'string' || url === '') {
      throw new GatehouseError('CONFIG_INVALID', "store.kind: 'postgres' needs store.url (a connection string)", {
        field: 'store.url',
        kind,
      });
    }
    return PostgresStore.open(url);
  }
  throw new GatehouseError('CONFIG_INVALID', `store.kind: unsupported store '${kind}' (supported: sqlite, postgres)`, {
    field: 'store.kind',
    kind,
  });
}
