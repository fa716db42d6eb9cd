import { StoreError } from '../../core/errors.js';
/** Applies every migration newer than the stored schema version, all in one IMMEDIATE transaction. */
export function migrate(db, migrations) {
    const latest = migrations.reduce((max, m) => Math.max(max, m.version), 0);
    const apply = db.transaction(() => {
        db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, ' +
            "applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))");
        // Read inside the write lock: another process may have migrated while we waited.
        const current = Number(db.prepare('SELECT coalesce(max(version), 0) FROM schema_version').pluck().get());
        if (current > latest) {
            throw new StoreError(`database schema version ${current} is newer than this Gatehouse supports (${latest})`);
        }
        const record = db.prepare('INSERT INTO schema_version (version, name) VALUES (?, ?)');
        for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
            if (m.version <= current)
                continue;
            db.exec(m.sql);
            record.run(m.version, m.name);
        }
    });
    apply.immediate();
}
//# sourceMappingURL=migrate.js.map