import { describe, expect, it, vi } from 'vitest';
import type { SessionHandle } from '../../../src/broker/adapter.js';
import { Broker } from '../../../src/broker/broker.js';
import { EndRecorder } from '../../../src/broker/end-recorder.js';
import { silentLogger } from '../../../src/core/log.js';
import type { TerminationReason } from '../../../src/core/model.js';
import { BUSINESS_HOURS, makeHarness, seed } from '../workflow/harness.js';

const N = 60;

/** What happened, in order: a handle closed, or a write of ended-session records or audit rows. */
type Step = { kind: 'close'; id: string } | { kind: 'records'; ids: string[] } | { kind: 'audit'; subjects: string[] };

/** How a test's handles answer a close: at once (the JavaScript relay), or with a promise the test settles. */
type CloseAnswer = (id: string) => void | Promise<void>;

async function setup(answer: CloseAnswer = () => undefined) {
  const h = makeHarness();
  await seed(h, { limitAccessTime: BUSINESS_HOURS, singleUser: true });
  const broker = new Broker({ engine: h.engine, log: silentLogger, node: 'n1' });
  await h.engine.leases.checkout('alice', 'prod-pg');
  const steps: Step[] = [];
  const ids: string[] = [];
  for (let i = 0; i < N; i++) {
    const r = await broker.open({ user: 'alice', resource: 'prod-pg', protocol: 'postgres', client: `127.0.0.1:${6000 + i}`, mfa: { kind: 'none' } });
    if (!r.ok) throw new Error(r.denial.message);
    const id = r.session.id;
    const handle: SessionHandle = {
      warn: () => undefined,
      close: (_reason: TerminationReason) => {
        steps.push({ kind: 'close', id });
        return answer(id);
      },
    };
    await r.session.live(handle);
    ids.push(id);
  }
  // From here on, every write of an ended session or a session.end row lands in `steps` too.
  const store = h.store;
  const putSession = store.putSession.bind(store);
  const putSessions = store.putSessions.bind(store);
  const appendAudit = store.appendAudit.bind(store);
  const appendAuditBatch = store.appendAuditBatch.bind(store);
  const spies = {
    putSession: vi.spyOn(store, 'putSession').mockImplementation((rec) => {
      if (rec.state === 'ended') steps.push({ kind: 'records', ids: [rec.id] });
      return putSession(rec);
    }),
    putSessions: vi.spyOn(store, 'putSessions').mockImplementation((recs) => {
      steps.push({ kind: 'records', ids: recs.map((r) => r.id) });
      return putSessions(recs);
    }),
    appendAudit: vi.spyOn(store, 'appendAudit').mockImplementation((draft, seal) => {
      if (draft.action === 'session.end') steps.push({ kind: 'audit', subjects: [draft.subject] });
      return appendAudit(draft, seal);
    }),
    appendAuditBatch: vi.spyOn(store, 'appendAuditBatch').mockImplementation((drafts, seal) => {
      steps.push({ kind: 'audit', subjects: drafts.filter((d) => d.action === 'session.end').map((d) => d.subject) });
      return appendAuditBatch(drafts, seal);
    }),
  };
  return { h, broker, steps, ids, spies };
}

