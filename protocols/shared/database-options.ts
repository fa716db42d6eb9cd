import { ValidationError } from '../../src/core/errors.js';
import { positive } from './listener.js';

export { positive } from './listener.js';

/**
 * TLS to a target without a configured CA: 'require' (the default: TLS, with the target's
 * certificate pinned on first use through port.verifyTarget) or 'disable' (benchmarks and
 * tests only, see `upstreamTls`). There is no 'prefer': a target that may decline TLS is a
 * per-resource decision (`ResourceOptions.allowPlaintextUpstream`), audited when set.
 */
export type UpstreamTlsMode = 'require' | 'disable';
export const UpstreamTlsModes: readonly UpstreamTlsMode[] = ['require', 'disable'];

/** Options every database gateway (PostgreSQL, MySQL) takes. */
export interface DatabaseAdapterOptions {
  /**
   * CA bundles (PEM) that targets' TLS certificates must chain to, by resource name; the key
   * '*' applies to every resource without its own entry. When a CA applies, the target must
   * offer TLS and its certificate must name the resource's host.
   */
  upstreamCa?: Record<string, string>;
  /**
   * TLS to targets without a CA entry. 'require' (default): the target must accept TLS and its
   * certificate is pinned on first use. 'disable' is for benchmarks and tests of the
   * plaintext leg: the PostgreSQL door then skips TLS for the resources that allow a plaintext
   * target (`allowPlaintextUpstream`) and still requires it for every other resource; the
   * MySQL door skips TLS to every target without a CA (and never sends a clear password
   * without TLS).
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
  if (o.upstreamTls !== undefined && !UpstreamTlsModes.includes(o.upstreamTls)) {
    // 'prefer' was the default once: a target that declines TLS is now a per-resource choice.
    throw new ValidationError('upstreamTls', "must be 'require' or 'disable' (a plaintext target is allowed per resource: options.allowPlaintextUpstream)");
  }
  for (const [name, pem] of Object.entries(o.upstreamCa ?? {})) {
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ValidationError(`upstreamCa.${name}`, 'must be a PEM certificate bundle');
  }
  return {
    upstreamTls: o.upstreamTls ?? 'require',
    upstreamTimeoutMs: positive('upstreamTimeoutMs', o.upstreamTimeoutMs, 10_000),
    handshakeTimeoutMs: positive('handshakeTimeoutMs', o.handshakeTimeoutMs, 30_000),
    auditSqlLimit: positive('auditSqlLimit', o.auditSqlLimit, 4096, true),
  };
}
