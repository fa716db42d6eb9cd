import { ValidationError } from '../core/errors.js';
import { parsePrincipal } from '../workflow/access.js';
import { parseDuration, parseScheduleSpec } from '../workflow/schedule.js';
import { usageError } from './cli-error.js';
const SETTING_FLAGS = [
    'timezone', 'schedule', 'maxDuration', 'approvals', 'approver', 'requireReason', 'requireTicket',
    'ticketPattern', 'startOn', 'singleUser', 'mfa',
];
export function hasSettingFlags(flags) {
    return SETTING_FLAGS.some((k) => flags[k] !== undefined);
}
/** Checks and parses every flag on its own (exit 2 on a mistake), before anything is fetched. */
export function parseWorkflowFlags(f) {
    if (!f.clear && !hasSettingFlags(f)) {
        throw usageError('nothing to change: give a setting flag (see gatehouse workflow set --help) or --clear');
    }
    if (f.approvals === false) {
        const others = APPROVAL_FLAGS.filter((k) => k !== 'approvals' && f[k] !== undefined);
        if (others.length > 0)
            throw usageError('--no-approvals cannot be combined with other approval flags');
    }
    const p = { clear: f.clear === true };
    if (f.timezone !== undefined)
        p.timezone = f.timezone;
    if (f.schedule !== undefined)
        p.schedule = f.schedule.map((s) => flagValue('--schedule', () => parseScheduleSpec(s)));
    if (f.maxDuration !== undefined)
        p.maxDurationMinutes = flagValue('--max-duration', () => parseDuration(f.maxDuration));
    if (f.approvals !== undefined)
        p.approvals = f.approvals === false ? false : parseCount(f.approvals);
    if (f.approver !== undefined)
        p.approvers = f.approver.map(parseApprover);
    if (f.requireReason !== undefined)
        p.requireReason = f.requireReason;
    if (f.requireTicket !== undefined)
        p.requireTicket = f.requireTicket;
    if (f.ticketPattern !== undefined) {
        if (f.requireTicket === false)
            throw usageError('--ticket-pattern cannot be combined with --no-require-ticket');
        try {
            new RegExp(f.ticketPattern);
        }
        catch (e) {
            throw usageError(`--ticket-pattern: not a valid regular expression (${e.message})`);
        }
        p.ticketPattern = f.ticketPattern;
    }
    if (f.startOn !== undefined)
        p.startOn = parseStartOn(f.startOn);
    if (f.singleUser !== undefined)
        p.singleUser = f.singleUser;
    if (f.mfa !== undefined)
        p.mfa = f.mfa;
    return p;
}
/**
 * The settings to PUT: the parsed flags merged onto `current` (or onto nothing with
 * `--clear`). What depends on the current settings is checked here (exit 2); whether the
 * result makes sense for the resource (approvers on the access list, counts) is the server's call.
 */
export function mergeWorkflowSettings(current, p) {
    const next = p.clear ? {} : structuredClone(current);
    const limit = mergeLimit(next.limitAccessTime, p);
    if (limit)
        next.limitAccessTime = limit;
    const approval = mergeApproval(next.requireApproval, p);
    if (approval)
        next.requireApproval = approval;
    else
        delete next.requireApproval;
    if (p.singleUser !== undefined)
        setOrDrop(next, 'singleUser', p.singleUser);
    if (p.mfa !== undefined)
        setOrDrop(next, 'mfa', p.mfa);
    return next;
}
/** parseWorkflowFlags then mergeWorkflowSettings. */
export function buildWorkflowSettings(current, flags) {
    return mergeWorkflowSettings(current, parseWorkflowFlags(flags));
}
function setOrDrop(s, key, on) {
    if (on)
        s[key] = true;
    else
        delete s[key];
}
function mergeLimit(current, p) {
    if (p.timezone === undefined && p.schedule === undefined && p.maxDurationMinutes === undefined)
        return current;
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
const APPROVAL_FLAGS = ['approvals', 'approver', 'requireReason', 'requireTicket', 'ticketPattern', 'startOn'];
const PARSED_APPROVAL_KEYS = ['approvals', 'approvers', 'requireReason', 'requireTicket', 'ticketPattern', 'startOn'];
function mergeApproval(current, p) {
    if (p.approvals === false)
        return undefined;
    if (!PARSED_APPROVAL_KEYS.some((k) => p[k] !== undefined))
        return current;
    const next = current
        ? structuredClone(current)
        : { approvers: [], approvals: 1, requireReason: false, requireTicket: false, startOn: 'approval' };
    if (p.approvals !== undefined)
        next.approvals = p.approvals;
    if (p.approvers !== undefined)
        next.approvers = p.approvers;
    if (p.requireReason !== undefined)
        next.requireReason = p.requireReason;
    if (p.requireTicket !== undefined) {
        next.requireTicket = p.requireTicket;
        if (!p.requireTicket)
            delete next.ticketPattern;
    }
    if (p.ticketPattern !== undefined) {
        if (!next.requireTicket)
            throw usageError('--ticket-pattern needs --require-ticket');
        next.ticketPattern = p.ticketPattern;
    }
    if (p.startOn !== undefined)
        next.startOn = p.startOn;
    return next;
}
function parseCount(text) {
    if (!/^\d+$/.test(text.trim()) || Number(text) < 1 || !Number.isSafeInteger(Number(text))) {
        throw usageError(`--approvals: "${text}" is not a whole number of at least 1`);
    }
    return Number(text);
}
function parseApprover(text) {
    const p = parsePrincipal(text.trim());
    const name = 'user' in p ? p.user : p.team;
    if (name === '')
        throw usageError(`--approver: "${text}" names nobody; use a user name or team:NAME`);
    return p;
}
function parseStartOn(text) {
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
function flagValue(flag, parse) {
    try {
        return parse();
    }
    catch (e) {
        if (e instanceof ValidationError)
            throw usageError(`${flag}: ${e.message.slice(e.field.length + 2)}`);
        throw e;
    }
}
//# sourceMappingURL=workflow-flags.js.map