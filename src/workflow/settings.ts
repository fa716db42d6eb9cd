import { z } from 'zod';
import { ValidationError } from '../core/errors.js';
import type { Principal, Role, ScheduleRange, WorkflowSettings } from '../core/model.js';
import { expandPrincipals, principalLabel } from './access.js';
import { CONTROL_CHARACTER_MESSAGE, hasControlCharacter } from './plain-text.js';
import { formatDuration, formatScheduleRange, isValidTimeZone, parseHHMM } from './schedule.js';
import { checkTicketPatternSyntax } from './ticket-pattern.js';

/**
 * Workflow settings: the zod schemas that mirror src/core/model.ts, and the semantic
 * checks zod cannot express (they need the resource's owner, access list and teams).
 * Policy files (policies.ts) reuse these very schemas, so the API, the CLI and the files
 * accept exactly the same settings.
 */

export const MAX_DURATION_MINUTES = 30 * 24 * 60;
export const MAX_PENDING_TTL_MINUTES = 7 * 24 * 60;
export const MAX_TICKET_PATTERN_LENGTH = 200;

/** A user or team name as written in settings and policy files; it ends up in terminals. */
export const PrincipalNameSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(128, 'must be at most 128 characters')
  .refine((s) => !hasControlCharacter(s), CONTROL_CHARACTER_MESSAGE);
const Name = PrincipalNameSchema;

export const PrincipalSchema = z.union([z.strictObject({ user: Name }), z.strictObject({ team: Name })], {
  error: 'must be { user: NAME } or { team: NAME }',
});

export const WeekdaySchema = z.enum(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']);

export const ScheduleRangeSchema = z.strictObject({
  days: z.array(WeekdaySchema).min(1, 'must list at least one day'),
  start: z.string().meta({ description: 'Local start time, "HH:MM"' }),
  end: z.string().meta({ description: 'Local end time, "HH:MM" or "24:00"; end <= start crosses midnight' }),
});

export const LimitAccessTimeSchema = z.strictObject({
  timezone: z.string().meta({ description: 'IANA time zone, e.g. Europe/Berlin' }),
  schedule: z.array(ScheduleRangeSchema).min(1, 'must list at least one range'),
  maxDurationMinutes: z
    .int()
    .min(1, `must be between 1 and ${MAX_DURATION_MINUTES} minutes (30 days)`)
    .max(MAX_DURATION_MINUTES, `must be between 1 and ${MAX_DURATION_MINUTES} minutes (30 days)`),
});

export const ApprovalStageSchema = z.strictObject({
  approvers: z.array(PrincipalSchema).min(1, 'must name at least one approver'),
  approvals: z.int().min(1, 'must be at least 1'),
});

export const EscalationSchema = z.strictObject({
  afterMinutes: z.int().min(1, 'must be at least 1 minute'),
  approvers: z.array(PrincipalSchema).min(1, 'must name at least one approver'),
});

export const RequireApprovalSchema = z.strictObject({
  approvers: z.array(PrincipalSchema).default([]).meta({ description: 'In addition to the owner, who always approves' }),
  approvals: z.int().min(1, 'must be at least 1'),
  requireReason: z.boolean().default(false),
  requireTicket: z.boolean().default(false),
  ticketPattern: z.string().optional(),
  startOn: z.enum(['approval', 'first_connection']).default('approval'),
  secondStage: ApprovalStageSchema.optional(),
  escalation: EscalationSchema.optional(),
  pendingTtlMinutes: z
    .int()
    .min(1, `must be between 1 and ${MAX_PENDING_TTL_MINUTES} minutes (7 days)`)
    .max(MAX_PENDING_TTL_MINUTES, `must be between 1 and ${MAX_PENDING_TTL_MINUTES} minutes (7 days)`)
    .optional(),
});

/** The settings keys other than limitAccessTime, shared with the policy-file schema. */
export const workflowShape = {
  requireApproval: RequireApprovalSchema.optional(),
  singleUser: z.boolean().optional(),
  mfa: z.boolean().optional(),
};

export const WorkflowSettingsSchema = z.strictObject({
  limitAccessTime: LimitAccessTimeSchema.optional(),
  ...workflowShape,
});

// Compile-time guard: the schema's output must stay assignable to the model type.
type Parsed = z.output<typeof WorkflowSettingsSchema>;
const _mirrorsModel: (s: Parsed) => WorkflowSettings = (s) => s;
void _mirrorsModel;

/** `['a', 0, 'b']` → `a[0].b`, the form every ValidationError field uses. */
export function formatFieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? String(seg) : `.${String(seg)}`;
  }
  return out;
}

