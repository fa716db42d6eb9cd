import { describe, expect, it } from 'vitest';
import type { RequestView, ResourceView } from '../../../src/api/wire.js';
import {
  approvalProgress,
  describeRequestState,
  describeResourceState,
  escapeControls,
  escapeInline,
  formatDurationMs,
  formatLocalTime,
  formatTable,
  formatTimestamp,
} from '../../../src/cli/format.js';

const MIN = 60_000;
const now = new Date('2026-01-05T12:00:00Z'); // a Monday
const zone = 'Europe/Berlin'; // UTC+1 in January

function request(over: Partial<RequestView> = {}): RequestView {
  return {
    id: 'r1', resource: 'prod-pg', requester: 'alice', state: 'pending', stage: 0, reviews: [],
    createdAt: '2026-01-05T11:00:00Z', pendingUntil: '2026-01-06T11:00:00Z', version: 1, ...over,
  };
}

function view(state: ResourceView['state'], settings: ResourceView['settings'] = {}): Pick<ResourceView, 'state' | 'settings'> {
  return { state, settings };
}

const twoApprovals: ResourceView['settings'] = {
  requireApproval: {
    approvers: [], approvals: 2, requireReason: false, requireTicket: false, startOn: 'approval',
    secondStage: { approvers: [{ user: 'ciso' }], approvals: 1 },
  },
};

describe('formatDurationMs', () => {
  it('writes hours and minutes the way the CLI promises', () => {
    expect(formatDurationMs(72 * MIN)).toBe('1 h 12 min');
    expect(formatDurationMs(45 * MIN)).toBe('45 min');
    expect(formatDurationMs(120 * MIN)).toBe('2 h');
    expect(formatDurationMs((26 * 60 + 5) * MIN)).toBe('1 d 2 h 5 min');
  });

  it('rounds partial minutes up and never goes negative', () => {
    expect(formatDurationMs(1)).toBe('1 min');
    expect(formatDurationMs(59 * MIN + 1)).toBe('1 h');
    expect(formatDurationMs(0)).toBe('0 min');
    expect(formatDurationMs(-5 * MIN)).toBe('0 min');
  });
});

describe('formatLocalTime', () => {
  it('shows the bare time today, the weekday within the week, the date beyond', () => {
    expect(formatLocalTime('2026-01-05T13:30:00Z', now, zone)).toBe('14:30');
    expect(formatLocalTime('2026-01-07T07:00:00Z', now, zone)).toBe('Wed 08:00');
    expect(formatLocalTime('2026-01-20T07:00:00Z', now, zone)).toBe('Tue 20 Jan 08:00');
    expect(formatLocalTime('2026-01-04T07:00:00Z', now, zone)).toBe('Sun 4 Jan 08:00');
  });

  it('follows the zone it is given, not the UTC date', () => {
    // 23:30 UTC on Monday is already Tuesday in Berlin.
    expect(formatLocalTime('2026-01-05T23:30:00Z', now, zone)).toBe('Tue 00:30');
    expect(formatLocalTime('2026-01-05T23:30:00Z', now, 'UTC')).toBe('23:30');
  });

  it('passes through what is not a time', () => {
    expect(formatLocalTime('soon', now, zone)).toBe('soon');
    expect(formatTimestamp('2026-01-05T13:30:12Z', zone)).toBe('2026-01-05 14:30:12');
    expect(formatTimestamp(undefined, zone)).toBe('');
  });
});

describe('formatTable', () => {
  it('pads every column but the last', () => {
    expect(formatTable(['NAME', 'STATE'], [['prod-pg', 'ready'], ['w', 'needs approval']])).toBe(
      'NAME     STATE\nprod-pg  ready\nw        needs approval\n',
    );
  });
});

