import { describe, expect, it } from 'vitest';
import { clockTime, countdown, dayList, duration, groupSecret, scheduleSummary } from '../../../src/web/app/format.js';
import { describeMessage } from '../../../src/web/app/messages.js';
import type { AccessRequest, ResourceView } from '../../../src/web/app/types.js';
import { requestFormErrors, vaultAction } from '../../../src/web/app/vault-state.js';

const LIMIT = { timezone: 'UTC', schedule: [{ days: ['mon' as const], start: '08:00', end: '18:00' }], maxDurationMinutes: 60 };
const APPROVAL = { approvers: [], approvals: 2, requireReason: true, requireTicket: true, ticketPattern: '^CHG-[0-9]+$', startOn: 'approval' as const };

function resource(state: ResourceView['state'], settings: ResourceView['settings'] = { limitAccessTime: LIMIT, requireApproval: APPROVAL, singleUser: true }): ResourceView {
  return { name: 'prod-db', type: 'database', protocol: 'postgres', host: 'h', port: 5432, owner: 'bob', access: [], settings, options: {}, source: 'api', state };
}

function request(over: Partial<AccessRequest> = {}): AccessRequest {
  return { id: 'r1', resource: 'prod-db', requester: 'alice', state: 'pending', stage: 0, reviews: [], createdAt: '2026-01-05T09:00:00Z', pendingUntil: '2026-01-06T09:00:00Z', version: 1, ...over };
}

describe('vaultAction: the one action for my state', () => {
  it('explains a closed schedule with the next window, before anything else', () => {
    const a = vaultAction(resource({ canConnect: false, code: 'outside_schedule', nextWindow: 'next window Mon 08:00 (UTC)', lease: { holder: 'bob', expiresAt: 'x', mine: false } }));
    expect(a).toEqual({ kind: 'closed', text: 'Outside the access schedule, next window Mon 08:00 (UTC)' });
  });

  it('names the holder when someone else has it checked out, even without my approval', () => {
    const a = vaultAction(resource({ canConnect: false, code: 'approval_required', lease: { holder: 'bob', expiresAt: '2026-01-05T14:30:00Z', mine: false } }));
    expect(a).toEqual({ kind: 'held_by_other', holder: 'bob', until: '2026-01-05T14:30:00Z' });
  });

  it('shows a pending request with the approvals of its current stage only', () => {
    const req = request({
      stage: 0,
      reviews: [
        { approver: 'dave', decision: 'approve', stage: 0, at: '2026-01-05T09:01:00Z' },
        { approver: 'erin', decision: 'approve', stage: 1, at: '2026-01-05T09:02:00Z' },
      ],
    });
    const a = vaultAction(resource({ canConnect: false, code: 'approval_pending', request: req }));
    expect(a).toMatchObject({ kind: 'pending', approvals: ['dave'], needed: 2 });
  });

  it('offers Request Access with what the workflow requires, and again once a grant lapsed', () => {
    expect(vaultAction(resource({ canConnect: false, code: 'approval_required' }))).toEqual({
      kind: 'request', requireReason: true, requireTicket: true, ticketPattern: '^CHG-[0-9]+$', lapsed: false,
    });
    expect(vaultAction(resource({ canConnect: false, code: 'grant_expired' }))).toMatchObject({ kind: 'request', lapsed: true });
  });

  it('offers Check Out, then Launch and Check In with the time left, or Launch alone', () => {
    expect(vaultAction(resource({ canConnect: false, code: 'checkout_required' }))).toEqual({ kind: 'checkout' });
    expect(vaultAction(resource({ canConnect: true, timeLeftMs: 5000, lease: { holder: 'alice', expiresAt: '2026-01-05T11:00:00Z', mine: true } })))
      .toEqual({ kind: 'checked_out', until: '2026-01-05T11:00:00Z', timeLeftMs: 5000, mfa: false });
    expect(vaultAction(resource({ canConnect: true }, { mfa: true, limitAccessTime: LIMIT }))).toEqual({ kind: 'launch', mfa: true });
  });

  it('sends an MFA resource to enrolment, keeping Check In when I hold it, and shows other refusals as they are', () => {
    expect(vaultAction(resource({ canConnect: false, code: 'mfa_not_enrolled', lease: { holder: 'alice', expiresAt: 'x', mine: true } }))).toEqual({ kind: 'enrol_mfa', holding: true });
    expect(vaultAction(resource({ canConnect: false, code: 'gateway_unavailable', message: 'try again shortly' }))).toEqual({ kind: 'unavailable', text: 'try again shortly' });
  });
});

