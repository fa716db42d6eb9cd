// setTimeout overflows past 2^31-1 ms (~24.8 days); long timers re-arm in steps.
const MAX_TIMEOUT_MS = 2_147_483_647;
export class SystemClock {
    now() {
        return new Date();
    }
    setTimer(at, fn) {
        let handle;
        let cancelled = false;
        const arm = () => {
            if (cancelled)
                return;
            const wait = at.getTime() - Date.now();
            if (wait > MAX_TIMEOUT_MS) {
                handle = setTimeout(arm, MAX_TIMEOUT_MS);
            }
            else {
                handle = setTimeout(() => {
                    if (!cancelled)
                        fn();
                }, Math.max(0, wait));
            }
            handle.unref?.();
        };
        arm();
        return () => {
            cancelled = true;
            if (handle)
                clearTimeout(handle);
        };
    }
}
/** A clock that only moves when told to. Timers due at or before the new time fire in order. */
export class FakeClock {
    current;
    timers = [];
    nextId = 1;
    constructor(start = '2026-01-05T09:00:00Z') {
        this.current = new Date(start).getTime();
    }
    now() {
        return new Date(this.current);
    }
    setTimer(at, fn) {
        const timer = { id: this.nextId++, at: at.getTime(), fn };
        this.timers.push(timer);
        return () => {
            this.timers = this.timers.filter((t) => t.id !== timer.id);
        };
    }
    /** Moves time forward by ms, firing due timers in time order (each sees its own due time as now). */
    advance(ms) {
        this.set(new Date(this.current + ms));
    }
    set(to) {
        const target = new Date(to).getTime();
        if (target < this.current)
            throw new Error('FakeClock cannot go backwards');
        for (;;) {
            const due = this.timers.filter((t) => t.at <= target).sort((a, b) => a.at - b.at || a.id - b.id)[0];
            if (!due)
                break;
            this.timers = this.timers.filter((t) => t.id !== due.id);
            this.current = Math.max(this.current, due.at);
            due.fn();
        }
        this.current = target;
    }
    pendingTimers() {
        return this.timers.length;
    }
}
export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
export function addMs(d, ms) {
    return new Date(d.getTime() + ms);
}
export function minDate(...dates) {
    let best;
    for (const d of dates)
        if (d && (!best || d.getTime() < best.getTime()))
            best = d;
    return best;
}
//# sourceMappingURL=clock.js.map