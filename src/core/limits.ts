import type { Clock } from './clock.js';

/**
 * Failed sign-in bookkeeping: after `maxFailures` failures within `windowMs`, the key is
 * locked for `lockMs`. Keys are user names (password and TOTP failures alike) and client
 * addresses. Kept in memory: a restart forgives, which is acceptable for a lockout.
 */
export class FailureTracker {
  private readonly entries = new Map<string, { failures: number[]; lockedUntil?: number }>();
  /** Checks under way per key: they count against the limit before their outcome is known. */
  private readonly inflight = new Map<string, number>();

  constructor(
    private readonly clock: Clock,
    private readonly opts: { maxFailures: number; windowMs: number; lockMs: number },
  ) {}

  lockedFor(key: string): number {
    const e = this.entries.get(key);
    const now = this.clock.now().getTime();
    if (!e?.lockedUntil || e.lockedUntil <= now) return 0;
    return e.lockedUntil - now;
  }

  fail(key: string): void {
    const now = this.clock.now().getTime();
    const e = this.entries.get(key) ?? { failures: [] };
    e.failures = e.failures.filter((t) => now - t < this.opts.windowMs);
    e.failures.push(now);
    if (e.failures.length >= this.opts.maxFailures) {
      e.lockedUntil = now + this.opts.lockMs;
      e.failures = [];
    }
    this.entries.set(key, e);
    if (this.entries.size > 10_000) this.prune(now);
  }

  succeed(key: string): void {
    this.entries.delete(key);
  }

  /**
   * Reserves one guess on every key before a slow check (scrypt, a TOTP lookup) runs, so that
   * concurrent guesses cannot all pass the lock check first and record their failures after:
   * at most `maxFailures` guesses per window, whatever the concurrency. Returns undefined
   * (and reserves nothing) when any key is locked or out of guesses, with the longest wait.
   */
  attempt(keys: readonly string[]): { ok: true; attempt: Attempt } | { ok: false; retryAfterMs: number } {
    const now = this.clock.now().getTime();
    let wait = 0;
    for (const k of keys) {
      wait = Math.max(wait, this.lockedFor(k));
      const e = this.entries.get(k);
      const recent = e ? e.failures.filter((t) => now - t < this.opts.windowMs).length : 0;
      if (recent + (this.inflight.get(k) ?? 0) >= this.opts.maxFailures) wait = Math.max(wait, this.opts.windowMs);
    }
    if (wait > 0) return { ok: false, retryAfterMs: wait };
    for (const k of keys) this.inflight.set(k, (this.inflight.get(k) ?? 0) + 1);
    let settled = false;
    const settle = (failed: boolean): void => {
      if (settled) return;
      settled = true;
      for (const k of keys) {
        const n = (this.inflight.get(k) ?? 1) - 1;
        if (n > 0) this.inflight.set(k, n);
        else this.inflight.delete(k);
        if (failed) this.fail(k);
      }
    };
    return { ok: true, attempt: { fail: () => settle(true), succeed: (clear = keys) => { settle(false); for (const k of clear) this.succeed(k); }, cancel: () => settle(false) } };
  }

  private prune(now: number): void {
    for (const [k, e] of this.entries) {
      if ((!e.lockedUntil || e.lockedUntil <= now) && e.failures.every((t) => now - t >= this.opts.windowMs)) this.entries.delete(k);
    }
  }
}

/** One reserved guess: exactly one of its methods settles it. */
export interface Attempt {
  fail(): void;
  /** The guess was right: the reservation ends and `clear` keys (default: all) forget their failures. */
  succeed(clear?: readonly string[]): void;
  /** Neither right nor wrong (e.g. the check could not run). */
  cancel(): void;
}

/** A token bucket per key: `rate` requests per `perMs`, bursting to `burst`. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly clock: Clock,
    private readonly opts: { rate: number; perMs: number; burst: number },
  ) {}

  take(key: string): boolean {
    const now = this.clock.now().getTime();
    const b = this.buckets.get(key) ?? { tokens: this.opts.burst, at: now };
    b.tokens = Math.min(this.opts.burst, b.tokens + ((now - b.at) / this.opts.perMs) * this.opts.rate);
    b.at = now;
    if (b.tokens < 1) {
      this.buckets.set(key, b);
      return false;
    }
    b.tokens -= 1;
    this.buckets.set(key, b);
    if (this.buckets.size > 10_000) this.buckets.clear();
    return true;
  }
}