describe('escapeControls and escapeInline', () => {
  it('show C0, DEL, C1 and bidi controls as escapes, keeping newline and tab', () => {
    expect(escapeControls('a\u001b[2K\rb\u0007\u0000\u007f\u009b\u202e\u2066\n\tc')).toBe('a\\x1b[2K\\rb\\x07\\x00\\u007f\\u009b\\u202e\\u2066\n\tc');
    expect(escapeInline('a\nb\tc\rd')).toBe('a\\nb\\tc\\rd');
  });

  it('leave printable text alone, accents, other scripts and emoji sequences included', () => {
    const text = 'Zoë 日本 ½ 👩‍💻 "quoted" \\x1b as text';
    expect(escapeControls(text)).toBe(text);
    expect(escapeInline(text)).toBe(text);
  });

  it('are idempotent, so wrapping an io twice changes nothing', () => {
    const once = escapeInline('\u001b]52;c;eA==\u0007\n');
    expect(escapeInline(once)).toBe(once);
    expect(escapeControls(once)).toBe(once);
  });

  it('keep JSON valid and its strings unchanged', () => {
    const value = { reason: 'x\u007f\u0085\u009b\u202e\u2028y', n: 1 };
    const out = escapeControls(JSON.stringify(value, null, 2));
    expect(out).not.toMatch(/[\u007f-\u009f\u202e\u2028]/u);
    expect(JSON.parse(out)).toEqual(value);
  });

  it('formatTable sizes columns by the escaped text and keeps one row per line', () => {
    expect(formatTable(['A', 'B'], [['x\ny', 'z'], ['\u001b', 'w']])).toBe('A     B\nx\\ny  z\n\\x1b  w\n');
  });
});

describe('describeResourceState', () => {
  it('covers the states the resources listing promises', () => {
    expect(describeResourceState(view({ canConnect: true }), now, zone)).toBe('ready');
    expect(describeResourceState(view({ canConnect: true, lease: { holder: 'alice', expiresAt: '2026-01-05T13:12:00Z', mine: true }, timeLeftMs: 72 * MIN }), now, zone))
      .toBe('checked out by me — 1 h 12 min left');
    expect(describeResourceState(view({ canConnect: false, code: 'checked_out_by_other', lease: { holder: 'bob', expiresAt: '2026-01-05T13:30:00Z', mine: false } }), now, zone))
      .toBe('checked out by bob until 14:30');
    const pending = request({ reviews: [{ approver: 'bob', decision: 'approve', stage: 0, at: '2026-01-05T11:30:00Z' }] });
    expect(describeResourceState(view({ canConnect: false, code: 'approval_pending', request: pending }, twoApprovals), now, zone))
      .toBe('request pending (1/2 approvals)');
    expect(describeResourceState(view({ canConnect: false, code: 'outside_schedule', nextWindow: '2026-01-12T07:00:00Z' }), now, zone))
      .toBe('outside schedule, next window Mon 12 Jan 08:00');
    expect(describeResourceState(view({ canConnect: false, code: 'outside_schedule', nextWindow: 'next window Mon 08:00 (Europe/Berlin)' }), now, zone))
      .toBe('outside schedule, next window Mon 08:00 (Europe/Berlin)');
    expect(describeResourceState(view({ canConnect: false, code: 'approval_required' }), now, zone)).toBe('needs approval');
  });

  it('works out the time left on my lease from its expiry when the server gives no timeLeftMs', () => {
    const s = view({ canConnect: true, lease: { holder: 'me', expiresAt: '2026-01-05T12:45:00Z', mine: true } });
    expect(describeResourceState(s, now, zone)).toBe('checked out by me — 45 min left');
  });

  it('falls back to the server message for codes it does not know', () => {
    expect(describeResourceState(view({ canConnect: false, code: 'gateway_unavailable', message: 'store is down' }), now, zone)).toBe('store is down');
    expect(describeResourceState(view({ canConnect: false, code: 'something_new' }), now, zone)).toBe('something new');
  });
});

describe('requests', () => {
  it('counts approvals of the current stage only', () => {
    const r = request({
      stage: 1,
      reviews: [
        { approver: 'bob', decision: 'approve', stage: 0, at: '2026-01-05T11:10:00Z' },
        { approver: 'dave', decision: 'approve', stage: 0, at: '2026-01-05T11:20:00Z' },
      ],
    });
    expect(approvalProgress(r, twoApprovals)).toBe('stage 2: 0/1 approvals');
    expect(approvalProgress(request(), undefined)).toBe('0 approvals');
  });

  it('describes settled requests', () => {
    expect(describeRequestState(request({ state: 'approved', grantEnd: '2026-01-05T14:00:00Z' }), now, zone)).toBe('approved, access until 15:00');
    expect(describeRequestState(request({ state: 'approved', useBy: '2026-01-05T14:00:00Z' }), now, zone))
      .toBe('approved, connect before 15:00 to start the timer');
    const denied = request({ state: 'denied', reviews: [{ approver: 'bob', decision: 'deny', stage: 0, at: '2026-01-05T11:30:00Z', comment: 'not today' }] });
    expect(describeRequestState(denied, now, zone)).toBe('denied by bob: not today');
    expect(describeRequestState(request({ state: 'expired' }), now, zone)).toBe('expired');
  });
});
