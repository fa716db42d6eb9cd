import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GatehouseError } from '../../src/core/errors.js';
import { BUSINESS_HOURS, makeHarness, seed, type Harness } from '../unit/workflow/harness.js';

/**
 * Findings 12 and 13: who counts as an approver. A two-stage approval needs two different
 * people, and an escalation approver gets no power (approve or force check-in) before the
 * escalation delay has passed.
 */

async function refusal(p: Promise<unknown>): Promise<GatehouseError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(GatehouseError);
  return e as GatehouseError;
}

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
