import { randomUUID } from 'node:crypto';
import { addMs } from '../core/clock.js';
import { ForbiddenError, GatehouseError, NotFoundError, ValidationError } from '../core/errors.js';
import type { AccessRequest, Resource } from '../core/model.js';
import { isOnAccessList } from './access.js';
import type { WorkflowContext } from './context.js';
import type { Directory } from './directory.js';
import { requirePlainText } from './plain-text.js';
import { earlierStageApprovers, isGranted, nextDue, transition, type GrantRule, type RequestEvent, type Transition } from './requests.js';
import { eligibleApprovers, escalationReached } from './settings.js';
import { ticketMatches } from './ticket-pattern.js';

/** The API's limit too; a ticket id is an identifier, not prose. */
const MAX_TICKET_LENGTH = 100;

export interface NewRequest {
  resource: string;
  reason?: string;
  ticket?: string;
}

/** Access requests: creation, reviews, reminders, cancel, expiry. */
export class RequestService {
  constructor(
    private readonly ctx: WorkflowContext,
    private readonly dir: Directory,
    private readonly onChange: () => void = () => {},
  ) {}

  async create(requester: string, input: NewRequest): Promise<AccessRequest> {
    const user = await this.dir.requireUser(requester);
    const resource = await this.dir.requireResource(input.resource);
    const approval = resource.settings.requireApproval;
    if (!approval) throw new GatehouseError('BAD_REQUEST', `${resource.name} does not require approval; connect directly`);
    if (!isOnAccessList(user, resource)) throw new ForbiddenError(`${requester} is not on the access list of ${resource.name}`);
    const reason = input.reason?.trim();
    const ticket = input.ticket?.trim();
    // Reasons and ticket ids are shown to approvers in their terminals: no escape sequences.
    requirePlainText('reason', reason, 'multiline');
    requirePlainText('ticket', ticket);
    if (approval.requireReason && !reason) throw new ValidationError('reason', `${resource.name} requires a reason`);
    if (approval.requireTicket && !ticket) throw new ValidationError('ticket', `${resource.name} requires a ticket id`);
    if (ticket && ticket.length > MAX_TICKET_LENGTH) throw new ValidationError('ticket', `at most ${MAX_TICKET_LENGTH} characters`);
    if (ticket && approval.ticketPattern && !ticketMatches(approval.ticketPattern, ticket, resource.name)) {
      throw new ValidationError('ticket', `'${ticket}' does not match the required pattern ${approval.ticketPattern}`);
    }
    if (reason && reason.length > 1000) throw new ValidationError('reason', 'at most 1000 characters');
    const open = (await this.ctx.store.listRequests({ requester, resource: resource.name })).find((r) => r.state === 'pending' || isGranted(r));
    if (open) throw new GatehouseError('CONFLICT', `you already have request ${open.id} (${open.state}) for ${resource.name}`, { requestId: open.id });
    const now = this.ctx.clock.now();
    const ttl = approval.pendingTtlMinutes ? approval.pendingTtlMinutes * 60_000 : this.ctx.config.defaultPendingTtlMs;
    const request: AccessRequest = {
      id: randomUUID(), resource: resource.name, requester, state: 'pending', stage: 0, reviews: [],
      createdAt: now, pendingUntil: addMs(now, ttl), version: 1,
    };
    if (reason) request.reason = reason;
    if (ticket) request.ticket = ticket;
    await this.ctx.store.insertRequest(request);
    await this.ctx.audit.record(requester, 'request.create', request.id, { resource: resource.name, reason, ticketId: ticket });
    this.ctx.bus.publishNotice({ kind: 'request_created', request, to: await this.approversOf(request, resource) });
    this.onChange();
    return request;
  }

  async get(id: string): Promise<AccessRequest> {
    const r = await this.ctx.store.getRequest(id);
    if (!r) throw new NotFoundError('request', id);
    return r;
  }

  /** Users who may act on the request at its current stage now (delegates included). */
  async approversOf(request: AccessRequest, resource?: Resource): Promise<string[]> {
    const res = resource ?? (await this.dir.requireResource(request.resource));
    const eligible = await this.eligible(request, res);
    const now = this.ctx.clock.now();
    // Whoever approved an earlier stage (in person or through a delegate) cannot approve this one.
    const earlier = earlierStageApprovers(request);
    const out = new Set([...eligible].filter((u) => u !== request.requester && !earlier.has(u)));
    for (const d of await this.ctx.store.listDelegations()) {
      if (eligible.has(d.from) && !earlier.has(d.from) && activeDelegation(d, res.name, now) && d.to !== request.requester && !earlier.has(d.to)) out.add(d.to);
    }
    return [...out];
  }

