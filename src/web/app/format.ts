/// <reference lib="dom" />
import type { LimitAccessTime, Principal, Weekday } from '../../core/model.js';

/** Pure formatting helpers (no DOM), shared by the screens and unit-tested in node. */

export const WEEKDAYS: readonly Weekday[] = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
export const DAY_LABEL: Record<Weekday, string> = { mon: 'Mon', tue: 'Tue', wed: 'Wed', thu: 'Thu', fri: 'Fri', sat: 'Sat', sun: 'Sun' };

const pad = (n: number): string => String(n).padStart(2, '0');

/** "1:02:03" / "2:03" for a countdown; never negative. */
export function countdown(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

/** "1 h 5 min" for people (and screen readers): minutes resolution, seconds under a minute. */
export function duration(ms: number): string {
  const total = Math.max(0, Math.round(ms / 1000));
  if (total < 60) return `${total} s`;
  const minutes = Math.round(total / 60);
  const d = Math.floor(minutes / 1440);
  const h = Math.floor((minutes % 1440) / 60);
  const m = minutes % 60;
  return [d ? `${d} d` : '', h ? `${h} h` : '', m ? `${m} min` : ''].filter(Boolean).join(' ') || '0 min';
}

/**
 * "14:30" when `iso` falls on the same local day as `now`, "Tue 14:30" within a week,
 * "12 Jan 14:30" beyond, in the browser's time zone.
 */
export function clockTime(iso: string, now: Date, zone?: string): string {
  const at = new Date(iso);
  const opts: Intl.DateTimeFormatOptions = { hour: '2-digit', minute: '2-digit', hourCycle: 'h23', ...(zone ? { timeZone: zone } : {}) };
  const dayKey = (d: Date): string => d.toLocaleDateString('en-CA', zone ? { timeZone: zone } : {});
  const time = at.toLocaleTimeString('en-GB', opts);
  if (dayKey(at) === dayKey(now)) return time;
  const days = Math.abs(at.getTime() - now.getTime()) / 86_400_000;
  const date = at.toLocaleDateString('en-GB', days < 6 ? { weekday: 'short', ...(zone ? { timeZone: zone } : {}) } : { day: 'numeric', month: 'short', ...(zone ? { timeZone: zone } : {}) });
  return `${date} ${time}`;
}

/** "2026-01-05 14:30:12" local, for tables. */
export function dateTime(iso: string, zone?: string): string {
  const d = new Date(iso);
  const date = d.toLocaleDateString('en-CA', zone ? { timeZone: zone } : {});
  const time = d.toLocaleTimeString('en-GB', { hourCycle: 'h23', ...(zone ? { timeZone: zone } : {}) });
  return `${date} ${time}`;
}

export function principalLabel(p: Principal): string {
  return 'team' in p ? `team ${p.team}` : p.user;
}

export function principalKey(p: Principal): string {
  return 'team' in p ? `team:${p.team}` : `user:${p.user}`;
}

export function parsePrincipalKey(key: string): Principal {
  return key.startsWith('team:') ? { team: key.slice(5) } : { user: key.replace(/^user:/, '') };
}

/** "Mon–Fri" for consecutive days, "Mon, Wed" otherwise. */
export function dayList(days: readonly Weekday[]): string {
  const idx = WEEKDAYS.filter((d) => days.includes(d)).map((d) => WEEKDAYS.indexOf(d));
  if (idx.length === 7) return 'every day';
  const consecutive = idx.length > 2 && idx.every((v, i) => i === 0 || v === idx[i - 1]! + 1);
  if (consecutive) return `${DAY_LABEL[WEEKDAYS[idx[0]!]!]}–${DAY_LABEL[WEEKDAYS[idx[idx.length - 1]!]!]}`;
  return idx.map((i) => DAY_LABEL[WEEKDAYS[i]!]).join(', ');
}

/** "Mon–Fri 08:00–18:00 (Europe/Berlin), at most 2 h". */
export function scheduleSummary(l: LimitAccessTime): string {
  const ranges = l.schedule.map((r) => `${dayList(r.days)} ${r.start}–${r.end}`).join('; ');
  return `${ranges} (${l.timezone}), at most ${duration(l.maxDurationMinutes * 60_000)}`;
}

/** Groups a base32 secret in fours so it can be typed by hand. */
export function groupSecret(secret: string): string {
  return secret.replace(/(.{4})/g, '$1 ').trim();
}
