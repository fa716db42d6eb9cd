import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Weekdays } from '../../../src/core/model.js';
import type { ScheduleRange } from '../../../src/core/model.js';
import {
  LOOK_AHEAD_MS,
  formatDuration,
  formatScheduleRange,
  isOpen,
  nextOpening,
  parseDuration,
  parseHHMM,
  parseScheduleSpec,
  windowAt,
} from '../../../src/workflow/schedule.js';

const MIN = 60_000;
const DAY = 24 * 60 * MIN;
const RUNS = 150;

// Offset transitions of 2026 in UTC, written out by hand so the tests do not trust the code
// (or luxon) to find them; the first test checks each one against Intl.
const zones: Record<string, number[]> = {
  'Europe/Berlin': ['2026-03-29T01:00:00Z', '2026-10-25T01:00:00Z'].map(Date.parse),
  'America/New_York': ['2026-03-08T07:00:00Z', '2026-11-01T06:00:00Z'].map(Date.parse),
  'Australia/Sydney': ['2026-04-04T16:00:00Z', '2026-10-03T16:00:00Z'].map(Date.parse),
  'Australia/Lord_Howe': ['2026-04-04T15:00:00Z', '2026-10-03T15:30:00Z'].map(Date.parse),
  'America/St_Johns': ['2026-03-08T05:30:00Z', '2026-11-01T04:30:00Z'].map(Date.parse),
  'Asia/Kolkata': [],
};

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The zone's wall clock at t straight from Intl: weekday (0 = mon), minute of day, local ms. */
function wallClock(zone: string, t: number): { weekday: number; minute: number; localMs: number } {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone, hourCycle: 'h23', weekday: 'short',
      year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
    });
    formatters.set(zone, f);
  }
  const p = Object.fromEntries(f.formatToParts(new Date(t)).map((x) => [x.type, x.value]));
  const localMs = Date.UTC(+p.year!, +p.month! - 1, +p.day!, +p.hour!, +p.minute!, +p.second!, ((t % 1000) + 1000) % 1000);
  return { weekday: ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'].indexOf(p.weekday!), minute: +p.hour! * 60 + +p.minute!, localMs };
}

const toMinutes = (s: string) => Number(s.slice(0, 2)) * 60 + Number(s.slice(3));

/** The brute-force reading of the definition: the wall clock of t against every range. */
function referenceOpen(zone: string, schedule: ScheduleRange[], t: number): boolean {
  const { weekday, minute } = wallClock(zone, t);
  const yesterday = (weekday + 6) % 7;
  return schedule.some((r) => {
    const days = r.days.map((d) => Weekdays.indexOf(d));
    const start = toMinutes(r.start);
    const end = toMinutes(r.end);
    if (end > start) return days.includes(weekday) && start <= minute && minute < end;
    return (days.includes(weekday) && minute >= start) || (days.includes(yesterday) && minute < end);
  });
}

const hhmm = (m: number) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;

// Times near the DST jumps (01:00-03:30) and the day's edges come up often.
const startArb = fc.oneof(fc.constantFrom(0, 60, 90, 120, 150, 180, 210, 1320), fc.integer({ min: 0, max: 1439 }));
const endArb = fc.oneof(fc.constantFrom(0, 60, 120, 150, 180, 240, 360, 1440), fc.integer({ min: 0, max: 1440 }));
const rangeArb: fc.Arbitrary<ScheduleRange> = fc.record({
  days: fc.subarray([...Weekdays], { minLength: 1 }),
  start: startArb.map(hhmm),
  end: endArb.map(hhmm),
});
const scheduleArb = fc.array(rangeArb, { minLength: 0, maxLength: 4 });

function instantArb(transitions: number[]): fc.Arbitrary<number> {
  const anchors = transitions.length > 0 ? transitions : [Date.parse('2026-03-29T01:00:00Z'), Date.parse('2026-10-25T01:00:00Z')];
  const year = fc.integer({ min: Date.parse('2026-01-01T00:00:00Z'), max: Date.parse('2027-01-01T00:00:00Z') });
  return fc.oneof(
    fc.tuple(fc.constantFrom(...anchors), fc.integer({ min: -3 * DAY, max: 3 * DAY })).map(([a, o]) => a + o),
    fc.tuple(fc.constantFrom(...anchors), fc.integer({ min: -300, max: 300 })).map(([a, o]) => a + o * MIN),
    year,
    year.map((t) => t - (t % MIN)),
  );
}

