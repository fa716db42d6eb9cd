/**
 * The auth maths of the MySQL gateway against mysql2's own client implementation, since no
 * MySQL 8 server is available here: whatever mysql2 would send a caching_sha2_password
 * server, the gateway computes the same upstream, and opens what mysql2 sends it.
 */
import { generateKeyPairSync } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import fc from 'fast-check';
import { authPlugins } from 'mysql2';
import { describe, expect, it } from 'vitest';
import {
  cachingSha2Token,
  clearPasswordFrom,
  makeScramble,
  nativePasswordToken,
  rsaDecryptPassword,
  rsaEncryptPassword,
} from '../../protocols/mysql/scramble.js';

const require = createRequire(import.meta.url);
// mysql2 does not export its native-password maths; load the file it uses itself.
const auth41 = require(join(dirname(require.resolve('mysql2')), 'lib/auth_41.js')) as {
  calculateToken(password: string, scramble1: Buffer, scramble2: Buffer): Buffer;
};
const mysql2Sha2 = authPlugins.caching_sha2_password as typeof authPlugins.caching_sha2_password & { calculateToken(pw: string, scramble: Buffer): Buffer };

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();

const scrambleArb = fc.uint8Array({ minLength: 20, maxLength: 20 }).map((a) => Buffer.from(a.map((b) => (b === 0 ? 1 : b))));
const passwordArb = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }).filter((s) => !s.includes('\0'));

/** Drives mysql2's caching_sha2_password client plugin the way its handshake does. */
function mysql2Plugin(password: string, ssl: boolean) {
  const connection = { config: { password, ssl: ssl ? {} : undefined } };
  return mysql2Sha2({ serverPublicKey: publicPem })({ connection, command: 'handshake' } as never) as (data: Buffer) => Buffer | null;
}

describe('MySQL auth maths', () => {
  it('fixed vectors (computed with mysql2 3.24) for both scramble plugins', () => {
    const scramble = Buffer.from('01234567890123456789');
    expect(nativePasswordToken('secret', scramble).toString('hex')).toBe('7abe1a8776b59e931059451f81e596a60dbbf7a8');
    expect(cachingSha2Token('secret', scramble).toString('hex')).toBe('1a2da2573c2faa367e2afddb54cdfd11a95ed22eef0167151196a6fc8e3d3813');
    // An empty password is an empty answer, for both.
    expect(nativePasswordToken('', scramble).length).toBe(0);
    expect(cachingSha2Token('', scramble).length).toBe(0);
  });

  it('mysql_native_password tokens equal mysql2', () => {
    fc.assert(
      fc.property(passwordArb, scrambleArb, (pw, s) => {
        expect(nativePasswordToken(pw, s).equals(auth41.calculateToken(pw, s.subarray(0, 8), s.subarray(8)))).toBe(true);
      }),
    );
  });

  it('caching_sha2_password fast-path tokens equal mysql2, and what its plugin sends first', () => {
    fc.assert(
      fc.property(passwordArb, scrambleArb, (pw, s) => {
        const ours = cachingSha2Token(pw, s);
        expect(ours.length).toBe(32);
        expect(ours.equals(mysql2Sha2.calculateToken(pw, s))).toBe(true);
        expect(ours.equals(mysql2Plugin(pw, false)(s)!)).toBe(true);
      }),
      { numRuns: 50 },
    );
  });

  it("full authentication: the gateway opens mysql2's RSA blob and its cleartext-over-TLS answer", () => {
    fc.assert(
      fc.property(passwordArb, scrambleArb, (pw, s) => {
        const plain = mysql2Plugin(pw, false);
        plain(s);
        const blob = plain(Buffer.from([0x04]))!;
        expect(blob.length).toBe(256);
        expect(rsaDecryptPassword(blob, s, privateKey)).toBe(pw);

        const tls = mysql2Plugin(pw, true);
        tls(s);
        expect(clearPasswordFrom(tls(Buffer.from([0x04]))!)).toBe(pw);
      }),
      { numRuns: 20 },
    );
  });

  it('what the gateway RSA-encrypts upstream opens to the password with the scramble, and not without it', () => {
    fc.assert(
      fc.property(passwordArb, scrambleArb, scrambleArb, (pw, s, other) => {
        const blob = rsaEncryptPassword(pw, s, publicPem);
        expect(rsaDecryptPassword(blob, s, privateKey)).toBe(pw);
        if (!other.equals(s)) expect(rsaDecryptPassword(blob, other, privateKey)).not.toBe(pw);
      }),
      { numRuns: 20 },
    );
    expect(rsaDecryptPassword(Buffer.alloc(256, 7), makeScramble(), privateKey)).toBeUndefined();
  });

  it('scrambles are 20 printable bytes, never NUL or $', () => {
    for (let i = 0; i < 200; i++) {
      const s = makeScramble();
      expect(s.length).toBe(20);
      for (const b of s) {
        expect(b).toBeGreaterThanOrEqual(33);
        expect(b).toBeLessThanOrEqual(126);
        expect(b).not.toBe(0x24);
      }
    }
  });
});
