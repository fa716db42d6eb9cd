import { addMs, minDate } from '../core/clock.js';
import type { AccessRequest, Lease, Protocol, Resource, TargetCredentials, User } from '../core/model.js';
import { openCredentials } from '../secrets/credentials.js';
import { isOnAccessList } from './access.js';
import type { WorkflowContext } from './context.js';
import { formatTimeLeft } from './leases.js';
import { matchTotpStep } from './mfa.js';
import { isGranted, transition } from './requests.js';
import { describeNextOpening, windowAt } from './schedule.js';

export type DenyCode =
  | 'resource_unknown'
  | 'wrong_protocol'
  | 'user_unknown'
  | 'user_disabled'
  | 'not_on_access_list'
  | 'outside_schedule'
  | 'approval_required'
  | 'approval_pending'
  | 'grant_expired'
  | 'checkout_required'
  | 'checked_out_by_other'
  | 'mfa_not_enrolled'
  | 'mfa_required'
  | 'mfa_invalid'
  | 'mfa_replayed'
  | 'gateway_unavailable';

export const DENY_CODES: readonly DenyCode[] = [
  'resource_unknown', 'wrong_protocol', 'user_unknown', 'user_disabled', 'not_on_access_list', 'outside_schedule',
  'approval_required', 'approval_pending', 'grant_expired', 'checkout_required', 'checked_out_by_other',
  'mfa_not_enrolled', 'mfa_required', 'mfa_invalid', 'mfa_replayed', 'gateway_unavailable',
];

/** How the user proved MFA for this connection. */
export type MfaProof =
  | { kind: 'none' }
  /** A TOTP code typed at connection start (SSH keyboard-interactive, tunnel start). */
  | { kind: 'totp'; code: string }
  /** TOTP verified earlier at this instant (a launch ticket issued after a TOTP check, a web login). */
  | { kind: 'verified'; at: Date };

export type DeadlineCause = 'grant' | 'lease' | 'schedule' | 'max_duration';

export type CheckName = 'resource' | 'user' | 'access_list' | 'schedule' | 'approval' | 'lease' | 'mfa';

export interface Check {
  check: CheckName;
  ok: boolean;
  detail: string;
}

export type Decision =
  | {
      allow: true;
      resource: Resource;
      user: string;
      requestId?: string;
      leaseId?: string;
      /** When access ends; undefined only for resources with no time limit at all. */
      deadline?: Date;
      /** Which limit sets the deadline, so teardown can say why. */
      deadlineCause?: DeadlineCause;
      warnAt?: Date;
      credentials?: TargetCredentials;
      checks: Check[];
    }
  | { allow: false; code: DenyCode; message: string; hint?: string; checks: Check[] };

export interface DecideInput {
  user: string;
  resource: string;
  at: Date;
  mfa: MfaProof;
  /** Explain only: no TOTP step is used up, no grant timer starts, no credentials are opened. */
  dryRun?: boolean;
  /** The door asking: a resource of another protocol is refused before anything else is checked. */
  protocol?: Protocol;
  /** The client's address, for the audit of the decision. */
  client?: string;
}

class Denied {
  constructor(
    readonly code: DenyCode,
    readonly message: string,
    readonly hint?: string,
  ) {}
}

/**
 * The single gate every new connection passes: access list → schedule window → approval
 * grant → lease holder → MFA freshness. It never caches and fails closed: any error
 * reading state is a denial.
 */
