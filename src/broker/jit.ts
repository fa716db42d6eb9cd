/**
 * Ephemeral accounts and elevation: one temporary account (or one elevation of the vaulted
 * account) per grant, made at the grant's first connection and removed when the grant ends.
 *
 * Lifecycle of a record (store: jit_accounts), each step written before it is taken:
 *   planned → provisioning → active → revoking → gone
 *                  └──────────────────→ revoking → failed   (creation refused; cleaned up)
 * A crash at any point leaves a record that says what may exist on the target, and the
 * sweep (at start-up and periodically) finishes the job: records whose grant has ended are
 * revoked, removals are retried without a cap, and accounts on a target that carry the
 * Gatehouse marker but that no live record owns are removed (the reconciler). Accounts
 * without the marker are never touched: provisioners check it right before removing.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { MINUTE, SECOND, type Cancel } from '../core/clock.js';
import { isGatehouseError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { LIVE_JIT_STATES, type JitAccount, type JitKind, type Protocol, type Resource, type TargetCredentials } from '../core/model.js';
import { openCredentials, sealCredentials } from '../secrets/credentials.js';
import type { Engine } from '../workflow/engine.js';
import { isGranted } from '../workflow/requests.js';
import type { Allowance } from './broker.js';
import { JitError, type JitTarget, type Provisioner, type RemoveResult } from './provisioner.js';

export interface JitManagerOptions {
  engine: Engine;
  log: Logger;
  node: string;
  /** How often the sweep (grant checks, retries, the reconciler) runs; default one minute. */
  sweepEveryMs?: number;
}

/** What a session logs in upstream as, when its resource uses JIT. */
export interface Acquired {
  credentials: TargetCredentials;
  /** The record; for an ephemeral account, `account.account` is the name on the target. */
  account: JitAccount;
}

export interface SweepSummary {
  revoked: number;
  retried: number;
  /** Marked accounts on targets that no live record owned, removed. */
  orphans: number;
  failures: number;
}

/** A record still being provisioned after this long was left by a crash (or a hung target). */
const STUCK_MS = 2 * MINUTE;
/** Removal retries back off up to this. */
const MAX_BACKOFF_MS = MINUTE;
/** How long a connection waits for another node's provisioning of the same grant. */
const WAIT_FOR_OTHER_MS = 15 * SECOND;

const LIVE: readonly JitAccount['state'][] = LIVE_JIT_STATES;

/** `gh_` + the user's name reduced to `[a-z0-9]` + `_` + 8 random characters, within `limit`. */
export function accountName(user: string, limit: number): string {
  const suffix = randomBytes(8).toString('base64url').toLowerCase().replace(/[^a-z0-9]/g, '').padEnd(8, '0').slice(0, 8);
  const room = Math.max(1, limit - 'gh_'.length - 1 - suffix.length);
  const slug = user.toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, Math.min(room, 16)) || 'user';
  return `gh_${slug}_${suffix}`;
}

/** The grant a decision belongs to: the check-out, else the approval, else the session itself. */
export function grantOf(d: Pick<Allowance, 'leaseId' | 'requestId'>, sessionId: string): string {
  if (d.leaseId) return `lease:${d.leaseId}`;
  if (d.requestId) return `request:${d.requestId}`;
  return `session:${sessionId}`;
}

export class JitManager {
  private readonly provisioners = new Map<Protocol, Provisioner>();
  /** Provisioning in flight on this node, per grant and kind: a second connection waits for the first. */
  private readonly inFlight = new Map<string, Promise<Acquired>>();
  /** Removals in flight on this node, per record. */
  private readonly removing = new Map<string, Promise<boolean>>();
  private readonly retryTimers = new Map<string, Cancel>();
  /** Timers at the deadline of each active record this node knows (a schedule window closing ends the grant's account). */
  private readonly deadlineTimers = new Map<string, Cancel>();
  /** Pins of removed resources whose accounts are being removed (their records are gone from the store). */
  private readonly retiredPins = new Map<string, string>();
  /** Revocations started on this node and not finished, for `drain`. */
  private readonly pending = new Set<Promise<unknown>>();
  private sweepTimer: Cancel | undefined;
  private sweeping: Promise<SweepSummary> | undefined;
  private unsubscribe: (() => void) | undefined;
  private stopped = false;
  private readonly sweepEveryMs: number;

