import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store.js';
import { BUSINESS_HOURS, enrolTotp, makeHarness, seed } from './harness.js';

const APPROVAL = { approvers: [{ team: 'dba' }], approvals: 1, requireReason: true, requireTicket: true, ticketPattern: '^OPS-[0-9]+$', startOn: 'approval' as const };
const base = { limitAccessTime: BUSINESS_HOURS, requireApproval: APPROVAL };

describe('access requests through the engine', () => {
  it('checks reason and ticket, notifies approvers, refuses a second open request', async () => {
    const h = makeHarness();
    await seed(h, base);
    const r = h.engine.requests;
    await expect(r.create('alice', { resource: 'prod-pg', ticket: 'OPS-1' })).rejects.toMatchObject({ code: 'VALIDATION', field: 'reason' });
    await expect(r.create('alice', { resource: 'prod-pg', reason: 'fix' })).rejects.toMatchObject({ field: 'ticket' });
    await expect(r.create('alice', { resource: 'prod-pg', reason: 'fix', ticket: 'JIRA-1' })).rejects.toThrow(/does not match/);
    await expect(r.create('mallory', { resource: 'prod-pg', reason: 'x', ticket: 'OPS-1' })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    const req = await r.create('alice', { resource: 'prod-pg', reason: 'fix', ticket: 'OPS-7' });
    expect(h.notices.at(-1)).toMatchObject({ kind: 'request_created' });
    expect(new Set(h.notices.at(-1)!.to)).toEqual(new Set(['bob', 'dave', 'erin']));
    await expect(r.create('alice', { resource: 'prod-pg', reason: 'again', ticket: 'OPS-8' })).rejects.toMatchObject({ code: 'CONFLICT' });
    expect((await r.toApprove('dave')).map((x) => x.id)).toEqual([req.id]);
    expect(await r.toApprove('alice')).toEqual([]);
  });

  it('self-approval is refused even for an approver', async () => {
    const h = makeHarness();
    await seed(h, base);
    const req = await h.engine.requests.create('dave', { resource: 'prod-pg', reason: 'x', ticket: 'OPS-1' });
    await expect(h.engine.requests.approve(req.id, 'dave')).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(h.engine.requests.approve(req.id, 'mallory')).rejects.toMatchObject({ code: 'FORBIDDEN' });
    const ok = await h.engine.requests.approve(req.id, 'erin', 'go ahead');
    expect(ok.state).toBe('approved');
    expect(h.notices.at(-1)).toMatchObject({ kind: 'request_approved', to: ['dave'] });
  });

  it('an approver who left the team no longer counts; a disabled approver cannot act', async () => {
    const h = makeHarness();
    await seed(h, { ...base, requireApproval: { ...APPROVAL, approvals: 2 } });
    const req = await h.engine.requests.create('alice', { resource: 'prod-pg', reason: 'x', ticket: 'OPS-1' });
    await h.engine.requests.approve(req.id, 'dave');
    await h.engine.directory.updateUser('admin', 'dave', { teams: [] });
    const after = await h.engine.requests.approve(req.id, 'erin');
    expect(after.state).toBe('pending');
    // erin's approval counts while she is eligible; once disabled, it no longer does.
    await h.engine.directory.setDisabled('admin', 'erin', true);
    await expect(h.engine.requests.approve(req.id, 'erin')).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect((await h.engine.requests.approve(req.id, 'bob')).state).toBe('pending');
    await h.engine.directory.updateUser('admin', 'dave', { teams: ['dba'] });
    await expect(h.engine.requests.approve(req.id, 'dave')).rejects.toMatchObject({ code: 'CONFLICT' });
  });

  it('delegation lets another user approve on behalf of an approver for a period', async () => {
    const h = makeHarness();
    await seed(h, base);
    await h.store.putDelegation({ id: 'd1', from: 'bob', to: 'carol', start: h.clock.now(), end: new Date(h.clock.now().getTime() + 3600_000) });
    const req = await h.engine.requests.create('alice', { resource: 'prod-pg', reason: 'x', ticket: 'OPS-1' });
    expect(await h.engine.requests.approversOf(req)).toContain('carol');
    const ok = await h.engine.requests.approve(req.id, 'carol');
    expect(ok.state).toBe('approved');
    expect(ok.reviews[0]).toMatchObject({ approver: 'carol', onBehalfOf: 'bob' });
    // After the delegation ends carol is no approver.
    h.clock.advance(2 * 3600_000);
    const again = await h.engine.requests.create('carol', { resource: 'prod-pg', reason: 'x', ticket: 'OPS-2' });
    expect(await h.engine.requests.toApprove('carol')).toEqual([]);
    expect(again.state).toBe('pending');
  });

  it('escalation: extra approvers become eligible after the delay and are notified once', async () => {
    const h = makeHarness();
    await h.engine.directory.addTeam('admin', 'oncall').catch(() => undefined);
    await seed(h, { ...base, requireApproval: { ...APPROVAL, approvers: [], escalation: { afterMinutes: 30, approvers: [{ team: 'dba' }] } } });
    const req = await h.engine.requests.create('alice', { resource: 'prod-pg', reason: 'x', ticket: 'OPS-1' });
    await expect(h.engine.requests.approve(req.id, 'dave')).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await h.engine.sweep();
    h.clock.advance(30 * 60_000);
    await h.engine.sweep();
    const esc = h.notices.filter((n) => n.kind === 'request_escalated');
    expect(esc).toHaveLength(1);
    expect(esc[0]!.to).toEqual(expect.arrayContaining(['dave', 'erin']));
    await h.engine.sweep();
    expect(h.notices.filter((n) => n.kind === 'request_escalated')).toHaveLength(1);
    expect((await h.engine.requests.approve(req.id, 'dave')).state).toBe('approved');
  });

  it('reminders are rate-limited and reach the approvers; cancel by the requester', async () => {
    const h = makeHarness();
    await seed(h, base);
    const req = await h.engine.requests.create('alice', { resource: 'prod-pg', reason: 'x', ticket: 'OPS-1' });
    await h.engine.requests.remind(req.id, 'alice');
    expect(h.notices.at(-1)).toMatchObject({ kind: 'request_reminder' });
    await expect(h.engine.requests.remind(req.id, 'alice')).rejects.toMatchObject({ code: 'RATE_LIMITED' });
    h.clock.advance(10 * 60_000);
    await h.engine.requests.remind(req.id, 'alice');
    await expect(h.engine.requests.cancel(req.id, 'dave')).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect((await h.engine.requests.cancel(req.id, 'alice')).state).toBe('cancelled');
    await expect(h.engine.requests.approve(req.id, 'dave')).rejects.toMatchObject({ code: 'INVALID_STATE' });
  });

  it('unanswered requests expire on their own timer; grants end and revoke sessions', async () => {
    const h = makeHarness();
    await seed(h, { ...base, requireApproval: { ...APPROVAL, pendingTtlMinutes: 15 } });
    const req = await h.engine.requests.create('alice', { resource: 'prod-pg', reason: 'x', ticket: 'OPS-1' });
    h.clock.advance(15 * 60_000); // the sweeper's timer fires by itself
    await h.engine.sweep();
    expect((await h.store.getRequest(req.id))?.state).toBe('expired');
    const req2 = await h.engine.requests.create('alice', { resource: 'prod-pg', reason: 'x', ticket: 'OPS-1' });
    await h.engine.requests.approve(req2.id, 'dave');
    h.clock.advance(120 * 60_000);
    await h.engine.sweep();
    expect((await h.store.getRequest(req2.id))?.state).toBe('ended');
    expect(h.revokes).toContainEqual(expect.objectContaining({ kind: 'request_revoked', requestId: req2.id }));
  });
});

describe('single-user leases', () => {
  it('check-out, refusal naming the holder, check-in, force check-in, expiry', async () => {
    const h = makeHarness();
    await seed(h, { limitAccessTime: BUSINESS_HOURS, singleUser: true });
    const lease = await h.engine.leases.checkout('alice', 'prod-pg');
    expect(lease.expiresAt.toISOString()).toBe('2026-01-05T11:00:00.000Z');
    expect(await h.engine.leases.checkout('alice', 'prod-pg')).toEqual(lease);
    await expect(h.engine.leases.checkout('carol', 'prod-pg')).rejects.toThrow(/checked out by alice for another 2 h/);
    await expect(h.engine.leases.checkin('carol', 'prod-pg')).rejects.toMatchObject({ code: 'INVALID_STATE' });
    await h.engine.leases.checkin('alice', 'prod-pg');
    expect(h.revokes.at(-1)).toMatchObject({ kind: 'lease_ended', reason: 'checked_in', user: 'alice' });

    await h.engine.leases.checkout('carol', 'prod-pg');
    await expect(h.engine.leases.forceCheckin('alice', 'prod-pg', 'mine')).rejects.toMatchObject({ code: 'FORBIDDEN' });
    const forced = await h.engine.leases.forceCheckin('bob', 'prod-pg', 'incident over');
    expect(forced).toMatchObject({ state: 'force_checked_in', endedBy: 'bob', endReason: 'incident over' });
    expect(h.revokes.at(-1)).toMatchObject({ kind: 'lease_ended', reason: 'force_checked_in', by: 'bob' });
    expect(h.notices.at(-1)).toMatchObject({ kind: 'lease_force_checked_in', to: ['carol', 'bob'] });

    await h.engine.leases.checkout('alice', 'prod-pg');
    h.clock.advance(2 * 3600_000);
    await h.engine.sweep();
    expect(await h.store.getHeldLease('prod-pg')).toBeUndefined();
    expect(h.revokes.at(-1)).toMatchObject({ kind: 'lease_ended', reason: 'expired' });
  });

  it('check-out needs the approval grant; check-in ends the grant', async () => {
    const h = makeHarness();
    await seed(h, { ...base, singleUser: true });
    await expect(h.engine.leases.checkout('alice', 'prod-pg')).rejects.toMatchObject({ code: 'FORBIDDEN', details: { denyCode: 'approval_required' } });
    const req = await h.engine.requests.create('alice', { resource: 'prod-pg', reason: 'x', ticket: 'OPS-1' });
    await h.engine.requests.approve(req.id, 'dave');
    h.clock.advance(30 * 60_000);
    const lease = await h.engine.leases.checkout('alice', 'prod-pg');
    expect(lease.expiresAt.toISOString()).toBe('2026-01-05T11:00:00.000Z'); // capped by the grant
    await h.engine.leases.checkin('alice', 'prod-pg');
    expect((await h.store.getRequest(req.id))?.state).toBe('ended');
  });
});

describe('MFA and launch tickets', () => {
  it('TOTP: replay refused, ±1 step accepted, garbage refused', async () => {
    const h = makeHarness();
    await seed(h, {});
    const code = await enrolTotp(h, 'alice');
    h.clock.advance(30_000);
    await h.engine.mfa.verify('alice', code(-1)).catch(() => undefined); // previous step already used by confirm
    await h.engine.mfa.verify('alice', code(1));
    await expect(h.engine.mfa.verify('alice', code(1))).rejects.toMatchObject({ code: 'MFA_REPLAY' });
    await expect(h.engine.mfa.verify('alice', 'abcdef')).rejects.toMatchObject({ code: 'MFA_INVALID' });
    await expect(h.engine.mfa.verify('alice', code(5))).rejects.toMatchObject({ code: 'MFA_INVALID' });
    await expect(h.engine.mfa.enroll('alice')).rejects.toMatchObject({ code: 'CONFLICT' });
  });

  it('tickets: single use, short-lived, bound to user and resource, stored hashed; a misdirected one stays unused', async () => {
    const h = makeHarness();
    await seed(h, {});
    await seed(h, {}, 'other-db');
    const { ticket } = await h.engine.mfa.issueTicket('alice', 'prod-pg', false);
    expect(await h.engine.mfa.redeemTicketFor(ticket, 'alice', 'other-db')).toEqual({ ok: false, why: 'other_resource', owner: 'alice', boundTo: 'prod-pg' });
    expect(await h.engine.mfa.redeemTicketFor(ticket, 'mallory', 'prod-pg')).toEqual({ ok: false, why: 'other_user', owner: 'alice', boundTo: 'prod-pg' });
    expect(await h.engine.mfa.redeemTicketFor(ticket, 'alice', 'prod-pg')).toMatchObject({ ok: true, ticket: { user: 'alice', resource: 'prod-pg', mfa: false } });
    const t2 = (await h.engine.mfa.issueTicket('alice', 'prod-pg', true)).ticket;
    const redeemed = await h.engine.mfa.redeemTicketFor(t2, 'alice', 'prod-pg');
    expect(redeemed).toMatchObject({ ok: true, ticket: { user: 'alice', resource: 'prod-pg', mfa: true } });
    expect(JSON.stringify(redeemed)).not.toContain(t2);
    expect(await h.engine.mfa.redeemTicketFor(t2, 'alice', 'prod-pg')).toEqual({ ok: false, why: 'used' });
    const t3 = (await h.engine.mfa.issueTicket('alice', 'prod-pg', false)).ticket;
    h.clock.advance(61_000);
    expect(await h.engine.mfa.redeemTicketFor(t3, 'alice', 'prod-pg')).toEqual({ ok: false, why: 'expired' });
    expect(await h.engine.mfa.redeemTicketFor('ght_' + 'x'.repeat(43), 'alice', 'prod-pg')).toEqual({ ok: false, why: 'unknown' });
  });
});

describe('restart safety', () => {
  let dir: string | undefined;
  afterEach(() => dir && rmSync(dir, { recursive: true, force: true }));

  it('leases, requests and grants survive a restart and still expire on time', async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-restart-'));
    const file = join(dir, 'gatehouse.db');
    const h1 = makeHarness({ store: SqliteStore.open(file) });
    await seed(h1, { ...base, singleUser: true });
    const req = await h1.engine.requests.create('alice', { resource: 'prod-pg', reason: 'x', ticket: 'OPS-1' });
    await h1.engine.requests.approve(req.id, 'dave');
    const lease = await h1.engine.leases.checkout('alice', 'prod-pg');
    const pending = await h1.engine.requests.create('carol', { resource: 'prod-pg', reason: 'y', ticket: 'OPS-2' });
    h1.engine.stop();
    await h1.store.close();

    const h2 = makeHarness({ store: SqliteStore.open(file), clock: h1.clock, key: h1.key });
    expect(await h2.store.getHeldLease('prod-pg')).toEqual(lease);
    expect((await h2.store.getRequest(req.id))?.state).toBe('approved');
    expect((await h2.store.getRequest(pending.id))?.state).toBe('pending');
    const d = await h2.engine.decide({ user: 'alice', resource: 'prod-pg', at: h2.clock.now(), mfa: { kind: 'none' } });
    expect(d.allow && d.credentials).toEqual({ login: 'app_user', password: 's3cret' });
    expect((await h2.audit.verify()).ok).toBe(true);
    h2.clock.advance(2 * 3600_000);
    await h2.engine.sweep();
    expect(await h2.store.getHeldLease('prod-pg')).toBeUndefined();
    expect((await h2.store.getRequest(req.id))?.state).toBe('ended');
    await h2.store.close();
  });
});

