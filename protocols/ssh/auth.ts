/**
 * First-factor checks for a gateway login: a registered public key (with its signature
 * verified here, since ssh2 leaves that to the server), the gateway password, or a one-time
 * launch ticket typed as the password. MFA (TOTP) is a second step, see session.ts.
 */
import ssh2, { type AuthContext } from 'ssh2';
import type { Broker } from '../../src/broker/broker.js';
import type { MfaProof } from '../../src/workflow/decide.js';
import { looksLikeTicket } from '../../src/workflow/mfa.js';
import type { GatewayLogin } from './codec.js';
import { keyTypeOf } from './codec.js';

export type PrimaryResult =
  /** A key query for a registered key: answer with PK_OK, the client will sign next. */
  | { kind: 'key_ok' }
  | { kind: 'ok'; method: 'publickey' | 'password' | 'ticket'; mfa: MfaProof }
  /** `counts`: a real failed attempt (not the initial `none` probe). */
  | { kind: 'fail'; counts: boolean };

export const PRIMARY_METHODS = ['publickey', 'password'] as const;

export async function checkPrimary(broker: Broker, login: GatewayLogin, ctx: AuthContext): Promise<PrimaryResult> {
  switch (ctx.method) {
    case 'none':
      return { kind: 'fail', counts: false };
    case 'publickey': {
      const blob = ctx.key.data;
      const type = keyTypeOf(blob);
      if (!type || !(await broker.hasSshKey(login.user, type, blob.toString('base64')))) return { kind: 'fail', counts: true };
      if (!ctx.signature || !ctx.blob) return { kind: 'key_ok' };
      const key = ssh2.utils.parseKey(blob);
      if (key instanceof Error) return { kind: 'fail', counts: true };
      const parsed = Array.isArray(key) ? key[0] : key;
      const valid = parsed ? parsed.verify(ctx.blob, ctx.signature, ctx.hashAlgo) : false;
      return valid === true ? { kind: 'ok', method: 'publickey', mfa: { kind: 'none' } } : { kind: 'fail', counts: true };
    }
    case 'password': {
      const pw = ctx.password;
      if (looksLikeTicket(pw)) {
        const t = await broker.redeemTicket(pw, login.resource);
        return t && t.user === login.user ? { kind: 'ok', method: 'ticket', mfa: t.mfa } : { kind: 'fail', counts: true };
      }
      return (await broker.checkPassword(login.user, pw)) ? { kind: 'ok', method: 'password', mfa: { kind: 'none' } } : { kind: 'fail', counts: true };
    }
    default:
      return { kind: 'fail', counts: true };
  }
}
