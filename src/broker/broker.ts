import { randomUUID } from 'node:crypto';
import type { Logger } from '../core/log.js';
import type { Protocol, Resource, SessionRecord, TargetCredentials, TerminationReason } from '../core/model.js';
import type { Decision, MfaProof } from '../workflow/decide.js';
import type { Engine } from '../workflow/engine.js';
import type { SessionHandle } from './adapter.js';
import { SessionMonitor } from './monitor.js';
import { verifyPassword } from '../secrets/passwords.js';
import { MINUTE } from '../core/clock.js';
import { FailureTracker } from '../core/limits.js';

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
export type OpenResult = { ok: true; session: BrokerSession } | { ok: false; denial: Denial };

type Phase = 'provisional' | 'live' | 'ended';

/**
 * A connection that passed the decision. It is provisional until the adapter has reached
 * the target and calls `live(handle)`; a provisional session that fails is discarded, not
 * recorded as ended. From live on, every end goes through the broker's one disconnect path.
 */
export class BrokerSession {
  readonly id = randomUUID();
  readonly startedAt: Date;
  bytesIn = 0;
  bytesOut = 0;
  phase: Phase = 'provisional';
  handle: SessionHandle | undefined;
  monitor: SessionMonitor | undefined;

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

  /** The target is reached: record the session, start its monitor. */
  live(handle: SessionHandle): Promise<void> {
    return this.broker.goLive(this, handle);
  }

  /** The target could not be reached: forget the session (audited as a failed attempt). */
  discard(why: string): void {
    this.broker.discard(this, why);
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
}

/** Opens sessions through the decision, keeps the live ones, and ends them. */
export class Broker {
  readonly engine: Engine;
  private readonly log: Logger;
  private readonly node: string;
  private readonly sessions = new Map<string, BrokerSession>();
  private readonly failures: FailureTracker;

  constructor(opts: BrokerOptions) {
    this.engine = opts.engine;
    this.log = opts.log;
    this.node = opts.node;
    this.failures = opts.failures ?? new FailureTracker(opts.engine.ctx.clock, { maxFailures: 5, windowMs: 15 * MINUTE, lockMs: 15 * MINUTE });
  }

  /** Runs the decision for a new connection. Every connection, every time: nothing is cached. */
  async open(req: OpenRequest): Promise<OpenResult> {
    const at = this.engine.ctx.clock.now();
    const d = await this.engine.decide({ user: req.user, resource: req.resource, at, mfa: req.mfa });
    if (!d.allow) return { ok: false, denial: d };
    return { ok: true, session: new BrokerSession(this, req, d) };
  }

  async goLive(s: BrokerSession, handle: SessionHandle): Promise<void> {
    if (s.phase !== 'provisional') return;
    s.phase = 'live';
    s.handle = handle;
    this.sessions.set(s.id, s);
    await this.save(s, 'live');
    await this.engine.ctx.audit.record(s.user, 'session.start', s.id, {
      resource: s.resource.name, protocol: s.request.protocol, client: s.request.client, deadline: s.decision.deadline?.toISOString(), node: this.node,
    });
    this.engine.ctx.bus.publishNotice({ kind: 'session_started', sessionId: s.id, resource: s.resource.name, user: s.user, to: [s.user] });
    this.startMonitor(s);
  }

  discard(s: BrokerSession, why: string): void {
    if (s.phase !== 'provisional') return;
    s.phase = 'ended';
    void this.engine.ctx.audit
      .record(s.user, 'session.discard', s.id, { resource: s.resource.name, protocol: s.request.protocol, why })
      .catch((err: unknown) => this.log.error({ err }, 'audit failed'));
  }

