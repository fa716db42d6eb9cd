import { describe, expect, it } from 'vitest';
import { DENY_CODES, type DenyCode } from '../../../src/workflow/decide.js';
import { BUSINESS_HOURS, enrolTotp, makeHarness, seed } from './harness.js';

const APPROVAL = { approvers: [{ team: 'dba' }], approvals: 1, requireReason: false, requireTicket: false, startOn: 'approval' as const };

async function deny(h: ReturnType<typeof makeHarness>, user: string, resource = 'prod-pg', mfa: Parameters<typeof h.engine.decide>[0]['mfa'] = { kind: 'none' }) {
  const d = await h.engine.decide({ user, resource, at: h.clock.now(), mfa });
  if (d.allow) throw new Error(`expected a denial for ${user}`);
  return d;
}

describe('decide: every deny code', () => {
  const seen = new Set<DenyCode>();
  const expectCode = (code: DenyCode, d: { code: DenyCode; message: string; checks: { ok: boolean }[] }): void => {
    expect(d.code).toBe(code);
    expect(d.message.length).toBeGreaterThan(10);
    expect(d.checks.at(-1)?.ok).toBe(false);
    seen.add(code);
  };

  it('resource_unknown, user_unknown, user_disabled, not_on_access_list', async () => {
    const h = makeHarness();
    await seed(h, {});
    expectCode('resource_unknown', await deny(h, 'alice', 'nope'));
    expectCode('user_unknown', await deny(h, 'zed'));
    const m = await deny(h, 'mallory');
    expectCode('not_on_access_list', m);
    expect(m.hint).toContain('gatehouse resource share prod-pg --user mallory');
    await h.engine.directory.setDisabled('admin', 'carol', true);
    expectCode('user_disabled', await deny(h, 'carol'));
    const wrong = await h.engine.decide({ user: 'alice', resource: 'prod-pg', at: h.clock.now(), mfa: { kind: 'none' }, protocol: 'ssh' });
    if (wrong.allow) throw new Error('expected wrong_protocol');
    expectCode('wrong_protocol', wrong);
    expect(wrong.message).toBe('prod-pg is a postgres resource and cannot be reached through the ssh gateway.');
    expect(h.revokes).toContainEqual(expect.objectContaining({ kind: 'user_disabled', user: 'carol' }));
  });

  it('outside_schedule names the next window', async () => {
    const h = makeHarness();
    await seed(h, { limitAccessTime: BUSINESS_HOURS });
    h.clock.set('2026-01-05T18:30:00Z'); // 19:30 Berlin
    const d = await deny(h, 'alice');
    expectCode('outside_schedule', d);
    expect(d.message).toMatch(/next window/i);
  });

  it('approval_required, approval_pending, grant_expired', async () => {
    const h = makeHarness();
    await seed(h, { limitAccessTime: BUSINESS_HOURS, requireApproval: APPROVAL });
    const d = await deny(h, 'alice');
    expectCode('approval_required', d);
    expect(d.hint).toContain('gatehouse request prod-pg');
    const r = await h.engine.requests.create('alice', { resource: 'prod-pg' });
    expectCode('approval_pending', await deny(h, 'alice'));
    await h.engine.requests.approve(r.id, 'dave');
    expect((await h.engine.decide({ user: 'alice', resource: 'prod-pg', at: h.clock.now(), mfa: { kind: 'none' } })).allow).toBe(true);
    h.clock.advance(121 * 60_000);
    await h.engine.sweep();
    expectCode('grant_expired', await deny(h, 'alice'));
  });

  it('checkout_required and checked_out_by_other (naming the holder and time left)', async () => {
    const h = makeHarness();
    await seed(h, { limitAccessTime: BUSINESS_HOURS, singleUser: true });
    expectCode('checkout_required', await deny(h, 'alice'));
    await h.engine.leases.checkout('alice', 'prod-pg');
    const d = await deny(h, 'carol');
    expectCode('checked_out_by_other', d);
    expect(d.message).toContain('alice');
    expect(d.message).toContain('2 h');
  });

  it('mfa_not_enrolled, mfa_required, mfa_invalid, mfa_replayed', async () => {
    const h = makeHarness();
    await seed(h, { limitAccessTime: BUSINESS_HOURS, mfa: true });
    expectCode('mfa_not_enrolled', await deny(h, 'alice'));
    const code = await enrolTotp(h, 'alice');
    expectCode('mfa_required', await deny(h, 'alice'));
    expectCode('mfa_invalid', await deny(h, 'alice', 'prod-pg', { kind: 'totp', code: '000000' === code() ? '111111' : '000000' }));
    h.clock.advance(30_000);
    const fresh = code();
    const ok = await h.engine.decide({ user: 'alice', resource: 'prod-pg', at: h.clock.now(), mfa: { kind: 'totp', code: fresh } });
    expect(ok.allow).toBe(true);
    expectCode('mfa_replayed', await deny(h, 'alice', 'prod-pg', { kind: 'totp', code: fresh }));
    // A verification older than the freshness window does not count.
    expectCode('mfa_required', await deny(h, 'alice', 'prod-pg', { kind: 'verified', at: new Date(h.clock.now().getTime() - 10 * 60_000) }));
  });

  it('gateway_unavailable: a store failure is a denial', async () => {
    const h = makeHarness();
    await seed(h, {});
    await h.store.close();
    expectCode('gateway_unavailable', await deny(h, 'alice'));
  });

  it('covered every code', () => {
    expect([...seen].sort()).toEqual([...DENY_CODES].sort());
  });
});