describe('revocations do not wait on the audit', () => {
  /** The audit sink refuses rows of `action` (a full disk, a lost database), as if the write failed. */
  function failAudit(h: ReturnType<typeof makeHarness>, action: string): void {
    const record = h.engine.ctx.audit.record.bind(h.engine.ctx.audit);
    h.engine.ctx.audit.record = (actor, a, subject, data) => (a === action ? Promise.reject(new Error('audit store unavailable')) : record(actor, a, subject, data));
  }

  it('a force check-in whose audit row cannot be written still cuts the holder\'s sessions', async () => {
    const h = makeHarness();
    await seed(h, { limitAccessTime: BUSINESS_HOURS, singleUser: true });
    const lease = await h.engine.leases.checkout('alice', 'prod-pg');
    failAudit(h, 'lease.force_checked_in');
    await expect(h.engine.leases.forceCheckin('bob', 'prod-pg', 'incident')).rejects.toThrow(/audit store unavailable/);
    expect(h.revokes).toContainEqual(expect.objectContaining({ kind: 'lease_ended', leaseId: lease.id, reason: 'force_checked_in' }));
  });

  it('an approval that ends or expires with its audit row refused still revokes its sessions', async () => {
    const h = makeHarness();
    await seed(h, { limitAccessTime: BUSINESS_HOURS, requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, startOn: 'approval' } });
    const q1 = await h.engine.requests.create('alice', { resource: 'prod-pg', reason: 'fix' });
    await h.engine.requests.approve(q1.id, 'dave');
    failAudit(h, 'request.end');
    await expect(h.engine.requests.end(q1.id, 'dave', 'done')).rejects.toThrow(/audit store unavailable/);
    expect(h.revokes).toContainEqual(expect.objectContaining({ kind: 'request_revoked', requestId: q1.id }));

    const q2 = await h.engine.requests.create('carol', { resource: 'prod-pg', reason: 'fix' });
    await h.engine.requests.approve(q2.id, 'dave');
    failAudit(h, 'request.expire');
    h.clock.advance(121 * 60_000);
    await h.engine.sweep();
    expect(h.revokes).toContainEqual(expect.objectContaining({ kind: 'request_revoked', requestId: q2.id }));
  });
});
