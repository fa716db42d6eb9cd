import { randomUUID } from 'node:crypto';
import type { Logger } from '../core/log.js';
import type { JitAccount, Protocol, Resource, SessionRecord, TargetCredentials, TerminationReason } from '../core/model.js';
import type { Decision, MfaProof } from '../workflow/decide.js';
import type { Engine } from '../workflow/engine.js';
import type { SessionHandle } from './adapter.js';
import { SessionMonitor } from './monitor.js';
import type { FailureTracker } from '../core/limits.js';
import { AuditFolding } from './audit-folding.js';
import { EndRecorder } from './end-recorder.js';
import { OperationLog, type OperationEntry } from './operation-log.js';
import { LoginService, sourceOf, type LoginOptions } from './login.js';
import type { DoorInfo, GatewayPort, GatewaySession, PortProvider, SessionFacts } from './port.js';
import { refusals, type Refusal, type RefusalCode } from './refusals.js';
import { verifyTargetIdentity } from './target-identity.js';
import { revalidate } from './revalidate.js';
import { JitManager } from './jit.js';

export interface OpenRequest {
  user: string;
  resource: string;
  protocol: Protocol;
  /** Client address, for the audit log. */
  client: string;
  mfa: MfaProof;
}

export type Denial = Extract<Decision, { allow: false }>;
export type Allowance = Extract<Decision, { allow: true }>;

/** What one re-check of every live session found. */
export interface RecheckSummary {
  checked: number;
  ended: number;
  /** Sessions the store could not answer for; they keep their known deadlines. */
  unknown: number;
}

export type OpenResult =
  | { ok: true; session: BrokerSession }
  /**
   * `refusal` is set when the decision allowed the connection but the grant's temporary
   * account (or elevation) could not be made; `denial` then says the same in workflow terms.
   */
  | { ok: false; denial: Denial; refusal?: Refusal };

type Phase = 'provisional' | 'live' | 'ended';

/**
 * A connection that passed the decision. It is provisional until the adapter has reached
 * the target and calls `live(handle)`; a provisional session that fails is discarded, not
 * recorded as ended. From live on, every end goes through the broker's one disconnect path.
 */
export class BrokerSession implements GatewaySession {
  readonly id = randomUUID();
  readonly startedAt: Date;
  bytesIn = 0;
  bytesOut = 0;
  phase: Phase = 'provisional';
  /** Where the revoke stream stood when this session's decision was made (its monitor replays what came after). */
  revokeMark = 0;
  handle: SessionHandle | undefined;
  monitor: SessionMonitor | undefined;
  /** Operations of this session, written to the audit chain in batches. */
  operations: OperationLog | undefined;
  /** The grant's temporary account or elevation this session uses (JIT), if its resource has one. */
  jit: JitAccount | undefined;
  /** The write of the live record, while it is in flight: an end that comes meanwhile is written after it. */
  recording: Promise<void> | undefined;

  /** The temporary account's name on the target (ephemeral JIT); undefined for the vaulted login. */
  get account(): string | undefined {
    return this.jit?.kind === 'ephemeral' ? this.jit.account : undefined;
  }

  constructor(
    private readonly broker: Broker,
    readonly request: OpenRequest,
    public decision: Allowance,
  ) {
    this.startedAt = broker.engine.ctx.clock.now();
  }

  get user(): string {
    return this.decision.user;
  }

  get resource(): Resource {
    return this.decision.resource;
  }

  get credentials(): TargetCredentials | undefined {
    return this.decision.credentials;
  }

  get deadline(): Date | undefined {
    return this.decision.deadline;
  }

  /** The target is reached: record the session, start its monitor. */
  live(handle: SessionHandle, facts: SessionFacts = {}): Promise<void> {
    return this.broker.goLive(this, handle, facts);
  }

  /** The target could not be reached: forget the session (audited as a failed attempt). */
  discard(code: RefusalCode, detail: string): void {
    this.broker.discard(this, code, detail);
  }

  operation(facts: SessionFacts): void {
    if (this.phase !== 'live') return;
    this.operations ??= new OperationLog((entries) => this.broker.auditOperations(this, entries));
    this.operations.add(facts);
  }

