import type { AccessRequest, RequestState, Review } from '../core/model.js';
import { ForbiddenError, GatehouseError, InvalidStateError } from '../core/errors.js';

/**
 * The access-request state machine, as pure functions.
 *
 *   pending ──approve (last stage complete)──▶ approved ──first connection──▶ active ──▶ ended
 *      │ deny / cancel / expire                 │ lapse / revoke                   grant end / revoke / check-in
 *      ▼                                        ▼
 *   denied | cancelled | expired             expired | ended
 *
 * Terminal states refuse every event. A transition returns the next record and why, or
 * null when the event changes nothing; a refusal throws a typed error.
 */

export const TERMINAL: ReadonlySet<RequestState> = new Set(['denied', 'cancelled', 'expired', 'ended']);

export const isPending = (r: AccessRequest): boolean => r.state === 'pending';
export const isGranted = (r: AccessRequest): boolean => r.state === 'approved' || r.state === 'active';
export const isResolved = (r: AccessRequest): boolean => TERMINAL.has(r.state);

export interface GrantRule {
  startOn: 'approval' | 'first_connection';
  maxDurationMs: number;
  /** How long an approved, not yet started grant stays usable. */
  useWithinMs: number;
}

export type RequestEvent =
  | {
      type: 'approve';
      by: string;
      /** The eligible approver this approval counts for (differs from `by` under delegation). */
      principal: string;
      at: Date;
      comment?: string;
      /** Who may approve the current stage now; approvals by anyone else do not count. */
      eligible: ReadonlySet<string>;
      required: number;
      /** Approvals needed by the next stage, if there is one. */
      nextStageRequired?: number;
      grant: GrantRule;
    }
  | { type: 'deny'; by: string; principal: string; at: Date; comment?: string; eligible: ReadonlySet<string> }
  | { type: 'cancel'; by: string; at: Date }
  | { type: 'remind'; by: string; at: Date; minIntervalMs: number }
  | { type: 'tick'; at: Date }
  | { type: 'activate'; at: Date; grant: GrantRule }
  | { type: 'end'; at: Date; reason: string };

export interface Transition {
  next: AccessRequest;
  reason: string;
}

function bump(r: AccessRequest, patch: Partial<AccessRequest>): AccessRequest {
  return { ...r, ...patch, version: r.version + 1 };
}

/** Distinct principals whose approvals at `stage` still count, given who is eligible now. */
export function countingApprovals(r: AccessRequest, stage: number, eligible: ReadonlySet<string>): string[] {
  const seen = new Set<string>();
  for (const review of r.reviews) {
    if (review.stage !== stage || review.decision !== 'approve') continue;
    const principal = review.onBehalfOf ?? review.approver;
    if (eligible.has(principal)) seen.add(principal);
  }
  return [...seen];
}

export function transition(r: AccessRequest, e: RequestEvent): Transition | null {
  if (TERMINAL.has(r.state)) {
    if (e.type === 'tick' || e.type === 'end') return null;
    throw new InvalidStateError(`request ${r.id} is already ${r.state}`, { state: r.state });
  }
  switch (e.type) {
    case 'approve':
      return approve(r, e);
    case 'deny': {
      requirePending(r, 'denied');
      requireReviewer(r, e.by, e.principal, e.eligible);
      const review: Review = { approver: e.by, decision: 'deny', stage: r.stage, at: e.at, ...opt(e.comment, e.by, e.principal) };
      return { next: bump(r, { state: 'denied', decidedAt: e.at, reviews: [...r.reviews, review] }), reason: `denied by ${e.by}` };
    }
    case 'cancel':
      if (e.by !== r.requester) throw new ForbiddenError('only the requester can cancel a request');
      if (r.state === 'active') throw new InvalidStateError('an active grant is ended by check-in or expiry, not by cancel');
      return { next: bump(r, { state: 'cancelled', endedAt: e.at, endReason: 'cancelled by requester' }), reason: 'cancelled' };
    case 'remind': {
      if (e.by !== r.requester) throw new ForbiddenError('only the requester can send a reminder');
      requirePending(r, 'reminded');
      const last = r.lastRemindedAt?.getTime();
      if (last !== undefined && e.at.getTime() - last < e.minIntervalMs) {
        const waitS = Math.ceil((last + e.minIntervalMs - e.at.getTime()) / 1000);
        throw new GatehouseError('RATE_LIMITED', `a reminder was sent recently; try again in ${waitS} s`, { retryAfterSeconds: waitS });
      }
      return { next: bump(r, { lastRemindedAt: e.at }), reason: 'reminded' };
    }
    case 'tick':
      return tick(r, e.at);
    case 'activate':
      return activate(r, e.at, e.grant);
    case 'end':
      return { next: bump(r, { state: r.state === 'pending' ? 'cancelled' : 'ended', endedAt: e.at, endReason: e.reason }), reason: e.reason };
    default: {
      const never: never = e;
      throw new Error(`unknown request event ${JSON.stringify(never)}`);
    }
  }
}