/** The first zod issue as a ValidationError naming its field (an unknown key names the key). */
export function zodToValidationError(error: z.ZodError, prefix: readonly PropertyKey[] = []): ValidationError {
  const issue = error.issues[0];
  if (!issue) return new ValidationError(formatFieldPath(prefix), 'is invalid');
  const path = [...prefix, ...issue.path];
  if (issue.code === 'unrecognized_keys') return new ValidationError(formatFieldPath([...path, issue.keys[0] ?? '']), 'unknown key');
  return new ValidationError(formatFieldPath(path), issue.message);
}

export interface SettingsContext {
  owner: string;
  access: Principal[];
  /** team → member user names */
  teams: Map<string, string[]>;
}

/** Parses settings (filling defaults) and checks them against the resource; throws ValidationError. */
export function validateSettings(input: unknown, ctx: SettingsContext): WorkflowSettings {
  const parsed = WorkflowSettingsSchema.safeParse(input ?? {});
  if (!parsed.success) throw zodToValidationError(parsed.error);
  const s = parsed.data;
  if (!s.limitAccessTime && (s.requireApproval || s.singleUser || s.mfa)) {
    throw new ValidationError('limitAccessTime', 'required when requireApproval, singleUser or mfa is on');
  }
  if (s.limitAccessTime) checkLimitAccessTime(s.limitAccessTime.timezone, s.limitAccessTime.schedule);
  if (s.requireApproval) checkApproval(s.requireApproval, ctx);
  return s;
}

function checkLimitAccessTime(timezone: string, schedule: ScheduleRange[]): void {
  if (!isValidTimeZone(timezone)) {
    throw new ValidationError('limitAccessTime.timezone', `'${timezone}' is not an IANA time zone`);
  }
  schedule.forEach((r, i) => {
    const at = `limitAccessTime.schedule[${i}]`;
    const start = minutesOf(r.start, `${at}.start`, false);
    const end = minutesOf(r.end, `${at}.end`, true);
    if (start === end) throw new ValidationError(`${at}.end`, 'must differ from start (use 00:00-24:00 for a whole day)');
  });
}

function minutesOf(text: string, field: string, isEnd: boolean): number {
  if (text === '24:00') {
    if (isEnd) return 24 * 60;
    throw new ValidationError(field, '24:00 is only allowed as an end time');
  }
  try {
    return parseHHMM(text);
  } catch {
    throw new ValidationError(field, `'${text}' is not a time "HH:MM"`);
  }
}

type RequireApprovalParsed = NonNullable<Parsed['requireApproval']>;

function checkApproval(a: RequireApprovalParsed, ctx: SettingsContext): void {
  const field = 'requireApproval';
  checkApproversOnAccessList(a.approvers, ctx, `${field}.approvers`);
  const firstStage = new Set([ctx.owner, ...expandPrincipals(a.approvers, ctx.teams)]);
  checkApprovalCount(a.approvals, firstStage.size, `${field}.approvals`);
  if (a.secondStage) {
    checkApproversOnAccessList(a.secondStage.approvers, ctx, `${field}.secondStage.approvers`);
    const second = expandPrincipals(a.secondStage.approvers, ctx.teams);
    checkApprovalCount(a.secondStage.approvals, second.size, `${field}.secondStage.approvals`);
  }
  if (a.escalation) checkApproversOnAccessList(a.escalation.approvers, ctx, `${field}.escalation.approvers`);
  if (a.ticketPattern !== undefined) checkTicketPattern(a.ticketPattern, a.requireTicket);
}

function checkApprovalCount(approvals: number, eligible: number, field: string): void {
  if (approvals < 1 || approvals > eligible) {
    throw new ValidationError(field, `must be between 1 and ${eligible}`);
  }
}

function checkApproversOnAccessList(approvers: Principal[], ctx: SettingsContext, field: string): void {
  approvers.forEach((p, i) => {
    if (!onAccessList(p, ctx)) {
      throw new ValidationError(`${field}[${i}]`, `${principalLabel(p)} is not on the resource's access list`);
    }
  });
}

/** The owner is always eligible; a user may be listed directly or through a listed team. */
function onAccessList(p: Principal, ctx: SettingsContext): boolean {
  if ('team' in p) return ctx.access.some((q) => 'team' in q && q.team === p.team);
  if (p.user === ctx.owner) return true;
  return ctx.access.some((q) => ('user' in q ? q.user === p.user : (ctx.teams.get(q.team) ?? []).includes(p.user)));
}

