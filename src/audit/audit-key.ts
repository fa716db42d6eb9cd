/**
 * The audit chain's key: `GATEHOUSE_AUDIT_KEY` (base64, 32 bytes; every node of a cluster
 * needs the same one), else the key file (`auditKeyFile`, default `<data>/audit.key`),
 * created on first run. Kept apart from the master key so that it can live somewhere the
 * database's host cannot read.
 *
 * A chain written before the key file existed was keyed from the master key; that key is
 * carried into the file only if it really is the chain's key (it verifies the newest entry).
 * Any other missing key fails closed: a node must never extend the chain with a wrong key.
 */
import { SystemClock } from '../core/clock.js';
import { GatehouseError } from '../core/errors.js';
import type { AuditEntry } from '../core/model.js';
import { loadOrCreateKeyFile, parseKey } from '../secrets/master-key.js';
import type { Store } from '../store/store.js';
import { AuditLog } from './audit-log.js';

export const AUDIT_KEY_ENV = 'GATEHOUSE_AUDIT_KEY';

export async function loadAuditKey(opts: { file: string; store: Store; legacyKey: () => Buffer; env?: NodeJS.ProcessEnv }): Promise<Buffer> {
  const fromEnv = (opts.env ?? process.env)[AUDIT_KEY_ENV];
  if (fromEnv !== undefined && fromEnv.trim() !== '') return parseKey(fromEnv, `environment variable ${AUDIT_KEY_ENV}`, 'audit key');
  const newest: AuditEntry | undefined = (await opts.store.listAudit({ limit: 1, newest: true }))[0];
  return loadOrCreateKeyFile(opts.file, 'audit key', () => {
    if (!newest) return undefined;
    const legacy = opts.legacyKey();
    const probe = new AuditLog({ store: opts.store, key: legacy, clock: new SystemClock() });
    if (probe.mac(newest) === newest.mac) return legacy;
    throw new GatehouseError(
      'CONFIG_INVALID',
      `the audit log has entries but its key is missing (${opts.file}): copy audit.key from the node that wrote them, or set ${AUDIT_KEY_ENV} on every node`,
      { source: opts.file },
    );
  });
}
