import { describe, expect, it, vi } from 'vitest';
import { Broker } from '../../../src/broker/broker.js';
import { openLive, RecordingHandle } from './live-session.js';
import { silentLogger } from '../../../src/core/log.js';
import { BUSINESS_HOURS, makeHarness, seed } from '../workflow/harness.js';

async function setup(settings: Record<string, unknown>) {
  const h = makeHarness();
  await seed(h, settings);
  const broker = new Broker({ engine: h.engine, log: silentLogger, node: 'n1' });
  return { h, broker };
}

describe('broker', () => {
  it('a denied connection gets the decision and leaves no session behind', async () => {
    const { h, broker } = await setup({});
    const r = await broker.open({ user: 'mallory', resource: 'prod-pg', protocol: 'postgres', client: 'x', mfa: { kind: 'none' } });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.denial.code).toBe('not_on_access_list');
    expect(await h.store.listSessions()).toEqual([]);
  });

  it('a provisional session that never reached the target is discarded, not ended', async () => {
    const { h, broker } = await setup({});
    const r = await broker.open({ user: 'alice', resource: 'prod-pg', protocol: 'postgres', client: 'x', mfa: { kind: 'none' } });
    if (!r.ok) throw new Error('denied');
    r.session.discard('target_unreachable', 'connection refused');
    expect(await h.store.listSessions()).toEqual([]);
    expect((await h.store.listAudit({ action: 'session.discard' }))[0]?.data).toMatchObject({ code: 'target_unreachable', detail: 'connection refused', door: 'postgres', client: 'x' });
  });

  it('warns before the deadline and closes at it, recording reason, bytes and duration', async () => {
    const { h, broker } = await setup({ limitAccessTime: BUSINESS_HOURS });
    const { session, handle } = await openLive(broker);
    session.bytesIn = 100;
    session.bytesOut = 2000;
    expect((await h.store.getSession(session.id))?.state).toBe('live');
    h.clock.advance(115 * 60_000);
    expect(handle.warnings).toHaveLength(1);
    expect(handle.warnings[0]).toMatch(/ends in 5 min/);
    expect(handle.closed).toEqual([]);
    h.clock.advance(5 * 60_000);
    expect(handle.closed).toHaveLength(1);
    expect(handle.closed[0]?.reason).toBe('expired');
    await new Promise((r) => setImmediate(r));
    const rec = await h.store.getSession(session.id);
    expect(rec).toMatchObject({ state: 'ended', endReason: 'expired', bytesIn: 100, bytesOut: 2000 });
    const audit = (await h.store.listAudit({ action: 'session.end' }))[0];
    expect(audit?.data).toMatchObject({ reason: 'expired', bytesIn: 100, bytesOut: 2000, durationMs: 120 * 60_000 });
  });

  it('the schedule window closing ends the session with schedule_closed', async () => {
    const { h, broker } = await setup({ limitAccessTime: { ...BUSINESS_HOURS, maxDurationMinutes: 600 } });
    h.clock.set('2026-01-05T16:30:00Z'); // 17:30 Berlin; the window closes at 18:00
    const { handle } = await openLive(broker);
    h.clock.advance(30 * 60_000);
    expect(handle.closed[0]?.reason).toBe('schedule_closed');
    expect(handle.closed[0]?.message).toMatch(/schedule window/);
  });

  it('force check-in ends the holder session at once; other users are untouched', async () => {
    const { h, broker } = await setup({ limitAccessTime: BUSINESS_HOURS, singleUser: true });
    await h.engine.leases.checkout('alice', 'prod-pg');
    const { handle } = await openLive(broker);
    await h.engine.leases.forceCheckin('bob', 'prod-pg', 'incident');
    expect(handle.closed).toEqual([{ reason: 'force_checked_in', message: expect.stringMatching(/force checked in by bob: incident/) }]);
    expect(broker.live()).toHaveLength(0);
  });

  it('kill, user disabled, resource removed and settings changed all end the session', async () => {
    const { h, broker } = await setup({ limitAccessTime: BUSINESS_HOURS });
    const a = await openLive(broker);
    expect(await broker.kill(a.session.id, 'admin')).toBe(true);
    expect(a.handle.closed[0]?.reason).toBe('killed');
    expect(await broker.kill(a.session.id, 'admin')).toBe(false);

    const b = await openLive(broker);
    await h.engine.directory.setDisabled('admin', 'alice', true);
    expect(b.handle.closed[0]?.reason).toBe('user_disabled');
    await h.engine.directory.setDisabled('admin', 'alice', false);

    const c = await openLive(broker);
    // Still allowed after the change: the session stays.
    await h.engine.directory.setWorkflow('admin', 'prod-pg', { limitAccessTime: { ...BUSINESS_HOURS, maxDurationMinutes: 30 } });
    await new Promise((r) => setImmediate(r));
    expect(c.handle.closed).toEqual([]);
    // Now it needs approval: the session goes.
    await h.engine.directory.setWorkflow('admin', 'prod-pg', { limitAccessTime: BUSINESS_HOURS, requireApproval: { approvers: [], approvals: 1, requireReason: false, requireTicket: false, startOn: 'approval' } });
    await vi.waitFor(() => expect(c.handle.closed[0]?.reason).toBe('settings_changed'));

    await h.engine.directory.setWorkflow('admin', 'prod-pg', {});
    const d = await openLive(broker);
    await h.engine.directory.removeResource('admin', 'prod-pg');
    expect(d.handle.closed[0]?.reason).toBe('resource_removed');
  });

  it('locks a user out of password logins after repeated failures, for a while', async () => {
    const { h, broker } = await setup({});
    const { hashPassword } = await import('../../../src/secrets/passwords.js');
    const alice = (await h.store.getUser('alice'))!;
    await h.store.putUser({ ...alice, passwordHash: await hashPassword('right-password') });
    const port = broker.portFor({ protocol: 'postgres', loginExample: 'psql' });
    const login = (pw: string, client = '10.0.0.1:5000') => port.login({ name: 'alice:prod-pg', secret: { kind: 'password', value: pw }, client });
    for (let i = 0; i < 5; i++) expect(await login('wrong')).toMatchObject({ ok: false, code: 'bad_password' });
    expect(await login('right-password', '10.0.0.2:5000')).toMatchObject({ ok: false, code: 'locked' });
    expect(await h.store.listAudit({ action: 'login.refuse' })).toHaveLength(6);
    h.clock.advance(15 * 60_000);
    expect(await login('right-password', '10.0.0.2:5000')).toMatchObject({ ok: true, user: 'alice', resource: 'prod-pg', via: 'password' });
  });

  it('a revocation that lands between the decision and going live still ends the session', async () => {
    const { h, broker } = await setup({ limitAccessTime: BUSINESS_HOURS, singleUser: true });
    await h.engine.leases.checkout('alice', 'prod-pg');
    const r = await broker.open({ user: 'alice', resource: 'prod-pg', protocol: 'postgres', client: '127.0.0.1:5555', mfa: { kind: 'none' } });
    if (!r.ok) throw new Error(r.denial.message);
    // The door is still logging in to the target when an approver force-checks-in.
    await h.engine.leases.forceCheckin('bob', 'prod-pg', 'incident');
    const handle = new RecordingHandle();
    await r.session.live(handle);
    expect(handle.closed).toEqual([{ reason: 'force_checked_in', message: expect.stringContaining('incident') }]);
    expect((await h.store.getSession(r.session.id))?.state).toBe('ended');
  });

  it('a session that ends while its live record is being written stays ended, with no monitor left behind', async () => {
    const { h, broker } = await setup({});
    const r = await broker.open({ user: 'alice', resource: 'prod-pg', protocol: 'postgres', client: '127.0.0.1:5555', mfa: { kind: 'none' } });
    if (!r.ok) throw new Error(r.denial.message);
    // A store that answers later (the PostgreSQL store does): the live record's write is held.
    const put = h.store.putSession.bind(h.store);
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    h.store.putSession = async (rec) => {
      if (rec.state === 'live') await held;
      return put(rec);
    };
    const handle = new RecordingHandle();
    const live = r.session.live(handle);
    // The client leaves while the record is in flight.
    r.session.end('client_closed');
    release();
    await live;
    await vi.waitFor(async () => expect((await h.store.getSession(r.session.id))?.state).toBe('ended'));
    expect(await h.store.getSession(r.session.id)).toMatchObject({ state: 'ended', endReason: 'client_closed' });
    expect((r.session as unknown as { monitor: unknown }).monitor).toBeUndefined();
    expect(broker.live()).toHaveLength(0);
  });

  it('shutdown ends every live session', async () => {
    const { broker } = await setup({});
    const a = await openLive(broker);
    const b = await openLive(broker, 'carol');
    await broker.shutdown();
    expect([a.handle.closed[0]?.reason, b.handle.closed[0]?.reason]).toEqual(['shutdown', 'shutdown']);
  });
});
