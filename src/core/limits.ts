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
  /** Guesses waiting for the checks under way on a key to settle. */
  private readonly waiters = new Map<string, Array<() => void>>();

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
   * at most `maxFailures` guesses per window, whatever the concurrency. While the checks
   * already under way could use up the remaining guesses, a new one waits for them (a pool
   * opening many connections with the right password is slowed, never refused); once the
   * guesses are used up, or a key is locked, it is refused with the wait.
   */
  async attempt(keys: readonly string[]): Promise<{ ok: true; attempt: Attempt } | { ok: false; retryAfterMs: number }> {
    for (;;) {
      const now = this.clock.now().getTime();
      let wait = 0;
      let busy: string | undefined;
      for (const k of keys) {
        wait = Math.max(wait, this.lockedFor(k));
        const e = this.entries.get(k);
        const recent = e ? e.failures.filter((t) => now - t < this.opts.windowMs).length : 0;
        const inflight = this.inflight.get(k) ?? 0;
        if (recent >= this.opts.maxFailures) wait = Math.max(wait, this.opts.windowMs);
        else if (recent + inflight >= this.opts.maxFailures) busy = k;
      }
      if (wait > 0) return { ok: false, retryAfterMs: wait };
      if (busy === undefined) break;
      await new Promise<void>((resolve) => {
        const list = this.waiters.get(busy!) ?? [];
        list.push(resolve);
        this.waiters.set(busy!, list);
      });
    }
    for (const k of keys) this.inflight.set(k, (this.inflight.get(k) ?? 0) + 1);
    let settled = false;
    const settle = (failed: boolean, clear: readonly string[] = []): void => {
      if (settled) return;
      settled = true;
      for (const k of keys) {
        const n = (this.inflight.get(k) ?? 1) - 1;
        if (n > 0) this.inflight.set(k, n);
        else this.inflight.delete(k);
        if (failed) this.fail(k);
      }
      for (const k of clear) this.succeed(k);
      for (const k of keys) {
        const list = this.waiters.get(k);
        this.waiters.delete(k);
        for (const wake of list ?? []) wake();
      }
    };
    return { ok: true, attempt: { fail: () => settle(true), succeed: (clear = keys) => settle(false, clear), cancel: () => settle(false) } };
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
