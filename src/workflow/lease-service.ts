import { randomUUID } from 'node:crypto';
import { addMs, minDate } from '../core/clock.js';
import { ForbiddenError, GatehouseError, InvalidStateError } from '../core/errors.js';
import type { Lease, Resource, TerminationReason } from '../core/model.js';
import { decide } from './decide.js';
import type { WorkflowContext } from './context.js';
import type { Directory } from './directory.js';
import { requirePlainText } from './plain-text.js';
import { formatTimeLeft, leaseEnd, type LeaseEnd } from './leases.js';
import type { RequestService } from './request-service.js';
import { eligibleApprovers, escalationReached } from './settings.js';

/** Check-out / check-in of single-user resources. One holder is the store's guarantee. */
export class LeaseService {
  constructor(
    private readonly ctx: WorkflowContext,
    private readonly dir: Directory,
    private readonly requests: RequestService,
    private readonly onChange: () => void = () => {},
  ) {}

  async checkout(user: string, resourceName: string): Promise<Lease> {
    const resource = await this.dir.requireResource(resourceName);
    if (!resource.settings.singleUser) throw new GatehouseError('BAD_REQUEST', `${resourceName} is not a single-user resource`);
    const now = this.ctx.clock.now();
    const held = await this.ctx.store.getHeldLease(resourceName);
    if (held && held.expiresAt <= now) await this.finish(held, { type: 'expire', at: now }, 'system');
    else if (held && held.holder === user) return held;
    else if (held) throw this.heldByOther(held);

    // Everything but the lease itself must already allow access (schedule, approval). MFA is
    // asked again at each connection, so a check-out does not need it.
    const d = await decide(this.ctx, { user, resource: resourceName, at: now, mfa: { kind: 'none' }, dryRun: true });
    if (!d.allow && d.code === 'checked_out_by_other') {
      // Someone checked it out since the read above (on this node or another).
      const other = await this.ctx.store.getHeldLease(resourceName);
      if (other) throw this.heldByOther(other);
    }
    if (!d.allow && d.code !== 'checkout_required' && d.code !== 'mfa_required' && d.code !== 'mfa_not_enrolled') {
      throw new GatehouseError('FORBIDDEN', d.message, { denyCode: d.code, hint: d.hint });
    }
    const limit = resource.settings.limitAccessTime;
    const requests = resource.settings.requireApproval ? await this.ctx.store.listRequests({ requester: user, resource: resourceName, states: ['approved', 'active'] }) : [];
    const request = requests[0];
    const expiresAt = minDate(addMs(now, (limit?.maxDurationMinutes ?? 60) * 60_000), request?.grantEnd) as Date;
    const lease: Lease = { id: randomUUID(), resource: resourceName, holder: user, state: 'held', startedAt: now, expiresAt };
    if (request) lease.requestId = request.id;
    try {
      await this.ctx.store.insertLease(lease);
    } catch (e) {
      if (e instanceof GatehouseError && e.code === 'CHECKED_OUT') {
        const other = await this.ctx.store.getHeldLease(resourceName);
        if (other) throw this.heldByOther(other);
      }
      throw e;
    }
    await this.ctx.audit.record(user, 'lease.checkout', resourceName, { leaseId: lease.id, expiresAt: expiresAt.toISOString() });
    this.ctx.bus.publishNotice({ kind: 'lease_checked_out', lease, to: await this.audience(resource, user) });
    this.onChange();
    return lease;
  }

  async checkin(user: string, resourceName: string): Promise<Lease> {
    const held = await this.ctx.store.getHeldLease(resourceName);
    if (!held || held.holder !== user) throw new InvalidStateError(`you do not hold ${resourceName}`);
    return this.finish(held, { type: 'checkin', by: user, at: this.ctx.clock.now() }, user);
  }

  async forceCheckin(by: string, resourceName: string, reason?: string): Promise<Lease> {
    // The reason reaches the holder in-band (SSH message, PostgreSQL notice): one plain line.
    requirePlainText('reason', reason);
    const resource = await this.dir.requireResource(resourceName);
    if (!(await this.mayForce(by, resource))) throw new ForbiddenError(`${by} is not an approver of ${resourceName}`);
    const held = await this.ctx.store.getHeldLease(resourceName);
    if (!held) throw new InvalidStateError(`${resourceName} is not checked out`);
    const why = reason?.trim() || `force check-in by ${by}`;
    return this.finish(held, { type: 'force', by, at: this.ctx.clock.now(), reason: why }, by);
  }

