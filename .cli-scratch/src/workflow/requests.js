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
export const TERMINAL = new Set(['denied', 'cancelled', 'expired', 'ended']);
export const isPending = (r) => r.state === 'pending';
export const isGranted = (r) => r.state === 'approved' || r.state === 'active';
export const isResolved = (r) => TERMINAL.has(r.state);
function bump(r, patch) {
    return { ...r, ...patch, version: r.version + 1 };
}
/** Distinct principals whose approvals at `stage` still count, given who is eligible now. */
export function countingApprovals(r, stage, eligible) {
    const seen = new Set();
    for (const review of r.reviews) {
        if (review.stage !== stage || review.decision !== 'approve')
            continue;
        const principal = review.onBehalfOf ?? review.approver;
        if (eligible.has(principal))
            seen.add(principal);
    }
    return [...seen];
}
export function transition(r, e) {
    if (TERMINAL.has(r.state)) {
        if (e.type === 'tick' || e.type === 'end')
            return null;
        throw new InvalidStateError(`request ${r.id} is already ${r.state}`, { state: r.state });
    }
    switch (e.type) {
        case 'approve':
            return approve(r, e);
        case 'deny': {
            requirePending(r, 'denied');
            requireReviewer(r, e.by, e.principal, e.eligible);
            const review = { approver: e.by, decision: 'deny', stage: r.stage, at: e.at, ...opt(e.comment, e.by, e.principal) };
            return { next: bump(r, { state: 'denied', decidedAt: e.at, reviews: [...r.reviews, review] }), reason: `denied by ${e.by}` };
        }
        case 'cancel':
            if (e.by !== r.requester)
                throw new ForbiddenError('only the requester can cancel a request');
            if (r.state === 'active')
                throw new InvalidStateError('an active grant is ended by check-in or expiry, not by cancel');
            return { next: bump(r, { state: 'cancelled', endedAt: e.at, endReason: 'cancelled by requester' }), reason: 'cancelled' };
        case 'remind': {
            if (e.by !== r.requester)
                throw new ForbiddenError('only the requester can send a reminder');
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
            const never = e;
            throw new Error(`unknown request event ${JSON.stringify(never)}`);
        }
    }
}
function opt(comment, by, principal) {
    const extra = {};
    if (comment)
        extra.comment = comment;
    if (principal !== by)
        extra.onBehalfOf = principal;
    return extra;
}
function requirePending(r, verb) {
    if (r.state !== 'pending')
        throw new InvalidStateError(`request ${r.id} is ${r.state} and cannot be ${verb}`, { state: r.state });
}
function requireReviewer(r, by, principal, eligible) {
    if (by === r.requester || principal === r.requester)
        throw new ForbiddenError('you cannot review your own request');
    if (!eligible.has(principal))
        throw new ForbiddenError(`${by} is not an approver for this request at stage ${r.stage + 1}`);
}
function approve(r, e) {
    requirePending(r, 'approved');
    requireReviewer(r, e.by, e.principal, e.eligible);
    const already = r.reviews.some((x) => x.stage === r.stage && x.decision === 'approve' && (x.onBehalfOf ?? x.approver) === e.principal);
    if (already)
        throw new GatehouseError('CONFLICT', `${e.principal} has already approved this stage`);
    const review = { approver: e.by, decision: 'approve', stage: r.stage, at: e.at, ...opt(e.comment, e.by, e.principal) };
    const withReview = { ...r, reviews: [...r.reviews, review] };
    const have = countingApprovals(withReview, r.stage, e.eligible).length;
    if (have < e.required) {
        return { next: bump(withReview, {}), reason: `approval ${have} of ${e.required} by ${e.by}` };
    }
    if (e.nextStageRequired !== undefined && r.stage === 0) {
        return { next: bump(withReview, { stage: 1 }), reason: `stage 1 complete; waiting for stage 2` };
    }
    const grant = e.grant.startOn === 'approval'
        ? { grantStart: e.at, grantEnd: new Date(e.at.getTime() + e.grant.maxDurationMs) }
        : { useBy: new Date(e.at.getTime() + e.grant.useWithinMs) };
    return { next: bump(withReview, { state: 'approved', decidedAt: e.at, ...grant }), reason: `approved by ${e.by}` };
}
function activate(r, at, grant) {
    if (r.state === 'active')
        return null;
    if (r.state !== 'approved')
        throw new InvalidStateError(`request ${r.id} is ${r.state}, not approved`, { state: r.state });
    if (r.grantStart && r.grantEnd)
        return { next: bump(r, { state: 'active' }), reason: 'first connection' };
    return {
        next: bump(r, { state: 'active', grantStart: at, grantEnd: new Date(at.getTime() + grant.maxDurationMs) }),
        reason: 'timer started on first connection',
    };
}
function tick(r, at) {
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
export function nextDue(r) {
    if (r.state === 'pending')
        return r.pendingUntil;
    if (r.state === 'approved' && !r.grantStart)
        return r.useBy;
    if (r.state === 'approved' || r.state === 'active')
        return r.grantEnd;
    return undefined;
}
//# sourceMappingURL=requests.js.map