export async function decide(ctx: WorkflowContext, input: DecideInput): Promise<Decision> {
  const checks: Check[] = [];
  const pass = (check: CheckName, detail: string): void => void checks.push({ check, ok: true, detail });
  try {
    const resource = await ctx.store.getResource(input.resource);
    if (!resource) throw new Denied('resource_unknown', `There is no resource named '${input.resource}'.`, 'gatehouse resources');
    if (input.protocol && resource.protocol !== input.protocol) {
      throw new Denied('wrong_protocol', `${resource.name} is a ${resource.protocol} resource and cannot be reached through the ${input.protocol} gateway.`, `gatehouse connect ${resource.name}   (or: gatehouse resources)`);
    }
    pass('resource', `${resource.name} (${resource.type}, ${resource.protocol})`);

    const user = await ctx.store.getUser(input.user);
    if (!user) throw new Denied('user_unknown', `There is no user named '${input.user}'.`);
    if (user.disabled) throw new Denied('user_disabled', `User ${user.name} is disabled.`);
    pass('user', user.name);

    if (!isOnAccessList(user, resource)) {
      throw new Denied('not_on_access_list', `${user.name} is not on the access list of ${resource.name}.`, `ask ${resource.owner} to run: gatehouse resource share ${resource.name} --user ${user.name}`);
    }
    pass('access_list', resource.owner === user.name ? 'owner' : 'on the access list');

    const { settings } = resource;
    const at = input.at;
    let windowEnd: Date | undefined;
    const limit = settings.limitAccessTime;
    if (limit) {
      const w = windowAt(limit, at);
      if (!w) {
        throw new Denied('outside_schedule', `${resource.name} is outside its access schedule; ${describeNextOpening(limit, at)}.`, 'gatehouse workflow show ' + resource.name);
      }
      windowEnd = w.end;
      pass('schedule', `open until ${w.end.toISOString()}`);
    } else {
      pass('schedule', 'no schedule');
    }

    let grant: AccessRequest | undefined;
    if (settings.requireApproval) {
      grant = await currentGrant(ctx, user.name, resource.name, at);
      pass('approval', grant ? `request ${grant.id} ${grant.state}${grant.grantEnd ? ` until ${grant.grantEnd.toISOString()}` : ''}` : '');
    } else {
      pass('approval', 'not required');
    }

    let lease: Lease | undefined;
    if (settings.singleUser) {
      lease = await ctx.store.getHeldLease(resource.name);
      if (lease && lease.expiresAt.getTime() <= at.getTime()) lease = undefined;
      if (lease && lease.holder !== user.name) {
        const left = formatTimeLeft(lease.expiresAt.getTime() - at.getTime());
        throw new Denied('checked_out_by_other', `${resource.name} is checked out by ${lease.holder} for another ${left} (until ${lease.expiresAt.toISOString()}).`, `wait, or ask an approver: gatehouse force-checkin ${resource.name}`);
      }
      if (!lease) throw new Denied('checkout_required', `${resource.name} is a single-user resource; check it out first.`, `gatehouse checkout ${resource.name}`);
      pass('lease', `held by ${user.name} until ${lease.expiresAt.toISOString()}`);
    } else {
      pass('lease', 'not single-user');
    }

    if (settings.mfa) {
      await checkMfa(ctx, user, resource, input);
      pass('mfa', input.mfa.kind === 'totp' ? 'TOTP code accepted' : 'fresh TOTP verification');
    } else {
      pass('mfa', 'not required');
    }

    if (grant && !input.dryRun) grant = await startGrant(ctx, grant, resource, at);

    const maxEnd = limit && !grant && !lease ? addMs(at, limit.maxDurationMinutes * 60_000) : undefined;
    const deadline = minDate(grant?.grantEnd, lease?.expiresAt, windowEnd, maxEnd);
    const causes: Array<[DeadlineCause, Date | undefined]> = [['grant', grant?.grantEnd], ['lease', lease?.expiresAt], ['schedule', windowEnd], ['max_duration', maxEnd]];
    const deadlineCause = deadline ? causes.find(([, d]) => d?.getTime() === deadline.getTime())?.[0] : undefined;
    const warnAt = deadline ? addMs(deadline, -ctx.config.warnBeforeMs) : undefined;
    const credentials = !input.dryRun && resource.credentialsSealed ? openCredentials(ctx.sealer, resource.name, resource.credentialsSealed) : undefined;
    const allow: Decision = { allow: true, resource, user: user.name, checks };
    if (grant) allow.requestId = grant.id;
    if (lease) allow.leaseId = lease.id;
    if (deadline) allow.deadline = deadline;
    if (deadlineCause) allow.deadlineCause = deadlineCause;
    if (warnAt && deadline && warnAt.getTime() > at.getTime()) allow.warnAt = warnAt;
    if (credentials) allow.credentials = credentials;
    return allow;
  } catch (e) {
    if (e instanceof Denied) {
      const failed: CheckName = CHECK_OF[e.code];
      checks.push({ check: failed, ok: false, detail: e.message });
      const denial: Decision = { allow: false, code: e.code, message: e.message, checks };
      if (e.hint) denial.hint = e.hint;
      return denial;
    }
    ctx.log.error({ err: e, user: input.user, resource: input.resource }, 'decision failed; denying');
    const message = 'The gateway could not check your access right now; try again shortly.';
    checks.push({ check: checks.length ? checks[checks.length - 1]!.check : 'resource', ok: false, detail: message });
    return { allow: false, code: 'gateway_unavailable', message, checks };
  }
}

