/**
 * The signed assertion an app can trust instead of a header anyone could send: a short-lived
 * ES256 JWT naming the Gatehouse user, the resource and the session, with an expiry no later
 * than the grant's. The public key is served as a JWKS on every app origin
 * (`/.gatehouse/jwks.json`). The key pair lives as long as the listener.
 */
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';

export interface AssertionClaims {
  user: string;
  resource: string;
  session: string;
  /** The app origin the assertion is for (`aud`). */
  audience: string;
  /** Issued at and expiry, in seconds since the epoch. */
  iat: number;
  exp: number;
}

const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

export class AssertionSigner {
  private readonly privateKey: KeyObject;
  readonly kid: string;
  readonly jwks: { keys: Array<Record<string, unknown>> };

  constructor(readonly issuer: string) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.privateKey = privateKey;
    const jwk = publicKey.export({ format: 'jwk' });
    this.kid = createHash('sha256').update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y })).digest('base64url').slice(0, 16);
    this.jwks = { keys: [{ ...jwk, kid: this.kid, alg: 'ES256', use: 'sig' }] };
  }

  /** A compact JWS (ES256) over the claims. */
  sign(c: AssertionClaims): string {
    const header = b64url(JSON.stringify({ alg: 'ES256', typ: 'JWT', kid: this.kid }));
    const payload = b64url(JSON.stringify({ iss: this.issuer, sub: c.user, aud: c.audience, resource: c.resource, sid: c.session, iat: c.iat, exp: c.exp }));
    const signature = sign('sha256', Buffer.from(`${header}.${payload}`), { key: this.privateKey, dsaEncoding: 'ieee-p1363' });
    return `${header}.${payload}.${b64url(signature)}`;
  }
}