function checkTicketPattern(pattern: string, requireTicket: boolean): void {
  const field = 'requireApproval.ticketPattern';
  if (!requireTicket) throw new ValidationError(field, 'only allowed together with requireTicket');
  if (pattern.length > MAX_TICKET_PATTERN_LENGTH) {
    throw new ValidationError(field, `must be at most ${MAX_TICKET_PATTERN_LENGTH} characters`);
  }
  checkTicketPatternSyntax(pattern);
}

/** Whether a request made at `createdAt` has reached its escalation delay at `now`. */
export function escalationReached(settings: WorkflowSettings, createdAt: Date, now: Date): boolean {
  const esc = settings.requireApproval?.escalation;
  return !!esc && now.getTime() >= createdAt.getTime() + esc.afterMinutes * 60_000;
}

/**
 * Users who may approve at `stage` now. Stage 0: the owner plus the approvers (plus the
 * escalation approvers once escalated); stage 1: the second-stage approvers. Approvers
 * who have since left the access list no longer count. Without requireApproval the owner
 * remains the stage-0 approver (the one who may force a check-in).
 */
export function eligibleApprovers(
  settings: WorkflowSettings,
  resource: { owner: string; access: Principal[] },
  teams: Map<string, string[]>,
  stage: number,
  escalated: boolean,
): Set<string> {
  const ctx = { owner: resource.owner, access: resource.access, teams };
  const a = settings.requireApproval;
  let principals: Principal[];
  if (stage === 0) {
    principals = [{ user: resource.owner }, ...(a?.approvers ?? [])];
    if (escalated && a?.escalation) principals.push(...a.escalation.approvers);
  } else if (stage === 1) {
    principals = a?.secondStage?.approvers ?? [];
  } else {
    return new Set();
  }
  return expandPrincipals(
    principals.filter((p) => onAccessList(p, ctx)),
    teams,
  );
}

/** Human lines for `workflow show`. */
export function describeSettings(s: WorkflowSettings): string[] {
  const lines: string[] = [];
  const t = s.limitAccessTime;
  if (t) {
    const ranges = t.schedule.map(formatScheduleRange).join(', ');
    lines.push(`Limit access time: ${ranges} (${t.timezone}), at most ${formatDuration(t.maxDurationMinutes)}`);
  }
  const a = s.requireApproval;
  if (a) {
    const who = ['owner', ...a.approvers.map(principalLabel)].join(', ');
    const extras = [
      a.requireReason ? 'reason required' : '',
      a.requireTicket ? `ticket required${a.ticketPattern ? ` (matching ${a.ticketPattern})` : ''}` : '',
      a.startOn === 'approval' ? 'timer starts upon approval' : 'timer starts upon first connection',
    ].filter(Boolean);
    lines.push(`Require approval: ${a.approvals} of ${who}; ${extras.join('; ')}`);
    if (a.secondStage) {
      lines.push(`  then a second stage: ${a.secondStage.approvals} of ${a.secondStage.approvers.map(principalLabel).join(', ')}`);
    }
    if (a.escalation) {
      const also = a.escalation.approvers.map(principalLabel).join(', ');
      lines.push(`  escalation: after ${formatDuration(a.escalation.afterMinutes)} also ${also}`);
    }
    if (a.pendingTtlMinutes !== undefined) lines.push(`  pending requests expire after ${formatDuration(a.pendingTtlMinutes)}`);
  }
  if (s.singleUser) lines.push('Single-user mode: on (check-out / check-in)');
  if (s.mfa) lines.push('MFA: required before each connection');
  if (lines.length === 0) lines.push('No workflow: anyone on the access list may connect at any time');
  return lines;
}

/** Admins, and members of a role that allows configuring workflow settings (of the resources they own). */
export function canConfigureWorkflow(user: { admin: boolean; name: string }, roles: readonly Role[]): boolean {
  if (user.admin) return true;
  return roles.some((r) => r.enforcements.ALLOW_CONFIGURE_WORKFLOW_SETTINGS === true && r.members.includes(user.name));
}

/**
 * Whether `user` may change the workflow of `resource`. As in Keeper, the enforcement lets
 * a user configure the records they manage, not every record: administrators may change
 * any resource, everyone else needs both the enforcement and the resource's ownership.
 */
export function canConfigureWorkflowOf(user: { admin: boolean; name: string }, roles: readonly Role[], resource: { owner: string }): boolean {
  if (user.admin) return true;
  return resource.owner === user.name && canConfigureWorkflow(user, roles);
}
