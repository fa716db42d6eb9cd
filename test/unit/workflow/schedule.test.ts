import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../../src/core/errors.js';
import {
  LOOK_AHEAD_MS,
  describeNextOpening,
  formatDuration,
  formatScheduleRange,
  isOpen,
  isValidTimeZone,
  nextOpening,
  parseDuration,
  parseHHMM,
  parseScheduleSpec,
  windowAt,
} from '../../../src/workflow/schedule.js';

const limit = (timezone: string, ...specs: string[]) => ({ timezone, schedule: specs.map(parseScheduleSpec) });
const d = (iso: string) => new Date(iso);
const ms = (iso: string) => Date.parse(iso);
const span = (w: { start: Date; end: Date } | undefined) => w && [w.start.toISOString(), w.end.toISOString()];

function thrown(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    return e as ValidationError;
  }
  throw new Error('expected a ValidationError');
}

// 2026-03-02 is a Monday; Berlin is on CET (UTC+1) until 2026-03-29.
describe('windowAt / isOpen / nextOpening', () => {
  const business = limit('Europe/Berlin', 'mon-fri 08:00-17:00');

  it('gives weekday business hours as one exact window', () => {
    const w = windowAt(business, d('2026-03-02T10:00:00Z'));
    expect(span(w)).toEqual(['2026-03-02T07:00:00.000Z', '2026-03-02T16:00:00.000Z']);
    expect(isOpen(business, new Date(ms('2026-03-02T16:00:00Z') - 1))).toBe(true);
    expect(isOpen(business, d('2026-03-02T16:00:00Z'))).toBe(false);
    expect(isOpen(business, new Date(ms('2026-03-02T07:00:00Z') - 1))).toBe(false);
    expect(span(windowAt(business, d('2026-03-02T07:00:00Z')))).toEqual(span(w));
    expect(windowAt(business, d('2026-03-02T16:00:00Z'))).toBeUndefined();
  });

  it('is closed at the weekend and reopens on Monday', () => {
    const saturday = d('2026-03-07T10:00:00Z');
    expect(isOpen(business, saturday)).toBe(false);
    expect(windowAt(business, saturday)).toBeUndefined();
    expect(nextOpening(business, saturday)?.toISOString()).toBe('2026-03-09T07:00:00.000Z');
    expect(describeNextOpening(business, saturday)).toBe('next window Mon 08:00 (Europe/Berlin)');
  });

  it('returns `at` itself as the next opening when already open', () => {
    const at = d('2026-03-03T12:34:56.789Z');
    expect(nextOpening(business, at)?.toISOString()).toBe(at.toISOString());
  });

  it('runs a range across midnight into the next day', () => {
    const fridayNight = limit('Europe/Berlin', 'fri 22:00-06:00');
    expect(span(windowAt(fridayNight, d('2026-03-07T02:00:00Z')))).toEqual([
      '2026-03-06T21:00:00.000Z',
      '2026-03-07T05:00:00.000Z',
    ]);
    expect(isOpen(fridayNight, d('2026-03-06T20:59:00Z'))).toBe(false);
    expect(isOpen(fridayNight, d('2026-03-07T21:30:00Z'))).toBe(false); // Saturday night is not listed
  });

  it('wraps Sunday night into Monday morning', () => {
    const sundayNight = limit('Europe/Berlin', 'sun 22:00-06:00');
    expect(span(windowAt(sundayNight, d('2026-03-02T02:00:00Z')))).toEqual([
      '2026-03-01T21:00:00.000Z',
      '2026-03-02T05:00:00.000Z',
    ]);
    expect(isOpen(sundayNight, d('2026-03-03T02:00:00Z'))).toBe(false);
    expect(nextOpening(sundayNight, d('2026-03-02T06:00:00Z'))?.toISOString()).toBe('2026-03-08T21:00:00.000Z');
  });

  it('merges ranges that touch or overlap into one window', () => {
    const nights = limit('Europe/Berlin', 'mon 22:00-02:00', 'tue 00:00-06:00');
    const expected = ['2026-03-02T21:00:00.000Z', '2026-03-03T05:00:00.000Z'];
    expect(span(windowAt(nights, d('2026-03-02T21:30:00Z')))).toEqual(expected);
    expect(span(windowAt(nights, d('2026-03-03T04:00:00Z')))).toEqual(expected);

    const split = limit('Europe/Berlin', 'mon 08:00-12:00', 'mon 12:00-17:00', 'mon 10:00-11:00');
    expect(span(windowAt(split, d('2026-03-02T10:00:00Z')))).toEqual([
      '2026-03-02T07:00:00.000Z',
      '2026-03-02T16:00:00.000Z',
    ]);
  });

  it('treats 24:00 as the end of the day', () => {
    const evening = limit('Europe/Berlin', 'sat 18:00-24:00');
    expect(span(windowAt(evening, d('2026-03-07T20:00:00Z')))).toEqual([
      '2026-03-07T17:00:00.000Z',
      '2026-03-07T23:00:00.000Z',
    ]);
    const intoSunday = limit('Europe/Berlin', 'sat 18:00-24:00', 'sun 00:00-02:00');
    expect(windowAt(intoSunday, d('2026-03-07T20:00:00Z'))?.end.toISOString()).toBe('2026-03-08T01:00:00.000Z');
  });

  it('caps an always-open schedule at 8 days each way', () => {
    const always = limit('Europe/Berlin', 'daily 00:00-24:00');
    const at = d('2026-03-29T01:00:00Z');
    expect(windowAt(always, at)).toEqual({
      start: new Date(at.getTime() - LOOK_AHEAD_MS),
      end: new Date(at.getTime() + LOOK_AHEAD_MS),
    });
    const allButSunday = limit('Europe/Berlin', 'mon-sat 00:00-24:00');
    expect(windowAt(allButSunday, d('2026-03-04T12:00:00Z'))?.end.toISOString()).toBe('2026-03-07T23:00:00.000Z');
  });

  it('is closed on unlisted days and opens on the next listed one', () => {
    const l = limit('America/New_York', 'mon,wed 09:00-10:00');
    const tuesday = d('2026-03-03T14:30:00Z');
    expect(isOpen(l, tuesday)).toBe(false);
    expect(nextOpening(l, tuesday)?.toISOString()).toBe('2026-03-04T14:00:00.000Z');
  });

  it('never opens with an empty schedule', () => {
    const none = { timezone: 'Europe/Berlin', schedule: [] };
    expect(isOpen(none, d('2026-03-02T10:00:00Z'))).toBe(false);
    expect(nextOpening(none, d('2026-03-02T10:00:00Z'))).toBeUndefined();
    expect(describeNextOpening(none, d('2026-03-02T10:00:00Z'))).toBe('no window in the next 8 days (Europe/Berlin)');
  });

  it('fails closed on an unknown zone or a bad stored range', () => {
    expect(thrown(() => isOpen({ timezone: 'Mars/Olympus', schedule: [] }, d('2026-03-02T10:00:00Z'))).field).toBe('timezone');
    const bad = { timezone: 'UTC', schedule: [{ days: ['mon' as const], start: '24:00', end: '01:00' }] };
    expect(thrown(() => windowAt(bad, d('2026-03-02T10:00:00Z'))).field).toBe('schedule[0]');
  });
});

