/**
 * Who is connecting: the login names the user and the resource (`alice:prod-mysql`), the
 * password is a one-time launch ticket (carrying the MFA proof of `gatehouse launch --totp`)
 * or the user's gateway password (no MFA proof). Nothing reaches a target before this and
 * the decision pass.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { Broker } from '../../src/broker/broker.js';
import type { Clock } from '../../src/core/clock.js';
import type { MfaProof } from '../../src/workflow/decide.js';
import { looksLikeTicket } from '../../src/workflow/mfa.js';
import { refusals, type MysqlRefusal } from './errors.js';

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

export type LoginCheck = { ok: true; user: string; resource: string; mfa: MfaProof } | { ok: false; refusal: MysqlRefusal };

export async function checkLogin(broker: Broker, cache: VerifiedPasswords, login: string, password: string): Promise<LoginCheck> {
  const colon = login.indexOf(':');
  const user = login.slice(0, colon);
  const resource = login.slice(colon + 1);
  if (colon <= 0 || !resource) return { ok: false, refusal: refusals.badLogin(login) };
  if (looksLikeTicket(password)) {
    const t = await broker.redeemTicket(password, resource);
    if (!t) return { ok: false, refusal: refusals.badTicket(resource) };
    if (t.user !== user) return { ok: false, refusal: refusals.ticketForOther(user, resource) };
    return { ok: true, user, resource, mfa: t.mfa };
  }
  if (!(await cache.check(user, password, () => broker.checkPassword(user, password)))) {
    return { ok: false, refusal: refusals.badCredentials(user, resource) };
  }
  return { ok: true, user, resource, mfa: { kind: 'none' } };
}