function opt(comment: string | undefined, by: string, principal: string): Partial<Review> {
  const extra: Partial<Review> = {};
  if (comment) extra.comment = comment;
  if (principal !== by) extra.onBehalfOf = principal;
  return extra;
}

function requirePending(r: AccessRequest, verb: string): void {
  if (r.state !== 'pending') throw new InvalidStateError(`request ${r.id} is ${r.state} and cannot be ${verb}`, { state: r.state });
}

function requireReviewer(r: AccessRequest, by: string, principal: string, eligible: ReadonlySet<string>): void {
  if (by === r.requester || principal === r.requester) throw new ForbiddenError('you cannot review your own request');
  if (!eligible.has(principal)) throw new ForbiddenError(`${by} is not an approver for this request at stage ${r.stage + 1}`);
}

/**
 * Everyone whose approval counted at a stage before the current one: the approvers and
 * those they stood in for. Each stage of a multi-stage approval needs different people.
 */
export function earlierStageApprovers(r: AccessRequest): Set<string> {
  const out = new Set<string>();
  for (const x of r.reviews) {
    if (x.stage >= r.stage || x.decision !== 'approve') continue;
    out.add(x.approver);
    if (x.onBehalfOf) out.add(x.onBehalfOf);
  }
  return out;
}

function approve(r: AccessRequest, e: Extract<RequestEvent, { type: 'approve' }>): Transition {
  requirePending(r, 'approved');
  requireReviewer(r, e.by, e.principal, e.eligible);
  const earlier = earlierStageApprovers(r);
  const reused = [e.by, e.principal].find((u) => earlier.has(u));
  if (reused !== undefined) {
    throw new ForbiddenError(`${reused} approved stage ${r.stage} of this request; stage ${r.stage + 1} needs a different approver`);
  }
  const already = r.reviews.some((x) => x.stage === r.stage && x.decision === 'approve' && (x.onBehalfOf ?? x.approver) === e.principal);
  if (already) throw new GatehouseError('CONFLICT', `${e.principal} has already approved this stage`);
  const review: Review = { approver: e.by, decision: 'approve', stage: r.stage, at: e.at, ...opt(e.comment, e.by, e.principal) };
  const withReview = { ...r, reviews: [...r.reviews, review] };
  const have = countingApprovals(withReview, r.stage, e.eligible).length;
  if (have < e.required) {
    return { next: bump(withReview, {}), reason: `approval ${have} of ${e.required} by ${e.by}` };
  }
  if (e.nextStageRequired !== undefined && r.stage === 0) {
    return { next: bump(withReview, { stage: 1 }), reason: `stage 1 complete; waiting for stage 2` };
  }
  const grant: Partial<AccessRequest> =
    e.grant.startOn === 'approval'
      ? { grantStart: e.at, grantEnd: new Date(e.at.getTime() + e.grant.maxDurationMs) }
      : { useBy: new Date(e.at.getTime() + e.grant.useWithinMs) };
  return { next: bump(withReview, { state: 'approved', decidedAt: e.at, ...grant }), reason: `approved by ${e.by}` };
}

function activate(r: AccessRequest, at: Date, grant: GrantRule): Transition | null {
  if (r.state === 'active') return null;
  if (r.state !== 'approved') throw new InvalidStateError(`request ${r.id} is ${r.state}, not approved`, { state: r.state });
  if (r.grantStart && r.grantEnd) return { next: bump(r, { state: 'active' }), reason: 'first connection' };
  return {
    next: bump(r, { state: 'active', grantStart: at, grantEnd: new Date(at.getTime() + grant.maxDurationMs) }),
    reason: 'timer started on first connection',
  };
}

function tick(r: AccessRequest, at: Date): Transition | null {
  const t = at.getTime();
  if (r.state === 'pending' && t >= r.pendingUntil.getTime()) {
    return { next: bump(r, { state: 'expired', endedAt: at, endReason: 'no decision in time' }), reason: 'expired unanswered' };
  }
  if (r.grantEnd && t >= r.grantEnd.getTime() && (r.state === 'approved' || r.state === 'active')) {
    return { next: bump(r, { state: 'ended', endedAt: at, endReason: 'grant expired' }), reason: 'grant expired' };
  }
  if (r.state === 'approved' && !r.grantStart && r.useBy && t >= r.useBy.getTime()) {
    return { next: bump(r, { state: 'expired', endedAt: at, endReason: 'approved grant never used' }), reason: 'approved grant lapsed unused' };
  }
  return null;
}

/** The next instant at which `tick` could change this request, if any. */
export function nextDue(r: AccessRequest): Date | undefined {
  if (r.state === 'pending') return r.pendingUntil;
  if (r.state === 'approved' && !r.grantStart) return r.useBy;
  if (r.state === 'approved' || r.state === 'active') return r.grantEnd;
  return undefined;
}
