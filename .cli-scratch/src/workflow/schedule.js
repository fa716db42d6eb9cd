import { DateTime, IANAZone } from 'luxon';
import { ValidationError } from '../core/errors.js';
import { Weekdays } from '../core/model.js';
/** How far windowAt and nextOpening look from `at`, each way. */
export const LOOK_AHEAD_MS = 8 * 24 * 60 * 60 * 1000;
const MINUTE_MS = 60_000;
const DAY_MS = 24 * 60 * MINUTE_MS;
const DAY_MINUTES = 24 * 60;
// Offsets are sampled this far apart and bisected where they differ; no zone changes its
// offset twice within a day.
const OFFSET_SAMPLE_MS = DAY_MS;
function compile(limit) {
    if (!isValidTimeZone(limit.timezone)) {
        throw new ValidationError('timezone', `unknown time zone "${limit.timezone}"; use an IANA name such as Europe/Berlin`);
    }
    const ranges = limit.schedule.map((r, i) => {
        const field = `schedule[${i}]`;
        let days = 0;
        for (const d of r.days) {
            const idx = Weekdays.indexOf(d);
            if (idx < 0)
                throw new ValidationError(field, `unknown day "${String(d)}"`);
            days |= 1 << idx;
        }
        const start = parseHHMM(r.start, field);
        const end = parseHHMM(r.end, field);
        if (start === DAY_MINUTES)
            throw new ValidationError(field, 'a range cannot start at 24:00; use 00:00');
        return { days, start, end, crosses: end <= start };
    });
    const boundaries = [...new Set([0, ...ranges.flatMap((r) => [r.start, r.end % DAY_MINUTES])])];
    return { zone: IANAZone.create(limit.timezone), ranges, boundaries };
}
/** Whether a wall-clock time, written as if it were UTC epoch ms, falls inside a range. */
function openAtLocal(ranges, localMs) {
    const dayNumber = Math.floor(localMs / DAY_MS);
    const minute = Math.floor((localMs - dayNumber * DAY_MS) / MINUTE_MS);
    const weekday = (((dayNumber + 3) % 7) + 7) % 7; // 1970-01-01 was a Thursday
    const yesterday = (weekday + 6) % 7;
    for (const r of ranges) {
        if (r.days & (1 << weekday) && minute >= r.start && (r.crosses || minute < r.end))
            return true;
        if (r.crosses && r.days & (1 << yesterday) && minute < r.end)
            return true;
    }
    return false;
}
function offsetMs(zone, t) {
    return zone.offset(t) * MINUTE_MS;
}
/** Runs of constant UTC offset covering [lo, hi]; each starts at the exact transition. */
function offsetSegments(zone, lo, hi) {
    const segments = [{ from: lo, offset: offsetMs(zone, lo) }];
    let a = lo;
    let oa = segments[0].offset;
    while (a < hi) {
        const b = Math.min(a + OFFSET_SAMPLE_MS, hi);
        const ob = offsetMs(zone, b);
        if (ob !== oa) {
            let left = a;
            let right = b;
            while (right - left > 1) {
                const mid = Math.floor((left + right) / 2);
                if (offsetMs(zone, mid) === oa)
                    left = mid;
                else
                    right = mid;
            }
            segments.push({ from: right, offset: ob });
        }
        a = b;
        oa = ob;
    }
    return segments;
}
/**
 * Openness is constant from each returned instant up to the next (it can only change where
 * the wall clock crosses a range boundary or jumps). The first is lo; none lies after hi.
 */
function timeline(c, lo, hi) {
    const segments = offsetSegments(c.zone, lo, hi);
    const out = [];
    segments.forEach((seg, i) => {
        const until = segments[i + 1]?.from ?? hi + 1;
        const instants = new Set([seg.from]);
        const lastDay = Math.floor((until + seg.offset) / DAY_MS);
        for (let day = Math.floor((seg.from + seg.offset) / DAY_MS); day <= lastDay; day++) {
            for (const b of c.boundaries) {
                const t = day * DAY_MS + b * MINUTE_MS - seg.offset;
                if (t > seg.from && t < until)
                    instants.add(t);
            }
        }
        for (const t of [...instants].sort((x, y) => x - y)) {
            out.push({ at: t, open: openAtLocal(c.ranges, t + seg.offset) });
        }
    });
    return out;
}
function checkInstant(at) {
    const t = at.getTime();
    if (Number.isNaN(t))
        throw new ValidationError('at', 'invalid date');
    return t;
}
/** True when `at` lies inside the schedule (see the definition at the top of this file). */
export function isOpen(limit, at) {
    const c = compile(limit);
    const t = checkInstant(at);
    return openAtLocal(c.ranges, t + offsetMs(c.zone, t));
}
/**
 * The open window containing `at` (start <= at < end), or undefined when closed. Both ends
 * are capped LOOK_AHEAD_MS from `at`: a schedule open for longer than that (say all week)
 * yields start = at - 8 days and/or end = at + 8 days.
 */
