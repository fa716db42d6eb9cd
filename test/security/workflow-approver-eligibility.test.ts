import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BUSINESS_HOURS, makeHarness, seed, type Harness, refusal } from '../unit/workflow/harness.js';

/**
 * Findings 12 and 13: who counts as an approver. A two-stage approval needs two different
 * people, and an escalation approver gets no power (approve or force check-in) before the
 * escalation delay has passed.
 */

describe('two-stage approval needs two different people', () => {
  let h: Harness;
  beforeEach(async () => {
    h = makeHarness();
    // Stage 1: bob (owner) or the dba team; stage 2: the dba team again.
    await seed(h, {
      limitAccessTime: BUSINESS_HOURS,
      requireApproval: {
        approvers: [{ team: 'dba' }], approvals: 1, requireReason: false, requireTicket: false, startOn: 'approval',
        secondStage: { approvers: [{ team: 'dba' }], approvals: 1 },
      },
    });
  });
  afterEach(async () => {
    await h.store.close();
  });

  it('an approver who approved stage 1 cannot approve stage 2 as well', async () => {
    const req = await h.engine.requests.create('alice', { resource: 'prod-pg' });
    expect(await h.engine.requests.approve(req.id, 'dave')).toMatchObject({ state: 'pending', stage: 1 });
    const e = await refusal(h.engine.requests.approve(req.id, 'dave'));
    expect(e.code).toBe('FORBIDDEN');
    expect(e.message).toMatch(/stage 1/);
    expect(await h.store.getRequest(req.id)).toMatchObject({ state: 'pending', stage: 1, reviews: [expect.objectContaining({ approver: 'dave', stage: 0 })] });
    expect(await h.engine.explain('alice', 'prod-pg')).toMatchObject({ allow: false });
    // Nor is the request offered to dave for stage 2; erin completes it.
    expect(await h.engine.requests.toApprove('dave')).toEqual([]);
    expect(await h.engine.requests.toApprove('erin')).toEqual([expect.objectContaining({ id: req.id })]);
    expect(await h.engine.requests.approve(req.id, 'erin')).toMatchObject({ state: 'approved' });
  });

  it('an approval given through a delegate at stage 1 uses up that approver for stage 2, and the delegate too', async () => {
    const now = h.clock.now();
    await h.store.putDelegation({ id: 'd1', from: 'dave', to: 'carol', start: now, end: new Date(now.getTime() + 3600_000) });
    const req = await h.engine.requests.create('alice', { resource: 'prod-pg' });
    // carol (no approver herself) approves stage 1 on dave's behalf
    expect((await h.engine.requests.approve(req.id, 'carol')).reviews[0]).toMatchObject({ approver: 'carol', onBehalfOf: 'dave', stage: 0 });
    expect((await refusal(h.engine.requests.approve(req.id, 'dave'))).code).toBe('FORBIDDEN');
    expect((await refusal(h.engine.requests.approve(req.id, 'carol'))).code).toBe('FORBIDDEN');
    expect(await h.store.getRequest(req.id)).toMatchObject({ state: 'pending', stage: 1 });
    expect(await h.engine.requests.approve(req.id, 'erin')).toMatchObject({ state: 'approved' });
  });
});

describe('escalation approvers have no power before the escalation delay', () => {
  let h: Harness;
  beforeEach(async () => {
    h = makeHarness();
    // Only bob approves; the dba team joins 30 minutes after a request was made.
    await seed(h, {
      limitAccessTime: BUSINESS_HOURS,
      requireApproval: {
        approvers: [], approvals: 1, requireReason: false, requireTicket: false, startOn: 'approval',
        escalation: { afterMinutes: 30, approvers: [{ team: 'dba' }] },
      },
      singleUser: true,
    });
  });
  afterEach(async () => {
    await h.store.close();
  });

  it('an escalation approver cannot force check-in before the escalation delay has passed', async () => {
    const req = await h.engine.requests.create('alice', { resource: 'prod-pg' });
    await h.engine.requests.approve(req.id, 'bob');
    await h.engine.leases.checkout('alice', 'prod-pg');
    h.clock.advance(60_000);
    const e = await refusal(h.engine.leases.forceCheckin('dave', 'prod-pg', 'mine now'));
    expect(e.code).toBe('FORBIDDEN');
    expect(await h.store.getHeldLease('prod-pg')).toMatchObject({ holder: 'alice', state: 'held' });
    expect(h.revokes.filter((r) => r.kind === 'lease_ended')).toEqual([]);
    expect(await h.engine.leases.mayForce('dave', await h.engine.directory.requireResource('prod-pg'))).toBe(false);
    // The owner always may; once the delay has passed, so may the escalation approvers.
    expect(await h.engine.leases.mayForce('bob', await h.engine.directory.requireResource('prod-pg'))).toBe(true);
    h.clock.advance(29 * 60_000);
    expect(await h.engine.leases.forceCheckin('dave', 'prod-pg', 'incident')).toMatchObject({ state: 'force_checked_in', endedBy: 'dave' });
  });

  it('an escalation approver cannot approve before the escalation delay has passed (the same rule)', async () => {
    const req = await h.engine.requests.create('alice', { resource: 'prod-pg' });
    h.clock.advance(29 * 60_000);
    expect((await refusal(h.engine.requests.approve(req.id, 'dave'))).code).toBe('FORBIDDEN');
    h.clock.advance(60_000);
    expect(await h.engine.requests.approve(req.id, 'dave')).toMatchObject({ state: 'approved' });
  });
});