  /** Pending requests `user` can act on now. */
  async toApprove(user: string): Promise<AccessRequest[]> {
    const pending = await this.ctx.store.listRequests({ states: ['pending'] });
    const out: AccessRequest[] = [];
    for (const r of pending) {
      const res = await this.ctx.store.getResource(r.resource);
      if (res && (await this.approversOf(r, res)).includes(user)) out.push(r);
    }
    return out;
  }

  async approve(id: string, by: string, comment?: string): Promise<AccessRequest> {
    return this.review(id, by, 'approve', comment);
  }

  async deny(id: string, by: string, comment?: string): Promise<AccessRequest> {
    return this.review(id, by, 'deny', comment);
  }

  async cancel(id: string, by: string): Promise<AccessRequest> {
    const next = await this.apply(id, by, 'request.cancel', () => ({ type: 'cancel', by, at: this.ctx.clock.now() }));
    this.ctx.bus.publishNotice({ kind: 'request_cancelled', request: next, to: await this.approversOf(next).catch(() => []) });
    return next;
  }

  async remind(id: string, by: string): Promise<AccessRequest> {
    const next = await this.apply(id, by, 'request.remind', () => ({
      type: 'remind', by, at: this.ctx.clock.now(), minIntervalMs: this.ctx.config.reminderIntervalMs,
    }));
    this.ctx.bus.publishNotice({ kind: 'request_reminder', request: next, to: await this.approversOf(next) });
    return next;
  }

  /** Ends a live grant (check-in, revoke) and tells sessions using it to close. */
  async end(id: string, by: string, reason: string): Promise<AccessRequest | undefined> {
    const r = await this.ctx.store.getRequest(id);
    if (!r || !(r.state === 'pending' || isGranted(r))) return r;
    // The revoke goes out as soon as the grant has ended in the store, before its audit row:
    // a failed audit write must not leave the grant's sessions running.
    const next = await this.apply(id, by, 'request.end', () => ({ type: 'end', at: this.ctx.clock.now(), reason }), (ended) => {
      this.ctx.bus.publishRevoke({ kind: 'request_revoked', resource: ended.resource, user: ended.requester, requestId: id, message: reason });
    });
    return next;
  }

  /** Expires what is due; returns the earliest future due time. */
  async sweep(): Promise<Date | undefined> {
    const now = this.ctx.clock.now();
    let earliest: Date | undefined;
    for (const r of await this.ctx.store.listRequests({ states: ['pending', 'approved', 'active'] })) {
      const t = transition(r, { type: 'tick', at: now });
      if (t && (await this.ctx.store.updateRequest(t.next))) {
        if (t.next.state === 'ended') {
          this.ctx.bus.publishRevoke({ kind: 'request_revoked', resource: r.resource, user: r.requester, requestId: r.id, message: 'your access grant expired' });
        }
        await this.ctx.audit.record('system', 'request.expire', r.id, { from: r.state, to: t.next.state, reason: t.reason });
        this.ctx.bus.publishNotice({ kind: 'request_expired', request: t.next, to: [t.next.requester] });
        continue;
      }
      const due = nextDue(r);
      if (due && (!earliest || due < earliest)) earliest = due;
      const esc = await this.escalationDue(r);
      if (esc && esc <= now && !r.escalatedAt) {
        await this.markEscalated(r);
      } else if (esc && esc > now && (!earliest || esc < earliest)) {
        earliest = esc;
      }
    }
    return earliest;
  }

  private async escalationDue(r: AccessRequest): Promise<Date | undefined> {
    if (r.state !== 'pending' || r.stage !== 0) return undefined;
    const res = await this.ctx.store.getResource(r.resource);
    const esc = res?.settings.requireApproval?.escalation;
    return esc ? addMs(r.createdAt, esc.afterMinutes * 60_000) : undefined;
  }

  private async markEscalated(r: AccessRequest): Promise<void> {
    await this.ctx.audit.record('system', 'request.escalate', r.id, { resource: r.resource });
    // Eligibility itself is time-based (see eligible()); the mark keeps the notice single.
    const next: AccessRequest = { ...r, escalatedAt: this.ctx.clock.now(), version: r.version + 1 };
    if (await this.ctx.store.updateRequest(next)) {
      this.ctx.bus.publishNotice({ kind: 'request_escalated', request: next, to: await this.approversOf(next) });
    }
  }