export function windowAt(limit, at) {
    const c = compile(limit);
    const t = checkInstant(at);
    const changes = timeline(c, t - LOOK_AHEAD_MS, t + LOOK_AHEAD_MS);
    let k = 0;
    while (k + 1 < changes.length && changes[k + 1].at <= t)
        k++;
    if (!changes[k].open)
        return undefined;
    let first = k;
    while (first > 0 && changes[first - 1].open)
        first--;
    let after = k + 1;
    while (after < changes.length && changes[after].open)
        after++;
    const end = after < changes.length ? changes[after].at : t + LOOK_AHEAD_MS;
    return { start: new Date(changes[first].at), end: new Date(end) };
}
/** `at` itself when open, else the next instant within LOOK_AHEAD_MS at which a window opens. */
export function nextOpening(limit, at) {
    const c = compile(limit);
    const t = checkInstant(at);
    if (openAtLocal(c.ranges, t + offsetMs(c.zone, t)))
        return new Date(t);
    const next = timeline(c, t, t + LOOK_AHEAD_MS).find((ch) => ch.at > t && ch.open);
    return next ? new Date(next.at) : undefined;
}
/** A phrase for denial messages, e.g. "next window Mon 08:00 (Europe/Berlin)". */
export function describeNextOpening(limit, at) {
    const w = windowAt(limit, at);
    if (w)
        return `open now until ${localLabel(limit.timezone, w.end, at)} (${limit.timezone})`;
    const next = nextOpening(limit, at);
    if (!next)
        return `no window in the next 8 days (${limit.timezone})`;
    return `next window ${localLabel(limit.timezone, next, at)} (${limit.timezone})`;
}
function localLabel(zone, when, from) {
    const dt = DateTime.fromJSDate(when, { zone }).setLocale('en');
    // A bare weekday is ambiguous once the instant is a week or more away.
    const format = when.getTime() - from.getTime() < 6 * DAY_MS ? 'ccc HH:mm' : 'ccc d LLL HH:mm';
    return dt.toFormat(format);
}
// ---------------------------------------------------------------- text forms
export function isValidTimeZone(zone) {
    return typeof zone === 'string' && zone.length > 0 && IANAZone.isValidZone(zone);
}
/** "HH:MM" to minutes from midnight, 0..1440 ("24:00" is the end of the day). */
export function parseHHMM(s, field = 'schedule') {
    const m = typeof s === 'string' ? /^(\d\d):(\d\d)$/.exec(s) : null;
    const hours = m ? Number(m[1]) : NaN;
    const minutes = m ? Number(m[2]) : NaN;
    if (!m || minutes > 59 || hours > 24 || (hours === 24 && minutes !== 0)) {
        throw new ValidationError(field, `"${String(s)}" is not a time; use HH:MM from 00:00 to 24:00`);
    }
    return hours * 60 + minutes;
}
function formatHHMM(minutes) {
    return `${String(Math.floor(minutes / 60)).padStart(2, '0')}:${String(minutes % 60).padStart(2, '0')}`;
}
const SPEC_EXAMPLE = 'expected DAYS HH:MM-HH:MM, e.g. "mon-fri 08:00-17:00"';
function parseDay(name, spec) {
    const idx = Weekdays.indexOf(name.toLowerCase());
    if (idx < 0) {
        throw new ValidationError('schedule', `unknown day "${name}" in "${spec}"; use mon, tue, wed, thu, fri, sat, sun or daily`);
    }
    return idx;
}
/**
 * "mon-fri 08:00-17:00", "sat,sun 10:00-14:00", "daily 00:00-24:00", "mon,wed-fri 09:00-12:30".
 * A day range may wrap ("fri-mon"); days come back in week order, without repeats.
 */