describe('DST', () => {
  // Berlin: 2026-03-29 02:00 CET jumps to 03:00 CEST (01:00Z); 2026-10-25 03:00 CEST falls back to 02:00 CET (01:00Z).
  it('spring forward: 01:00-03:00 covers only the hour that exists', () => {
    const l = limit('Europe/Berlin', 'sun 01:00-03:00');
    expect(span(windowAt(l, d('2026-03-29T00:30:00Z')))).toEqual([
      '2026-03-29T00:00:00.000Z',
      '2026-03-29T01:00:00.000Z',
    ]);
    expect(isOpen(l, d('2026-03-29T01:00:00Z'))).toBe(false); // wall clock reads 03:00
  });

  it('spring forward: a range inside the gap opens at the jump or not at all', () => {
    expect(isOpen(limit('Europe/Berlin', 'sun 02:00-02:30'), d('2026-03-29T00:59:59Z'))).toBe(false);
    expect(nextOpening(limit('Europe/Berlin', 'sun 02:00-02:30'), d('2026-03-28T12:00:00Z'))?.toISOString()).toBe(
      '2026-04-05T00:00:00.000Z',
    );
    expect(span(windowAt(limit('Europe/Berlin', 'sun 02:30-04:00'), d('2026-03-29T01:30:00Z')))).toEqual([
      '2026-03-29T01:00:00.000Z',
      '2026-03-29T02:00:00.000Z',
    ]);
  });

  it('fall back: the repeated hour stays inside 01:00-03:00 for both passes', () => {
    const l = limit('Europe/Berlin', 'sun 01:00-03:00');
    expect(span(windowAt(l, d('2026-10-25T01:30:00Z')))).toEqual([
      '2026-10-24T23:00:00.000Z',
      '2026-10-25T02:00:00.000Z',
    ]);
  });

  it('fall back: 02:30-04:00 closes when the clock jumps back and reopens at the second 02:30', () => {
    const l = limit('Europe/Berlin', 'sun 02:30-04:00');
    expect(span(windowAt(l, d('2026-10-25T00:45:00Z')))).toEqual([
      '2026-10-25T00:30:00.000Z',
      '2026-10-25T01:00:00.000Z',
    ]);
    expect(isOpen(l, d('2026-10-25T01:15:00Z'))).toBe(false);
    expect(nextOpening(l, d('2026-10-25T01:15:00Z'))?.toISOString()).toBe('2026-10-25T01:30:00.000Z');
    expect(windowAt(l, d('2026-10-25T01:45:00Z'))?.end.toISOString()).toBe('2026-10-25T03:00:00.000Z');
  });

  it('New York spring forward shortens a night range by an hour', () => {
    const l = limit('America/New_York', 'sat 22:00-06:00');
    const w = windowAt(l, d('2026-03-08T05:00:00Z'));
    expect(span(w)).toEqual(['2026-03-08T03:00:00.000Z', '2026-03-08T10:00:00.000Z']);
  });

  it('Lord Howe half-hour shift: 01:00-03:00 loses half an hour in spring', () => {
    // 2026-10-04 02:00 +10:30 jumps to 02:30 +11:00 (2026-10-03T15:30Z).
    const l = limit('Australia/Lord_Howe', 'sun 01:00-03:00');
    const w = windowAt(l, d('2026-10-03T15:20:00Z'));
    expect(w && (w.end.getTime() - w.start.getTime()) / 60_000).toBe(90);
  });
});

