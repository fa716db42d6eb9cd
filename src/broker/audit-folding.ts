import type { Clock } from '../core/clock.js';
import { SECOND } from '../core/clock.js';
import { RateLimiter } from '../core/limits.js';

/**
 * Refusals are audited one row each until one key (address + code) refuses faster than a
 * row a second after a burst of 20; past that they are counted, and the next row written for
 * the key carries how many were folded into it. A flood from one address cannot grow the
 * audit table without bound, and nothing goes unrecorded.
 */
export class AuditFolding {
  private readonly rate: RateLimiter;
  private readonly folded = new Map<string, number>();

  constructor(clock: Clock) {
    this.rate = new RateLimiter(clock, { rate: 1, perMs: SECOND, burst: 20 });
  }

  /** Undefined: fold this one (do not write a row). Otherwise the extra fields for the row. */
  admit(key: string): { folded?: number } | undefined {
    if (!this.rate.take(key)) {
      if (this.folded.size >= 10_000 && !this.folded.has(key)) this.folded.clear();
      this.folded.set(key, (this.folded.get(key) ?? 0) + 1);
      return undefined;
    }
    const n = this.folded.get(key);
    this.folded.delete(key);
    return n ? { folded: n } : {};
  }
}
