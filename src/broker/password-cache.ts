import { createHmac, randomBytes } from 'node:crypto';
import type { Clock } from '../core/clock.js';

/**
 * Remembers (user, password) pairs that verified, for `ttlMs`, so a pool opening many
 * connections pays the scrypt cost once. Keys are HMACs under a per-process random key;
 * no password is kept. A changed password keeps working until its entry lapses.
 */
export class VerifiedPasswords {
  private readonly key = randomBytes(32);
  private readonly until = new Map<string, number>();
  /** Checks in progress: a pool opening 16 connections at once runs one scrypt, not 16. */
  private readonly inflight = new Map<string, Promise<boolean>>();

  constructor(
    private readonly clock: Clock,
    private readonly ttlMs: number,
    private readonly max = 10_000,
  ) {}

  async check(user: string, password: string, verify: () => Promise<boolean>): Promise<boolean> {
    if (this.ttlMs <= 0) return verify();
    const id = createHmac('sha256', this.key).update(user).update('\0').update(password).digest('base64');
    const now = this.clock.now().getTime();
    const exp = this.until.get(id);
    if (exp !== undefined && exp > now) return true;
    let pending = this.inflight.get(id);
    if (!pending) {
      pending = verify().finally(() => this.inflight.delete(id));
      this.inflight.set(id, pending);
    }
    if (!(await pending)) return false;
    if (this.until.size >= this.max) {
      for (const [k, e] of this.until) if (e <= now) this.until.delete(k);
      for (const k of this.until.keys()) {
        if (this.until.size < this.max) break;
        this.until.delete(k);
      }
    }
    this.until.set(id, now + this.ttlMs);
    return true;
  }
}
