import type { Refusal, RefusalCode } from '../../src/broker/port.js';
import { refusalFamily } from '../../src/broker/refusals.js';
import type { TargetSaid } from '../../src/broker/upstream-error.js';
import { errorResponse, noticeResponse, type ErrorFields } from './codec.js';

/**
 * The SQLSTATE of every refusal, so a driver can tell "who are you" (28000/28P01) from "not
 * now" (42501), "no such database here" (3D000) and "try again" (57P03, 53300). A new
 * refusal code does not compile until it has a row here. README.md lists the same table.
 */
export const SQLSTATE: Record<RefusalCode, string> = {
  // The decision.
  resource_unknown: '3D000',
  // From psql's side the resource is not a database this gateway serves: like an unknown one.
  wrong_protocol: '3D000',
  user_unknown: '28000',
  user_disabled: '28000',
  mfa_not_enrolled: '28000',
  mfa_required: '28000',
  mfa_invalid: '28000',
  mfa_replayed: '28000',
  not_on_access_list: '42501',
  outside_schedule: '42501',
  approval_required: '42501',
  approval_pending: '42501',
  grant_expired: '42501',
  checkout_required: '42501',
  checked_out_by_other: '42501',
  gateway_unavailable: '57P03',
  // Sign-in.
  bad_login_name: '28000',
  bad_password: '28P01',
  bad_key: '28P01',
  no_secret: '28P01',
  bad_ticket: '28P01',
  ticket_other_user: '28P01',
  ticket_other_resource: '28P01',
  locked: '28000',
  throttled: '53300',
  // The door itself.
  tls_required: '28000',
  // PostgreSQL's own "canceling authentication due to timeout" (the door closes without it).
  handshake_timeout: '57014',
  protocol_error: '08P01',
  unsupported_auth: '28000',
  not_allowed: '0A000',
  too_many_connections: '53300',
  internal_error: 'XX000',
  // The target.
  target_unreachable: '08001',
  target_login_failed: '08001',
  target_identity: '08001',
  target_protocol: '08001',
  target_no_credentials: '08001',
  // The temporary account could not be made: the target refused the vaulted login a right.
  target_provisioning: '08004',
};

/** Why a refusal happened, for the DETAIL line (the code is what support asks for). */
function detailOf(code: RefusalCode, targetSaid: TargetSaid | undefined): string {
  const family = refusalFamily(code);
  switch (family) {
    case 'workflow':
      return `Denied by the access workflow (${code}).`;
    case 'identity':
      return `Refused at sign-in (${code}).`;
    case 'door':
      return `Refused by the gateway (${code}).`;
    case 'target': {
      const said = [targetSaid?.code, targetSaid?.message].filter(Boolean).join(' ');
      return said ? `The target said: ${said} (${code}).` : `The target could not be used (${code}).`;
    }
    default: {
      const never: never = family;
      throw new Error(`unknown refusal family ${String(never)}`);
    }
  }
}

/** A refusal as psql shows it: FATAL, `Gatehouse: <sentence>`, the code in DETAIL, the fix as HINT. */
export function refusalError(r: Refusal, targetSaid?: TargetSaid): Buffer {
  const f: ErrorFields = { severity: 'FATAL', code: SQLSTATE[r.code], message: `Gatehouse: ${r.message}`, detail: detailOf(r.code, targetSaid) };
  if (r.hint) f.hint = r.hint;
  return errorResponse(f);
}

/** The broker ended the session: FATAL admin_shutdown, the reason as the message. */
export function teardownError(message: string): Buffer {
  return errorResponse({ severity: 'FATAL', code: '57P01', message });
}

export function warningNotice(message: string): Buffer {
  return noticeResponse({ severity: 'WARNING', code: '01000', message });
}
