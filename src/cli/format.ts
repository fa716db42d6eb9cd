import { DateTime } from 'luxon';
import type { WorkflowSettings } from '../core/model.js';
import type { RequestView, ResourceView } from '../api/wire.js';

/**
 * Text for people: durations, local times, tables, and the one-phrase workflow state of
 * a resource. Pure functions of their inputs (the caller passes `now` and the zone).
 */

const MINUTE_MS = 60_000;

/**
 * Characters a terminal acts on instead of showing: C0 controls (ESC starts cursor moves,
 * line erases, OSC 52 clipboard writes; CR returns to the line start; BEL ends an OSC), DEL,
 * the C1 controls (U+009B is an 8-bit CSI), and the bidi controls that make text read in
 * another order. Newline and tab are the CLI's own layout and pass; `escapeInline` takes
 * them too.
 */
const TERMINAL_CONTROL = /[\p{Cc}\p{Bidi_Control}\u2028\u2029]/gu;
const LAYOUT = new Set(['\n', '\t']);

const SHORT: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function visible(ch: string): string {
  const code = ch.codePointAt(0)!;
  // C0 as \r or \x1b, as people know them from their shells. The rest as \u009b: C0 never
  // reach this raw in --json output (JSON.stringify escapes them), the others do, and \u is
  // the JSON spelling of the same character, so the document stays JSON with its strings.
  if (code < 0x20) return SHORT[ch] ?? `\\x${code.toString(16).padStart(2, '0')}`;
  return `\\u${code.toString(16).padStart(4, '0')}`;
}

/**
 * Text for a terminal, with every control character but newline and tab shown as an escape
 * (`\x1b`, `\r`, `\u009b`) instead of acted on. Applied by `CliIo` to everything the CLI
 * writes, so a user name, request reason or error message from the gateway cannot rewrite
 * what the reader sees.
 */
export function escapeControls(text: string): string {
  return text.replace(TERMINAL_CONTROL, (ch) => (LAYOUT.has(ch) ? ch : visible(ch)));
}

/** Like `escapeControls`, for what must stay on one line (a table cell, an error line): newline and tab too. */
export function escapeInline(text: string): string {
  return text.replace(TERMINAL_CONTROL, visible);
}

/** 4_320_000 → "1 h 12 min"; partial minutes round up, so "1 min" means "under a minute" too. */
export function formatDurationMs(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / MINUTE_MS));
  if (total === 0) return '0 min';
  const d = Math.floor(total / 1440);
  const h = Math.floor((total % 1440) / 60);
  const m = total % 60;
  return [d ? `${d} d` : '', h ? `${h} h` : '', m ? `${m} min` : ''].filter(Boolean).join(' ');
}

function toDateTime(when: string | Date, zone?: string): DateTime {
  const dt = typeof when === 'string' ? DateTime.fromISO(when, { setZone: false }) : DateTime.fromJSDate(when);
  return (zone ? dt.setZone(zone) : dt).setLocale('en');
}

/**
 * A time as someone reading the terminal thinks of it: "14:30" today, "Mon 14:30" within
 * the week ahead, "Mon 12 Jan 14:30" further off or in the past beyond today.
 */
export function formatLocalTime(when: string | Date, now: Date, zone?: string): string {
  const dt = toDateTime(when, zone);
  if (!dt.isValid) return String(when);
  const today = toDateTime(now, zone);
  if (dt.hasSame(today, 'day')) return dt.toFormat('HH:mm');
  const ahead = dt.toMillis() - today.toMillis();
  if (ahead > 0 && ahead < 6 * 24 * 60 * MINUTE_MS) return dt.toFormat('ccc HH:mm');
  return dt.toFormat('ccc d LLL HH:mm');
}

/** Full local timestamp for listings: "2026-01-05 14:30:12". */
export function formatTimestamp(when: string | Date | undefined, zone?: string): string {
  if (when === undefined) return '';
  const dt = toDateTime(when, zone);
  return dt.isValid ? dt.toFormat('yyyy-MM-dd HH:mm:ss') : String(when);
}

