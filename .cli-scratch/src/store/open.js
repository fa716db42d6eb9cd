import { GatehouseError } from '../core/errors.js';
import { SqliteStore } from './sqlite/sqlite-store.js';
/** Opens the configured store, running pending migrations. Fails with STORE_FAILURE if the file cannot be opened. */
export function openStore(opts) {
    // Config files are parsed at runtime, so the kind may be anything the user typed.
    const kind = opts.kind ?? 'sqlite';
    if (kind !== 'sqlite') {
        throw new GatehouseError('CONFIG_INVALID', `store.kind: unsupported store '${kind}' (supported: sqlite)`, {
            field: 'store.kind',
            kind,
        });
    }
    return SqliteStore.open(opts.path);
}
//# sourceMappingURL=open.js.map