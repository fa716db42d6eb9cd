import { ValidationError } from '../core/errors.js';
import type { LimitAccessTime, Principal, RequireApproval, ScheduleRange, WorkflowSettings } from '../core/model.js';
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

/** Flags after syntax checks: every value parsed, nothing merged yet. */
export interface ParsedWorkflowFlags {
  clear: boolean;
  timezone?: string;
  schedule?: ScheduleRange[];
  maxDurationMinutes?: number;
  /** false: drop the approval requirement. */
  approvals?: number | false;
  approvers?: Principal[];
  requireReason?: boolean;
  requireTicket?: boolean;
  ticketPattern?: string;
  startOn?: RequireApproval['startOn'];
  singleUser?: boolean;
  mfa?: boolean;
}

/** Checks and parses every flag on its own (exit 2 on a mistake), before anything is fetched. */
export function parseWorkflowFlags(f: WorkflowFlags): ParsedWorkflowFlags {
  if (!f.clear && !hasSettingFlags(f)) {
    throw usageError('nothing to change: give a setting flag (see gatehouse workflow set --help) or --clear');
  }
  if (f.approvals === false) {
    const others = APPROVAL_FLAGS.filter((k) => k !== 'approvals' && f[k] !== undefined);
    if (others.length > 0) throw usageError('--no-approvals cannot be combined with other approval flags');
  }
  const p: ParsedWorkflowFlags = { clear: f.clear === true };
  if (f.timezone !== undefined) p.timezone = f.timezone;
  if (f.schedule !== undefined) p.schedule = f.schedule.map((s) => flagValue('--schedule', () => parseScheduleSpec(s)));
  if (f.maxDuration !== undefined) p.maxDurationMinutes = flagValue('--max-duration', () => parseDuration(f.maxDuration!));
  if (f.approvals !== undefined) p.approvals = f.approvals === false ? false : parseCount(f.approvals);
  if (f.approver !== undefined) p.approvers = f.approver.map(parseApprover);
  if (f.requireReason !== undefined) p.requireReason = f.requireReason;
  if (f.requireTicket !== undefined) p.requireTicket = f.requireTicket;
  if (f.ticketPattern !== undefined) {
    if (f.requireTicket === false) throw usageError('--ticket-pattern cannot be combined with --no-require-ticket');
    try {
      new RegExp(f.ticketPattern);
    } catch (e) {
      throw usageError(`--ticket-pattern: not a valid regular expression (${(e as Error).message})`);
    }
    p.ticketPattern = f.ticketPattern;
  }
  if (f.startOn !== undefined) p.startOn = parseStartOn(f.startOn);
  if (f.singleUser !== undefined) p.singleUser = f.singleUser;
  if (f.mfa !== undefined) p.mfa = f.mfa;
  return p;
}

/**
 * The settings to PUT: the parsed flags merged onto `current` (or onto nothing with
 * `--clear`). What depends on the current settings is checked here (exit 2); whether the
 * result makes sense for the resource (approvers on the access list, counts) is the server's call.
 */
export function mergeWorkflowSettings(current: WorkflowSettings, p: ParsedWorkflowFlags): WorkflowSettings {
  const next: WorkflowSettings = p.clear ? {} : structuredClone(current);
  const limit = mergeLimit(next.limitAccessTime, p);
  if (limit) next.limitAccessTime = limit;
  const approval = mergeApproval(next.requireApproval, p);
  if (approval) next.requireApproval = approval;
  else delete next.requireApproval;
  if (p.singleUser !== undefined) setOrDrop(next, 'singleUser', p.singleUser);
  if (p.mfa !== undefined) setOrDrop(next, 'mfa', p.mfa);
  return next;
}

/** parseWorkflowFlags then mergeWorkflowSettings. */
export function buildWorkflowSettings(current: WorkflowSettings, flags: WorkflowFlags): WorkflowSettings {
  return mergeWorkflowSettings(current, parseWorkflowFlags(flags));
}

function setOrDrop(s: WorkflowSettings, key: 'singleUser' | 'mfa', on: boolean): void {
  if (on) s[key] = true;
  else delete s[key];
}

function mergeLimit(current: LimitAccessTime | undefined, p: ParsedWorkflowFlags): LimitAccessTime | undefined {
  if (p.timezone === undefined && p.schedule === undefined && p.maxDurationMinutes === undefined) return current;
  const timezone = p.timezone ?? current?.timezone;
  const schedule = p.schedule ?? current?.schedule;
  const maxDurationMinutes = p.maxDurationMinutes ?? current?.maxDurationMinutes;
  if (timezone === undefined || schedule === undefined || maxDurationMinutes === undefined) {
    const missing = [
      timezone === undefined ? '--timezone' : '',
      schedule === undefined ? '--schedule' : '',
      maxDurationMinutes === undefined ? '--max-duration' : '',
    ].filter(Boolean);
    throw usageError(`the resource has no access-time limit yet: also give ${missing.join(' and ')}`);
  }
  return { timezone, schedule, maxDurationMinutes };
}

const APPROVAL_FLAGS: ReadonlyArray<keyof WorkflowFlags> = ['approvals', 'approver', 'requireReason', 'requireTicket', 'ticketPattern', 'startOn'];
const PARSED_APPROVAL_KEYS: ReadonlyArray<keyof ParsedWorkflowFlags> = ['approvals', 'approvers', 'requireReason', 'requireTicket', 'ticketPattern', 'startOn'];

function mergeApproval(current: RequireApproval | undefined, p: ParsedWorkflowFlags): RequireApproval | undefined {
  if (p.approvals === false) return undefined;
  if (!PARSED_APPROVAL_KEYS.some((k) => p[k] !== undefined)) return current;
  const next: RequireApproval = current
    ? structuredClone(current)
    : { approvers: [], approvals: 1, requireReason: false, requireTicket: false, startOn: 'approval' };
  if (p.approvals !== undefined) next.approvals = p.approvals;
  if (p.approvers !== undefined) next.approvers = p.approvers;
  if (p.requireReason !== undefined) next.requireReason = p.requireReason;
  if (p.requireTicket !== undefined) {
    next.requireTicket = p.requireTicket;
    if (!p.requireTicket) delete next.ticketPattern;
  }
  if (p.ticketPattern !== undefined) {
    if (!next.requireTicket) throw usageError('--ticket-pattern needs --require-ticket');
    next.ticketPattern = p.ticketPattern;
  }
  if (p.startOn !== undefined) next.startOn = p.startOn;
  return next;
}

function parseCount(text: string): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
    throw usageError(`--approvals: "${text}" is not a whole number of at least 1`);
  }
  return Number(text);
}

function parseApprover(text: string): Principal {
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