  /** The client or the target went away. */
  end(reason: TerminationReason, message = ''): void {
    void this.broker.disconnect(this, reason, message);
  }
}

export interface BrokerOptions {
  engine: Engine;
  log: Logger;
  node: string;
  /** Failed sign-ins, shared with the API so a lockout holds on every door. */
  failures?: FailureTracker;
  /** Sign-in tuning (password cache, per-source throttle). */
  login?: Omit<LoginOptions, 'failures'>;
  /** How often the JIT sweep (ended grants, retries, the reconciler) runs; default one minute. */
  jitSweepEveryMs?: number;
}

/** Opens sessions through the decision, keeps the live ones, and ends them. */
export class Broker implements PortProvider {
  readonly engine: Engine;
  readonly logins: LoginService;
  /** Ephemeral accounts and elevation per grant (doors register their provisioners). */
  readonly jit: JitManager;
  private readonly log: Logger;
  private readonly node: string;
  private readonly sessions = new Map<string, BrokerSession>();
  /** Door refusals audited per source: a flood is summarised, not written row by row. */
  private readonly folding: AuditFolding;
  /** Records and audits ended sessions in batches, after their sockets are closed. */
  private readonly ends: EndRecorder;
  /** Closes a door has not answered yet (their final counts still to come). */
  private closesUnderWay = 0;
  /** Settles when that count next reaches 0 (one promise, however many batches wait on it). */
  private closesSettled: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(opts: BrokerOptions) {
    this.engine = opts.engine;
    this.log = opts.log;
    this.node = opts.node;
    this.logins = new LoginService(opts.engine, { ...opts.login, ...(opts.failures ? { failures: opts.failures } : {}) });
    this.folding = new AuditFolding(opts.engine.ctx.clock);
    this.ends = new EndRecorder({ store: opts.engine.ctx.store, audit: opts.engine.ctx.audit, log: opts.log, closing: () => this.closesDone() });
    this.jit = new JitManager({ engine: opts.engine, log: opts.log, node: opts.node, ...(opts.jitSweepEveryMs ? { sweepEveryMs: opts.jitSweepEveryMs } : {}) });
  }

  /** Runs the decision for a new connection. Every connection, every time: nothing is cached. */
  async open(req: OpenRequest): Promise<OpenResult> {
    const at = this.engine.ctx.clock.now();
    // Taken before the decision: a revocation from here until the monitor starts is replayed to it.
    const mark = this.engine.ctx.bus.revokeMark();
    const d = await this.engine.decide({ user: req.user, resource: req.resource, at, mfa: req.mfa, protocol: req.protocol, client: req.client });
    if (!d.allow) return { ok: false, denial: d };
    const session = new BrokerSession(this, req, d);
    session.revokeMark = mark;
    if (d.resource.jit && (d.resource.jit.ephemeral || d.resource.jit.elevate)) {
      try {
        const got = await this.jit.acquire(d, session.id);
        session.decision = { ...d, credentials: got.credentials };
        session.jit = got.account;
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        await this.recordFailure(session, message);
        const refusal = refusals.target('target_provisioning', d.resource.name, message, `tell the owner of ${d.resource.name} (${d.resource.owner}); gatehouse sessions shows the failure`);
        return { ok: false, denial: { allow: false, code: 'gateway_unavailable', message: refusal.message, checks: d.checks }, refusal };
      }
    }
    return { ok: true, session };
  }

  /**
   * A session the gateway could not start for a reason its owner must fix (the grant's
   * temporary account was refused): kept in the session list as ended with the error, so
   * `gatehouse sessions` shows it, and audited.
   */
  private async recordFailure(s: BrokerSession, message: string): Promise<void> {
    s.phase = 'ended';
    const endedAt = this.engine.ctx.clock.now();
    try {
      await this.save(s, 'ended', { endedAt, endReason: 'error', endMessage: message });
      await this.engine.ctx.audit.record(s.user, 'session.fail', s.id, { resource: s.resource.name, door: s.request.protocol, client: s.request.client, code: 'target_provisioning', message });
    } catch (err) {
      this.log.error({ err, session: s.id }, 'could not record a failed session');
    }
  }

