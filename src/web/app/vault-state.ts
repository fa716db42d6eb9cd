/// <reference lib="dom" />
import type { AccessRequest, ResourceView } from './types.js';

/**
 * The one action the vault offers for a resource, derived from the API's `state` for me.
 * Pure, so the mapping from workflow state to what a user can do is tested without a browser.
 */
export type VaultAction =
  | { kind: 'closed'; text: string }
  | { kind: 'held_by_other'; holder: string; until: string }
  | { kind: 'pending'; request: AccessRequest; approvals: string[]; needed: number }
  | { kind: 'request'; requireReason: boolean; requireTicket: boolean; ticketPattern?: string; lapsed: boolean }
  | { kind: 'checkout' }
  | { kind: 'checked_out'; until: string; timeLeftMs: number; mfa: boolean }
  | { kind: 'launch'; timeLeftMs?: number; mfa: boolean }
  | { kind: 'enrol_mfa'; holding: boolean }
  | { kind: 'unavailable'; text: string };

export function vaultAction(r: ResourceView): VaultAction {
  const s = r.state;
  const mfa = r.settings.mfa === true;
  if (s.code === 'outside_schedule') {
    return { kind: 'closed', text: `Outside the access schedule, ${s.nextWindow ?? 'no window in the next days'}` };
  }
  if (s.lease && !s.lease.mine) return { kind: 'held_by_other', holder: s.lease.holder, until: s.lease.expiresAt };
  if (s.request?.state === 'pending') {
    const req = s.request;
    const approval = r.settings.requireApproval;
    const needed = req.stage === 0 ? (approval?.approvals ?? 1) : (approval?.secondStage?.approvals ?? 1);
    const approvals = req.reviews.filter((x) => x.decision === 'approve' && x.stage === req.stage).map((x) => x.approver);
    return { kind: 'pending', request: req, approvals, needed };
  }
  switch (s.code) {
    case undefined:
      if (!s.canConnect) return { kind: 'unavailable', text: s.message ?? 'Not available right now.' };
      if (s.lease?.mine) return { kind: 'checked_out', until: s.lease.expiresAt, timeLeftMs: s.timeLeftMs ?? 0, mfa };
      return { kind: 'launch', mfa, ...(s.timeLeftMs !== undefined ? { timeLeftMs: s.timeLeftMs } : {}) };
    case 'approval_required':
    case 'approval_pending':
    case 'grant_expired': {
      const a = r.settings.requireApproval;
      return {
        kind: 'request', requireReason: a?.requireReason ?? false, requireTicket: a?.requireTicket ?? false,
        ...(a?.ticketPattern ? { ticketPattern: a.ticketPattern } : {}), lapsed: s.code === 'grant_expired',
      };
    }
    case 'checkout_required':
      return { kind: 'checkout' };
    case 'mfa_not_enrolled':
      return { kind: 'enrol_mfa', holding: s.lease?.mine === true };
    default:
      return { kind: 'unavailable', text: s.message ?? 'Not available right now.' };
  }
}

/** What the request form checks before it sends: the same rules the API applies. */
export function requestFormErrors(
  a: Pick<Extract<VaultAction, { kind: 'request' }>, 'requireReason' | 'requireTicket' | 'ticketPattern'>,
  reason: string,
  ticket: string,
): { reason?: string; ticket?: string } {
  const out: { reason?: string; ticket?: string } = {};
  if (a.requireReason && !reason.trim()) out.reason = 'A reason is required for this resource.';
  if (a.requireTicket && !ticket.trim()) out.ticket = 'A ticket id is required for this resource.';
  else if (ticket.trim() && a.ticketPattern) {
    let re: RegExp | undefined;
    try {
      re = new RegExp(a.ticketPattern);
    } catch {
      re = undefined;
    }
    if (re && !re.test(ticket.trim())) out.ticket = `The ticket id must match ${a.ticketPattern}.`;
  }
  return out;
}
