import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { AccessRequest } from '../../../src/core/model.js';
import { TERMINAL, countingApprovals, isResolved, nextDue, transition, type GrantRule } from '../../../src/workflow/requests.js';

const T0 = new Date('2026-01-05T09:00:00Z');
const at = (min: number): Date => new Date(T0.getTime() + min * 60_000);
const GRANT: GrantRule = { startOn: 'approval', maxDurationMs: 60 * 60_000, useWithinMs: 24 * 60 * 60_000 };
const ELIGIBLE = new Set(['bob', 'dave', 'erin']);

function req(patch: Partial<AccessRequest> = {}): AccessRequest {
  return { id: 'r1', resource: 'prod-pg', requester: 'alice', state: 'pending', stage: 0, reviews: [], createdAt: T0, pendingUntil: at(60), version: 1, ...patch };
}

const approve = (by: string, required = 1, extra: Record<string, unknown> = {}) =>
  ({ type: 'approve', by, principal: by, at: at(1), eligible: ELIGIBLE, required, grant: GRANT, ...extra }) as const;

describe('request state machine', () => {
  it('pending → approved on the last needed approval, with the grant window from approval', () => {
    const t = transition(req(), approve('dave'));
    expect(t?.next.state).toBe('approved');
    expect(t?.next.grantStart).toEqual(at(1));
    expect(t?.next.grantEnd).toEqual(at(61));
    expect(t?.next.version).toBe(2);
  });

  it('N-of-M: stays pending until N distinct eligible approvers approved', () => {
    const one = transition(req(), approve('dave', 2))!.next;
    expect(one.state).toBe('pending');
    expect(() => transition(one, approve('dave', 2))).toThrow(/already approved/);
    const two = transition(one, { ...approve('erin', 2), at: at(2) })!.next;
    expect(two.state).toBe('approved');
  });

  it('a second stage must approve after the first', () => {
    const s1 = transition(req(), { ...approve('dave'), nextStageRequired: 1 })!.next;
    expect(s1).toMatchObject({ state: 'pending', stage: 1 });
    const s2 = transition(s1, { ...approve('erin'), eligible: new Set(['erin']) })!.next;
    expect(s2.state).toBe('approved');
  });

  it('whoever approved stage 1 (in person or through a delegate) cannot approve stage 2', () => {
    const both = new Set(['dave', 'erin']);
    const s1 = transition(req(), { ...approve('carol'), principal: 'dave', eligible: both, nextStageRequired: 1 })!.next;
    expect(s1.stage).toBe(1);
    expect(() => transition(s1, { ...approve('dave'), eligible: both })).toThrow(/dave approved stage 1 of this request; stage 2 needs a different approver/);
    expect(() => transition(s1, { ...approve('carol'), principal: 'erin', eligible: both })).toThrow(/carol approved stage 1/);
    expect(transition(s1, { ...approve('erin'), eligible: both })?.next.state).toBe('approved');
  });

  it('an approval whose approver lost eligibility does not count', () => {
    const one = transition(req(), approve('dave', 2))!.next;
    expect(countingApprovals(one, 0, ELIGIBLE)).toEqual(['dave']);
    const withoutDave = new Set(['bob', 'erin']);
    expect(countingApprovals(one, 0, withoutDave)).toEqual([]);
    const t = transition(one, { ...approve('erin', 2), eligible: withoutDave });
    expect(t?.next.state).toBe('pending');
  });

  it('self-approval and non-approvers are refused', () => {
    expect(() => transition(req(), { ...approve('alice'), eligible: new Set(['alice']) })).toThrow(/your own request/);
    expect(() => transition(req(), approve('mallory'))).toThrow(/not an approver/);
    expect(() => transition(req(), { type: 'deny', by: 'alice', principal: 'alice', at: at(1), eligible: new Set(['alice']) })).toThrow(/own request/);
  });

  it('a deny ends it', () => {
    const t = transition(req(), { type: 'deny', by: 'dave', principal: 'dave', at: at(1), comment: 'no', eligible: ELIGIBLE });
    expect(t?.next.state).toBe('denied');
    expect(t?.next.reviews[0]).toMatchObject({ approver: 'dave', decision: 'deny', comment: 'no' });
  });

  it('cancel only by the requester; reminders rate-limited', () => {
    expect(() => transition(req(), { type: 'cancel', by: 'dave', at: at(1) })).toThrow(/only the requester/);
    expect(transition(req(), { type: 'cancel', by: 'alice', at: at(1) })?.next.state).toBe('cancelled');
    const r1 = transition(req(), { type: 'remind', by: 'alice', at: at(1), minIntervalMs: 600_000 })!.next;
    expect(r1.lastRemindedAt).toEqual(at(1));
    expect(() => transition(r1, { type: 'remind', by: 'alice', at: at(5), minIntervalMs: 600_000 })).toThrow(/try again in 360 s/);
    expect(transition(r1, { type: 'remind', by: 'alice', at: at(11), minIntervalMs: 600_000 })?.next.lastRemindedAt).toEqual(at(11));
    expect(() => transition(req(), { type: 'remind', by: 'dave', at: at(1), minIntervalMs: 1 })).toThrow(/only the requester/);
  });

  it('unanswered requests expire; grants end; unused first-connection grants lapse', () => {
    expect(transition(req(), { type: 'tick', at: at(59) })).toBeNull();
    expect(transition(req(), { type: 'tick', at: at(60) })?.next.state).toBe('expired');
    const approved = transition(req(), approve('dave'))!.next;
    expect(nextDue(approved)).toEqual(at(61));
    expect(transition(approved, { type: 'tick', at: at(61) })?.next.state).toBe('ended');
    const fc1 = transition(req(), { ...approve('dave'), grant: { ...GRANT, startOn: 'first_connection' } })!.next;
    expect(fc1.grantStart).toBeUndefined();
    expect(fc1.useBy).toEqual(at(1 + 24 * 60));
    expect(transition(fc1, { type: 'tick', at: at(1 + 24 * 60) })?.next.state).toBe('expired');
  });

  it('activate: approved → active, starting the timer on first connection', () => {
    const fc1 = transition(req(), { ...approve('dave'), grant: { ...GRANT, startOn: 'first_connection' } })!.next;
    const act = transition(fc1, { type: 'activate', at: at(30), grant: GRANT })!.next;
    expect(act).toMatchObject({ state: 'active', grantStart: at(30), grantEnd: at(90) });
    expect(transition(act, { type: 'activate', at: at(40), grant: GRANT })).toBeNull();
    expect(() => transition(req(), { type: 'activate', at: at(1), grant: GRANT })).toThrow(/not approved/);
    expect(() => transition(act, { type: 'cancel', by: 'alice', at: at(41) })).toThrow(/check-in or expiry/);
    expect(transition(act, { type: 'end', at: at(41), reason: 'checked in' })?.next).toMatchObject({ state: 'ended', endReason: 'checked in' });
  });

  it('terminal states refuse every change (property)', () => {
    const events = fc.constantFrom<Parameters<typeof transition>[1]>(
      approve('dave'),
      { type: 'deny', by: 'dave', principal: 'dave', at: at(1), eligible: ELIGIBLE },
      { type: 'cancel', by: 'alice', at: at(1) },
      { type: 'remind', by: 'alice', at: at(1), minIntervalMs: 1 },
      { type: 'activate', at: at(1), grant: GRANT },
    );
    fc.assert(
      fc.property(fc.constantFrom(...TERMINAL), events, (state, e) => {
        const r = req({ state });
        expect(isResolved(r)).toBe(true);
        expect(() => transition(r, e)).toThrow(/already/);
        expect(transition(r, { type: 'tick', at: at(10_000) })).toBeNull();
      }),
    );
  });
});
