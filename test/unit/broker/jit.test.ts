/**
 * The JIT manager's lifecycle against a scripted provisioner: one that records what it was
 * asked and fails on cue, to drive the failure paths (refusals, removals that keep failing,
 * a crash mid-provisioning) that real targets cannot be made to produce on demand. The real
 * targets are exercised by test/protocols/jit-*.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { Broker } from '../../../src/broker/broker.js';
import { accountName, grantOf } from '../../../src/broker/jit.js';
import { JitError, type AccountSpec, type JitTarget, type Provisioner, type RemoveResult } from '../../../src/broker/provisioner.js';
import { silentLogger } from '../../../src/core/log.js';
import type { JitAccount, JitSettings, TargetCredentials } from '../../../src/core/model.js';
import { BUSINESS_HOURS, makeHarness, seed, type Harness } from '../workflow/harness.js';
import { RecordingHandle } from './live-session.js';

/** Accounts "on the target": name → marked. */
class ScriptedProvisioner implements Provisioner {
  readonly protocol = 'postgres' as const;
  readonly nameLimit = 63;
  readonly accounts = new Map<string, { marked: boolean; note?: string; deadline?: Date }>();
  elevated = false;
  createError: Error | undefined;
  /** Removals fail while this is above zero (each failure counts it down). */
  failRemovals = 0;
  calls: string[] = [];

  check(jit: JitSettings): string[] {
    return jit.ephemeral?.ou ? ['ou applies to directories'] : [];
  }
  async create(_t: JitTarget, spec: AccountSpec): Promise<TargetCredentials> {
    this.calls.push(`create ${spec.name}`);
    // Half-made before the refusal, as a target may leave it.
    this.accounts.set(spec.name, { marked: true, note: spec.note, ...(spec.deadline ? { deadline: spec.deadline } : {}) });
    if (this.createError) throw this.createError;
    return { login: spec.name, password: `pw-${spec.name}` };
  }
  async remove(_t: JitTarget, name: string): Promise<RemoveResult> {
    this.calls.push(`remove ${name}`);
    if (this.failRemovals > 0) {
      this.failRemovals--;
      return { done: false, detail: 'processes remain' };
    }
    const a = this.accounts.get(name);
    if (a && !a.marked) return { done: true, detail: 'not marked; left alone' };
    this.accounts.delete(name);
    return { done: true };
  }
  async elevate(): Promise<void> {
    this.calls.push('elevate');
    this.elevated = true;
  }
  async unelevate(): Promise<RemoveResult> {
    this.calls.push('unelevate');
    this.elevated = false;
    return { done: true };
  }
  async listMarked(): Promise<string[]> {
    return [...this.accounts].filter(([, a]) => a.marked).map(([n]) => n);
  }
}

const EPHEMERAL: JitSettings = { ephemeral: { grants: ['app_read'] } };

async function setup(settings: Record<string, unknown>, jit: JitSettings = EPHEMERAL, node = 'n1', h: Harness = makeHarness()) {
  if (!(await h.store.getResource('prod-pg'))) {
    await seed(h, settings);
    await h.engine.directory.setJit('admin', 'prod-pg', jit);
  }
  const p = new ScriptedProvisioner();
  return { h, broker: await brokerWith(h, p, node), p };
}

/** A broker on `h` whose JIT manager uses `p`, started (its first sweep has run). */
async function brokerWith(h: Harness, p: Provisioner, node = 'n1'): Promise<Broker> {
  const broker = new Broker({ engine: h.engine, log: silentLogger, node });
  broker.jit.register(p);
  await broker.jit.start();
  return broker;
}

async function open(broker: Broker, user = 'alice') {
  const r = await broker.open({ user, resource: 'prod-pg', protocol: 'postgres', client: '127.0.0.1:5555', mfa: { kind: 'none' } });
  if (!r.ok) return { refused: r.refusal ?? r.denial };
  const handle = new RecordingHandle();
  await r.session.live(handle);
  return { session: r.session, handle };
}

const SINGLE_USER = { limitAccessTime: BUSINESS_HOURS, singleUser: true };
const states = async (h: Harness): Promise<string[]> => (await h.store.listJitAccounts()).map((a) => a.state);

