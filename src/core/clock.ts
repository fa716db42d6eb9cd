/** A cancel function returned by Clock.setTimer; calling it twice is harmless. */
export type Cancel = () => void;

/**
 * The only source of time in Gatehouse. Workflow and broker logic never read the wall
 * clock directly, so tests can drive expiry, schedules and warnings with a FakeClock.
 */
export interface Clock {
  now(): Date;
  /** Runs fn once when the clock reaches `at` (immediately, asynchronously, if already past). */
  setTimer(at: Date, fn: () => void): Cancel;
}

// setTimeout overflows past 2^31-1 ms (~24.8 days); long timers re-arm in steps.
const MAX_TIMEOUT_MS = 2_147_483_647;

export class SystemClock implements Clock {
  now(): Date {
    return new Date();
  }

  setTimer(at: Date, fn: () => void): Cancel {
    let handle: NodeJS.Timeout | undefined;
    let cancelled = false;
    const arm = (): void => {
      if (cancelled) return;
      const wait = at.getTime() - Date.now();
      if (wait > MAX_TIMEOUT_MS) {
        handle = setTimeout(arm, MAX_TIMEOUT_MS);
      } else {
        handle = setTimeout(() => {
          if (!cancelled) fn();
        }, Math.max(0, wait));
      }
      handle.unref?.();
    };
    arm();
    return () => {
      cancelled = true;
      if (handle) clearTimeout(handle);
    };
  }
}

interface FakeTimer {
  id: number;
  at: number;
  fn: () => void;
}

/** A clock that only moves when told to. Timers due at or before the new time fire in order. */
export class FakeClock implements Clock {
  private current: number;
  private timers: FakeTimer[] = [];
  private nextId = 1;

  constructor(start: Date | string | number = '2026-01-05T09:00:00Z') {
    this.current = new Date(start).getTime();
  }

  now(): Date {
    return new Date(this.current);
  }

  setTimer(at: Date, fn: () => void): Cancel {
    const timer: FakeTimer = { id: this.nextId++, at: at.getTime(), fn };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((t) => t.id !== timer.id);
    };
  }

  /** Moves time forward by ms, firing due timers in time order (each sees its own due time as now). */
  advance(ms: number): void {
    this.set(new Date(this.current + ms));
  }

  set(to: Date | string): void {
    const target = new Date(to).getTime();
    if (target < this.current) throw new Error('FakeClock cannot go backwards');
    for (;;) {
      const due = this.timers.filter((t) => t.at <= target).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((t) => t.id !== due.id);
      this.current = Math.max(this.current, due.at);
      due.fn();
    }
    this.current = target;
  }

  pendingTimers(): number {
    return this.timers.length;
  }
}

export const SECOND = 1_000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;

export function addMs(d: Date, ms: number): Date {
  return new Date(d.getTime() + ms);
}

export function minDate(...dates: Array<Date | undefined>): Date | undefined {
  let best: Date | undefined;
  for (const d of dates) if (d && (!best || d.getTime() < best.getTime())) best = d;
  return best;
}
