import { randomBytes, randomUUID } from 'node:crypto';
import { addMs, HOUR, MINUTE } from '../core/clock.js';
import { GatehouseError } from '../core/errors.js';
import type { ApiToken, User } from '../core/model.js';
import type { Engine } from '../workflow/engine.js';
import { hashSecretToken } from '../workflow/mfa.js';
import { FailureTracker } from '../core/limits.js';
import { verifyPassword } from '../secrets/passwords.js';

export const SESSION_TTL_MS = 12 * HOUR;

export interface AuthOptions {
  maxFailures?: number;
  lockMs?: number;
}

/** Password + TOTP sign-in, session and API tokens, and the lockout on repeated failures. */
export class AuthService {
  readonly failures: FailureTracker;

  constructor(
    private readonly engine: Engine,
    opts: AuthOptions = {},
  ) {
    this.failures = new FailureTracker(engine.ctx.clock, { maxFailures: opts.maxFailures ?? 5, windowMs: 15 * MINUTE, lockMs: opts.lockMs ?? 15 * MINUTE });
  }

  private get store() {
    return this.engine.ctx.store;
  }

  async login(name: string, password: string, totp: string | undefined, ip: string): Promise<{ token: string; expiresAt: Date; user: User }> {
    const locked = Math.max(this.failures.lockedFor(`user:${name}`), this.failures.lockedFor(`ip:${ip}`));
    if (locked > 0) {
      throw new GatehouseError('LOCKED', `too many failed sign-ins; try again in ${Math.ceil(locked / 60_000)} min`, { retryAfterSeconds: Math.ceil(locked / 1000) });
    }
    const user = await this.store.getUser(name);
    const ok = await verifyPassword(password, user?.passwordHash);
    if (!user || !ok || user.disabled) {
      this.fail(name, ip);
      await this.engine.ctx.audit.record(name, 'auth.fail', name, { ip, why: 'password' });
      throw new GatehouseError('UNAUTHENTICATED', 'wrong user name or password');
    }
    if (user.totpConfirmed) {
      if (!totp) throw new GatehouseError('MFA_REQUIRED', 'this account has TOTP: pass --totp CODE', { mfa: 'totp' });
      try {
        await this.engine.mfa.verify(name, totp);
      } catch (e) {
        this.fail(name, ip);
        throw e;
      }
    }
    this.failures.succeed(`user:${name}`);
    const issued = await this.issue(user.name, 'session', SESSION_TTL_MS);
    await this.engine.ctx.audit.record(name, 'auth.login', name, { ip, mfa: user.totpConfirmed });
    return { token: issued.token, expiresAt: issued.expiresAt as Date, user };
  }

  /** Counts a failed TOTP check made outside login (launch, tunnel) towards the lockout. */
  fail(name: string, ip: string): void {
    this.failures.fail(`user:${name}`);
    this.failures.fail(`ip:${ip}`);
  }

  async issue(user: string, kind: ApiToken['kind'], ttlMs?: number, label?: string): Promise<{ id: string; token: string; expiresAt?: Date }> {
    const token = `${kind === 'session' ? 'ghs' : 'gha'}_${randomBytes(32).toString('base64url')}`;
    const now = this.engine.ctx.clock.now();
    const record: ApiToken = { id: randomUUID(), user, hash: hashSecretToken(token), kind, createdAt: now };
    if (ttlMs) record.expiresAt = addMs(now, ttlMs);
    if (label) record.label = label;
    await this.store.insertToken(record);
    return { id: record.id, token, ...(record.expiresAt ? { expiresAt: record.expiresAt } : {}) };
  }

  /** Resolves a bearer token to its user; every failure is the same UNAUTHENTICATED. */
  async authenticate(header: string | undefined): Promise<{ user: User; tokenId: string }> {
    const token = header?.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
    if (!token) throw new GatehouseError('UNAUTHENTICATED', 'sign in first: gatehouse login --user NAME');
    return this.authenticateToken(token);
  }

  async authenticateToken(token: string): Promise<{ user: User; tokenId: string }> {
    const record = await this.store.getTokenByHash(hashSecretToken(token));
    const now = this.engine.ctx.clock.now();
    if (!record || (record.expiresAt && record.expiresAt <= now)) {
      throw new GatehouseError('UNAUTHENTICATED', 'your session has expired or the token is invalid; sign in again');
    }
    const user = await this.store.getUser(record.user);
    if (!user || user.disabled) throw new GatehouseError('UNAUTHENTICATED', 'this account is disabled');
    return { user, tokenId: record.id };
  }

  async logout(tokenId: string): Promise<void> {
    await this.store.deleteToken(tokenId);
  }
}