describe('requestFormErrors', () => {
  const a = { requireReason: true, requireTicket: true, ticketPattern: '^CHG-[0-9]+$' };
  it('requires what the workflow requires and checks the pattern like the API (unanchored RegExp.test)', () => {
    expect(requestFormErrors(a, ' ', '')).toEqual({ reason: 'A reason is required for this resource.', ticket: 'A ticket id is required for this resource.' });
    expect(requestFormErrors(a, 'why', '1234')).toEqual({ ticket: 'The ticket id must match ^CHG-[0-9]+$.' });
    expect(requestFormErrors(a, 'why', 'CHG-1')).toEqual({});
    expect(requestFormErrors({ requireReason: false, requireTicket: false, ticketPattern: 'CHG' }, '', 'see CHG-9')).toEqual({});
  });
  it('leaves an invalid pattern to the API instead of blocking the user', () => {
    expect(requestFormErrors({ requireReason: false, requireTicket: true, ticketPattern: '(' }, '', 'X')).toEqual({});
  });
});

describe('describeMessage', () => {
  it('tells approvers about new requests with a desktop notice, and requesters about decisions', () => {
    const req = request({ reason: 'failover', ticket: 'CHG-1' });
    expect(describeMessage({ type: 'request_created', request: req }, 'bob')).toEqual({ text: 'alice requests access to prod-db: failover (CHG-1)', kind: 'info', desktop: true });
    const denied = request({ state: 'denied', reviews: [{ approver: 'bob', decision: 'deny', stage: 0, at: 'x', comment: 'not now' }] });
    expect(describeMessage({ type: 'request_denied', request: denied }, 'alice')?.text).toBe('Your request for prod-db was denied: not now');
    const lease = { id: 'l', resource: 'prod-db', holder: 'alice', state: 'force_checked_in' as const, startedAt: 'x', expiresAt: 'y', endedBy: 'bob', endReason: 'maintenance' };
    expect(describeMessage({ type: 'lease_force_checked_in', lease }, 'alice')).toMatchObject({ text: 'prod-db was force checked in by bob: maintenance', kind: 'error' });
  });
  it('stays quiet about what the user did themselves', () => {
    const mine = request({ reviews: [{ approver: 'bob', decision: 'approve', stage: 0, at: 'x' }] });
    expect(describeMessage({ type: 'request_reviewed', request: mine }, 'bob')).toBeUndefined();
    expect(describeMessage({ type: 'hello', user: 'bob' }, 'bob')).toBeUndefined();
  });
});

describe('format', () => {
  it('counts down and speaks durations', () => {
    expect(countdown(3_725_000)).toBe('1:02:05');
    expect(countdown(65_000)).toBe('1:05');
    expect(countdown(-5)).toBe('0:00');
    expect(countdown(400)).toBe('0:01');
    expect(duration(45_000)).toBe('45 s');
    expect(duration(90 * 60_000)).toBe('1 h 30 min');
    expect(duration(26 * 3600_000)).toBe('1 d 2 h');
  });
  it('labels times by distance from now', () => {
    const now = new Date('2026-01-05T09:00:00Z');
    expect(clockTime('2026-01-05T14:30:00Z', now, 'UTC')).toBe('14:30');
    expect(clockTime('2026-01-06T01:15:00Z', now, 'UTC')).toBe('Tue 01:15');
    expect(clockTime('2026-01-20T08:00:00Z', now, 'UTC')).toBe('20 Jan 08:00');
    expect(clockTime('2026-01-05T23:30:00Z', now, 'Europe/Berlin')).toBe('Tue 00:30');
  });
  it('summarises schedules and groups secrets', () => {
    expect(dayList(['mon', 'tue', 'wed', 'thu', 'fri'])).toBe('Mon–Fri');
    expect(dayList(['sat', 'mon'])).toBe('Mon, Sat');
    expect(dayList(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'])).toBe('every day');
    expect(scheduleSummary(LIMIT)).toBe('Mon 08:00–18:00 (UTC), at most 1 h');
    expect(groupSecret('ABCDEFGHIJ')).toBe('ABCD EFGH IJ');
  });
});