  constructor(private readonly opts: JitManagerOptions) {
    this.sweepEveryMs = opts.sweepEveryMs ?? MINUTE;
  }

  private get engine(): Engine {
    return this.opts.engine;
  }

  register(p: Provisioner): void {
    this.provisioners.set(p.protocol, p);
  }

  provisionerFor(protocol: Protocol): Provisioner | undefined {
    return this.provisioners.get(protocol);
  }

  /** Listens for grants ending and runs the first sweep (a restart finishes what a crash left). */
  start(): Promise<SweepSummary> {
    if (!this.unsubscribe) {
      this.unsubscribe = this.engine.ctx.bus.on('revoke', (ev) => {
        switch (ev.kind) {
          case 'lease_ended':
            return this.track(this.revokeWhere({ leaseId: ev.leaseId }, `lease ${ev.reason}`));
          case 'request_revoked':
            return this.track(this.revokeWhere({ requestId: ev.requestId }, 'grant ended'));
          case 'resource_removed':
            return this.track(this.revokeWhere({ resource: ev.resource }, 'resource removed'));
          case 'user_disabled':
            return this.track(this.revokeWhere({ user: ev.user }, 'user disabled'));
          case 'settings_changed':
          case 'session_killed':
            return undefined;
          default: {
            const never: never = ev;
            return never;
          }
        }
      });
    }
    return this.sweep();
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.sweepTimer?.();
    for (const cancel of [...this.retryTimers.values(), ...this.deadlineTimers.values()]) cancel();
    this.retryTimers.clear();
    this.deadlineTimers.clear();
  }