  /** The port a door is given: everything it may ask of the core, and nothing else. */
  portFor(door: DoorInfo, log: Logger = this.log): GatewayPort {
    const protocol = door.protocol;
    return {
      protocol,
      clock: this.engine.ctx.clock,
      log,
      login: (req) => this.logins.login({ ...req, protocol, example: door.loginExample }),
      precheck: (name, client) => this.logins.precheck(name, client, door.loginExample),
      knowsKey: (name, client, type, blob) => this.logins.knowsKey(name, client, type, blob),
      needsMfa: async (user, resource) => {
        const d = await this.engine.explain(user, resource);
        return d.allow && d.resource.settings.mfa === true;
      },
      open: async (req) => {
        const r = await this.logins.guardDecision(
          { protocol, user: req.user, resource: req.resource, client: req.client, totp: req.mfa.kind === 'totp' },
          () => this.open({ ...req, protocol }),
          (o) => !o.ok && (o.denial.code === 'mfa_invalid' || o.denial.code === 'mfa_replayed'),
        );
        if (r.ok) return r;
        if ('denial' in r) return { ok: false, refusal: r.refusal ?? refusals.fromDenial(r.denial) };
        return { ok: false, refusal: r.refusal };
      },
      verifyTarget: (resource, identity) => verifyTargetIdentity(this.engine.ctx, resource, identity, (name) => this.jit.retiredPin(name)),
      refused: (client, refusal, detail) => this.auditRefusal(protocol, client, refusal, detail),
    };
  }

  private auditRefusal(door: Protocol, client: string, refusal: Refusal, detail?: string): void {
    const extra = this.folding.admit(`${door}\0${sourceOf(client)}\0${refusal.code}`);
    if (!extra) return;
    void this.engine.ctx.audit
      .record('unknown', 'door.refuse', door, { door, client, code: refusal.code, ...(detail ? { detail: detail.slice(0, 200) } : {}), ...extra })
      .catch((err: unknown) => this.log.error({ err }, 'could not audit a refusal'));
  }

  async goLive(s: BrokerSession, handle: SessionHandle, facts: SessionFacts = {}): Promise<void> {
    if (s.phase !== 'provisional') return;
    s.phase = 'live';
    s.handle = handle;
    this.sessions.set(s.id, s);
    s.recording = this.save(s, 'live');
    try {
      await s.recording;
    } finally {
      s.recording = undefined;
    }
    await this.engine.ctx.audit.record(s.user, 'session.start', s.id, {
      ...facts, resource: s.resource.name, protocol: s.request.protocol, client: s.request.client, deadline: s.decision.deadline?.toISOString(), node: this.node,
    });
    // Ended while it was being recorded (the client left, a revocation, a kill): its end is
    // written already, and a monitor now would watch a session that no longer exists.
    if (s.phase !== 'live') return;
    this.engine.ctx.bus.publishNotice({ kind: 'session_started', sessionId: s.id, resource: s.resource.name, user: s.user, to: [s.user] });
    this.startMonitor(s);
  }

  discard(s: BrokerSession, code: RefusalCode | TerminationReason, detail = ''): void {
    if (s.phase !== 'provisional') return;
    s.phase = 'ended';
    if (s.jit) this.jit.sessionEnded(s.jit);
    void this.engine.ctx.audit
      .record(s.user, 'session.discard', s.id, { resource: s.resource.name, door: s.request.protocol, client: s.request.client, code, detail: detail.slice(0, 300) })
      .catch((err: unknown) => this.log.error({ err }, 'audit failed'));
  }