describe('decide: allow', () => {
  it('returns the vaulted credentials and deadline = min(grant end, lease end, window end)', async () => {
    const h = makeHarness();
    await seed(h, { limitAccessTime: BUSINESS_HOURS, requireApproval: APPROVAL, singleUser: true });
    h.clock.set('2026-01-05T15:30:00Z'); // 16:30 Berlin: the window closes at 17:00Z
    const r = await h.engine.requests.create('alice', { resource: 'prod-pg' });
    await h.engine.requests.approve(r.id, 'dave');
    await h.engine.leases.checkout('alice', 'prod-pg');
    const d = await h.engine.decide({ user: 'alice', resource: 'prod-pg', at: h.clock.now(), mfa: { kind: 'none' } });
    if (!d.allow) throw new Error(d.message);
    expect(d.credentials).toEqual({ login: 'app_user', password: 's3cret' });
    expect(d.deadline?.toISOString()).toBe('2026-01-05T17:00:00.000Z');
    expect(d.warnAt?.toISOString()).toBe('2026-01-05T16:55:00.000Z');
    expect(d.requestId).toBe(r.id);
    expect(d.leaseId).toBeDefined();
  });

  it('without approval or lease, the max duration caps the session', async () => {
    const h = makeHarness();
    await seed(h, { limitAccessTime: BUSINESS_HOURS });
    const d = await h.engine.decide({ user: 'alice', resource: 'prod-pg', at: h.clock.now(), mfa: { kind: 'none' } });
    expect(d.allow && d.deadline?.toISOString()).toBe('2026-01-05T11:00:00.000Z');
  });

  it('a grant set to start on first connection starts at the first allowed connection', async () => {
    const h = makeHarness();
    await seed(h, { limitAccessTime: BUSINESS_HOURS, requireApproval: { ...APPROVAL, startOn: 'first_connection' } });
    const r = await h.engine.requests.create('alice', { resource: 'prod-pg' });
    await h.engine.requests.approve(r.id, 'dave');
    expect((await h.store.getRequest(r.id))?.grantStart).toBeUndefined();
    h.clock.advance(30 * 60_000);
    const d = await h.engine.decide({ user: 'alice', resource: 'prod-pg', at: h.clock.now(), mfa: { kind: 'none' } });
    expect(d.allow && d.deadline?.toISOString()).toBe('2026-01-05T11:30:00.000Z');
    const after = await h.store.getRequest(r.id);
    expect(after?.state).toBe('active');
    expect(after?.grantStart?.toISOString()).toBe('2026-01-05T09:30:00.000Z');
  });

  it('explain runs every check without side effects', async () => {
    const h = makeHarness();
    await seed(h, { limitAccessTime: BUSINESS_HOURS, requireApproval: { ...APPROVAL, startOn: 'first_connection' } });
    const r = await h.engine.requests.create('alice', { resource: 'prod-pg' });
    await h.engine.requests.approve(r.id, 'dave');
    const d = await h.engine.explain('alice', 'prod-pg');
    expect(d.allow).toBe(true);
    expect(d.checks.map((c) => c.check)).toEqual(['resource', 'user', 'access_list', 'schedule', 'approval', 'lease', 'mfa']);
    expect((await h.store.getRequest(r.id))?.state).toBe('approved');
  });

  it('every decision is audited', async () => {
    const h = makeHarness();
    await seed(h, {});
    await h.engine.decide({ user: 'mallory', resource: 'prod-pg', at: h.clock.now(), mfa: { kind: 'none' } });
    const entries = await h.store.listAudit({ action: 'decision.deny' });
    expect(entries).toHaveLength(1);
    expect(entries[0]?.data).toMatchObject({ code: 'not_on_access_list' });
  });
});
