/**
 * One error for every door's upstream leg: the target could not be reached, logged into or
 * trusted. `kind` is stable (doors and the audit branch on it); `targetSaid` carries the
 * target's own words where it gave some (a PostgreSQL ErrorResponse, a MySQL ERR).
 */
import type { TargetRefusalCode } from './refusals.js';

export const UpstreamErrorKinds = ['unreachable', 'timeout', 'tls', 'identity', 'login', 'capability', 'protocol', 'no_credentials'] as const;
export type UpstreamErrorKind = (typeof UpstreamErrorKinds)[number];

export interface TargetSaid {
  /** The target's own error code (SQLSTATE, MySQL errno...). */
  code?: string;
  message?: string;
  /** Extra fields a door may relay verbatim (e.g. MySQL's errno + SQLSTATE pair). */
  fields?: Record<string, string | number>;
}

export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamErrorKind,
    message: string,
    readonly targetSaid?: TargetSaid,
    /** The command that fixes it, when the gateway knows one (e.g. re-pinning a changed identity). */
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }

  get refusalCode(): TargetRefusalCode {
    return REFUSAL_OF[this.kind];
  }
}

const REFUSAL_OF: Record<UpstreamErrorKind, TargetRefusalCode> = {
  unreachable: 'target_unreachable',
  timeout: 'target_unreachable',
  tls: 'target_identity',
  identity: 'target_identity',
  login: 'target_login_failed',
  capability: 'target_protocol',
  protocol: 'target_protocol',
  no_credentials: 'target_no_credentials',
};
