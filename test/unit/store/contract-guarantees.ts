/**
 * Store contract, part 2: the guarantees the workflow leans on (optimistic request updates,
 * one held lease per resource, TOTP steps and tickets used once, one unbroken audit chain).
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Store } from '../../../src/store/store.js';
import type { ContractContext } from './contract.js';
import type { GatehouseError } from '../../../src/core/errors.js';
import * as f from './fixtures.js';
import { GENESIS, rejection } from './fixtures.js';

export function guaranteeContract(ctx: ContractContext): void {
  let store: Store;
  beforeEach(() => {
    store = ctx.store;
  });

  describe('access requests', () => {
    it('round-trips a request, reviews with Date times included', async () => {
      await store.insertRequest(f.fullRequest('q1'));
      await store.insertRequest(f.request('q2'));
      const q1 = await store.getRequest('q1');
      expect(q1).toStrictEqual(f.fullRequest('q1'));
      expect(q1?.reviews[0]?.at).toBeInstanceOf(Date);
      expect(await store.getRequest('q2')).toStrictEqual(f.request('q2'));
      expect(await store.getRequest('q3')).toBeUndefined();
    });

    it('rejects a second insert with the same id as a store failure', async () => {
      await store.insertRequest(f.request('q1'));
      const duplicate = await rejection(store.insertRequest(f.request('q1', { requester: 'mallory' })));
      expect(duplicate.code).toBe('STORE_FAILURE');
      expect((await store.getRequest('q1'))?.requester).toBe('alice');
    });

    it('filters by requester, resource and states, oldest first', async () => {
      await store.insertRequest(f.request('q3', { createdAt: f.at(3), requester: 'bob', state: 'approved' }));
      await store.insertRequest(f.request('q1', { createdAt: f.at(1) }));
      await store.insertRequest(f.request('q2', { createdAt: f.at(2), resource: 'web', state: 'denied' }));
      const ids = async (q?: Parameters<Store['listRequests']>[0]) => (await store.listRequests(q)).map((r) => r.id);
      expect(await ids()).toEqual(['q1', 'q2', 'q3']);
      expect(await ids({ requester: 'alice' })).toEqual(['q1', 'q2']);
      expect(await ids({ resource: 'prod-pg' })).toEqual(['q1', 'q3']);
      expect(await ids({ states: ['pending', 'approved'] })).toEqual(['q1', 'q3']);
      expect(await ids({ requester: 'alice', resource: 'web', states: ['denied'] })).toEqual(['q2']);
      expect(await ids({ states: [] })).toEqual([]);
    });

    it('applies an update only over the version it was based on', async () => {
      await store.insertRequest(f.request('q1'));
      const approved = f.request('q1', {
        state: 'approved',
        reviews: [{ approver: 'bob', decision: 'approve', stage: 0, at: f.at(2) }],
        decidedAt: f.at(2),
        grantStart: f.at(2),
        grantEnd: f.at(62),
        version: 2,
      });
      expect(await store.updateRequest(approved)).toBe(true);
      expect(await store.getRequest('q1')).toStrictEqual(approved);

      const staleCancel = f.request('q1', { state: 'cancelled', version: 2 });
      expect(await store.updateRequest(staleCancel)).toBe(false);
      const aheadCancel = f.request('q1', { state: 'cancelled', version: 4 });
      expect(await store.updateRequest(aheadCancel)).toBe(false);
      expect(await store.getRequest('q1')).toStrictEqual(approved);
      expect(await store.updateRequest(f.request('missing', { version: 2 }))).toBe(false);
    });

    it('lets exactly one of two racing updates from the same version win', async () => {
      await store.insertRequest(f.request('q1'));
      const results = await Promise.all([
        store.updateRequest(f.request('q1', { state: 'approved', version: 2 })),
        store.updateRequest(f.request('q1', { state: 'denied', version: 2 })),
      ]);
      expect(results.filter(Boolean)).toHaveLength(1);
      expect((await store.getRequest('q1'))?.state).toBe(results[0] ? 'approved' : 'denied');
    });
  });

  describe('single-user leases', () => {
    it('round-trips a lease and finds it as the held lease of its resource', async () => {
      const held = f.lease('l1', { requestId: 'q1' });
      await store.insertLease(held);
      expect(await store.getLease('l1')).toStrictEqual(held);
      expect(await store.getHeldLease('prod-pg')).toStrictEqual(held);
      expect(await store.getHeldLease('web')).toBeUndefined();
      expect(await store.getLease('l2')).toBeUndefined();
    });

    it('refuses a second held lease on the same resource with CHECKED_OUT naming the holder', async () => {
      await store.insertLease(f.lease('l1', { holder: 'alice' }));
      const err = await rejection(store.insertLease(f.lease('l2', { holder: 'bob' })));
      expect(err.code).toBe('CHECKED_OUT');
      expect(err.details).toMatchObject({ resource: 'prod-pg', holder: 'alice' });
      expect(await store.getLease('l2')).toBeUndefined();
      await store.insertLease(f.lease('l3', { holder: 'bob', resource: 'web' }));
      expect((await store.getHeldLease('web'))?.holder).toBe('bob');
    });

    it('admits exactly one of many concurrent check-outs', async () => {
      const attempts = Array.from({ length: 20 }, (_, i) => store.insertLease(f.lease(`l${i}`, { holder: `u${i}` })));
      const settled = await Promise.allSettled(attempts);
      expect(settled.filter((s) => s.status === 'fulfilled')).toHaveLength(1);
      const codes = settled.flatMap((s) => (s.status === 'rejected' ? [(s.reason as GatehouseError).code] : []));
      expect(codes).toEqual(Array(19).fill('CHECKED_OUT'));
      expect(await store.listLeases({ resource: 'prod-pg' })).toHaveLength(1);
    });

    it('ends a held lease once, then allows a new check-out', async () => {
      await store.insertLease(f.lease('l1'));
      const end = { state: 'force_checked_in', endedAt: f.at(10), endedBy: 'olivia', endReason: 'incident' } as const;
      const ended = await store.endLease('l1', end);
      expect(ended).toStrictEqual({ ...f.lease('l1'), ...end });
      expect(await store.getLease('l1')).toStrictEqual(ended);
      expect(await store.endLease('l1', { state: 'checked_in', endedAt: f.at(11) })).toBeUndefined();
      expect(await store.endLease('nope', { state: 'checked_in', endedAt: f.at(11) })).toBeUndefined();
      expect(await store.getHeldLease('prod-pg')).toBeUndefined();

      await store.insertLease(f.lease('l2', { holder: 'bob', startedAt: f.at(12) }));
      expect((await store.getHeldLease('prod-pg'))?.id).toBe('l2');
      const checkedIn = await store.endLease('l2', { state: 'checked_in', endedAt: f.at(20) });
      const expected = f.lease('l2', { holder: 'bob', startedAt: f.at(12), state: 'checked_in', endedAt: f.at(20) });
      expect(checkedIn).toStrictEqual(expected);
    });

    it('keeps ended leases as history beside a held one, and a reused id is not CHECKED_OUT', async () => {
      await store.insertLease(f.lease('old', { state: 'expired', endedAt: f.at(60) }));
      await store.insertLease(f.lease('l1', { startedAt: f.at(61) }));
      expect((await store.listLeases({ resource: 'prod-pg' })).map((l) => l.id)).toEqual(['old', 'l1']);
      expect((await rejection(store.insertLease(f.lease('old', { resource: 'web' })))).code).toBe('STORE_FAILURE');
    });

    it('filters leases by state, holder and resource, oldest first', async () => {
      await store.insertLease(f.lease('l2', { startedAt: f.at(2), resource: 'web', holder: 'bob' }));
      await store.insertLease(f.lease('l1', { startedAt: f.at(1), state: 'expired', endedAt: f.at(5) }));
      await store.insertLease(f.lease('l3', { startedAt: f.at(3) }));
      const ids = async (q?: Parameters<Store['listLeases']>[0]) => (await store.listLeases(q)).map((l) => l.id);
      expect(await ids()).toEqual(['l1', 'l2', 'l3']);
      expect(await ids({ state: 'held' })).toEqual(['l2', 'l3']);
      expect(await ids({ holder: 'alice' })).toEqual(['l1', 'l3']);
      expect(await ids({ resource: 'prod-pg', state: 'expired' })).toEqual(['l1']);
    });
  });

  describe('MFA steps and launch tickets', () => {
    it('accepts a TOTP step once per user', async () => {
      expect(await store.useTotpStep('alice', 1000, f.at(0))).toBe(true);
      expect(await store.useTotpStep('alice', 1000, f.at(0.5))).toBe(false);
      expect(await store.useTotpStep('alice', 1001, f.at(0.5))).toBe(true);
      expect(await store.useTotpStep('bob', 1000, f.at(0.5))).toBe(true);
      // Housekeeping of old steps must not forget a step still inside the day.
      expect(await store.useTotpStep('carol', 5, f.at(23 * 60))).toBe(true);
      expect(await store.useTotpStep('alice', 1000, f.at(23 * 60))).toBe(false);
    });

    it('lets only one of concurrent uses of a step through', async () => {
      const results = await Promise.all(Array.from({ length: 10 }, () => store.useTotpStep('alice', 7, f.at(0))));
      expect(results.filter(Boolean)).toHaveLength(1);
    });

    it('consumes a ticket once, returning it marked used', async () => {
      await store.insertTicket(f.ticket('h1'));
      expect(await store.consumeTicket('h1', f.at(0.5))).toStrictEqual(f.ticket('h1', { usedAt: f.at(0.5) }));
      expect(await store.consumeTicket('h1', f.at(0.6))).toBeUndefined();
      expect(await store.consumeTicket('unknown', f.at(0.5))).toBeUndefined();
    });

    it('leaves a ticket unused when it is presented by another user or for another resource', async () => {
      await store.insertTicket(f.ticket('h1'));
      const t = f.ticket('h1');
      expect(await store.consumeTicket('h1', f.at(0.5), { user: 'mallory', resource: t.resource })).toBeUndefined();
      expect(await store.consumeTicket('h1', f.at(0.5), { user: t.user, resource: 'elsewhere' })).toBeUndefined();
      expect(await store.getTicket('h1')).toStrictEqual(t);
      expect(await store.consumeTicket('h1', f.at(0.5), { user: t.user, resource: t.resource })).toStrictEqual(f.ticket('h1', { usedAt: f.at(0.5) }));
      expect(await store.getTicket('h1')).toStrictEqual(f.ticket('h1', { usedAt: f.at(0.5) }));
      expect(await store.getTicket('unknown')).toBeUndefined();
    });

    it('does not consume an expired ticket, even at the exact expiry instant', async () => {
      await store.insertTicket(f.ticket('h1', { mfa: false, expiresAt: f.at(1) }));
      expect(await store.consumeTicket('h1', f.at(1))).toBeUndefined();
      expect(await store.consumeTicket('h1', f.at(2))).toBeUndefined();
      await store.insertTicket(f.ticket('h2', { mfa: false, expiresAt: f.at(1) }));
      const justBefore = new Date(f.at(1).getTime() - 1);
      expect(await store.consumeTicket('h2', justBefore)).toMatchObject({ hash: 'h2', mfa: false });
    });

    it('consumes a ticket for exactly one of concurrent callers, and refuses a duplicate hash', async () => {
      await store.insertTicket(f.ticket('h1'));
      const results = await Promise.all(Array.from({ length: 10 }, () => store.consumeTicket('h1', f.at(0.5))));
      expect(results.filter((t) => t !== undefined)).toHaveLength(1);
      expect((await rejection(store.insertTicket(f.ticket('h1')))).code).toBe('STORE_FAILURE');
    });
  });

  describe('ephemeral accounts', () => {
    it('round-trips an account with every field, and session records keep their account', async () => {
      const full = f.jitAccount('a1', {
        requestId: 'q1', leaseId: 'l1', sessionId: 's1', credentialsSealed: 'v1:sealed', deadline: f.at(60), error: 'no CREATEROLE',
        goneAt: f.at(61), state: 'gone', attempts: 3, version: 4, kind: 'elevation', grants: ['r1', 'r2'],
      });
      expect(await store.insertJitAccount(full)).toBe(true);
      expect(await store.getJitAccount('a1')).toStrictEqual(full);
      await store.putSession(f.session('s1', { account: 'gh_alice_x' }));
      expect((await store.getSession('s1'))?.account).toBe('gh_alice_x');
    });

    it('keeps one live account per grant and kind; an ended one does not count', async () => {
      expect(await store.insertJitAccount(f.jitAccount('a1', { grant: 'lease:L' }))).toBe(true);
      expect(await store.insertJitAccount(f.jitAccount('a2', { grant: 'lease:L', state: 'active' }))).toBe(false);
      expect(await store.insertJitAccount(f.jitAccount('a3', { grant: 'lease:L', kind: 'elevation' }))).toBe(true);
      expect((await store.findLiveJitAccount('lease:L', 'ephemeral'))?.id).toBe('a1');
      const a1 = (await store.getJitAccount('a1'))!;
      expect(await store.updateJitAccount({ ...a1, state: 'gone', version: 2 })).toBe(true);
      expect(await store.findLiveJitAccount('lease:L', 'ephemeral')).toBeUndefined();
      expect(await store.insertJitAccount(f.jitAccount('a4', { grant: 'lease:L' }))).toBe(true);
    });

    it('updates only from the version it read, and filters by state, resource and grant', async () => {
      await store.insertJitAccount(f.jitAccount('a1', { createdAt: f.at(1), leaseId: 'L1' }));
      await store.insertJitAccount(f.jitAccount('a2', { createdAt: f.at(2), resource: 'web', state: 'active', requestId: 'Q2' }));
      const a1 = (await store.getJitAccount('a1'))!;
      expect(await store.updateJitAccount({ ...a1, state: 'provisioning', version: 2 })).toBe(true);
      expect(await store.updateJitAccount({ ...a1, state: 'failed', version: 2 })).toBe(false);
      expect((await store.getJitAccount('a1'))?.state).toBe('provisioning');
      const ids = async (q?: Parameters<Store['listJitAccounts']>[0]) => (await store.listJitAccounts(q)).map((a) => a.id);
      expect(await ids()).toEqual(['a1', 'a2']);
      expect(await ids({ states: ['active'] })).toEqual(['a2']);
      expect(await ids({ states: [] })).toEqual([]);
      expect(await ids({ resource: 'prod-pg' })).toEqual(['a1']);
      expect(await ids({ leaseId: 'L1' })).toEqual(['a1']);
      expect(await ids({ requestId: 'Q2' })).toEqual(['a2']);
      expect(await ids({ limit: 1 })).toEqual(['a2']);
    });
  });

  describe('audit', () => {
    const draft = (n: number, over: { actor?: string; action?: string; subject?: string } = {}) => ({
      at: f.at(n),
      actor: over.actor ?? 'alice',
      action: over.action ?? 'request.create',
      subject: over.subject ?? `q${n}`,
      data: { n, nested: { list: [1, 'two'], flag: true } },
    });

    it('chains entries: seq counts from 1, prev is the previous mac, mac is the sealer output', async () => {
      const seen: unknown[] = [];
      const appended = [];
      for (let n = 1; n <= 3; n++) appended.push(await store.appendAudit(draft(n), (e) => (seen.push(e), f.seal(e))));
      expect(appended.map((e) => e.seq)).toEqual([1, 2, 3]);
      expect(appended.map((e) => e.prev)).toEqual([GENESIS, appended[0]?.mac, appended[1]?.mac]);
      expect(seen[0]).toStrictEqual({ seq: 1, prev: GENESIS, ...draft(1) });
      const listed = await store.listAudit();
      expect(listed).toStrictEqual(appended);
      // A verifier recomputes each MAC from what it reads back; that must match what was sealed.
      for (const { mac, ...rest } of listed) expect(f.seal(rest)).toBe(mac);
    });

    it('keeps one unbroken chain under concurrent appends', async () => {
      await Promise.all(Array.from({ length: 25 }, (_, i) => store.appendAudit(draft(i), f.seal)));
      const listed = await store.listAudit();
      expect(listed.map((e) => e.seq)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
      listed.forEach((e, i) => expect(e.prev).toBe(i === 0 ? GENESIS : listed[i - 1]?.mac));
    });

    it('filters by actor, action and subject, and pages with afterSeq and limit', async () => {
      await store.appendAudit(draft(1), f.seal);
      await store.appendAudit(draft(2, { actor: 'bob', action: 'request.approve', subject: 'q1' }), f.seal);
      await store.appendAudit(draft(3, { action: 'lease.checkout' }), f.seal);
      await store.appendAudit(draft(4, { actor: 'bob' }), f.seal);
      const seqs = async (q?: Parameters<Store['listAudit']>[0]) => (await store.listAudit(q)).map((e) => e.seq);
      expect(await seqs({ actor: 'bob' })).toEqual([2, 4]);
      expect(await seqs({ action: 'request.create' })).toEqual([1, 4]);
      expect(await seqs({ subject: 'q1' })).toEqual([1, 2]);
      expect(await seqs({ afterSeq: 1, limit: 2 })).toEqual([2, 3]);
      expect(await seqs({ afterSeq: 2, actor: 'bob' })).toEqual([4]);
      expect(await seqs({ afterSeq: 4 })).toEqual([]);
      expect(await seqs({ limit: 2, newest: true })).toEqual([3, 4]);
    });

    it('stores nothing when the sealer throws', async () => {
      await store.appendAudit(draft(1), f.seal);
      const failing = () => {
        throw new Error('key unavailable');
      };
      await rejection(store.appendAudit(draft(2), failing));
      const next = await store.appendAudit(draft(3), f.seal);
      expect(next.seq).toBe(2);
      expect((await store.listAudit()).map((e) => e.seq)).toEqual([1, 2]);
    });
  });
}
