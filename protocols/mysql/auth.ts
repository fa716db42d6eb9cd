/**
 * Who is connecting: the login names the user and the resource (`alice:prod-mysql`), the
 * password is a one-time launch ticket (carrying the MFA proof of `gatehouse launch --totp`)
 * or the user's gateway password (no MFA proof). Nothing reaches a target before this and
 * the decision pass.
 */
import type { Broker } from '../../src/broker/broker.js';
import type { VerifiedPasswords } from '../../src/broker/password-cache.js';
import type { MfaProof } from '../../src/workflow/decide.js';
import { looksLikeTicket } from '../../src/workflow/mfa.js';
import { refusals, type MysqlRefusal } from './errors.js';

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