describe.each(Object.entries(zones))('schedule in %s', (zone, transitions) => {
  const instant = instantArb(transitions);
  const limitOf = (schedule: ScheduleRange[]) => ({ timezone: zone, schedule });

  it('has its hand-written transitions where Intl puts them', () => {
    for (const t of transitions) {
      const jump = wallClock(zone, t).localMs - wallClock(zone, t - 1).localMs;
      expect(jump).not.toBe(1);
    }
    expect(transitions.length === 0 || transitions.length === 2).toBe(true);
  });

  it('isOpen agrees with the wall-clock reference, and windowAt exists exactly when open', () => {
    fc.assert(
      fc.property(scheduleArb, instant, (schedule, t) => {
        const open = isOpen(limitOf(schedule), new Date(t));
        expect(open).toBe(referenceOpen(zone, schedule, t));
        expect(windowAt(limitOf(schedule), new Date(t)) !== undefined).toBe(open);
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it('windows contain `at`, are open to their last millisecond and closed right outside', () => {
    fc.assert(
      fc.property(scheduleArb, instant, (schedule, t) => {
        const w = windowAt(limitOf(schedule), new Date(t));
        fc.pre(w !== undefined);
        const start = w!.start.getTime();
        const end = w!.end.getTime();
        expect(start <= t && t < end).toBe(true);
        expect(t - start).toBeLessThanOrEqual(LOOK_AHEAD_MS);
        expect(end - t).toBeLessThanOrEqual(LOOK_AHEAD_MS);
        expect(referenceOpen(zone, schedule, start)).toBe(true);
        expect(referenceOpen(zone, schedule, end - 1)).toBe(true);
        if (end < t + LOOK_AHEAD_MS) expect(referenceOpen(zone, schedule, end)).toBe(false);
        if (start > t - LOOK_AHEAD_MS) expect(referenceOpen(zone, schedule, start - 1)).toBe(false);
      }),
      { numRuns: RUNS },
    );
  });

  it('a window is the same seen from any instant inside it, and open throughout', () => {
    fc.assert(
      fc.property(scheduleArb, instant, fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (schedule, t, f) => {
        const w = windowAt(limitOf(schedule), new Date(t));
        fc.pre(w !== undefined);
        const start = w!.start.getTime();
        const end = w!.end.getTime();
        const inside = start + Math.floor(f * (end - start));
        expect(referenceOpen(zone, schedule, inside)).toBe(true);
        const again = windowAt(limitOf(schedule), new Date(inside));
        expect(again).toBeDefined();
        if (start > t - LOOK_AHEAD_MS && end < t + LOOK_AHEAD_MS) {
          // The true extent is known, so only the caps around `inside` can change it.
          expect(again!.start.getTime()).toBe(Math.max(start, inside - LOOK_AHEAD_MS));
          expect(again!.end.getTime()).toBe(Math.min(end, inside + LOOK_AHEAD_MS));
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('nextOpening is open and nothing before it is', () => {
    const fractions = fc.array(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), { minLength: 4, maxLength: 12 });
    fc.assert(
      fc.property(scheduleArb, instant, fractions, (schedule, t, fs) => {
        const n = nextOpening(limitOf(schedule), new Date(t))?.getTime();
        const until = n ?? t + LOOK_AHEAD_MS + 1;
        if (n !== undefined) {
          expect(n).toBeGreaterThanOrEqual(t);
          expect(n - t).toBeLessThanOrEqual(LOOK_AHEAD_MS);
          expect(referenceOpen(zone, schedule, n)).toBe(true);
          if (n > t) expect(referenceOpen(zone, schedule, n - 1)).toBe(false);
          if (n > t) expect(windowAt(limitOf(schedule), new Date(n))?.start.getTime()).toBe(n);
        }
        for (const f of fs) {
          const probe = t + Math.floor(f * (until - t));
          if (probe < until) expect(referenceOpen(zone, schedule, probe)).toBe(false);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

describe('text forms round-trip', () => {
  it('formatScheduleRange is read back by parseScheduleSpec', () => {
    fc.assert(
      fc.property(rangeArb, (r) => {
        expect(parseScheduleSpec(formatScheduleRange(r))).toEqual(r);
      }),
    );
  });

  it('any accepted spelling settles on one canonical text', () => {
    const day = fc.constantFrom(...Weekdays).chain((d) => fc.constantFrom(d, d.toUpperCase(), d[0]!.toUpperCase() + d.slice(1)));
    const item = fc.oneof(day, fc.tuple(day, day).map(([a, b]) => `${a}-${b}`));
    const spec = fc
      .tuple(fc.oneof(fc.array(item, { minLength: 1, maxLength: 4 }).map((xs) => xs.join(',')), fc.constant('daily')), startArb, endArb)
      .map(([days, s, e]) => `${days} ${hhmm(s)}-${hhmm(e)}`);
    fc.assert(
      fc.property(spec, (s) => {
        const r = parseScheduleSpec(s);
        const text = formatScheduleRange(r);
        expect(parseScheduleSpec(text)).toEqual(r);
        expect(formatScheduleRange(parseScheduleSpec(text))).toBe(text);
      }),
    );
  });

  it('durations and clock times round-trip', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000_000 }), (m) => {
        expect(parseDuration(formatDuration(m))).toBe(m);
      }),
    );
    fc.assert(
      fc.property(fc.nat(30), fc.nat(200), fc.nat(5000), (d, h, m) => {
        fc.pre(d + h + m > 0);
        expect(parseDuration(`${d}d${h}h${m}m`)).toBe(d * 1440 + h * 60 + m);
      }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1440 }), (m) => {
        expect(parseHHMM(hhmm(m))).toBe(m);
      }),
    );
  });
});
