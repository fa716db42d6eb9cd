import { addMs } from '../core/clock.js';
import { GatehouseError } from '../core/errors.js';
import type { LaunchTicket } from '../core/model.js';
import type { WorkflowContext } from './context.js';
import type { Directory } from './directory.js';
import { hashSecretToken, matchTotpStep, newTicket, newTotpSecret, otpauthUri } from './mfa.js';

export type TicketRedemption =
  | { ok: true; ticket: LaunchTicket }
  | { ok: false; why: 'unknown' | 'used' | 'expired' }
  | { ok: false; why: 'other_user' | 'other_resource'; owner: string; boundTo: string };

const totpAad = (user: string): string => `user:${user}:totp`;

/** TOTP enrolment and checks, and one-time launch tickets. */
export class MfaService {
  constructor(
    private readonly ctx: WorkflowContext,
    private readonly dir: Directory,
  ) {}

  /** Starts (or restarts, while unconfirmed) enrolment; the secret is shown once. */
  async enroll(user: string): Promise<{ secret: string; uri: string }> {
    const u = await this.dir.requireUser(user);
    if (u.totpConfirmed) throw new GatehouseError('CONFLICT', `${user} already has a confirmed TOTP device`);
    const secret = newTotpSecret();
    await this.dir.updateUser(user, user, { totpSecretSealed: this.ctx.sealer.seal(secret, totpAad(user)), totpConfirmed: false }, 'mfa.enroll');
    return { secret, uri: otpauthUri(user, secret) };
  }

  /** Confirms enrolment with a first code (which is used up like any other). */
  async confirm(user: string, code: string): Promise<void> {
    await this.verify(user, code);
    await this.dir.updateUser(user, user, { totpConfirmed: true }, 'mfa.confirm');
  }

  /**
   * Checks a code: ±1 step, and each (user, step) only once — the store enforces that, so
   * two gateways cannot both accept a replay.
   */
  async verify(user: string, code: string): Promise<void> {
    const u = await this.dir.requireUser(user);
    if (!u.totpSecretSealed) throw new GatehouseError('MFA_REQUIRED', `${user} has no TOTP device; run gatehouse mfa enroll`);
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
  async issueTicket(user: string, resource: string, mfa: boolean): Promise<{ ticket: string; expiresAt: Date }> {
    await this.dir.requireResource(resource);
    const ticket = newTicket();
    const now = this.ctx.clock.now();
    const record: LaunchTicket = { hash: hashSecretToken(ticket), user, resource, mfa, createdAt: now, expiresAt: addMs(now, this.ctx.config.ticketTtlMs) };
    await this.ctx.store.insertTicket(record);
    await this.ctx.audit.record(user, 'ticket.issue', resource, { mfa, expiresAt: record.expiresAt.toISOString() });
    return { ticket, expiresAt: record.expiresAt };
  }

  /**
   * Redeems a ticket presented by `user` for `resource`. A ticket issued to someone else or
   * for another resource is refused and stays unused (its owner can still use it); the
   * store's conditional update makes the single use hold across gateways.
   */
  async redeemTicketFor(ticket: string, user: string, resource: string): Promise<TicketRedemption> {
    const hash = hashSecretToken(ticket);
    const now = this.ctx.clock.now();
    const t = await this.ctx.store.getTicket(hash);
    if (!t) return { ok: false, why: 'unknown' };
    if (t.usedAt) return { ok: false, why: 'used' };
    if (t.expiresAt.getTime() <= now.getTime()) return { ok: false, why: 'expired' };
    if (t.user !== user) return { ok: false, why: 'other_user', owner: t.user, boundTo: t.resource };
    if (t.resource !== resource) return { ok: false, why: 'other_resource', owner: t.user, boundTo: t.resource };
    const used = await this.ctx.store.consumeTicket(hash, now, { user, resource });
    if (!used) return { ok: false, why: 'used' };
    await this.ctx.audit.record(user, 'ticket.redeem', resource);
    return { ok: true, ticket: used };
  }

  /** The ticket's owner and resource, for a refusal that must not consume it. */
  async peekTicket(ticket: string): Promise<LaunchTicket | undefined> {
    return this.ctx.store.getTicket(hashSecretToken(ticket));
  }
}
