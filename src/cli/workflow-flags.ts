import { ValidationError } from '../core/errors.js';
import type { LimitAccessTime, RequireApproval, WorkflowSettings } from '../core/model.js';
import { parsePrincipal } from '../workflow/access.js';
import { parseDuration, parseScheduleSpec } from '../workflow/schedule.js';
import { usageError } from './cli-error.js';

/**
 * `gatehouse workflow set` flags as commander hands them over. Booleans are tri-state:
 * undefined (not given, keep), true (`--mfa`), false (`--no-mfa`). `approvals: false` is
 * `--no-approvals`, which drops the approval requirement.
 */
export interface WorkflowFlags {
  timezone?: string;
  schedule?: string[];
  maxDuration?: string;
  approvals?: string | false;
  approver?: string[];
  requireReason?: boolean;
  requireTicket?: boolean;
  ticketPattern?: string;
  startOn?: string;
  singleUser?: boolean;
  mfa?: boolean;
  clear?: boolean;
}

const SETTING_FLAGS: ReadonlyArray<keyof WorkflowFlags> = [
  'timezone', 'schedule', 'maxDuration', 'approvals', 'approver', 'requireReason', 'requireTicket',
  'ticketPattern', 'startOn', 'singleUser', 'mfa',
];

export function hasSettingFlags(flags: WorkflowFlags): boolean {
  return SETTING_FLAGS.some((k) => flags[k] !== undefined);
}

/**
 * The settings to PUT: the given flags merged onto `current` (or onto nothing with
 * `--clear`). Flag syntax is checked here (exit 2); whether the result makes sense for the
 * resource (approvers on the access list, counts) is the server's call.
 */
export function buildWorkflowSettings(current: WorkflowSettings, flags: WorkflowFlags): WorkflowSettings {
  if (!flags.clear && !hasSettingFlags(flags)) {
    throw usageError('nothing to change: give a setting flag (see gatehouse workflow set --help) or --clear');
  }
  const next: WorkflowSettings = flags.clear ? {} : structuredClone(current);
  const limit = mergeLimit(next.limitAccessTime, flags);
  if (limit) next.limitAccessTime = limit;
  const approval = mergeApproval(next.requireApproval, flags);
  if (approval) next.requireApproval = approval;
  else delete next.requireApproval;
  if (flags.singleUser !== undefined) setOrDrop(next, 'singleUser', flags.singleUser);
  if (flags.mfa !== undefined) setOrDrop(next, 'mfa', flags.mfa);
  return next;
}

function setOrDrop(s: WorkflowSettings, key: 'singleUser' | 'mfa', on: boolean): void {
  if (on) s[key] = true;
  else delete s[key];
}

function mergeLimit(current: LimitAccessTime | undefined, f: WorkflowFlags): LimitAccessTime | undefined {
  if (f.timezone === undefined && f.schedule === undefined && f.maxDuration === undefined) return current;
  const timezone = f.timezone ?? current?.timezone;
  const schedule = f.schedule ? f.schedule.map((s) => flagValue('--schedule', () => parseScheduleSpec(s))) : current?.schedule;
  const maxDurationMinutes = f.maxDuration !== undefined
    ? flagValue('--max-duration', () => parseDuration(f.maxDuration!))
    : current?.maxDurationMinutes;
  const missing = [
    timezone === undefined ? '--timezone' : '',
    schedule === undefined ? '--schedule' : '',
    maxDurationMinutes === undefined ? '--max-duration' : '',
  ].filter(Boolean);
  if (timezone === undefined || schedule === undefined || maxDurationMinutes === undefined) {
    throw usageError(`the resource has no access-time limit yet: also give ${missing.join(' and ')}`);
  }
  return { timezone, schedule, maxDurationMinutes };
}

const APPROVAL_FLAGS: ReadonlyArray<keyof WorkflowFlags> = ['approvals', 'approver', 'requireReason', 'requireTicket', 'ticketPattern', 'startOn'];

function mergeApproval(current: RequireApproval | undefined, f: WorkflowFlags): RequireApproval | undefined {
  if (f.approvals === false) {
    const others = APPROVAL_FLAGS.filter((k) => k !== 'approvals' && f[k] !== undefined);
    if (others.length > 0) throw usageError('--no-approvals cannot be combined with other approval flags');
    return undefined;
  }
  if (!APPROVAL_FLAGS.some((k) => f[k] !== undefined)) return current;
  const next: RequireApproval = current
    ? structuredClone(current)
    : { approvers: [], approvals: 1, requireReason: false, requireTicket: false, startOn: 'approval' };
  if (f.approvals !== undefined) next.approvals = parseCount(f.approvals);
  if (f.approver !== undefined) next.approvers = f.approver.map(parseApprover);
  if (f.requireReason !== undefined) next.requireReason = f.requireReason;
  if (f.requireTicket !== undefined) {
    next.requireTicket = f.requireTicket;
    if (!f.requireTicket) delete next.ticketPattern;
  }
  if (f.ticketPattern !== undefined) {
    if (!next.requireTicket) throw usageError('--ticket-pattern needs --require-ticket');
    try {
      new RegExp(f.ticketPattern);
    } catch (e) {
      throw usageError(`--ticket-pattern: not a valid regular expression (${(e as Error).message})`);
    }
    next.ticketPattern = f.ticketPattern;
  }
  if (f.startOn !== undefined) next.startOn = parseStartOn(f.startOn);
  return next;
}

function parseCount(text: string): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw usageError(`--approvals: "${text}" is not a whole number of at least 1`);
  }
  return Number(text);
}

function parseApprover(text: string): ReturnType<typeof parsePrincipal> {
  const p = parsePrincipal(text.trim());
  const name = 'user' in p ? p.user : p.team;
  if (name === '') throw usageError(`--approver: "${text}" names nobody; use a user name or team:NAME`);
  return p;
}

function parseStartOn(text: string): RequireApproval['startOn'] {
  switch (text.trim().toLowerCase()) {
    case 'approval':
      return 'approval';
    case 'first-connection':
    case 'first_connection':
      return 'first_connection';
    default:
      throw usageError(`--start-on: "${text}" must be approval or first-connection`);
  }
}

/** Turns the schedule parsers' ValidationError into a usage error naming the flag. */
function flagValue<T>(flag: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    if (e instanceof ValidationError) throw usageError(`${flag}: ${e.message.slice(e.field.length + 2)}`);
    throw e;
  }
}
