/**
 * broker.recheckAll: what a node does when it may have missed revoke events (its cluster
 * event feed was down). "Another node" here is a second engine on the same store with its own
 * bus, so nothing it does reaches this node's session monitors: only the re-check can.
 */
import { describe, expect, it } from 'vitest';
import { Broker } from '../../../src/broker/broker.js';
import { openLive } from './live-session.js';
import { StoreError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/log.js';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../../src/store/store.js';
import { BUSINESS_HOURS, makeHarness, seed, type Harness } from '../workflow/harness.js';

const SINGLE_USER = { limitAccessTime: BUSINESS_HOURS, singleUser: true };
const APPROVAL = { limitAccessTime: BUSINESS_HOURS, requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, requireReason: false, requireTicket: false, startOn: 'approval' } };

/** A store whose every call fails while `down` is set, as PostgreSQL does when it is unreachable. */
function breakable(inner: Store): { store: Store; setDown(down: boolean): void } {
  let down = false;
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (down) return Promise.reject(new StoreError(`${String(prop)}: connection refused`));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { store, setDown: (d) => void (down = d) };
}

/** This node (h, broker) and another node (other) on the same store. */
async function cluster(settings: Record<string, unknown>, store?: Store) {
  const h = makeHarness(store ? { store } : {});
  await seed(h, settings);
  const other: Harness = makeHarness({ store: store ?? h.store, clock: h.clock, key: h.key });
  const broker = new Broker({ engine: h.engine, log: silentLogger, node: 'here' });
  return { h, other, broker };
}

describe('re-checking live sessions when revoke events may have been missed', () => {
  it('ends a session whose lease another node force checked in, with that reason and the owner\'s words', async () => {
    const { h, other, broker } = await cluster(SINGLE_USER);
    await h.engine.leases.checkout('alice', 'prod-pg');
    const { handle } = await openLive(broker);
    await other.engine.leases.forceCheckin('bob', 'prod-pg', 'incident 42');
    expect(handle.closed).toEqual([]); // nothing was heard here

    expect(await broker.recheckAll('event feed lost')).toEqual({ checked: 1, ended: 1, unknown: 0 });
    expect(handle.closed).toHaveLength(1);
    expect(handle.closed[0]?.reason).toBe('force_checked_in');
    expect(handle.closed[0]?.message).toMatch(/force checked in by bob: incident 42/);
    expect(broker.live()).toEqual([]);
  });

  it('ends a session whose lease was returned and taken again by the same user: the session ran under the old one', async () => {
    const { h, other, broker } = await cluster(SINGLE_USER);
    await h.engine.leases.checkout('alice', 'prod-pg');
    const { handle } = await openLive(broker);
    await other.engine.leases.checkin('alice', 'prod-pg');
    await other.engine.leases.checkout('alice', 'prod-pg');
    await broker.recheckAll('event feed lost');
    expect(handle.closed.map((c) => c.reason)).toEqual(['checked_in']);
  });

  it('ends a session whose grant another node ended', async () => {
    const { h, other, broker } = await cluster(APPROVAL);
    const req = await h.engine.requests.create('alice', { resource: 'prod-pg', reason: 'deploy' });
    await h.engine.requests.approve(req.id, 'dave');
    const { handle } = await openLive(broker);
    await other.engine.requests.end(req.id, 'dave', 'revoked by dave');
    await broker.recheckAll('event feed lost');
    expect(handle.closed.map((c) => c.reason)).toEqual(['request_revoked']);
    expect(handle.closed[0]?.message).toMatch(/revoked by dave/);
  });

  it('ends a session another node killed in the store, and the sessions of a user another node disabled', async () => {
    const { other, broker } = await cluster({});
    const killed = await openLive(broker, 'alice');
    const disabled = await openLive(broker, 'carol');
    const otherBroker = new Broker({ engine: other.engine, log: silentLogger, node: 'there' });
    expect(await otherBroker.kill(killed.session.id, 'admin')).toBe(true);
    await other.engine.directory.setDisabled('admin', 'carol', true);

    expect(await broker.recheckAll('event feed lost')).toMatchObject({ checked: 2, ended: 2 });
    expect(killed.handle.closed.map((c) => c.reason)).toEqual(['killed']);
    expect(disabled.handle.closed.map((c) => c.reason)).toEqual(['user_disabled']);
  });

  it('keeps a session that is still allowed, and never moves its deadline later', async () => {
    const { h, broker } = await cluster({ limitAccessTime: BUSINESS_HOURS });
    const { session, handle } = await openLive(broker);
    const deadline = session.decision.deadline!.getTime();
    h.clock.advance(30 * 60_000);
    expect(await broker.recheckAll('periodic re-check')).toEqual({ checked: 1, ended: 0, unknown: 0 });
    expect(handle.closed).toEqual([]);
    expect(session.decision.deadline!.getTime()).toBe(deadline);
    h.clock.advance(90 * 60_000 - 1);
    expect(handle.closed).toEqual([]);
    h.clock.advance(1);
    expect(handle.closed.map((c) => c.reason)).toEqual(['expired']);
  });

  it('moves a deadline earlier when the workflow now allows less', async () => {
    const { h, other, broker } = await cluster({ limitAccessTime: { ...BUSINESS_HOURS, maxDurationMinutes: 600 } });
    const { session, handle } = await openLive(broker); // 10:00 Berlin, the window closes at 18:00
    await other.engine.directory.setWorkflow('admin', 'prod-pg', {
      limitAccessTime: { ...BUSINESS_HOURS, schedule: [{ days: ['mon'], start: '08:00', end: '12:00' }], maxDurationMinutes: 600 },
    });
    await broker.recheckAll('event feed lost');
    expect(handle.closed).toEqual([]);
    expect(session.decision.deadline?.toISOString()).toBe('2026-01-05T11:00:00.000Z');
    h.clock.set('2026-01-05T11:00:00Z');
    expect(handle.closed.map((c) => c.reason)).toEqual(['schedule_closed']);
  });

  it('keeps a session the store cannot answer for, refuses new connections meanwhile, and still ends the session at its known deadline', async () => {
    const { store, setDown } = breakable(SqliteStore.open(':memory:'));
    const { h, broker } = await cluster(SINGLE_USER, store);
    await h.engine.leases.checkout('alice', 'prod-pg');
    const { handle } = await openLive(broker);
    setDown(true);

    expect(await broker.recheckAll('event feed lost')).toEqual({ checked: 1, ended: 0, unknown: 1 });
    expect(handle.closed).toEqual([]);
    const refused = await broker.open({ user: 'alice', resource: 'prod-pg', protocol: 'postgres', client: 'x', mfa: { kind: 'none' } });
    expect(refused.ok).toBe(false);
    expect(!refused.ok && refused.denial).toMatchObject({ code: 'gateway_unavailable', message: 'The gateway could not check your access right now; try again shortly.' });

    h.clock.advance(120 * 60_000); // the check-out's end, known since the connection started
    expect(handle.closed.map((c) => c.reason)).toEqual(['expired']);
  });
});