  private async eligible(r: AccessRequest, res: Resource): Promise<Set<string>> {
    const escalated = escalationReached(res.settings, r.createdAt, this.ctx.clock.now());
    const teams = await this.dir.teamsMap();
    const users = await this.ctx.store.listUsers();
    const enabled = new Set(users.filter((u) => !u.disabled).map((u) => u.name));
    const set = eligibleApprovers(res.settings, res, teams, r.stage, escalated);
    return new Set([...set].filter((u) => enabled.has(u)));
  }

  private grantRule(res: Resource): GrantRule {
    const approval = res.settings.requireApproval;
    const limit = res.settings.limitAccessTime;
    return {
      startOn: approval?.startOn ?? 'approval',
      maxDurationMs: (limit?.maxDurationMinutes ?? 60) * 60_000,
      useWithinMs: this.ctx.config.approvedUseWithinMs,
    };
  }

  private async review(id: string, by: string, decision: 'approve' | 'deny', comment?: string): Promise<AccessRequest> {
    // The API calls a denial's comment its reason; name the field the caller sent.
    requirePlainText(decision === 'approve' ? 'comment' : 'reason', comment, 'multiline');
    const reviewer = await this.dir.requireUser(by);
    if (reviewer.disabled) throw new ForbiddenError(`${by} is disabled`);
    const next = await this.apply(id, by, decision === 'approve' ? 'request.approve' : 'request.deny', async (r, res) => {
      const eligible = await this.eligible(r, res);
      const principal = await this.principalFor(by, eligible, res.name, earlierStageApprovers(r));
      if (decision === 'deny') return { type: 'deny', by, principal, at: this.ctx.clock.now(), ...(comment ? { comment } : {}), eligible };
      const approval = res.settings.requireApproval;
      const required = r.stage === 0 ? (approval?.approvals ?? 1) : (approval?.secondStage?.approvals ?? 1);
      const e: RequestEvent = { type: 'approve', by, principal, at: this.ctx.clock.now(), eligible, required, grant: this.grantRule(res) };
      if (comment) e.comment = comment;
      if (r.stage === 0 && approval?.secondStage) e.nextStageRequired = approval.secondStage.approvals;
      return e;
    });
    const kind = next.state === 'approved' ? 'request_approved' : next.state === 'denied' ? 'request_denied' : 'request_reviewed';
    const to = kind === 'request_reviewed' ? [next.requester, ...(await this.approversOf(next))] : [next.requester];
    this.ctx.bus.publishNotice({ kind, request: next, to });
    return next;
  }

  /** Whom an approval by `by` counts for: themselves, or an eligible approver who delegated to them. */
  private async principalFor(by: string, eligible: ReadonlySet<string>, resource: string, spent: ReadonlySet<string>): Promise<string> {
    if (eligible.has(by)) return by;
    const now = this.ctx.clock.now();
    // Prefer a delegator whose authority is not spent on an earlier stage.
    const d = (await this.ctx.store.listDelegations({ to: by })).find((x) => eligible.has(x.from) && !spent.has(x.from) && activeDelegation(x, resource, now));
    return d ? d.from : by;
  }

  /** Load, transition, write with optimistic concurrency (retrying on a lost race), audit. */
  private async apply(
    id: string,
    actor: string,
    action: string,
    event: (r: AccessRequest, res: Resource) => RequestEvent | Promise<RequestEvent>,
    /** Runs once the change is in the store, before it is audited. */
    stored: (next: AccessRequest) => void = () => {},
  ): Promise<AccessRequest> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const r = await this.get(id);
      const res = await this.dir.requireResource(r.resource);
      const t: Transition | null = transition(r, await event(r, res));
      if (!t) return r;
      if (await this.ctx.store.updateRequest(t.next)) {
        stored(t.next);
        await this.ctx.audit.record(actor, action, id, { resource: r.resource, from: r.state, to: t.next.state, stage: t.next.stage, reason: t.reason });
        this.onChange();
        return t.next;
      }
    }
    throw new GatehouseError('CONFLICT', `request ${id} is changing too fast; try again`);
  }
}

function activeDelegation(d: { resource?: string; start: Date; end: Date }, resource: string, at: Date): boolean {
  return (!d.resource || d.resource === resource) && d.start <= at && at < d.end;
}