  /**
   * Who may force a check-in (or kill a session): administrators, the owner, and whoever
   * could approve the grant the resource is held under, with the same eligibility as
   * approving: escalation approvers only once the escalation delay of that request has
   * passed, disabled users never.
   */
  async mayForce(user: string, resource: Resource): Promise<boolean> {
    const u = await this.dir.requireUser(user);
    if (u.disabled) return false;
    if (u.admin || resource.owner === user) return true;
    const teams = await this.dir.teamsMap();
    const escalated = await this.escalated(resource);
    return [0, 1].some((stage) => eligibleApprovers(resource.settings, resource, teams, stage, escalated).has(user));
  }

  /** Whether the escalation delay has passed for the request the held lease runs under. */
  private async escalated(resource: Resource): Promise<boolean> {
    if (!resource.settings.requireApproval?.escalation) return false;
    const held = await this.ctx.store.getHeldLease(resource.name);
    const request = held?.requestId ? await this.ctx.store.getRequest(held.requestId) : undefined;
    return !!request && escalationReached(resource.settings, request.createdAt, this.ctx.clock.now());
  }

  /** Expires leases that are due; returns the earliest future expiry. */
  async sweep(): Promise<Date | undefined> {
    const now = this.ctx.clock.now();
    let earliest: Date | undefined;
    for (const lease of await this.ctx.store.listLeases({ state: 'held' })) {
      if (lease.expiresAt <= now) await this.finish(lease, { type: 'expire', at: now }, 'system');
      else if (!earliest || lease.expiresAt < earliest) earliest = lease.expiresAt;
    }
    return earliest;
  }

  /** Who hears about a lease: its holder and everyone who could force it back. */
  private async audience(resource: Resource, holder: string): Promise<string[]> {
    const teams = await this.dir.teamsMap();
    const approvers = [0, 1].flatMap((stage) => [...eligibleApprovers(resource.settings, resource, teams, stage, true)]);
    return [...new Set([holder, resource.owner, ...approvers])];
  }

  private heldByOther(held: Lease): GatehouseError {
    const left = formatTimeLeft(held.expiresAt.getTime() - this.ctx.clock.now().getTime());
    return new GatehouseError('CHECKED_OUT', `${held.resource} is checked out by ${held.holder} for another ${left} (until ${held.expiresAt.toISOString()})`, {
      holder: held.holder, expiresAt: held.expiresAt.toISOString(),
    });
  }

  private async finish(lease: Lease, e: LeaseEnd, actor: string): Promise<Lease> {
    const patch = leaseEnd(lease, e);
    if (!patch) return lease;
    const ended = await this.ctx.store.endLease(lease.id, patch);
    if (!ended) throw new InvalidStateError(`lease ${lease.id} already ended`);
    const reason: TerminationReason = ended.state === 'force_checked_in' ? 'force_checked_in' : ended.state === 'expired' ? 'expired' : 'checked_in';
    const message =
      reason === 'force_checked_in' ? `${ended.resource} was force checked in by ${ended.endedBy}: ${ended.endReason}` : reason === 'expired' ? `your check-out of ${ended.resource} expired` : `${ended.resource} was checked in`;
    // The lease has ended in the store: its sessions are cut now, whether or not the audit
    // write below succeeds (a failed audit must not leave them running).
    this.ctx.bus.publishRevoke({ kind: 'lease_ended', resource: ended.resource, user: ended.holder, leaseId: ended.id, reason, ...(ended.endedBy ? { by: ended.endedBy } : {}), message });
    await this.ctx.audit.record(actor, `lease.${ended.state}`, ended.resource, { leaseId: ended.id, holder: ended.holder, reason: ended.endReason });
    const kind = ended.state === 'force_checked_in' ? 'lease_force_checked_in' : ended.state === 'expired' ? 'lease_expired' : 'lease_checked_in';
    const resource = await this.ctx.store.getResource(ended.resource);
    this.ctx.bus.publishNotice({ kind, lease: ended, to: resource ? await this.audience(resource, ended.holder) : [ended.holder] });
    // Returning the resource also ends the grant it was checked out under.
    if (ended.requestId) await this.requests.end(ended.requestId, actor, ended.endReason ?? reason);
    this.onChange();
    return ended;
  }
}