describe('JIT manager', () => {
  it('names accounts gh_<user>_<8 random> within the target limit', () => {
    const a = accountName('Alice.Smith-Long_Name', 63);
    expect(a).toMatch(/^gh_alicesmithlongna_[a-z0-9]{8}$/);
    expect(accountName('x'.repeat(80), 32).length).toBeLessThanOrEqual(32);
    expect(accountName('!!!', 32)).toMatch(/^gh_user_[a-z0-9]{8}$/);
    expect(accountName('bob', 63)).not.toBe(accountName('bob', 63));
    expect(grantOf({ leaseId: 'L', requestId: 'Q' }, 's')).toBe('lease:L');
    expect(grantOf({ requestId: 'Q' }, 's')).toBe('request:Q');
    expect(grantOf({}, 's')).toBe('session:s');
  });

  it('gives the connections of one check-out one account, and removes it at check-in', async () => {
    const { h, broker, p } = await setup(SINGLE_USER);
    await h.engine.leases.checkout('alice', 'prod-pg');
    const [one, two] = await Promise.all([open(broker), open(broker)]);
    expect(one.session?.credentials?.login).toMatch(/^gh_alice_/);
    expect(two.session?.credentials).toEqual(one.session?.credentials);
    expect(p.calls.filter((c) => c.startsWith('create'))).toHaveLength(1);
    const [rec] = await h.store.listJitAccounts();
    expect(rec).toMatchObject({ state: 'active', kind: 'ephemeral', user: 'alice', grants: ['app_read'] });
    expect(rec!.leaseId).toBeDefined();
    expect(p.accounts.get(rec!.account)?.note).toContain(rec!.id);
    expect((await h.store.getSession(one.session!.id))?.account).toBe(rec!.account);

    await h.engine.leases.checkin('alice', 'prod-pg');
    await broker.jit.drain();
    expect(p.accounts.size).toBe(0);
    expect(await states(h)).toEqual(['gone']);
    expect(one.handle?.closed[0]?.reason).toBe('checked_in');
    const audit = await h.store.listAudit({ action: 'jit.remove' });
    expect(audit[0]?.data).toMatchObject({ account: rec!.account, user: 'alice', reason: 'lease checked_in' });
    expect((await h.store.listAudit({ action: 'jit.create' }))[0]?.data).toMatchObject({ account: rec!.account, leaseId: rec!.leaseId });

    // The next check-out is a new grant: a new account.
    await h.engine.leases.checkout('alice', 'prod-pg');
    const three = await open(broker);
    expect(three.session?.credentials?.login).not.toBe(rec!.account);
  });

  it('removes the account of an expired grant and of a forced check-in', async () => {
    const { h, broker, p } = await setup(SINGLE_USER);
    await h.engine.leases.checkout('alice', 'prod-pg');
    await open(broker);
    h.clock.advance(121 * 60_000);
    await h.engine.sweep();
    await broker.jit.drain();
    expect(p.accounts.size).toBe(0);
    expect(await states(h)).toEqual(['gone']);

    h.clock.set(new Date('2026-01-06T09:00:00Z'));
    await h.engine.leases.checkout('alice', 'prod-pg');
    await open(broker);
    await h.engine.leases.forceCheckin('bob', 'prod-pg', 'incident');
    await broker.jit.drain();
    expect(p.accounts.size).toBe(0);
  });

  it('removes the account when the schedule window closes, though the approval lasts longer', async () => {
    const { h, broker, p } = await setup({ limitAccessTime: BUSINESS_HOURS, requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, startOn: 'approval' } });
    h.clock.set(new Date('2026-01-05T16:30:00Z')); // 17:30 in Berlin; the window closes at 18:00, the grant at 19:30
    const q = await h.engine.requests.create('alice', { resource: 'prod-pg', reason: 'late fix' });
    await h.engine.requests.approve(q.id, 'dave');
    const s = await open(broker);
    expect(p.accounts.size).toBe(1);
    h.clock.advance(30 * 60_000);
    await broker.jit.drain();
    expect(p.accounts.size).toBe(0);
    expect(s.handle?.closed[0]?.reason).toBe('schedule_closed');
    expect((await h.store.getRequest(q.id))?.state).toBe('active');
    expect((await h.store.listAudit({ action: 'jit.remove' }))[0]?.data).toMatchObject({ reason: 'grant deadline passed' });
  });

  it('a session-scoped grant (no approval, no check-out) has an account for the session only', async () => {
    const { h, broker, p } = await setup({});
    const s = await open(broker);
    expect(p.accounts.size).toBe(1);
    expect((await h.store.listJitAccounts())[0]?.sessionId).toBe(s.session!.id);
    s.session!.end('client_closed');
    await broker.jit.drain();
    expect(p.accounts.size).toBe(0);
  });

  it('a refused creation fails the connection with the reason, cleans up, and shows in the session list and audit', async () => {
    const { h, broker, p } = await setup(SINGLE_USER);
    await h.engine.leases.checkout('alice', 'prod-pg');
    p.createError = new JitError('missing_right', 'the vaulted login app_user lacks CREATEROLE on prod-pg');
    const r = await open(broker);
    expect(r.refused).toMatchObject({ code: 'target_provisioning' });
    expect(r.refused?.message).toContain('lacks CREATEROLE');
    expect(p.accounts.size).toBe(0);
    expect(await states(h)).toEqual(['failed']);
    const [rec] = await h.store.listSessions();
    expect(rec).toMatchObject({ state: 'ended', endReason: 'error', user: 'alice' });
    expect(rec!.endMessage).toContain('CREATEROLE');
    expect((await h.store.listAudit({ action: 'jit.fail' }))[0]?.data).toMatchObject({ cleanedUp: true, error: expect.stringContaining('CREATEROLE') });
    // Fixed on the target: the next connection of the same grant gets an account.
    p.createError = undefined;
    expect((await open(broker)).session?.credentials?.login).toMatch(/^gh_alice_/);
  });

  it('retries a removal that keeps failing, without a cap, until it is done', async () => {
    const { h, broker, p } = await setup(SINGLE_USER);
    await h.engine.leases.checkout('alice', 'prod-pg');
    await open(broker);
    p.failRemovals = 12;
    await h.engine.leases.checkin('alice', 'prod-pg');
    await broker.jit.drain();
    expect(await states(h)).toEqual(['revoking']);
    for (let i = 0; i < 40 && p.accounts.size > 0; i++) {
      h.clock.advance(60_000);
      await broker.jit.drain();
    }
    expect(p.accounts.size).toBe(0);
    const [rec] = await h.store.listJitAccounts();
    expect(rec).toMatchObject({ state: 'gone', attempts: 12 });
    expect((await h.store.listAudit({ action: 'jit.remove_failed' })).map((e) => e.data.attempts)).toEqual([1, 10]);
  });

  it('after a crash, the first sweep removes accounts of ended grants and half-made ones; unmarked accounts stay', async () => {
    const h = makeHarness();
    const first = await setup(SINGLE_USER, EPHEMERAL, 'n1', h);
    await h.engine.leases.checkout('alice', 'prod-pg');
    await open(first.broker);
    // The crash: node n1 is gone without revoking; a record it left half-way and a marked account with no record at all.
    first.broker.jit.stop();
    const [active] = await h.store.listJitAccounts();
    const stuck: JitAccount = { ...active!, id: 'stuck', grant: 'lease:other', account: 'gh_alice_stuck000', state: 'provisioning', version: 1 };
    await h.store.insertJitAccount(stuck);
    first.p.accounts.set('gh_alice_stuck000', { marked: true });
    first.p.accounts.set('gh_orphan_00000000', { marked: true });
    first.p.accounts.set('gh_alice_byhand00', { marked: false });
    h.clock.advance(121 * 60_000);

    const second = new Broker({ engine: h.engine, log: silentLogger, node: 'n1' });
    second.jit.register(first.p);
    const summary = await second.jit.start();
    expect([...first.p.accounts.keys()]).toEqual(['gh_alice_byhand00']);
    expect(summary).toMatchObject({ revoked: 2, orphans: 1 });
    expect(await states(h)).toEqual(['gone', 'gone']);
    expect((await h.store.listAudit({ action: 'jit.reconcile' }))[0]?.data).toMatchObject({ account: 'gh_orphan_00000000', resource: 'prod-pg' });
  });

  it('elevation: the vaulted login is elevated for the grant and brought back when its last elevated grant ends', async () => {
    const { h, broker, p } = await setup({ limitAccessTime: BUSINESS_HOURS, requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, startOn: 'approval' } }, { elevate: { grants: ['pg_admin'] } });
    for (const u of ['alice', 'carol']) {
      const q = await h.engine.requests.create(u, { resource: 'prod-pg', reason: 'fix' });
      await h.engine.requests.approve(q.id, 'dave');
    }
    const a = await open(broker, 'alice');
    expect(a.session?.credentials).toEqual({ login: 'app_user', password: 's3cret' });
    expect(p.elevated).toBe(true);
    await open(broker, 'carol');
    expect(p.calls.filter((c) => c === 'elevate')).toHaveLength(2);
    const alices = (await h.store.listJitAccounts()).find((x) => x.user === 'alice')!;
    await h.engine.requests.end(alices.requestId!, 'dave', 'done');
    await broker.jit.drain();
    expect(p.elevated).toBe(true);
    const carols = (await h.store.listJitAccounts()).find((x) => x.user === 'carol')!;
    await h.engine.requests.end(carols.requestId!, 'dave', 'done');
    await broker.jit.drain();
    expect(p.elevated).toBe(false);
    expect(p.calls.filter((c) => c === 'unelevate')).toHaveLength(1);
  });

  it('refuses settings the target cannot take, before making anything', async () => {
    const { h, broker, p } = await setup({}, EPHEMERAL);
    const r0 = await h.store.getResource('prod-pg');
    await h.store.putResource({ ...r0!, jit: { ephemeral: { grants: [], ou: 'ou=x,dc=y' } } });
    const r = await open(broker);
    expect(r.refused?.message).toContain('ou applies to directories');
    expect(p.calls).toEqual([]);
  });
});

