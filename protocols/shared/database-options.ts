import { ValidationError } from '../../src/core/errors.js';
import { positive } from './listener.js';

export { positive } from './listener.js';

/** TLS to a target without a configured CA. */
export type UpstreamTlsMode = 'prefer' | 'require' | 'disable';

/** Options every database gateway (PostgreSQL, MySQL) takes. */
export interface DatabaseAdapterOptions {
  /**
   * CA bundles (PEM) that targets' TLS certificates must chain to, by resource name; the key
   * '*' applies to every resource without its own entry. When a CA applies, the target must
   * offer TLS and its certificate must name the resource's host.
   */
  upstreamCa?: Record<string, string>;
  /**
   * TLS to targets without a CA entry: 'prefer' (default: when the target offers it),
   * 'require', or 'disable' (targets on loopback or a trusted link only).
   */
  upstreamTls?: UpstreamTlsMode;
  /** Connect + login to a target (default 10 s). */
  upstreamTimeoutMs?: number;
  /** From accept to the first byte relayed (default 30 s). */
  handshakeTimeoutMs?: number;
  /** Bytes of SQL captured per statement for the audit (default 4096). */
  auditSqlLimit?: number;
}

export interface ResolvedDatabaseOptions {
  upstreamTls: UpstreamTlsMode;
  upstreamTimeoutMs: number;
  handshakeTimeoutMs: number;
  auditSqlLimit: number;
}

/** Validates the shared options once, at construction, and fills the defaults. */
export function resolveDatabaseOptions(o: DatabaseAdapterOptions): ResolvedDatabaseOptions {
  if (o.upstreamTls !== undefined && !['prefer', 'require', 'disable'].includes(o.upstreamTls)) {
    throw new ValidationError('upstreamTls', "must be 'prefer', 'require' or 'disable'");
  }
  for (const [name, pem] of Object.entries(o.upstreamCa ?? {})) {
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ValidationError(`upstreamCa.${name}`, 'must be a PEM certificate bundle');
  }
  return {
    upstreamTls: o.upstreamTls ?? 'prefer',
    upstreamTimeoutMs: positive('upstreamTimeoutMs', o.upstreamTimeoutMs, 10_000),
    handshakeTimeoutMs: positive('handshakeTimeoutMs', o.handshakeTimeoutMs, 30_000),
    auditSqlLimit: positive('auditSqlLimit', o.auditSqlLimit, 4096, true),
  };
}