/**
 * Left-aligned columns, two spaces apart; the last column is not padded. A cell is one line:
 * a newline in a value (a request reason, a user name) shows as `\n` rather than starting
 * a row of its own.
 */
export function formatTable(headers: string[], rows: string[][]): string {
  const all = [headers, ...rows].map((r) => r.map(escapeInline));
  const widths = headers.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd())
    .join('\n')
    .concat('\n');
}

/** "1/2 approvals" (with "stage 2: " once a second stage collects), from the request's own stage. */
export function approvalProgress(request: Pick<RequestView, 'reviews' | 'stage'>, settings?: WorkflowSettings): string {
  const got = request.reviews.filter((r) => r.decision === 'approve' && r.stage === request.stage).length;
  const a = settings?.requireApproval;
  const needed = request.stage === 0 ? a?.approvals : a?.secondStage?.approvals;
  const prefix = request.stage > 0 ? `stage ${request.stage + 1}: ` : '';
  if (needed === undefined) return `${prefix}${got} approval${got === 1 ? '' : 's'}`;
  return `${prefix}${got}/${needed} approvals`;
}

/**
 * What I can do with a resource right now, in one phrase: "ready", "checked out by me —
 * 1 h 12 min left", "checked out by bob until 14:30", "request pending (1/2 approvals)",
 * "outside schedule, next window Mon 08:00", "needs approval".
 */
export function describeResourceState(view: Pick<ResourceView, 'state' | 'settings'>, now: Date, zone?: string): string {
  const s = view.state;
  if (s.lease) {
    if (s.lease.mine) {
      const left = s.timeLeftMs ?? new Date(s.lease.expiresAt).getTime() - now.getTime();
      return `checked out by me — ${formatDurationMs(left)} left`;
    }
    return `checked out by ${s.lease.holder} until ${formatLocalTime(s.lease.expiresAt, now, zone)}`;
  }
  if (s.request?.state === 'pending') return `request pending (${approvalProgress(s.request, view.settings)})`;
  if (s.canConnect) return s.timeLeftMs !== undefined ? `ready — ${formatDurationMs(s.timeLeftMs)} left` : 'ready';
  switch (s.code) {
    case 'outside_schedule':
      return `outside schedule${describeNextWindow(s.nextWindowAt ?? s.nextWindow, now, zone)}`;
    case 'approval_required':
      return 'needs approval';
    case 'approval_pending':
      return 'request pending';
    case 'grant_expired':
      return 'access expired, request again';
    case 'checkout_required':
      return 'ready to check out';
    case 'mfa_required':
      return 'ready, MFA at connect';
    case 'mfa_not_enrolled':
      return 'needs MFA enrolment (gatehouse mfa enroll)';
    case 'not_on_access_list':
      return 'not on the access list';
    case 'user_disabled':
      return 'account disabled';
    default:
      return s.message ?? s.code?.replace(/_/g, ' ') ?? 'unavailable';
  }
}

function describeNextWindow(next: string | undefined, now: Date, zone?: string): string {
  if (!next) return '';
  if (/^\d{4}-\d\d-\d\dT/.test(next)) return `, next window ${formatLocalTime(next, now, zone)}`;
  return next.startsWith('next window') ? `, ${next}` : `, next window ${next}`;
}

/** One line per request for `request` and status updates: "pending (1/2 approvals)". */
export function describeRequestState(request: RequestView, now: Date, zone?: string, settings?: WorkflowSettings): string {
  switch (request.state) {
    case 'pending':
      return `pending (${approvalProgress(request, settings)})`;
    case 'approved':
    case 'active':
      if (request.grantEnd) return `${request.state}, access until ${formatLocalTime(request.grantEnd, now, zone)}`;
      if (request.useBy) return `${request.state}, connect before ${formatLocalTime(request.useBy, now, zone)} to start the timer`;
      return request.state;
    case 'denied': {
      const review = [...request.reviews].reverse().find((r) => r.decision === 'deny');
      if (!review) return 'denied';
      return `denied by ${review.approver}${review.comment ? `: ${review.comment}` : ''}`;
    }
    default:
      return request.endReason ? `${request.state} (${request.endReason})` : request.state;
  }
}