describe('mass teardown', () => {
  it(`a force check-in of a lease with ${N} live sessions closes every handle before any record or audit row is written, then records and audits each`, async () => {
    const { h, broker, steps, ids, spies } = await setup();
    await h.engine.leases.forceCheckin('bob', 'prod-pg', 'incident');
    expect(broker.live()).toHaveLength(0);
    await vi.waitFor(async () => expect(await h.store.listAudit({ action: 'session.end' })).toHaveLength(N));

    const firstWrite = steps.findIndex((s) => s.kind !== 'close');
    expect(firstWrite).toBe(N);
    expect(steps.slice(0, N).map((s) => (s.kind === 'close' ? s.id : '')).sort()).toEqual([...ids].sort());
    // One transaction for the records, one for the audit rows.
    expect(spies.putSessions).toHaveBeenCalledTimes(1);
    expect(spies.appendAuditBatch).toHaveBeenCalledTimes(1);
    expect(steps.slice(N)).toEqual([
      { kind: 'records', ids: expect.arrayContaining(ids) },
      { kind: 'audit', subjects: expect.arrayContaining(ids) },
    ]);

    for (const id of ids) {
      expect(await h.store.getSession(id)).toMatchObject({ state: 'ended', endReason: 'force_checked_in', endMessage: expect.stringContaining('incident') });
    }
    const ends = await h.store.listAudit({ action: 'session.end' });
    expect(ends.map((e) => e.subject).sort()).toEqual([...ids].sort());
    for (const e of ends) expect(e).toMatchObject({ actor: 'alice', data: { resource: 'prod-pg', reason: 'force_checked_in', protocol: 'postgres' } });
    // The batch extended the one chain: it still verifies end to end.
    expect(await h.audit.verify()).toMatchObject({ ok: true });
    expect(h.notices.filter((n) => n.kind === 'session_ended')).toHaveLength(N);
  });

  it('closes answered later, one by one (a data path on another thread), are all answered before any record or audit row is written, and then written as one batch', async () => {
    const answered: string[] = [];
    const settle = new Map<string, () => void>();
    const { h, broker, steps, ids, spies } = await setup((id) => new Promise<void>((resolve) => settle.set(id, () => {
      answered.push(id);
      resolve();
    })));
    // Every step records how many closes had been answered when it happened.
    const at: number[] = [];
    const push = steps.push.bind(steps);
    steps.push = (...items: Step[]) => {
      for (const _ of items) at.push(answered.length);
      return push(...items);
    };
    await h.engine.leases.forceCheckin('bob', 'prod-pg', 'incident');
    expect(settle.size).toBe(N);
    // Answered a few at a time across turns of the event loop, as the addon's batches of events come.
    const order = [...ids].reverse();
    for (let i = 0; i < order.length; i += 7) {
      for (const id of order.slice(i, i + 7)) settle.get(id)!();
      await new Promise((r) => setImmediate(r));
    }
    await vi.waitFor(async () => expect(await h.store.listAudit({ action: 'session.end' })).toHaveLength(N));
    const writes = steps.map((s, i) => ({ s, answered: at[i]! })).filter((w) => w.s.kind !== 'close');
    expect(writes.length).toBeGreaterThan(0);
    for (const w of writes) expect(w.answered).toBe(N);
    expect(spies.putSessions).toHaveBeenCalledTimes(1);
    expect(spies.appendAuditBatch).toHaveBeenCalledTimes(1);
    expect(steps.filter((s) => s.kind === 'records').flatMap((s) => (s.kind === 'records' ? s.ids : [])).sort()).toEqual([...ids].sort());
    expect(broker.live()).toHaveLength(0);
    expect(await h.audit.verify()).toMatchObject({ ok: true });
  });

  it('a single session ending still writes its record and audit row one by one, with no batch', async () => {
    const { h, broker, ids, spies } = await setup();
    const id = ids[0]!;
    expect(await broker.kill(id, 'admin')).toBe(true);
    // kill() resolves once the record and the audit row are written.
    expect(await h.store.getSession(id)).toMatchObject({ state: 'ended', endReason: 'killed' });
    expect((await h.store.listAudit({ action: 'session.end', subject: id }))).toHaveLength(1);
    expect(spies.putSessions).not.toHaveBeenCalled();
    expect(spies.appendAuditBatch).not.toHaveBeenCalled();
    expect(broker.live()).toHaveLength(N - 1);
  });

  it('a store that fails the batch of records still gets the audit rows, and every socket is closed all the same', async () => {
    const { h, broker, steps, spies } = await setup();
    spies.putSessions.mockRejectedValueOnce(new Error('disk full'));
    await h.engine.leases.forceCheckin('bob', 'prod-pg', 'incident');
    expect(broker.live()).toHaveLength(0);
    await vi.waitFor(async () => expect(await h.store.listAudit({ action: 'session.end' })).toHaveLength(N));
    expect(await h.store.listSessions({ state: 'ended' })).toHaveLength(0);
    expect(steps.filter((s) => s.kind === 'close')).toHaveLength(N);
  });

  it('a close that is never answered holds the batch at most holdMs: the ends gathered meanwhile are written then', async () => {
    const h = makeHarness();
    const recorder = new EndRecorder({ store: h.store, audit: h.audit, log: silentLogger, closing: () => new Promise<void>(() => undefined), holdMs: 40 });
    const t0 = performance.now();
    const written = Array.from({ length: 3 }, (_, i) => recorder.add({
      record: { id: `s${i}`, user: 'alice', resource: 'prod-pg', protocol: 'postgres', state: 'ended', client: '127.0.0.1:1', startedAt: h.clock.now(), endedAt: h.clock.now(), bytesIn: 0, bytesOut: 0, node: 'n1' },
      audit: { actor: 'alice', subject: `s${i}`, data: { reason: 'killed' } },
      after: () => undefined,
    }));
    expect(await h.store.getSession('s0')).toBeUndefined();
    await Promise.all(written);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(35);
    for (const id of ['s0', 's1', 's2']) expect(await h.store.getSession(id)).toMatchObject({ state: 'ended' });
    expect((await h.store.listAudit({ action: 'session.end' })).map((e) => e.subject)).toEqual(['s0', 's1', 's2']);
  });
});
