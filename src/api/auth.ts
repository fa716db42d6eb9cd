import { randomBytes, randomUUID } from 'node:crypto';
import { addMs, HOUR, MINUTE } from '../core/clock.js';
import { GatehouseError } from '../core/errors.js';
import type { ApiToken, User } from '../core/model.js';
import type { Engine } from '../workflow/engine.js';
import { hashSecretToken } from '../workflow/mfa.js';
import { FailureTracker } from '../core/limits.js';
import { hashPassword, verifyPassword } from '../secrets/passwords.js';
import { printable } from '../broker/refusals.js';
import { hasControlCharacter } from '../workflow/plain-text.js';

export const SESSION_TTL_MS = 12 * HOUR;

/** Unknown users cost the same scrypt as known ones, so timing does not tell which names exist. */
let dummyHash: Promise<string> | undefined;
const unknownUserHash = (): Promise<string> => (dummyHash ??= hashPassword('gatehouse-unknown-user'));

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
    // The guess is reserved before scrypt runs: parallel guesses cannot all pass the lock check.
    // The name is the client's: it reaches the audit log (and terminals reading it) only as printable text.
    if (hasControlCharacter(name)) {
      await this.engine.ctx.audit.record(printable(name, 64), 'auth.fail', printable(name, 64), { ip, why: 'malformed name', door: 'api' });
      throw new GatehouseError('UNAUTHENTICATED', 'wrong user name or password');
    }
    const keys = [`user:${name}`, `ip:${ip}`];
    const reserved = await this.failures.attempt(keys);
    if (!reserved.ok) {
      await this.engine.ctx.audit.record(name, 'auth.locked', name, { ip, door: 'api' });
      throw new GatehouseError('LOCKED', `too many failed sign-ins; try again in ${Math.ceil(reserved.retryAfterMs / 60_000)} min`, { retryAfterSeconds: Math.ceil(reserved.retryAfterMs / 1000) });
    }
    const guess = reserved.attempt;
    try {
      const user = await this.store.getUser(name);
      const ok = await verifyPassword(password, user?.passwordHash ?? (await unknownUserHash()));
      if (!user || !ok || user.disabled || !user.passwordHash) {
        guess.fail();
        await this.engine.ctx.audit.record(name, 'auth.fail', name, { ip, why: 'password', door: 'api' });
        throw new GatehouseError('UNAUTHENTICATED', 'wrong user name or password');
      }
      if (user.totpConfirmed) {
        if (!totp) {
          guess.cancel();
          throw new GatehouseError('MFA_REQUIRED', 'this account has TOTP: pass --totp CODE', { mfa: 'totp' });
        }
        try {
          await this.engine.mfa.verify(name, totp);
        } catch (e) {
          guess.fail();
          throw e;
        }
      }
      guess.succeed([`user:${name}`]);
      const issued = await this.issue(user.name, 'session', SESSION_TTL_MS);
      await this.engine.ctx.audit.record(name, 'auth.login', name, { ip, mfa: user.totpConfirmed });
      return { token: issued.token, expiresAt: issued.expiresAt as Date, user };
    } finally {
      guess.cancel(); // no-op once settled
    }
  }

  /**
   * Reserves a TOTP guess by a signed-in user (launch, tunnel start), keyed to that user, not
   * to the address: users behind one NAT or proxy do not lock each other out. Refused while
   * the user is locked, before the code is even looked at.
   */
  async guardTotp<T>(user: string, check: () => Promise<T>): Promise<T> {
    const reserved = await this.failures.attempt([`user:${user}`]);
    if (!reserved.ok) {
      await this.engine.ctx.audit.record(user, 'auth.locked', user, { door: 'api', method: 'totp' });
      throw new GatehouseError('LOCKED', `too many failed codes; try again in ${Math.ceil(reserved.retryAfterMs / 60_000)} min`, { retryAfterSeconds: Math.ceil(reserved.retryAfterMs / 1000) });
    }
    try {
      const r = await check();
      reserved.attempt.succeed();
      return r;
    } catch (e) {
      if (e instanceof GatehouseError && (e.code === 'MFA_INVALID' || e.code === 'MFA_REPLAY')) reserved.attempt.fail();
      else reserved.attempt.cancel();
      throw e;
    }
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
