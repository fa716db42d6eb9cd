/**
 * What a browser shows when Gatehouse says no: an HTTP status from one table and a small page
 * of the gateway's own (never the app's) with the sentence, the refusal code, the command
 * that fixes it, and a link to the vault. A new refusal code does not compile until it has a
 * line here; README.md lists the same table.
 */
import type { Refusal, RefusalCode } from '../../src/broker/port.js';
import { escapeHtml } from './codec.js';

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
};

/** The gateway's page for a refusal or an ended session. */
export function refusalPage(title: string, r: Refusal | { code: string; message: string; hint?: string }, vaultUrl: string | undefined): string {
  const fix = r.hint ? `<p>To fix: <code>${escapeHtml(r.hint)}</code></p>` : '';
  const vault = vaultUrl ? `<p><a href="${escapeHtml(vaultUrl)}">Open the Gatehouse vault</a></p>` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Gatehouse: ${escapeHtml(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1b1f24}code{background:#f0f2f4;padding:.1rem .3rem}</style>
</head><body><h1>${escapeHtml(title)}</h1>
<p id="gatehouse-reason">Gatehouse: ${escapeHtml(r.message)} <small>(${escapeHtml(r.code)})</small></p>
${fix}${vault}</body></html>
`;
}