export function parseScheduleSpec(spec) {
    const text = typeof spec === 'string' ? spec.trim() : '';
    if (text === '')
        throw new ValidationError('schedule', `empty schedule; ${SPEC_EXAMPLE}`);
    const parts = /^(\S+)\s+(\S+?)\s*-\s*(\S+)$/.exec(text);
    if (!parts) {
        const hint = /\s/.test(text) ? 'the time range must be HH:MM-HH:MM' : 'missing days or time range';
        throw new ValidationError('schedule', `cannot read "${text}": ${hint}; ${SPEC_EXAMPLE}`);
    }
    const [, dayPart = '', startText = '', endText = ''] = parts;
    const selected = new Set();
    if (dayPart.toLowerCase() === 'daily') {
        Weekdays.forEach((_, i) => selected.add(i));
    }
    else {
        for (const item of dayPart.split(',')) {
            const bounds = item.split('-');
            if (item === '' || bounds.length > 2) {
                throw new ValidationError('schedule', `cannot read days "${dayPart}" in "${text}"; use e.g. mon-fri or sat,sun`);
            }
            const from = parseDay(bounds[0], text);
            const to = parseDay(bounds[bounds.length - 1], text);
            for (let d = from;; d = (d + 1) % 7) {
                selected.add(d);
                if (d === to)
                    break;
            }
        }
    }
    const start = parseHHMM(startText);
    parseHHMM(endText);
    if (start === DAY_MINUTES)
        throw new ValidationError('schedule', `a range cannot start at 24:00 in "${text}"; use 00:00`);
    const days = Weekdays.filter((_, i) => selected.has(i));
    return { days, start: startText, end: endText };
}
/** The canonical text of a range: days in week order, runs of three or more as "a-b". */
export function formatScheduleRange(r) {
    const idx = [...new Set(r.days.map((d) => Weekdays.indexOf(d)))].sort((a, b) => a - b);
    if (idx.length === 0 || idx[0] < 0) {
        throw new ValidationError('schedule', `a range needs one or more of ${Weekdays.join(', ')}`);
    }
    let days;
    if (idx.length === 7) {
        days = 'daily';
    }
    else {
        const items = [];
        for (let i = 0; i < idx.length;) {
            let j = i;
            while (j + 1 < idx.length && idx[j + 1] === idx[j] + 1)
                j++;
            const run = idx.slice(i, j + 1).map((d) => Weekdays[d]);
            items.push(run.length >= 3 ? `${run[0]}-${run[run.length - 1]}` : run.join(','));
            i = j + 1;
        }
        days = items.join(',');
    }
    return `${days} ${formatHHMM(parseHHMM(r.start))}-${formatHHMM(parseHHMM(r.end))}`;
}
// ---------------------------------------------------------------- durations
/** "2h", "90m", "1h30m", "1d", or a bare number of minutes ("45"), to minutes (>= 1). */
export function parseDuration(text) {
    const s = typeof text === 'string' ? text.trim().toLowerCase().replace(/\s+/g, '') : '';
    const m = /^(\d+)$/.exec(s) ?? /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$/.exec(s);
    if (!m || s === '') {
        throw new ValidationError('maxDuration', `"${String(text)}" is not a duration; use e.g. 45, 90m, 2h, 1h30m or 1d`);
    }
    const minutes = m.length === 2
        ? Number(m[1])
        : Number(m[1] ?? 0) * DAY_MINUTES + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
    if (!Number.isSafeInteger(minutes))
        throw new ValidationError('maxDuration', `"${text}" is too long`);
    if (minutes < 1)
        throw new ValidationError('maxDuration', 'must be at least 1 minute');
    return minutes;
}
/** 90 → "1h30m", 1440 → "1d", 45 → "45m"; parseDuration reads it back. */
export function formatDuration(minutes) {
    if (!Number.isSafeInteger(minutes) || minutes < 0) {
        throw new ValidationError('maxDuration', `${minutes} is not a whole number of minutes`);
    }
    if (minutes === 0)
        return '0m';
    const d = Math.floor(minutes / DAY_MINUTES);
    const h = Math.floor((minutes % DAY_MINUTES) / 60);
    const m = minutes % 60;
    return `${d ? `${d}d` : ''}${h ? `${h}h` : ''}${m ? `${m}m` : ''}`;
}
//# sourceMappingURL=schedule.js.map