  /**
   * The one way a live session ends: goodbye to the client, then record and audit. The record
   * and the audit row go through the end recorder, batched with every other session that ends
   * in the same synchronous run (see end-recorder.ts): a force check-in of a lease held by a
   * thousand sessions closes a thousand sockets first and writes afterwards, two transactions.
   * Resolves once this session's record and audit row are written.
   */
  async disconnect(s: BrokerSession, reason: TerminationReason, message: string): Promise<void> {
    if (s.phase === 'provisional') return this.discard(s, reason, message);
    if (s.phase !== 'live') return;
    s.phase = 'ended';
    s.monitor?.stop();
    s.monitor = undefined;
    s.operations?.flush();
    this.sessions.delete(s.id);
    if (s.jit) this.jit.sessionEnded(s.jit);
    let counted: void | Promise<void> = undefined;
    try {
      counted = s.handle?.close(reason, message || `Gatehouse: session closed (${reason}).`);
    } catch (err) {
      this.log.warn({ err, session: s.id }, 'adapter close failed');
    }
    const endedAt = this.engine.ctx.clock.now();
    // A session in a data-path worker: its final byte counts come back with the close.
    if (counted) {
      this.closesUnderWay++;
      await counted.catch((err: unknown) => this.log.warn({ err, session: s.id }, 'adapter close failed'));
      if (--this.closesUnderWay === 0) {
        this.closesSettled?.resolve();
        this.closesSettled = undefined;
      }
    }
    // Its live record still being written (a store that answers asynchronously): the ended one
    // must land after it, not be overwritten by it.
    if (s.recording) await s.recording.catch(() => undefined);
    return this.ends.add({
      record: this.record(s, 'ended', { endedAt, endReason: reason, endMessage: message }),
      audit: {
        actor: s.user,
        subject: s.id,
        data: {
          resource: s.resource.name, protocol: s.request.protocol, reason, message, bytesIn: s.bytesIn, bytesOut: s.bytesOut,
          durationMs: endedAt.getTime() - s.startedAt.getTime(),
        },
      },
      after: () => this.engine.ctx.bus.publishNotice({ kind: 'session_ended', sessionId: s.id, resource: s.resource.name, user: s.user, reason, to: [s.user] }),
    });
  }

