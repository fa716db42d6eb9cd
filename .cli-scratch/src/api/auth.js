import { randomBytes, randomUUID } from 'node:crypto';
import { addMs, HOUR, MINUTE } from '../core/clock.js';
import { GatehouseError } from '../core/errors.js';
import { hashSecretToken } from '../workflow/mfa.js';
import { FailureTracker } from './limits.js';
import { verifyPassword } from '../secrets/passwords.js';
export const SESSION_TTL_MS = 12 * HOUR;
/** Password + TOTP sign-in, session and API tokens, and the lockout on repeated failures. */
export class AuthService {
    engine;
    failures;
    constructor(engine, opts = {}) {
        this.engine = engine;
        this.failures = new FailureTracker(engine.ctx.clock, { maxFailures: opts.maxFailures ?? 5, windowMs: 15 * MINUTE, lockMs: opts.lockMs ?? 15 * MINUTE });
    }
    get store() {
        return this.engine.ctx.store;
    }
    async login(name, password, totp, ip) {
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
            if (!totp)
                throw new GatehouseError('MFA_REQUIRED', 'this account has TOTP: pass --totp CODE', { mfa: 'totp' });
            try {
                await this.engine.mfa.verify(name, totp);
            }
            catch (e) {
                this.fail(name, ip);
                throw e;
            }
        }
        this.failures.succeed(`user:${name}`);
        const issued = await this.issue(user.name, 'session', SESSION_TTL_MS);
        await this.engine.ctx.audit.record(name, 'auth.login', name, { ip, mfa: user.totpConfirmed });
        return { token: issued.token, expiresAt: issued.expiresAt, user };
    }
    /** Counts a failed TOTP check made outside login (launch, tunnel) towards the lockout. */
    fail(name, ip) {
        this.failures.fail(`user:${name}`);
        this.failures.fail(`ip:${ip}`);
    }
    async issue(user, kind, ttlMs, label) {
        const token = `${kind === 'session' ? 'ghs' : 'gha'}_${randomBytes(32).toString('base64url')}`;
        const now = this.engine.ctx.clock.now();
        const record = { id: randomUUID(), user, hash: hashSecretToken(token), kind, createdAt: now };
        if (ttlMs)
            record.expiresAt = addMs(now, ttlMs);
        if (label)
            record.label = label;
        await this.store.insertToken(record);
        return { id: record.id, token, ...(record.expiresAt ? { expiresAt: record.expiresAt } : {}) };
    }
    /** Resolves a bearer token to its user; every failure is the same UNAUTHENTICATED. */
    async authenticate(header) {
        const token = header?.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
        if (!token)
            throw new GatehouseError('UNAUTHENTICATED', 'sign in first: gatehouse login --user NAME');
        return this.authenticateToken(token);
    }
    async authenticateToken(token) {
        const record = await this.store.getTokenByHash(hashSecretToken(token));
        const now = this.engine.ctx.clock.now();
        if (!record || (record.expiresAt && record.expiresAt <= now)) {
            throw new GatehouseError('UNAUTHENTICATED', 'your session has expired or the token is invalid; sign in again');
        }
        const user = await this.store.getUser(record.user);
        if (!user || user.disabled)
            throw new GatehouseError('UNAUTHENTICATED', 'this account is disabled');
        return { user, tokenId: record.id };
    }
    async logout(tokenId) {
        await this.store.deleteToken(tokenId);
    }
}
//# sourceMappingURL=auth.js.map