/**
 * The first factor of a gateway login, SSH side only: the door verifies a public key's
 * signature (ssh2 leaves that to the server) and hands the broker what the client sent —
 * a key, or a password that may be a launch ticket. The broker parses `USER:RESOURCE`,
 * checks keys, passwords and tickets, and keeps the lockout. MFA (TOTP) is a second step,
 * see session.ts.
 */
import ssh2, { type AuthContext, type PublicKeyAuthContext } from 'ssh2';
import type { GatewayPort, LoginResult, Refusal, RefusalCode } from '../../src/broker/port.js';
import { keyTypeOf } from './codec.js';

export type PrimaryResult =
  /** The `none` probe every client starts with: answer with the methods, it is no failure. */
  | { kind: 'probe' }
  /** A key query for a registered key: answer with PK_OK, the client will sign next. */
  | { kind: 'key_ok' }
  /** A key query for a key the broker does not know: a failed attempt, as in sshd. */
  | { kind: 'key_unknown' }
  /** A method the gateway does not offer as a first factor. */
  | { kind: 'unsupported' }
  /** The broker's answer to a signed key or a password. */
  | { kind: 'login'; result: LoginResult }
  /** Refused before any secret (a malformed login name, a locked user or address). */
  | { kind: 'refused'; refusal: Refusal };

export const PRIMARY_METHODS = ['publickey', 'password'] as const;

/**
 * A wrong password or key: SSH answers it with "try another method" until the attempts run
 * out, as sshd does. Any other refusal (locked, throttled, a malformed login name, a used
 * or expired ticket, a ticket for another protocol, user or resource, an empty password)
 * ends the connection at once with its reason and the command that fixes it.
 */
export const RETRYABLE: ReadonlySet<RefusalCode> = new Set<RefusalCode>(['bad_password', 'bad_key']);

export async function checkPrimary(port: GatewayPort, ctx: AuthContext, client: string): Promise<PrimaryResult> {
  const name = ctx.username;
  switch (ctx.method) {
    case 'none':
      return { kind: 'probe' };
    case 'publickey': {
      const blob = ctx.key.data;
      const keyType = keyTypeOf(blob);
      if (!keyType) return { kind: 'key_unknown' };
      const keyBase64 = blob.toString('base64');
      if (!ctx.signature || !ctx.blob) {
        // A key-only client never sends a password: tell it now why no key will do.
        const refusal = port.precheck(name, client);
        if (refusal) return { kind: 'refused', refusal };
        return (await port.knowsKey(name, client, keyType, keyBase64)) ? { kind: 'key_ok' } : { kind: 'key_unknown' };
      }
      const secret = { kind: 'publickey', keyType, keyBase64, signatureValid: signatureValid(ctx) } as const;
      return { kind: 'login', result: await port.login({ name, secret, client }) };
    }
    case 'password':
      return { kind: 'login', result: await port.login({ name, secret: { kind: 'password', value: ctx.password }, client }) };
    default:
      return { kind: 'unsupported' };
  }
}

/** Whether the client's signature over the session data verifies with the key it offered. */
function signatureValid(ctx: PublicKeyAuthContext): boolean {
  if (!ctx.signature || !ctx.blob) return false;
  const key = ssh2.utils.parseKey(ctx.key.data);
  if (key instanceof Error) return false;
  const parsed = Array.isArray(key) ? key[0] : key;
  return parsed ? parsed.verify(ctx.blob, ctx.signature, ctx.hashAlgo) === true : false;
}
