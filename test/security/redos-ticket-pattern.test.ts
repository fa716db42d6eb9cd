import { performance } from 'node:perf_hooks';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { WorkflowSettings } from '../../src/core/model.js';
import { BUSINESS_HOURS, makeHarness, seed, type Harness, refusal } from '../unit/workflow/harness.js';

/**
 * Finding 8: an administrator's ticket pattern `^(a+)+$` and a 32-character ticket kept
 * the single-threaded gateway busy for 20 s (every door, every monitor, /healthz). Ticket
 * patterns now run on a linear-time engine, and what that engine cannot run is refused
 * when the workflow is configured.
 */

const approval = (ticketPattern: string) => ({
  limitAccessTime: BUSINESS_HOURS,
  requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, requireReason: false, requireTicket: true, ticketPattern, startOn: 'approval' as const },
});

describe('ticket patterns cannot stall the gateway', () => {
  let h: Harness;
  beforeEach(async () => {
    h = makeHarness();
    await seed(h, {});
  });
  afterEach(async () => {
    await h.store.close();
  });

  it('a catastrophic pattern ^(a+)+$ with a 32-character non-matching ticket is refused at once instead of freezing the gateway', async () => {
    await h.engine.directory.setWorkflow('admin', 'prod-pg', approval('^(a+)+$'));
    const started = performance.now();
    const e = await refusal(h.engine.requests.create('alice', { resource: 'prod-pg', ticket: `${'a'.repeat(32)}!` }));
    const elapsed = performance.now() - started;
    expect(e).toMatchObject({ code: 'VALIDATION', details: { field: 'ticket' } });
    // A backtracking engine needs tens of seconds here; a linear one needs milliseconds.
    expect(elapsed).toBeLessThan(2000);
    // The pattern still means what it says.
    expect((await h.engine.requests.create('alice', { resource: 'prod-pg', ticket: 'a'.repeat(64) })).ticket).toBe('a'.repeat(64));
  });

  it('a pattern only a backtracking engine can run (backreference, lookaround) is refused when the workflow is configured', async () => {
    for (const pattern of ['^(a+)\\1$', '^(?=OPS)OPS-[0-9]+$', '^OPS-(?!0)[0-9]+$', '(?<=X)Y']) {
      const e = await refusal(h.engine.directory.setWorkflow('admin', 'prod-pg', approval(pattern)));
      expect(e, pattern).toMatchObject({ code: 'VALIDATION', details: { field: 'requireApproval.ticketPattern' } });
    }
    expect((await h.engine.directory.requireResource('prod-pg')).settings).toEqual({});
  });

  it('a stored pattern the linear engine cannot run refuses the request rather than running a backtracking regex', async () => {
    // Stored before this check existed (or written behind the API's back).
    const r = await h.engine.directory.requireResource('prod-pg');
    await h.store.putResource({ ...r, settings: approval('^(OPS)-\\1$') as WorkflowSettings });
    const e = await refusal(h.engine.requests.create('alice', { resource: 'prod-pg', ticket: 'OPS-OPS' }));
    expect(e).toMatchObject({ code: 'POLICY_INVALID', details: { field: 'requireApproval.ticketPattern' } });
    expect(await h.store.listRequests({ requester: 'alice' })).toEqual([]);
  });

  it('an ordinary pattern keeps matching as before (search semantics, anchors honoured)', async () => {
    await h.engine.directory.setWorkflow('admin', 'prod-pg', approval('OPS-[0-9]+'));
    expect((await h.engine.requests.create('alice', { resource: 'prod-pg', ticket: 'see OPS-12' })).ticket).toBe('see OPS-12');
    await h.engine.directory.setWorkflow('admin', 'prod-pg', approval('^OPS-[0-9]+$'));
    const e = await refusal(h.engine.requests.create('carol', { resource: 'prod-pg', ticket: 'see OPS-12' }));
    expect(e).toMatchObject({ code: 'VALIDATION', details: { field: 'ticket' } });
  });
});
