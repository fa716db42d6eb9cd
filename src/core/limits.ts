import type { Clock } from './clock.js';

/**
 * Failed sign-in bookkeeping: after `maxFailures` failures within `windowMs`, the key is
 * locked for `lockMs`. Keys are user names (password and TOTP failures alike) and client
 * addresses. Kept in memory: a restart forgives, which is acceptable for a lockout.
 */
export class FailureTracker {
  private readonly entries = new Map<string, { failures: number[]; lockedUntil?: number }>();

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

  private prune(now: number): void {
    for (const [k, e] of this.entries) {
      if ((!e.lockedUntil || e.lockedUntil <= now) && e.failures.every((t) => now - t >= this.opts.windowMs)) this.entries.delete(k);
    }
  }
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
