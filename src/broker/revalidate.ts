import type { Lease, TerminationReason } from '../core/model.js';
import type { DenyCode } from '../workflow/decide.js';
import type { Engine } from '../workflow/engine.js';
import { isGranted } from '../workflow/requests.js';
import type { Allowance } from './broker.js';

/** What a live session was opened under, as far as a re-check needs it. */
export interface SessionBasis {
  id: string;
  user: string;
  resource: string;
  leaseId?: string;
  requestId?: string;
}

export type Revalidation =
  /** Still allowed; the decision as it stands now (its deadline may have moved). */
  | { verdict: 'valid'; decision: Allowance }
  /** No longer allowed: end the session with this reason and message. */
  | { verdict: 'ended'; reason: TerminationReason; message: string }
  /** The store could not answer: nothing is known, the session keeps its known deadline. */
  | { verdict: 'unknown'; error: unknown };

/**
 * Re-checks a live session against the store, for when the revoke events that would have
 * ended it may have been missed (the cluster's event feed was down). Stricter than a new
 * decision: the session's own lease and grant must still stand, not merely some lease or
 * grant of the same user, and a session another node closed in the store is over.
 */
export async function revalidate(engine: Engine, s: SessionBasis): Promise<Revalidation> {
  const now = engine.ctx.clock.now();
  try {
    const gone = await basisGone(engine, s, now);
    if (gone) return gone;
  } catch (error) {
    return { verdict: 'unknown', error };
  }
  const d = await engine.explain(s.user, s.resource, now);
  if (d.allow) return { verdict: 'valid', decision: d };
  if (d.code === 'gateway_unavailable') return { verdict: 'unknown', error: new Error(d.message) };
  // The lease or grant may have ended between the reads above and the decision: name that cause when it is the one.
  const precise = await basisGone(engine, s, now).catch(() => undefined);
  return precise ?? ended(DENIAL_REASON[d.code], `Gatehouse: access to ${s.resource} is no longer allowed (${d.message}); session closed.`);
}

/** The session's own record, lease and grant: whether one of them says the session is over. */
async function basisGone(engine: Engine, s: SessionBasis, now: Date): Promise<Revalidation | undefined> {
  const { store } = engine.ctx;
  const rec = await store.getSession(s.id);
  if (rec?.state === 'ended') return ended('killed', `Gatehouse: this session was ended (${rec.endMessage || rec.endReason || 'closed elsewhere'}).`);
  if (s.leaseId) {
    const gone = leaseGone(await store.getLease(s.leaseId), now, s.resource);
    if (gone) return gone;
  }
  if (s.requestId) {
    const req = await store.getRequest(s.requestId);
    if (!req || !isGranted(req) || (req.grantEnd && req.grantEnd.getTime() <= now.getTime())) {
      return ended('request_revoked', `Gatehouse: access to ${s.resource} ended (${req?.endReason ?? req?.state ?? 'request removed'}); session closed.`);
    }
  }
  return undefined;
}

function ended(reason: TerminationReason, message: string): Revalidation {
  return { verdict: 'ended', reason, message };
}

function leaseGone(lease: Lease | undefined, now: Date, resource: string): Revalidation | undefined {
  if (!lease) return ended('checked_in', `Gatehouse: your check-out of ${resource} is gone; session closed.`);
  switch (lease.state) {
    case 'held':
      return lease.expiresAt.getTime() <= now.getTime() ? ended('expired', `Gatehouse: your check-out of ${resource} has ended; session closed.`) : undefined;
    case 'force_checked_in':
      return ended('force_checked_in', `Gatehouse: ${resource} was force checked in by ${lease.endedBy ?? 'an approver'}: ${lease.endReason ?? ''}; session closed.`);
    case 'checked_in':
      return ended('checked_in', `Gatehouse: ${resource} was checked in; session closed.`);
    case 'expired':
      return ended('expired', `Gatehouse: your check-out of ${resource} expired; session closed.`);
    default: {
      const never: never = lease.state;
      throw new Error(`unknown lease state ${String(never)}`);
    }
  }
}

/** Why a session ends when the decision now refuses what it allowed at connection start. */
const DENIAL_REASON: Record<DenyCode, TerminationReason> = {
  resource_unknown: 'resource_removed',
  wrong_protocol: 'settings_changed',
  user_unknown: 'user_disabled',
  user_disabled: 'user_disabled',
  not_on_access_list: 'settings_changed',
  outside_schedule: 'schedule_closed',
  approval_required: 'request_revoked',
  approval_pending: 'request_revoked',
  grant_expired: 'request_revoked',
  checkout_required: 'checked_in',
  checked_out_by_other: 'force_checked_in',
  mfa_not_enrolled: 'settings_changed',
  mfa_required: 'settings_changed',
  mfa_invalid: 'settings_changed',
  mfa_replayed: 'settings_changed',
  gateway_unavailable: 'error',
};
