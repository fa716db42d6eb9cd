import type { Broker } from '../../src/broker/broker.js';
import type { VerifiedPasswords } from '../../src/broker/password-cache.js';
import type { MfaProof } from '../../src/workflow/decide.js';
import { looksLikeTicket } from '../../src/workflow/mfa.js';
import { passwordError, ticketError } from './errors.js';

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
