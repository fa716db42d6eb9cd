import { createHmac, randomBytes } from 'node:crypto';
import type { Broker } from '../../src/broker/broker.js';
import type { Clock } from '../../src/core/clock.js';
import type { MfaProof } from '../../src/workflow/decide.js';
import { looksLikeTicket } from '../../src/workflow/mfa.js';
import { passwordError, ticketError } from './errors.js';

/**
 * Recently verified gateway passwords, so a client that opens a connection per transaction
 * (pgbench -C, serverless drivers) does not pay scrypt (~30 ms) every time. Entries are
 * keyed by an HMAC under a per-process random key (the map holds no password material),
 * live `ttlMs` on the injected clock, and only successes are cached: a wrong password always
 * costs the full hash. A password change takes effect for new connections within `ttlMs`.
 */
export class VerifiedPasswords {
  private readonly key = randomBytes(32);
  private readonly until = new Map<string, number>();

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
    if (!(await verify())) return false;
    if (this.until.size >= this.max) this.prune(now);
    this.until.set(id, now + this.ttlMs);
    return true;
  }

  private prune(now: number): void {
    for (const [k, exp] of this.until) if (exp <= now) this.until.delete(k);
    // Still full of live entries: drop the oldest inserted.
    for (const k of this.until.keys()) {
      if (this.until.size < this.max) break;
      this.until.delete(k);
    }
  }
}

export type ClientAuth = { ok: true; mfa: MfaProof; via: 'ticket' | 'password' } | { ok: false; error: Buffer; why: string };

/**
 * The password a client typed is either a one-time launch ticket (which carries the MFA
 * proof of `gatehouse launch --totp`) or the user's gateway password (no MFA proof). Either
 * way nothing reaches the target until this and the decision pass.
 */
export async function authenticateClient(broker: Broker, cache: VerifiedPasswords, user: string, resource: string, password: string): Promise<ClientAuth> {
  if (looksLikeTicket(password)) {
    const t = await broker.redeemTicket(password, resource);
    if (!t || t.user !== user) return { ok: false, error: ticketError(resource), why: t ? `ticket of ${t.user}` : 'invalid ticket' };
    return { ok: true, mfa: t.mfa, via: 'ticket' };
  }
  if (!(await cache.check(user, password, () => broker.checkPassword(user, password)))) {
    return { ok: false, error: passwordError(user), why: 'wrong password' };
  }
  return { ok: true, mfa: { kind: 'none' }, via: 'password' };
}
