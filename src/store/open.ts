import { GatehouseError } from '../core/errors.js';
import { SqliteStore } from './sqlite/sqlite-store.js';
import type { Store } from './store.js';

export interface StoreOptions {
  /** Backend; only the embedded SQLite store exists so far. */
  kind?: 'sqlite';
  /** Database file, or ':memory:' for a throwaway store. */
  path: string;
}

/** Opens the configured store, running pending migrations. Fails with STORE_FAILURE if the file cannot be opened. */
export function openStore(opts: StoreOptions): Store {
  // Config files are parsed at runtime, so the kind may be anything the user typed.
  const kind: string = opts.kind ?? 'sqlite';
  if (kind !== 'sqlite') {
    throw new GatehouseError('CONFIG_INVALID', `store.kind: unsupported store '${kind}' (supported: sqlite)`, {
      field: 'store.kind',
      kind,
    });
  }
  return SqliteStore.open(opts.path);
}