  /** The one way a live session ends: goodbye to the client, then record and audit. */
  async disconnect(s: BrokerSession, reason: TerminationReason, message: string): Promise<void> {
    if (s.phase === 'provisional') return this.discard(s, reason);
    if (s.phase !== 'live') return;
    s.phase = 'ended';
    s.monitor?.stop();
    this.sessions.delete(s.id);
    try {
      s.handle?.close(reason, message || `Gatehouse: session closed (${reason}).`);
    } catch (err) {
      this.log.warn({ err, session: s.id }, 'adapter close failed');
    }
    const endedAt = this.engine.ctx.clock.now();
    try {
      await this.save(s, 'ended', { endedAt, endReason: reason, endMessage: message });
      await this.engine.ctx.audit.record(s.user, 'session.end', s.id, {
        resource: s.resource.name, protocol: s.request.protocol, reason, message, bytesIn: s.bytesIn, bytesOut: s.bytesOut,
        durationMs: endedAt.getTime() - s.startedAt.getTime(),
      });
    } catch (err) {
      this.log.error({ err, session: s.id }, 'could not record the end of a session');
    }
    this.engine.ctx.bus.publishNotice({ kind: 'session_ended', sessionId: s.id, resource: s.resource.name, user: s.user, reason, to: [s.user] });
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

  /**
   * Pins a target's identity (e.g. an SSH host key fingerprint) on first use; later
   * connections must present the same one. Protocols never touch the store themselves.
   */
  async pinTargetIdentity(resource: string, fingerprint: string): Promise<'pinned' | 'match' | 'mismatch'> {
    const r = await this.engine.ctx.store.getResource(resource);
    if (!r) return 'mismatch';
    if (r.hostKeyPin) return r.hostKeyPin === fingerprint ? 'match' : 'mismatch';
    await this.engine.ctx.store.putResource({ ...r, hostKeyPin: fingerprint });
    await this.engine.ctx.audit.record('system', 'resource.pin_identity', resource, { fingerprint });
    return 'pinned';
  }

  /**
   * Checks a user's gateway password (protocols that accept it instead of a launch ticket).
   * Repeated failures lock the account for a while, here and in the API alike.
   */
  async checkPassword(user: string, password: string): Promise<boolean> {
    if (this.failures.lockedFor(`user:${user}`) > 0) {
      await this.engine.ctx.audit.record(user, 'auth.locked', user, { via: 'protocol' });
      return false;
    }
    const u = await this.engine.ctx.store.getUser(user);
    const ok = !!u && !u.disabled && (await verifyPassword(password, u.passwordHash));
    if (ok) this.failures.succeed(`user:${user}`);
    else {
      this.failures.fail(`user:${user}`);
      await this.engine.ctx.audit.record(user, 'auth.fail', user, { via: 'protocol' });
    }
    return ok;
  }

  /** Checks that `publicKey` (OpenSSH one-line, algorithm + base64) is registered for the user. */
  async hasSshKey(user: string, keyType: string, keyBase64: string): Promise<boolean> {
    const u = await this.engine.ctx.store.getUser(user);
    if (!u || u.disabled) return false;
    return u.sshKeys.some((line) => {
      const [t, b] = line.trim().split(/\s+/);
      return t === keyType && b === keyBase64;
    });
  }

  /** Redeems a one-time launch ticket for `resource`; the MFA proof it carries, or undefined. */
  async redeemTicket(ticket: string, resource: string): Promise<{ user: string; mfa: MfaProof } | undefined> {
    const t = await this.engine.mfa.redeemTicket(ticket, resource);
    if (!t) return undefined;
    return { user: t.user, mfa: t.mfa ? { kind: 'verified', at: t.createdAt } : { kind: 'none' } };
  }

  live(): BrokerSession[] {
    return [...this.sessions.values()];
  }

  async shutdown(): Promise<void> {
    await Promise.all(this.live().map((s) => this.disconnect(s, 'shutdown', 'Gatehouse: the gateway is shutting down.')));
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
    s.monitor.start();
  }

  /** Workflow settings changed: the session stays only if the new settings still allow it. */
  private async recheck(s: BrokerSession): Promise<void> {
    const now = this.engine.ctx.clock.now();
    const d = await this.engine.explain(s.user, s.resource.name, now);
    if (s.phase !== 'live') return;
    if (!d.allow) {
      await this.disconnect(s, 'settings_changed', `Gatehouse: the workflow of ${s.resource.name} changed and no longer allows this session (${d.message}).`);
      return;
    }
    s.decision = { ...d, credentials: s.decision.credentials };
    this.startMonitor(s);
  }

  private async save(s: BrokerSession, state: SessionRecord['state'], end: Partial<SessionRecord> = {}): Promise<void> {
    const rec: SessionRecord = {
      id: s.id, user: s.user, resource: s.resource.name, protocol: s.request.protocol, state, client: s.request.client,
      startedAt: s.startedAt, bytesIn: s.bytesIn, bytesOut: s.bytesOut, node: this.node, ...end,
    };
    if (s.decision.deadline) rec.deadline = s.decision.deadline;
    await this.engine.ctx.store.putSession(rec);
  }
}
