/**
 * The HTTP status of every refusal, for the doors that answer over HTTP (the browser door's
 * pages, the tunnel door's refusals before the WebSocket upgrade). A new refusal code does not
 * compile until it has a line here.
 */
import type { RefusalCode } from '../../src/broker/port.js';

export const STATUS_OF: Record<RefusalCode, number> = {
  // The decision: who you are is known, the workflow says not now.
  resource_unknown: 404,
  wrong_protocol: 404,
  user_unknown: 401,
  user_disabled: 403,
  mfa_not_enrolled: 403,
  mfa_required: 401,
  mfa_invalid: 401,
  mfa_replayed: 401,
  not_on_access_list: 403,
  outside_schedule: 403,
  approval_required: 403,
  approval_pending: 403,
  grant_expired: 403,
  checkout_required: 403,
  checked_out_by_other: 403,
  gateway_unavailable: 503,
  // Sign-in (the enter link's ticket).
  bad_login_name: 400,
  bad_password: 401,
  bad_key: 401,
  no_secret: 401,
  bad_ticket: 401,
  ticket_other_user: 401,
  ticket_other_resource: 401,
  locked: 429,
  throttled: 429,
  // The door's own.
  tls_required: 400,
  handshake_timeout: 408,
  protocol_error: 400,
  unsupported_auth: 400,
  not_allowed: 403,
  too_many_connections: 503,
  internal_error: 500,
  // The decision allowed it, the app could not be used.
  target_unreachable: 502,
  target_login_failed: 502,
  target_identity: 502,
  target_protocol: 502,
  target_no_credentials: 502,
  target_provisioning: 502,
};