  /** While a door's close is under way, a promise that resolves once none is (the end recorder holds a batch until then). */
  private closesDone(): Promise<void> | undefined {
    if (this.closesUnderWay === 0) return undefined;
    if (!this.closesSettled) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.closesSettled = { promise, resolve };
    }
    return this.closesSettled.promise;
  }

  auditOperations(s: BrokerSession, entries: OperationEntry[]): void {
    const operations = entries.map((e) => (e.count > 1 ? { ...e.facts, count: e.count } : e.facts));
    void this.engine.ctx.audit
      .record(s.user, 'session.operations', s.id, { resource: s.resource.name, protocol: s.request.protocol, operations })
      .catch((err: unknown) => this.log.error({ err, session: s.id }, 'could not audit session operations'));
  }

  /**
   * Ends a live session by id. A session held by another node is reached through the bus
   * (its monitor listens for `session_killed`); the record is closed here either way, since
   * a stuck node might never do it.
   */
  async kill(id: string, by: string): Promise<boolean> {
    const local = this.sessions.get(id);
    if (local) {
      await this.disconnect(local, 'killed', `Gatehouse: this session was ended by ${by}.`);
      return true;
    }
    const rec = await this.engine.ctx.store.getSession(id);
    if (!rec || rec.state !== 'live') return false;
    this.engine.ctx.bus.publishRevoke({ kind: 'session_killed', sessionId: id, by, message: `ended by ${by}` });
    await this.engine.ctx.store.putSession({ ...rec, state: 'ended', endedAt: this.engine.ctx.clock.now(), endReason: 'killed', endMessage: `ended by ${by}` });
    await this.engine.ctx.audit.record(by, 'session.kill', id, { resource: rec.resource, node: rec.node });
    return true;
  }

  live(): BrokerSession[] {
    return [...this.sessions.values()];
  }

  /**
   * Re-checks every live session against the store, for when revoke events may have been
   * missed (the cluster's event feed is down): a session whose lease or grant ended, which
   * another node closed, or which the decision no longer allows, ends now. A session the store
   * cannot answer for keeps its known deadline; a deadline may move earlier, never later.
   */
  async recheckAll(reason: string): Promise<RecheckSummary> {
    const sessions = this.live();
    const summary: RecheckSummary = { checked: sessions.length, ended: 0, unknown: 0 };
    await Promise.all(
      sessions.map(async (s) => {
        const d = s.decision;
        const r = await revalidate(this.engine, {
          id: s.id, user: s.user, resource: s.resource.name, ...(d.leaseId ? { leaseId: d.leaseId } : {}), ...(d.requestId ? { requestId: d.requestId } : {}),
        });
        if (s.phase !== 'live') return;
        if (r.verdict === 'unknown') {
          summary.unknown++;
        } else if (r.verdict === 'ended') {
          summary.ended++;
          await this.disconnect(s, r.reason, r.message);
        } else if (r.decision.deadline && (!s.decision.deadline || r.decision.deadline < s.decision.deadline)) {
          s.decision = { ...s.decision, deadline: r.decision.deadline, deadlineCause: r.decision.deadlineCause, warnAt: r.decision.warnAt };
          this.startMonitor(s);
        }
      }),
    );
    // Sessions ended here are ones the missed events would have ended; a quiet poll is not news.
    if (summary.ended > 0) this.log.warn({ reason, ...summary }, 'ended live sessions the store no longer allows');
    else this.log.debug({ reason, ...summary }, 're-checked live sessions against the store');
    return summary;
  }

  async shutdown(): Promise<void> {
    await Promise.all(this.live().map((s) => this.disconnect(s, 'shutdown', 'Gatehouse: the gateway is shutting down.')));
    // Accounts of grants that were these sessions go now; the rest outlive a restart by design.
    await this.jit.drain();
    this.jit.stop();
  }

  private startMonitor(s: BrokerSession): void {
    const d = s.decision;
    s.monitor?.stop();
    s.monitor = new SessionMonitor(
      {
        id: s.id, user: s.user, resource: s.resource.name,
        ...(d.requestId ? { requestId: d.requestId } : {}), ...(d.leaseId ? { leaseId: d.leaseId } : {}),
        ...(d.deadline ? { deadline: d.deadline } : {}), ...(d.deadlineCause ? { deadlineCause: d.deadlineCause } : {}), ...(d.warnAt ? { warnAt: d.warnAt } : {}),
      },
      this.engine.ctx.clock,
      this.engine.ctx.bus,
      {
        warn: (m) => {
          try {
            s.handle?.warn(m);
          } catch (err) {
            this.log.warn({ err }, 'warning failed');
          }
          this.engine.ctx.bus.publishNotice({ kind: 'access_expiring', resource: s.resource.name, at: d.deadline ?? this.engine.ctx.clock.now(), to: [s.user] });
        },
        end: (reason, message) => void this.disconnect(s, reason, message),
        recheck: () => void this.recheck(s),
      },
    );
    const from = s.revokeMark;
    s.revokeMark = this.engine.ctx.bus.revokeMark();
    s.monitor.start(from);
  }

  /** Workflow settings changed: the session stays only if the new settings still allow it. */
  private async recheck(s: BrokerSession): Promise<void> {
    const now = this.engine.ctx.clock.now();
    const mark = this.engine.ctx.bus.revokeMark();
    const d = await this.engine.explain(s.user, s.resource.name, now);
    if (s.phase !== 'live') return;
    s.revokeMark = mark;
    if (!d.allow) {
      await this.disconnect(s, 'settings_changed', `Gatehouse: the workflow of ${s.resource.name} changed and no longer allows this session (${d.message}).`);
      return;
    }
    s.decision = { ...d, credentials: s.decision.credentials };
    this.startMonitor(s);
  }

  private save(s: BrokerSession, state: SessionRecord['state'], end: Partial<SessionRecord> = {}): Promise<void> {
    return this.engine.ctx.store.putSession(this.record(s, state, end));
  }

  private record(s: BrokerSession, state: SessionRecord['state'], end: Partial<SessionRecord> = {}): SessionRecord {
    const rec: SessionRecord = {
      id: s.id, user: s.user, resource: s.resource.name, protocol: s.request.protocol, state, client: s.request.client,
      startedAt: s.startedAt, bytesIn: s.bytesIn, bytesOut: s.bytesOut, node: this.node, ...end,
    };
    if (s.decision.deadline) rec.deadline = s.decision.deadline;
    if (s.account) rec.account = s.account;
    return rec;
  }
}
