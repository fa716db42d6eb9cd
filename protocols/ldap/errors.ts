/**
 * What an LDAP client shows when Gatehouse says no: an LDAP result code from one table and a
 * diagnosticMessage carrying the sentence, the refusal code and the command that fixes it
 * (`ldapsearch` prints it as "additional info:"). A refusal of a bind is the BindResponse; a
 * refusal of an operation is that operation's response; a refusal that ends the connection
 * is a Notice of Disconnection.
 */
import type { Refusal, RefusalCode } from '../../src/broker/port.js';
import { ResultCode } from './codec.js';

/**
 * The result code per refusal. Who-are-you refusals are invalidCredentials (49), so
 * libraries raise their "bad credentials" error; not-now refusals are
 * insufficientAccessRights (50); the gateway's own trouble is unavailable (52) or busy (51).
 * A new refusal code does not compile until it has a line here; README.md has the same table.
 */
export const RESULT_CODE_OF: Record<RefusalCode, number> = {
  // The decision.
  resource_unknown: ResultCode.invalidCredentials,
  wrong_protocol: ResultCode.invalidCredentials,
  user_unknown: ResultCode.invalidCredentials,
  user_disabled: ResultCode.invalidCredentials,
  mfa_not_enrolled: ResultCode.invalidCredentials,
  mfa_required: ResultCode.invalidCredentials,
  mfa_invalid: ResultCode.invalidCredentials,
  mfa_replayed: ResultCode.invalidCredentials,
  not_on_access_list: ResultCode.insufficientAccessRights,
  outside_schedule: ResultCode.insufficientAccessRights,
  approval_required: ResultCode.insufficientAccessRights,
  approval_pending: ResultCode.insufficientAccessRights,
  grant_expired: ResultCode.insufficientAccessRights,
  checkout_required: ResultCode.insufficientAccessRights,
  checked_out_by_other: ResultCode.insufficientAccessRights,
  gateway_unavailable: ResultCode.unavailable,
  // Sign-in.
  bad_login_name: ResultCode.invalidCredentials,
  bad_password: ResultCode.invalidCredentials,
  bad_key: ResultCode.invalidCredentials,
  // RFC 4513 5.1.2: an unauthenticated bind (a name, no password) is refused as unwilling.
  no_secret: ResultCode.unwillingToPerform,
  bad_ticket: ResultCode.invalidCredentials,
  ticket_other_user: ResultCode.invalidCredentials,
  ticket_other_resource: ResultCode.invalidCredentials,
  locked: ResultCode.invalidCredentials,
  throttled: ResultCode.busy,
  // The door's own.
  tls_required: ResultCode.confidentialityRequired,
  handshake_timeout: ResultCode.unavailable,
  protocol_error: ResultCode.protocolError,
  unsupported_auth: ResultCode.authMethodNotSupported,
  not_allowed: ResultCode.unwillingToPerform,
  too_many_connections: ResultCode.busy,
  internal_error: ResultCode.other,
  // The decision allowed it, the target could not be used.
  target_unreachable: ResultCode.unavailable,
  target_login_failed: ResultCode.unavailable,
  target_identity: ResultCode.unavailable,
  target_protocol: ResultCode.unavailable,
  target_no_credentials: ResultCode.unavailable,
  target_provisioning: ResultCode.unavailable,
};

/** One line for the diagnosticMessage: `Gatehouse: <sentence> (<code>) To fix: <command>`. */
export function diagnostic(r: Refusal, targetSaid?: string): string {
  const said = targetSaid ? ` The directory said: ${targetSaid}.` : '';
  return `Gatehouse: ${r.message} (${r.code})${said}${r.hint ? ` To fix: ${r.hint}` : ''}`;
}

/** A refusal the door makes of one operation (not a catalogue refusal): result code and sentence. */
export interface OperationRefusal {
  code: number;
  message: string;
}

export const opRefusal = (code: number, message: string): OperationRefusal => ({ code, message: `Gatehouse: ${message}` });