  /**
   * The credentials a session of this decision logs in upstream with: the grant's temporary
   * account (made now at the grant's first connection, shared after), or the vaulted login
   * once its elevation is in place. Throws a JitError the door renders as a refusal.
   */
  async acquire(d: Allowance, sessionId: string): Promise<Acquired> {
    const jit = d.resource.jit;
    if (!jit || (!jit.ephemeral && !jit.elevate)) throw new Error('acquire called for a resource without JIT settings');
    const kind: JitKind = jit.ephemeral ? 'ephemeral' : 'elevation';
    const grant = grantOf(d, sessionId);
    const key = `${grant}\0${kind}`;
    const running = this.inFlight.get(key);
    if (running) return running;
    const work = this.acquireFor(d, sessionId, grant, kind).finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, work);
    return work;
  }

  private async acquireFor(d: Allowance, sessionId: string, grant: string, kind: JitKind): Promise<Acquired> {
    const store = this.engine.ctx.store;
    const started = this.engine.ctx.clock.now();
    for (;;) {
      const existing = await store.findLiveJitAccount(grant, kind);
      if (existing) {
        const ready = await this.settle(existing);
        if (ready?.state === 'active') {
          if (!existing.deadline || existing.deadline > this.engine.ctx.clock.now()) return { credentials: this.credentialsOf(ready, d), account: ready };
          // Its window passed (a schedule window closed) but the sweep has not removed it yet.
          await this.revoke(ready, 'window ended');
          continue;
        }
        if (ready && (ready.state === 'revoking' || ready.state === 'planned' || ready.state === 'provisioning')) {
          throw new JitError('refused', `the temporary account of this grant on ${d.resource.name} is being ${ready.state === 'revoking' ? 'removed' : 'made on another gateway node'}; try again shortly`);
        }
        continue;
      }
      const record = this.plan(d, sessionId, grant, kind);
      if (!(await store.insertJitAccount(record))) continue;
      return this.provision(record, d, started);
    }
  }

  /** Waits (bounded) for another node's provisioning of the same grant to finish. */
  private async settle(a: JitAccount): Promise<JitAccount | undefined> {
    if (a.state !== 'planned' && a.state !== 'provisioning') return a;
    let cur: JitAccount | undefined = a;
    // Polls of the store, not the workflow clock: this waits on another node's I/O.
    for (let i = 0; i < WAIT_FOR_OTHER_MS / 100 && cur && (cur.state === 'planned' || cur.state === 'provisioning'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      cur = await this.engine.ctx.store.getJitAccount(a.id);
    }
    return cur;
  }

  private plan(d: Allowance, sessionId: string, grant: string, kind: JitKind): JitAccount {
    const now = this.engine.ctx.clock.now();
    const p = this.requireProvisioner(d.resource);
    const admin = d.credentials;
    if (!admin?.login) throw new JitError('missing_right', `${d.resource.name} has no vaulted login to make temporary accounts with`);
    const jit = d.resource.jit!;
    const a: JitAccount = {
      id: randomUUID(), resource: d.resource.name, kind, grant, user: d.user,
      account: kind === 'ephemeral' ? accountName(d.user, p.nameLimit) : admin.login,
      grants: (kind === 'ephemeral' ? jit.ephemeral?.grants : jit.elevate?.grants) ?? [],
      state: 'planned', resourceSnapshot: JSON.stringify(d.resource), node: this.opts.node,
      createdAt: now, updatedAt: now, attempts: 0, version: 1,
    };
    if (d.requestId) a.requestId = d.requestId;
    if (d.leaseId) a.leaseId = d.leaseId;
    if (grant.startsWith('session:')) a.sessionId = sessionId;
    if (d.deadline) a.deadline = d.deadline;
    return a;
  }

  private async provision(planned: JitAccount, d: Allowance, started: Date): Promise<Acquired> {
    const p = this.requireProvisioner(d.resource);
    const target: JitTarget = { resource: d.resource, admin: d.credentials!, jit: d.resource.jit! };
    let a = await this.update(planned, { state: 'provisioning' });
    let acquired: Acquired;
    const owner = { user: a.user, accountId: a.id, ...(a.requestId ? { requestId: a.requestId } : {}), ...(a.leaseId ? { leaseId: a.leaseId } : {}), ...(a.sessionId ? { sessionId: a.sessionId } : {}) };
    try {
      let credentials: TargetCredentials;
      if (a.kind === 'ephemeral') {
        const note = `gatehouse: ${a.user} ${a.grant} account ${a.id}`;
        credentials = await p.create(target, { name: a.account, owner, note, ...(a.deadline ? { deadline: a.deadline } : {}) });
      } else {
        await p.elevate(target, owner);
        credentials = d.credentials!;
      }
      // The resource as it is now: the first admin connection may just have pinned the target.
      const now = await this.engine.ctx.store.getResource(d.resource.name);
      a = await this.update(a, {
        state: 'active', resourceSnapshot: JSON.stringify(now ?? d.resource),
        ...(a.kind === 'ephemeral' ? { credentialsSealed: sealCredentials(this.engine.ctx.sealer, `jit:${a.id}`, credentials) } : {}),
      });
      const ms = this.engine.ctx.clock.now().getTime() - started.getTime();
      await this.audit(a.user, a.kind === 'ephemeral' ? 'jit.create' : 'jit.elevate', a, { ms });
      this.armDeadline(a);
      acquired = { credentials, account: a };
    } catch (err) {
      const message = describe(err);
      this.opts.log.warn({ err, resource: a.resource, account: a.account }, 'JIT provisioning failed; cleaning up');
      a = await this.update(a, { state: 'revoking', error: message }).catch(async () => {
        // Changed underneath: the grant was revoked while this step ran, so what it made came
        // after that removal. The record goes back to revoking until the clean-up below is done.
        const fresh = await this.engine.ctx.store.getJitAccount(a.id).catch(() => undefined);
        return fresh ? this.update(fresh, { state: 'revoking', error: message }).catch(() => fresh) : a;
      });
      const cleaned = await this.remove(a, target.admin);
      const after = cleaned.done ? await this.update(a, { state: 'failed', error: message, goneAt: this.engine.ctx.clock.now() }).catch(() => a) : a;
      await this.audit(a.user, 'jit.fail', after, { error: message, cleanedUp: cleaned.done });
      if (!cleaned.done) this.scheduleRetry(after);
      throw err instanceof JitError ? err : new JitError('refused', message);
    }
    // The grant may have ended after the decision and before the record existed: no event
    // would find this account then (only the next sweep would).
    const ended = await this.grantEnded(a, this.engine.ctx.clock.now()).catch(() => undefined);
    if (ended) {
      await this.revoke(a, ended);
      throw new JitError('refused', `the grant ended while the ${a.kind === 'ephemeral' ? 'temporary account' : 'elevation'} on ${a.resource} was being made`);
    }
    return acquired;
  }

  private credentialsOf(a: JitAccount, d: Allowance): TargetCredentials {
    if (a.kind === 'elevation') return d.credentials!;
    if (!a.credentialsSealed) throw new JitError('refused', `the temporary account ${a.account} has no credentials on record`);
    return openCredentials(this.engine.ctx.sealer, `jit:${a.id}`, a.credentialsSealed);
  }

  /** A session using `a` ended: a grant that was the session itself ends with it (no other grant does). */
  sessionEnded(a: JitAccount): void {
    if (a.sessionId) this.track(this.revoke(a, 'session ended'));
  }

  /** Waits for the revocations started so far (shutdown, tests). */
  async drain(): Promise<void> {
    while (this.pending.size > 0 || this.removing.size > 0) await Promise.allSettled([...this.pending, ...this.removing.values()]);
  }

  private track(p: Promise<unknown>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  /** Revokes every live record matching the filter (a grant ended). */
  async revokeWhere(filter: { leaseId?: string; requestId?: string; sessionId?: string; resource?: string; user?: string }, reason: string): Promise<number> {
    if (this.stopped) return 0;
    try {
      const { user, ...q } = filter;
      const found = (await this.engine.ctx.store.listJitAccounts({ ...q, states: LIVE })).filter((a) => !user || a.user === user);
      const done = await Promise.all(found.map((a) => this.revoke(a, reason)));
      return done.filter(Boolean).length;
    } catch (err) {
      // The periodic sweep finds these grants ended and revokes them then.
      this.opts.log.error({ err, filter }, 'could not revoke JIT accounts now; the sweep will');
      return 0;
    }
  }

  /**
   * Removes the account (or the elevation) of one record. Idempotent; one removal per record
   * at a time on this node; across nodes the record's version decides who moves it on.
   * Resolves true once the record is gone.
   */
  revoke(a: JitAccount, reason: string): Promise<boolean> {
    const running = this.removing.get(a.id);
    if (running) return running;
    const work = this.revokeOnce(a, reason).finally(() => this.removing.delete(a.id));
    this.removing.set(a.id, work);
    return work;
  }

  private async revokeOnce(a0: JitAccount, reason: string): Promise<boolean> {
    this.deadlineTimers.get(a0.id)?.();
    this.deadlineTimers.delete(a0.id);
    const store = this.engine.ctx.store;
    const fresh = await store.getJitAccount(a0.id);
    if (!fresh || !LIVE.includes(fresh.state)) return fresh?.state === 'gone';
    let a: JitAccount;
    try {
      // Claim the step: a second node reading the same version loses here and leaves it.
      a = await this.update(fresh, { state: 'revoking' });
    } catch {
      return false;
    }
    const started = this.engine.ctx.clock.now();
    let r: RemoveResult = { done: false, detail: `no vaulted login for ${a.resource} to remove ${a.account} with` };
    for (const admin of await this.adminsFor(a)) {
      r = await this.remove(a, admin);
      if (r.done) break;
    }
    if (r.done) {
      const gone = await this.update(a, { state: 'gone', goneAt: this.engine.ctx.clock.now(), ...(r.detail ? { error: r.detail } : {}) }).catch(() => a);
      const ms = this.engine.ctx.clock.now().getTime() - started.getTime();
      await this.audit('system', a.kind === 'ephemeral' ? 'jit.remove' : 'jit.unelevate', gone, { reason, ms, attempts: a.attempts + 1, ...(r.detail ? { detail: r.detail } : {}) });
      return true;
    }
    const failed = await this.update(a, { attempts: a.attempts + 1, error: r.detail }).catch(() => a);
    // The first failure and then every tenth are audited; the record carries the latest.
    if (failed.attempts === 1 || failed.attempts % 10 === 0) await this.audit('system', 'jit.remove_failed', failed, { reason, error: r.detail, attempts: failed.attempts });
    this.scheduleRetry(failed);
    return false;
  }

  private async remove(a: JitAccount, admin: TargetCredentials): Promise<RemoveResult> {
    const snapshot = this.snapshotOf(a);
    const p = this.provisioners.get(snapshot.protocol);
    if (!p) return { done: false, detail: `the ${snapshot.protocol} door is not running on node ${this.opts.node}` };
    const current = await this.engine.ctx.store.getResource(a.resource).catch(() => undefined);
    if (!current && snapshot.hostKeyPin) this.retiredPins.set(snapshot.name, snapshot.hostKeyPin);
    // The target as it is now (a moved host), with the settings the account was made under.
    const resource = current && current.protocol === snapshot.protocol ? { ...current, jit: snapshot.jit ?? current.jit } : snapshot;
    const target: JitTarget = { resource, admin, jit: snapshot.jit ?? {} };
    try {
      if (a.kind === 'ephemeral') return await p.remove(target, a.account);
      const others = (await this.engine.ctx.store.listJitAccounts({ resource: a.resource, kind: 'elevation', states: ['planned', 'provisioning', 'active'] })).filter((o) => o.id !== a.id);
      // Elevation is one membership shared by every elevated grant: the last one holding a role
      // takes it away. Per role, from the records (settings may have changed between grants).
      const kept = new Set(others.flatMap((o) => o.grants));
      const mine = a.grants.length > 0 ? a.grants : (snapshot.jit?.elevate?.grants ?? []);
      const drop = mine.filter((g) => !kept.has(g));
      if (drop.length === 0) return { done: true, detail: `kept: ${others.length} other elevated grant(s) of ${a.resource} still live` };
      return await p.unelevate({ ...target, jit: { elevate: { grants: drop } } });
    } catch (err) {
      return { done: false, detail: describe(err) };
    }
  }

  /** The pin a removed resource had, while its accounts are removed (target-identity.ts). */
  retiredPin(name: string): string | undefined {
    return this.retiredPins.get(name);
  }

  /**
   * The vaulted logins to remove a record's account with, best first: the resource's login as
   * it is now (its password may have been rotated during the grant), then the one the record
   * was made with. An elevation is taken back only by the login it was given to.
   */
  private async adminsFor(a: JitAccount): Promise<TargetCredentials[]> {
    const snapshot = this.snapshotOf(a);
    const open = (r: Resource): TargetCredentials | undefined => {
      try {
        return r.credentialsSealed ? openCredentials(this.engine.ctx.sealer, r.name, r.credentialsSealed) : undefined;
      } catch (err) {
        this.opts.log.error({ err, resource: a.resource }, 'could not open the vaulted login of a JIT account');
        return undefined;
      }
    };
    const current = await this.engine.ctx.store.getResource(a.resource).catch(() => undefined);
    const out: TargetCredentials[] = [];
    for (const c of [current && current.protocol === snapshot.protocol ? open(current) : undefined, open(snapshot)]) {
      if (!c || (a.kind === 'elevation' && c.login !== a.account)) continue;
      if (!out.some((o) => JSON.stringify(o) === JSON.stringify(c))) out.push(c);
    }
    return out;
  }

  private snapshotOf(a: JitAccount): Resource {
    return JSON.parse(a.resourceSnapshot) as Resource;
  }

  /** Revokes the record when its deadline passes, whatever event did or did not arrive. */
  private armDeadline(a: JitAccount): void {
    if (this.stopped || !a.deadline || this.deadlineTimers.has(a.id)) return;
    this.deadlineTimers.set(a.id, this.engine.ctx.clock.setTimer(a.deadline, () => {
      this.deadlineTimers.delete(a.id);
      this.track(this.revoke(a, 'grant deadline passed'));
    }));
  }

  private scheduleRetry(a: JitAccount): void {
    if (this.stopped) return;
    this.retryTimers.get(a.id)?.();
    const delay = Math.min(MAX_BACKOFF_MS, SECOND * 2 ** Math.min(a.attempts, 6));
    const at = new Date(this.engine.ctx.clock.now().getTime() + delay);
    this.retryTimers.set(a.id, this.engine.ctx.clock.setTimer(at, () => {
      this.retryTimers.delete(a.id);
      void this.revoke(a, 'retry');
    }));
  }

  /**
   * One pass: records whose grant has ended are revoked; records a crash left in
   * planned/provisioning are cleaned up; removals still pending are retried; marked
   * accounts on each JIT target that no live record owns are removed. Re-arms itself.
   */
  sweep(): Promise<SweepSummary> {
    if (this.sweeping) return this.sweeping;
    this.sweeping = this.sweepOnce().finally(() => {
      this.sweeping = undefined;
      this.arm();
    });
    return this.sweeping;
  }

  private arm(): void {
    if (this.stopped) return;
    this.sweepTimer?.();
    this.sweepTimer = this.engine.ctx.clock.setTimer(new Date(this.engine.ctx.clock.now().getTime() + this.sweepEveryMs), () => void this.sweep());
  }

  private async sweepOnce(): Promise<SweepSummary> {
    const summary: SweepSummary = { revoked: 0, retried: 0, orphans: 0, failures: 0 };
    const store = this.engine.ctx.store;
    const now = this.engine.ctx.clock.now();
    let live: JitAccount[];
    try {
      live = await store.listJitAccounts({ states: LIVE });
    } catch (err) {
      this.opts.log.error({ err }, 'JIT sweep could not read the store');
      summary.failures++;
      return summary;
    }
    // Per resource, side by side: a target that hangs (each step up to its timeout) holds up
    // only its own records and reconciler, never another target's.
    const byResource = new Map<string, JitAccount[]>();
    for (const a of live) byResource.set(a.resource, [...(byResource.get(a.resource) ?? []), a]);
    const resources = await this.reconcilable();
    const names = new Set([...byResource.keys(), ...resources.map((r) => r.name)]);
    await Promise.all([...names].map(async (name) => {
      for (const a of byResource.get(name) ?? []) await this.sweepRecord(a, now, summary);
      const r = resources.find((x) => x.name === name);
      // Not `+= await`: the sum would be read before the await, and lose another resource's count.
      const removed = r ? await this.reconcileOne(r) : 0;
      summary.orphans += removed;
    }));
    if (summary.revoked || summary.orphans || summary.failures) this.opts.log.info({ ...summary }, 'JIT sweep');
    return summary;
  }

  private async sweepRecord(a: JitAccount, now: Date, summary: SweepSummary): Promise<void> {
    let reason: string | undefined;
    try {
      if (a.state === 'revoking') reason = 'retry';
      else if (a.state === 'planned' || a.state === 'provisioning') {
        if (now.getTime() - a.updatedAt.getTime() > STUCK_MS || (a.node === this.opts.node && !this.inFlightRecord(a))) reason = 'left unfinished';
      } else reason = await this.grantEnded(a, now);
    } catch (err) {
      this.opts.log.error({ err, account: a.account }, 'JIT sweep could not check a grant');
      summary.failures++;
      return;
    }
    if (!reason) {
      if (a.state === 'active') this.armDeadline(a);
      return;
    }
    const ok = await this.revoke(a, reason);
    if (reason === 'retry') summary.retried++;
    if (ok) summary.revoked++;
    else summary.failures++;
  }

  private inFlightRecord(a: JitAccount): boolean {
    return this.inFlight.has(`${a.grant}\0${a.kind}`);
  }

  /** Why an active record's grant is over, or undefined while it lasts. */
  private async grantEnded(a: JitAccount, now: Date): Promise<string | undefined> {
    const store = this.engine.ctx.store;
    if (a.deadline && a.deadline <= now) return 'grant deadline passed';
    if (a.leaseId) {
      const l = await store.getLease(a.leaseId);
      if (!l || l.state !== 'held' || l.expiresAt <= now) return 'lease ended';
    } else if (a.requestId) {
      const q = await store.getRequest(a.requestId);
      if (!q || !isGranted(q) || (q.grantEnd && q.grantEnd <= now)) return 'grant ended';
    } else if (a.sessionId) {
      const s = await store.getSession(a.sessionId);
      // The session's own record: live on a node, or about to be (just made, not yet recorded).
      const young = now.getTime() - a.createdAt.getTime() < STUCK_MS;
      if (s ? s.state !== 'live' : !young) return 'session ended';
    }
    return undefined;
  }

  /**
   * The reconciler: on every target of a resource with JIT settings, accounts that carry
   * the Gatehouse marker and that no live record owns are removed and audited.
   */
  async reconcile(): Promise<number> {
    const counts = await Promise.all((await this.reconcilable()).map((r) => this.reconcileOne(r)));
    return counts.reduce((n, c) => n + c, 0);
  }

  /** Resources whose targets the reconciler checks: ephemeral JIT, a running door, a vaulted login. */
  private async reconcilable(): Promise<Resource[]> {
    try {
      return (await this.engine.ctx.store.listResources()).filter((r) => r.jit?.ephemeral && this.provisioners.has(r.protocol) && r.credentialsSealed);
    } catch {
      return [];
    }
  }

  private async reconcileOne(r: Resource): Promise<number> {
    const store = this.engine.ctx.store;
    const p = this.provisioners.get(r.protocol)!;
    let removed = 0;
    try {
      const admin = openCredentials(this.engine.ctx.sealer, r.name, r.credentialsSealed!);
      const target: JitTarget = { resource: r, admin, jit: r.jit! };
      const marked = await p.listMarked(target);
      if (marked.length === 0) return 0;
      // Read after listing: an account made between the two reads is owned, not an orphan.
      const owned = new Set((await store.listJitAccounts({ states: LIVE })).map((a) => a.account));
      for (const name of marked) {
        if (owned.has(name)) continue;
        // One account that cannot be removed (a throw, not only done: false) does not stop the others.
        const result: RemoveResult = await p.remove(target, name).catch((err: unknown) => ({ done: false as const, detail: describe(err) }));
        await this.audit('system', result.done ? 'jit.reconcile' : 'jit.reconcile_failed', undefined, {
          resource: r.name, account: name, ...(result.detail ? { detail: result.detail } : {}),
        });
        if (result.done) removed++;
      }
    } catch (err) {
      this.opts.log.warn({ err, resource: r.name }, 'JIT reconciler could not check a target');
    }
    return removed;
  }

  private requireProvisioner(r: Resource): Provisioner {
    const p = this.provisioners.get(r.protocol);
    if (!p) throw new JitError('invalid', `${r.name} uses temporary accounts, but the ${r.protocol} door that makes them is not running on this gateway`);
    const problems = p.check(r.jit ?? {});
    if (problems.length) throw new JitError('invalid', `the JIT settings of ${r.name} do not fit its target: ${problems.join('; ')}`);
    return p;
  }

  private async update(a: JitAccount, patch: Partial<JitAccount>): Promise<JitAccount> {
    const next: JitAccount = { ...a, ...patch, updatedAt: this.engine.ctx.clock.now(), version: a.version + 1 };
    if (!(await this.engine.ctx.store.updateJitAccount(next))) throw new Error(`JIT account ${a.id} changed underneath (version ${a.version})`);
    return next;
  }

  private async audit(actor: string, action: string, a: JitAccount | undefined, data: Record<string, unknown>): Promise<void> {
    const facts = a
      ? {
          resource: a.resource, account: a.account, kind: a.kind, user: a.user, grant: a.grant, grants: a.grants, state: a.state,
          ...(a.requestId ? { requestId: a.requestId } : {}), ...(a.leaseId ? { leaseId: a.leaseId } : {}), ...(a.sessionId ? { sessionId: a.sessionId } : {}),
        }
      : {};
    await this.engine.ctx.audit
      .record(actor, action, a?.resource ?? String(data.resource ?? ''), { ...facts, ...data, node: this.opts.node })
      .catch((err: unknown) => this.opts.log.error({ err, action }, 'could not audit a JIT step'));
  }
}

function describe(err: unknown): string {
  if (isGatehouseError(err)) return err.message;
  return err instanceof Error ? err.message : String(err);
}
