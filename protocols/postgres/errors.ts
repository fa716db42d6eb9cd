import type { Denial } from '../../src/broker/broker.js';
import type { DenyCode } from '../../src/workflow/decide.js';
import { errorResponse, noticeResponse, type ErrorFields } from './codec.js';
import type { UpstreamError } from './upstream.js';

/**
 * SQLSTATEs for workflow denials. Identity failures are 28000 (invalid_authorization_
 * specification), workflow refusals 42501 (insufficient_privilege) so a driver can tell
 * "who are you" from "not now", an unknown resource reads like an unknown database.
 */
const DENIAL_SQLSTATE: Record<DenyCode, string> = {
  resource_unknown: '3D000',
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
};

/** A workflow denial as psql shows it: FATAL, the reason, and the fix as the HINT line. */
export function denialError(d: Denial): Buffer {
  const f: ErrorFields = { severity: 'FATAL', code: DENIAL_SQLSTATE[d.code], message: `Gatehouse: ${d.message}`, detail: `Denied by the access workflow (${d.code}).` };
  if (d.hint) f.hint = d.hint;
  return errorResponse(f);
}

export function passwordError(user: string): Buffer {
  return errorResponse({ severity: 'FATAL', code: '28P01', message: `Gatehouse: password authentication failed for user "${user}"`, hint: 'use your Gatehouse password, or a launch ticket from: gatehouse launch RESOURCE' });
}

export function ticketError(resource: string): Buffer {
  return errorResponse({
    severity: 'FATAL', code: '28P01', message: 'Gatehouse: the launch ticket is not valid (already used, expired, or issued for another user or resource)',
    hint: `get a fresh one: gatehouse launch ${resource}`,
  });
}

/** The user name does not say which resource to reach. */
export function addressingError(): Buffer {
  return errorResponse({ severity: 'FATAL', code: '28000', message: 'Gatehouse: no resource named in the connection', hint: 'connect as user=YOU:RESOURCE (or user=YOU dbname=RESOURCE)' });
}

export function tlsRequiredError(): Buffer {
  return errorResponse({ severity: 'FATAL', code: '28000', message: 'Gatehouse: this gateway accepts only TLS connections', hint: 'connect with sslmode=verify-full sslrootcert=ca.pem (or sslmode=require)' });
}

export function protocolError(message: string, code = '08P01'): Buffer {
  return errorResponse({ severity: 'FATAL', code, message });
}

/** The decision allowed the session but the target could not be reached or logged into. */
export function upstreamFailure(resource: string, e: UpstreamError): Buffer {
  const f: ErrorFields = { severity: 'FATAL', code: '08001', message: `Gatehouse could not connect to ${resource}: ${e.message}` };
  if (e.server?.C) f.detail = `The target said: ${e.server.C} ${e.server.M ?? ''}`.trim();
  return errorResponse(f);
}

export function internalError(): Buffer {
  return errorResponse({ severity: 'FATAL', code: 'XX000', message: 'Gatehouse: internal error; the connection was closed' });
}

/** The broker ended the session: FATAL admin_shutdown, the reason as the message. */
export function teardownError(message: string): Buffer {
  return errorResponse({ severity: 'FATAL', code: '57P01', message });
}

export function warningNotice(message: string): Buffer {
  return noticeResponse({ severity: 'WARNING', code: '01000', message });
}