describe('parseScheduleSpec / formatScheduleRange', () => {
  it.each([
    ['mon-fri 08:00-17:00', ['mon', 'tue', 'wed', 'thu', 'fri'], '08:00', '17:00'],
    ['sat,sun 10:00-14:00', ['sat', 'sun'], '10:00', '14:00'],
    ['daily 22:00-06:00', ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], '22:00', '06:00'],
    ['daily 00:00-24:00', ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], '00:00', '24:00'],
    ['mon,wed-fri 09:00-12:30', ['mon', 'wed', 'thu', 'fri'], '09:00', '12:30'],
  ])('reads and writes back %s', (spec, days, start, end) => {
    const r = parseScheduleSpec(spec);
    expect(r).toEqual({ days, start, end });
    expect(formatScheduleRange(r)).toBe(spec);
  });

  it('normalizes equivalent spellings', () => {
    expect(formatScheduleRange(parseScheduleSpec('mon-sun 22:00-06:00'))).toBe('daily 22:00-06:00');
    expect(formatScheduleRange(parseScheduleSpec('  FRI-Mon   09:00 - 10:00 '))).toBe('mon,fri-sun 09:00-10:00');
    expect(parseScheduleSpec('tue,mon,tue 09:00-10:00').days).toEqual(['mon', 'tue']);
  });

  it.each([
    ['', /empty schedule/],
    ['mon-fri', /missing days or time range/],
    ['08:00-17:00', /missing days or time range/],
    ['mon-fri 08:00', /HH:MM-HH:MM/],
    ['mo-fri 08:00-17:00', /unknown day "mo"/],
    ['mon-fri 25:00-26:00', /"25:00" is not a time/],
    ['mon-fri 8:0-17:00', /"8:0" is not a time/],
    ['mon-fri 08:00-17:60', /"17:60" is not a time/],
    ['mon-fri 24:00-06:00', /cannot start at 24:00/],
    ['mon,,fri 08:00-17:00', /cannot read days/],
    ['mon-wed-fri 08:00-17:00', /cannot read days/],
  ])('rejects %j', (spec, message) => {
    const e = thrown(() => parseScheduleSpec(spec));
    expect(e.field).toBe('schedule');
    expect(e.code).toBe('VALIDATION');
    expect(e.message).toMatch(message);
  });

  it('refuses to format a range without days', () => {
    expect(thrown(() => formatScheduleRange({ days: [], start: '08:00', end: '09:00' })).message).toMatch(/one or more/);
  });
});

describe('parseHHMM / isValidTimeZone', () => {
  it('reads HH:MM up to 24:00', () => {
    expect([parseHHMM('00:00'), parseHHMM('08:30'), parseHHMM('23:59'), parseHHMM('24:00')]).toEqual([0, 510, 1439, 1440]);
  });

  it.each(['24:01', '25:00', '8:00', '08:0', '0800', '', '08:60'])('rejects %j', (s) => {
    expect(thrown(() => parseHHMM(s, 'limitAccessTime.schedule[0].start')).field).toBe('limitAccessTime.schedule[0].start');
  });

  it('knows IANA zones', () => {
    expect(isValidTimeZone('Europe/Berlin')).toBe(true);
    expect(isValidTimeZone('America/St_Johns')).toBe(true);
    expect(isValidTimeZone('Mars/Olympus')).toBe(false);
    expect(isValidTimeZone('')).toBe(false);
  });
});

describe('parseDuration / formatDuration', () => {
  it.each([
    ['2h', 120],
    ['90m', 90],
    ['1h30m', 90],
    ['45', 45],
    ['1d', 1440],
    ['1d 2h 5m', 1565],
    ['2H', 120],
  ])('reads %s as %i minutes', (text, minutes) => {
    expect(parseDuration(text)).toBe(minutes);
  });

  it.each([[45, '45m'], [90, '1h30m'], [120, '2h'], [1440, '1d'], [1565, '1d2h5m'], [0, '0m']])(
    'writes %i minutes as %s',
    (minutes, text) => {
      expect(formatDuration(minutes)).toBe(text);
    },
  );

  it.each(['', 'abc', '0', '0h', '1x', 'h', '-5', '1.5h', '30m2h'])('rejects %j', (text) => {
    const e = thrown(() => parseDuration(text));
    expect(e.field).toBe('maxDuration');
  });

  it('refuses to format a negative or fractional duration', () => {
    expect(thrown(() => formatDuration(-1)).field).toBe('maxDuration');
    expect(thrown(() => formatDuration(1.5)).field).toBe('maxDuration');
  });
});