/** Elevation that tracks which roles the vaulted login holds, role by role. */
class RoleTrackingProvisioner extends ScriptedProvisioner {
  readonly held = new Set<string>();
  override async elevate(t?: JitTarget): Promise<void> {
    await super.elevate();
    for (const g of t?.jit.elevate?.grants ?? []) this.held.add(g);
  }
  override async unelevate(t?: JitTarget): Promise<RemoveResult> {
    await super.unelevate();
    for (const g of t?.jit.elevate?.grants ?? []) this.held.delete(g);
    return { done: true };
  }
}

/** Every call for the resource named `hangOn` waits until `release()`. */
class HangingProvisioner extends ScriptedProvisioner {
  hangOn: string | undefined;
  private gate: Promise<void> = new Promise(() => {});
  private open: (() => void) | undefined;
  constructor() {
    super();
    this.gate = new Promise((r) => (this.open = r));
  }
  release(): void {
    this.hangOn = undefined;
    this.open?.();
  }
  private async wait(t: JitTarget): Promise<void> {
    if (t.resource.name === this.hangOn) await this.gate;
  }
  override async remove(t: JitTarget, name: string): Promise<RemoveResult> {
    await this.wait(t);
    return super.remove(t, name);
  }
  override async listMarked(t?: JitTarget): Promise<string[]> {
    if (t) await this.wait(t);
    return super.listMarked();
  }
}

