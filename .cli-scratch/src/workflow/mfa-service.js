import { addMs } from '../core/clock.js';
import { GatehouseError } from '../core/errors.js';
import { hashSecretToken, matchTotpStep, newTicket, newTotpSecret, otpauthUri } from './mfa.js';
const totpAad = (user) => `user:${user}:totp`;
/** TOTP enrolment and checks, and one-time launch tickets. */
export class MfaService {
    ctx;
    dir;
    constructor(ctx, dir) {
        this.ctx = ctx;
        this.dir = dir;
    }
    /** Starts (or restarts, while unconfirmed) enrolment; the secret is shown once. */
    async enroll(user) {
        const u = await this.dir.requireUser(user);
        if (u.totpConfirmed)
            throw new GatehouseError('CONFLICT', `${user} already has a confirmed TOTP device`);
        const secret = newTotpSecret();
        await this.dir.updateUser(user, user, { totpSecretSealed: this.ctx.sealer.seal(secret, totpAad(user)), totpConfirmed: false }, 'mfa.enroll');
        return { secret, uri: otpauthUri(user, secret) };
    }
    /** Confirms enrolment with a first code (which is used up like any other). */
    async confirm(user, code) {
        await this.verify(user, code);
        await this.dir.updateUser(user, user, { totpConfirmed: true }, 'mfa.confirm');
    }
    /**
     * Checks a code: ±1 step, and each (user, step) only once — the store enforces that, so
     * two gateways cannot both accept a replay.
     */
    async verify(user, code) {
        const u = await this.dir.requireUser(user);
        if (!u.totpSecretSealed)
            throw new GatehouseError('MFA_REQUIRED', `${user} has no TOTP device; run gatehouse mfa enroll`);
        const now = this.ctx.clock.now();
        const step = matchTotpStep(this.ctx.sealer.unsealString(u.totpSecretSealed, totpAad(user)), code, now);
        if (step === undefined) {
            await this.ctx.audit.record(user, 'mfa.fail', user);
            throw new GatehouseError('MFA_INVALID', 'the TOTP code is not valid');
        }
        if (!(await this.ctx.store.useTotpStep(user, step, now))) {
            await this.ctx.audit.record(user, 'mfa.replay', user);
            throw new GatehouseError('MFA_REPLAY', 'that TOTP code was already used; wait for the next one');
        }
    }
    /** Issues a single-use ticket bound to user and resource; `mfa` records a TOTP check just made. */
    async issueTicket(user, resource, mfa) {
        await this.dir.requireResource(resource);
        const ticket = newTicket();
        const now = this.ctx.clock.now();
        const record = { hash: hashSecretToken(ticket), user, resource, mfa, createdAt: now, expiresAt: addMs(now, this.ctx.config.ticketTtlMs) };
        await this.ctx.store.insertTicket(record);
        await this.ctx.audit.record(user, 'ticket.issue', resource, { mfa, expiresAt: record.expiresAt.toISOString() });
        return { ticket, expiresAt: record.expiresAt };
    }
    /** Redeems a ticket for `resource`; undefined if unknown, used, expired or for another resource. */
    async redeemTicket(ticket, resource) {
        const t = await this.ctx.store.consumeTicket(hashSecretToken(ticket), this.ctx.clock.now());
        if (!t)
            return undefined;
        if (t.resource !== resource) {
            await this.ctx.audit.record(t.user, 'ticket.wrong_resource', resource, { boundTo: t.resource });
            return undefined;
        }
        await this.ctx.audit.record(t.user, 'ticket.redeem', resource);
        return t;
    }
}
//# sourceMappingURL=mfa-service.js.map