/** Store contract, part 3: the batch writes a mass teardown uses (session records, audit entries). */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Store } from '../../../src/store/store.js';
import type { ContractContext } from './contract.js';
import * as f from './fixtures.js';
import { GENESIS, rejection } from './fixtures.js';

export function batchContract(ctx: ContractContext): void {
  let store: Store;
  beforeEach(() => {
    store = ctx.store;
  });

  describe('batches', () => {
    it('writes many session records at once, replacing live ones, and an empty batch changes nothing', async () => {
      await store.putSession(f.session('s1'));
      await store.putSession(f.session('s2', { startedAt: f.at(1) }));
      const ended = (id: string, startedAt = f.at(0)) =>
        f.session(id, { startedAt, state: 'ended', endedAt: f.at(5), endReason: 'force_checked_in', endMessage: 'by olivia', bytesIn: 10, bytesOut: 2 ** 40 });
      const batch = [ended('s1'), ended('s2', f.at(1)), ...Array.from({ length: 300 }, (_, i) => ended(`n${String(i).padStart(3, '0')}`, f.at(2)))];
      await store.putSessions(batch);
      await store.putSessions([]);
      expect(await store.getSession('s1')).toStrictEqual(batch[0]);
      expect(await store.getSession('s2')).toStrictEqual(batch[1]);
      expect(await store.getSession('n299')).toStrictEqual(batch[301]);
      expect(await store.listSessions({ state: 'live' })).toEqual([]);
      expect(await store.listSessions({ state: 'ended' })).toHaveLength(302);
    });

    it('writes none of a batch of session records when one of them cannot be stored', async () => {
      await store.putSession(f.session('s1'));
      const broken = { ...f.session('s3'), user: null } as unknown as ReturnType<typeof f.session>;
      await rejection(store.putSessions([f.session('s1', { state: 'ended', endedAt: f.at(5) }), f.session('s2'), broken]));
      expect((await store.getSession('s1'))?.state).toBe('live');
      expect(await store.getSession('s2')).toBeUndefined();
    });

    const draft = (n: number) => ({ at: f.at(n), actor: 'alice', action: 'session.end', subject: `s${n}`, data: { n, reason: 'force_checked_in' } });

    it('appends a batch of audit entries as consecutive links of the one chain', async () => {
      const first = await store.appendAudit(draft(0), f.seal);
      const batch = await store.appendAuditBatch(Array.from({ length: 250 }, (_, i) => draft(i + 1)), f.seal);
      expect(batch.map((e) => e.seq)).toEqual(Array.from({ length: 250 }, (_, i) => i + 2));
      batch.forEach((e, i) => expect(e.prev).toBe(i === 0 ? first.mac : batch[i - 1]?.mac));
      expect(await store.appendAuditBatch([], f.seal)).toEqual([]);
      const after = await store.appendAudit(draft(251), f.seal);
      expect(after).toMatchObject({ seq: 252, prev: batch[249]?.mac });
      const listed = await store.listAudit();
      expect(listed.slice(1, 251)).toStrictEqual(batch);
      for (const { mac, ...rest } of listed) expect(f.seal(rest)).toBe(mac);
      expect(listed[0]?.prev).toBe(GENESIS);
    });

    it('keeps the chain unbroken when batches and single appends race', async () => {
      await Promise.all([
        store.appendAuditBatch([draft(1), draft(2), draft(3)], f.seal),
        store.appendAudit(draft(4), f.seal),
        store.appendAuditBatch([draft(5), draft(6)], f.seal),
        store.appendAudit(draft(7), f.seal),
      ]);
      const listed = await store.listAudit();
      expect(listed.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
      listed.forEach((e, i) => expect(e.prev).toBe(i === 0 ? GENESIS : listed[i - 1]?.mac));
      // A batch's entries stay together, in order.
      const subjects = listed.map((e) => e.subject).join(',');
      expect(subjects).toContain('s1,s2,s3');
      expect(subjects).toContain('s5,s6');
    });

    it('stores none of a batch when the sealer throws part-way', async () => {
      await store.appendAudit(draft(1), f.seal);
      let calls = 0;
      const flaky = (e: Parameters<typeof f.seal>[0]) => {
        if (++calls === 2) throw new Error('key unavailable');
        return f.seal(e);
      };
      await rejection(store.appendAuditBatch([draft(2), draft(3), draft(4)], flaky));
      expect((await store.listAudit()).map((e) => e.seq)).toEqual([1]);
      expect((await store.appendAudit(draft(5), f.seal)).seq).toBe(2);
    });
  });
}