const CHECK_OF: Record<DenyCode, CheckName> = {
  resource_unknown: 'resource',
  wrong_protocol: 'resource',
  user_unknown: 'user',
  user_disabled: 'user',
  not_on_access_list: 'access_list',
  outside_schedule: 'schedule',
  approval_required: 'approval',
  approval_pending: 'approval',
  grant_expired: 'approval',
  checkout_required: 'lease',
  checked_out_by_other: 'lease',
  mfa_not_enrolled: 'mfa',
  mfa_required: 'mfa',
  mfa_invalid: 'mfa',
  mfa_replayed: 'mfa',
  gateway_unavailable: 'resource',
};

/** The user's usable grant for the resource, or a denial saying why there is none. */
async function currentGrant(ctx: WorkflowContext, user: string, resource: string, at: Date): Promise<AccessRequest> {
  const mine = await ctx.store.listRequests({ requester: user, resource });
  const live = mine.filter((r) => isGranted(r) && !(r.grantEnd && r.grantEnd.getTime() <= at.getTime()) && !(r.useBy && !r.grantStart && r.useBy.getTime() <= at.getTime()));
  const grant = live[0];
  if (grant) return grant;
  const hintArgs = `gatehouse request ${resource} --reason "..."`;
  if (mine.some((r) => r.state === 'pending')) {
    throw new Denied('approval_pending', `Your request for ${resource} is waiting for approval.`, `gatehouse requests --mine   (or: gatehouse remind ID)`);
  }
  const latest = [...mine].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime())[0];
  if (latest && (latest.state === 'ended' || (latest.grantEnd && latest.grantEnd.getTime() <= at.getTime()) || latest.state === 'expired')) {
    throw new Denied('grant_expired', `Your access to ${resource} has ended (${latest.endReason ?? 'expired'}); request it again.`, hintArgs);
  }
  throw new Denied('approval_required', `${resource} requires an approved access request.`, hintArgs);
}

/** Starts the grant timer on first connection where so configured (approved → active). */
async function startGrant(ctx: WorkflowContext, grant: AccessRequest, resource: Resource, at: Date): Promise<AccessRequest> {
  if (grant.state === 'active') return grant;
  const approval = resource.settings.requireApproval;
  const limit = resource.settings.limitAccessTime;
  if (!approval || !limit) return grant;
  const t = transition(grant, {
    type: 'activate',
    at,
    grant: { startOn: approval.startOn, maxDurationMs: limit.maxDurationMinutes * 60_000, useWithinMs: ctx.config.approvedUseWithinMs },
  });
  if (!t) return grant;
  if (!(await ctx.store.updateRequest(t.next))) {
    // Someone else started it at the same moment; read back what they wrote.
    return (await ctx.store.getRequest(grant.id)) ?? grant;
  }
  await ctx.audit.record(grant.requester, 'request.activate', grant.id, { resource: resource.name, reason: t.reason, grantEnd: t.next.grantEnd?.toISOString() });
  return t.next;
}

async function checkMfa(ctx: WorkflowContext, user: User, resource: Resource, input: DecideInput): Promise<void> {
  if (!user.totpSecretSealed || !user.totpConfirmed) {
    throw new Denied('mfa_not_enrolled', `${resource.name} requires MFA and ${user.name} has no confirmed TOTP device.`, 'gatehouse mfa enroll');
  }
  const proof = input.mfa;
  switch (proof.kind) {
    case 'none':
      throw new Denied('mfa_required', `${resource.name} requires a fresh TOTP code for every connection.`, `gatehouse launch ${resource.name} --totp CODE`);
    case 'verified':
      if (input.at.getTime() - proof.at.getTime() > ctx.config.mfaFreshMs) {
        throw new Denied('mfa_required', `Your last TOTP check is too old for ${resource.name}; prove it again.`, `gatehouse launch ${resource.name} --totp CODE`);
      }
      return;
    case 'totp': {
      const secret = ctx.sealer.unsealString(user.totpSecretSealed, `user:${user.name}:totp`);
      const step = matchTotpStep(secret, proof.code, input.at);
      if (step === undefined) throw new Denied('mfa_invalid', 'The TOTP code is not valid.', 'check the time on your authenticator and try the current code');
      if (input.dryRun) return;
      if (!(await ctx.store.useTotpStep(user.name, step, input.at))) {
        throw new Denied('mfa_replayed', 'That TOTP code was already used; wait for the next one.', 'enter the next code your authenticator shows');
      }
      return;
    }
    default: {
      const never: never = proof;
      throw new Error(`unknown MFA proof ${JSON.stringify(never)}`);
    }
  }
}