describe('JIT manager (security review)', () => {
  const APPROVAL = { limitAccessTime: BUSINESS_HOURS, requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, startOn: 'approval' } };

  it('elevation: a role from before a settings change is taken back when the last elevated grant ends', async () => {
    const h = makeHarness();
    await seed(h, APPROVAL);
    await h.engine.directory.setJit('admin', 'prod-pg', { elevate: { grants: ['pg_admin'] } });
    const p = new RoleTrackingProvisioner();
    const broker = await brokerWith(h, p);
    const qa = await h.engine.requests.create('alice', { resource: 'prod-pg', reason: 'fix' });
    await h.engine.requests.approve(qa.id, 'dave');
    await open(broker, 'alice');
    expect([...p.held]).toEqual(['pg_admin']);
    // The settings change while alice's grant is live; carol's grant elevates with the new role.
    await h.engine.directory.setJit('admin', 'prod-pg', { elevate: { grants: ['pg_ops'] } });
    const qc = await h.engine.requests.create('carol', { resource: 'prod-pg', reason: 'fix' });
    await h.engine.requests.approve(qc.id, 'dave');
    await open(broker, 'carol');
    expect([...p.held].sort()).toEqual(['pg_admin', 'pg_ops']);
    await h.engine.requests.end(qa.id, 'dave', 'done');
    await broker.jit.drain();
    // pg_admin was alice's only: it goes now (carol's grant never had it).
    expect([...p.held]).toEqual(['pg_ops']);
    await h.engine.requests.end(qc.id, 'dave', 'done');
    await broker.jit.drain();
    expect([...p.held]).toEqual([]);
    expect(await states(h)).toEqual(['gone', 'gone']);
  });

  it('a target that hangs holds up neither the retries nor the reconciler of other targets', async () => {
    const h = makeHarness();
    await seed(h, SINGLE_USER, 'a-slow-pg');
    await seed(h, SINGLE_USER, 'prod-pg');
    for (const n of ['a-slow-pg', 'prod-pg']) await h.engine.directory.setJit('admin', n, EPHEMERAL);
    const p = new HangingProvisioner();
    const broker = await brokerWith(h, p);
    // A removal of the slow target's account to retry, and an orphan on the healthy target.
    const slow = (await h.store.getResource('a-slow-pg'))!;
    const now = h.clock.now();
    await h.store.insertJitAccount({
      id: 'slow-1', resource: slow.name, kind: 'ephemeral', grant: 'lease:gone', user: 'alice', account: 'gh_alice_slow0000', grants: ['app_read'],
      state: 'revoking', resourceSnapshot: JSON.stringify(slow), node: 'n1', createdAt: now, updatedAt: now, attempts: 1, version: 1,
    });
    p.accounts.set('gh_orphan_00000000', { marked: true });
    p.hangOn = 'a-slow-pg';
    const sweeping = broker.jit.sweep();
    for (let i = 0; i < 100 && p.accounts.has('gh_orphan_00000000'); i++) await new Promise((r) => setTimeout(r, 10));
    expect(p.accounts.has('gh_orphan_00000000')).toBe(false);
    p.release();
    await sweeping;
    await broker.jit.drain();
    broker.jit.stop();
  });

  it('an account is still removed after the vaulted password is rotated during its grant (the old one no longer logs in)', async () => {
    const { h, broker, p } = await setup(SINGLE_USER);
    let valid = 's3cret';
    const remove = p.remove.bind(p);
    p.remove = async (t, name) => (t.admin.password === valid ? remove(t, name) : { done: false, detail: `prod-pg refused the vaulted login ${t.admin.login}` });
    await h.engine.leases.checkout('alice', 'prod-pg');
    await open(broker);
    expect(p.accounts.size).toBe(1);
    await h.engine.directory.setCredentials('admin', 'prod-pg', { login: 'app_user', password: 'rotated' });
    valid = 'rotated';
    await h.engine.leases.checkin('alice', 'prod-pg');
    await broker.jit.drain();
    expect(p.accounts.size).toBe(0);
    expect(await states(h)).toEqual(['gone']);
  });

  it('elevation is taken back from the login it was given to, even when the resource now vaults another login', async () => {
    const h = makeHarness();
    await seed(h, SINGLE_USER);
    await h.engine.directory.setJit('admin', 'prod-pg', { elevate: { grants: ['pg_admin'] } });
    const p = new ScriptedProvisioner();
    const logins: string[] = [];
    p.unelevate = async (t?: JitTarget) => {
      logins.push(t!.admin.login!);
      p.elevated = false;
      return { done: true };
    };
    const broker = await brokerWith(h, p);
    await h.engine.leases.checkout('alice', 'prod-pg');
    await open(broker);
    await h.engine.directory.setCredentials('admin', 'prod-pg', { login: 'other_admin', password: 'x' });
    await h.engine.leases.checkin('alice', 'prod-pg');
    await broker.jit.drain();
    expect(logins).toEqual(['app_user']);
  });

  it('the reconciler goes on past a marked account it cannot remove (a name the provisioner refuses)', async () => {
    const { h, broker, p } = await setup({});
    const remove = p.remove.bind(p);
    p.remove = async (t, name) => {
      if (name === 'GH_Weird') throw new JitError('invalid', `'${name}' is not a temporary account name`);
      return remove(t, name);
    };
    p.accounts.set('GH_Weird', { marked: true });
    p.accounts.set('gh_orphan_00000000', { marked: true });
    expect(await broker.jit.reconcile()).toBe(1);
    expect([...p.accounts.keys()]).toEqual(['GH_Weird']);
    expect((await h.store.listAudit({ action: 'jit.reconcile_failed' }))[0]?.data).toMatchObject({ account: 'GH_Weird', detail: expect.stringContaining('not a temporary account name') });
  });

  it('an elevation that lands after its grant was revoked is taken back, though the first clean-up fails', async () => {
    const h = makeHarness();
    await seed(h, SINGLE_USER);
    await h.engine.directory.setJit('admin', 'prod-pg', { elevate: { grants: ['pg_admin'] } });
    const p = new ScriptedProvisioner();
    let failUnelevate = 0;
    p.elevate = async () => {
      // The check-in comes while the GRANT is on its way: its revocation runs (and finds nothing to take back) first.
      await h.engine.leases.checkin('alice', 'prod-pg');
      await broker.jit.drain();
      failUnelevate = 1;
      p.elevated = true;
    };
    p.unelevate = async () => {
      if (failUnelevate > 0) {
        failUnelevate--;
        return { done: false, detail: 'target busy' };
      }
      p.elevated = false;
      return { done: true };
    };
    const broker = await brokerWith(h, p);
    await h.engine.leases.checkout('alice', 'prod-pg');
    const r = await open(broker);
    expect(r.refused).toBeDefined();
    for (let i = 0; i < 10 && p.elevated; i++) {
      h.clock.advance(60_000);
      await broker.jit.drain();
    }
    expect(p.elevated).toBe(false);
  });

  it('an account made for a grant that ended after the decision (check-in between decide and provisioning) is removed at once', async () => {
    const { h, broker, p } = await setup(SINGLE_USER);
    await h.engine.leases.checkout('alice', 'prod-pg');
    const d = await h.engine.decide({ user: 'alice', resource: 'prod-pg', at: h.clock.now(), mfa: { kind: 'none' }, protocol: 'postgres', client: '127.0.0.1:1' });
    if (!d.allow) throw new Error('expected an allowed decision');
    // The check-in's revocation finds nothing yet: the account does not exist.
    await h.engine.leases.checkin('alice', 'prod-pg');
    await broker.jit.drain();
    await expect(broker.jit.acquire(d, 'session-1')).rejects.toThrow(/ended/);
    await broker.jit.drain();
    expect(p.accounts.size).toBe(0);
    expect(await states(h)).toEqual(['gone']);
  });

  it('the sweep counts the orphans removed on every target (the targets run side by side)', async () => {
    const h = makeHarness();
    await seed(h, {}, 'a-pg');
    await seed(h, {}, 'prod-pg');
    for (const n of ['a-pg', 'prod-pg']) await h.engine.directory.setJit('admin', n, EPHEMERAL);
    const broker = new Broker({ engine: h.engine, log: silentLogger, node: 'n1' });
    const p = new ScriptedProvisioner();
    // Each target lists its own: gh_a_… on a-pg, gh_p_… on prod-pg.
    const list = p.listMarked.bind(p);
    p.listMarked = async (t?: JitTarget) => (await list()).filter((n) => n.startsWith(`gh_${t!.resource.name[0]}_`));
    broker.jit.register(p);
    p.accounts.set('gh_a_00000000', { marked: true });
    p.accounts.set('gh_p_00000000', { marked: true });
    const summary = await broker.jit.start();
    expect(p.accounts.size).toBe(0);
    expect(summary.orphans).toBe(2);
    broker.jit.stop();
  });
});
