import { randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
const scrypt = (password, salt, keylen, opts) => new Promise((resolve, reject) => scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));
const N = 16384;
const R = 8;
const P = 1;
const KEYLEN = 32;
/** `scrypt$N$r$p$salt$hash`, base64url parts. */
export async function hashPassword(password) {
    const salt = randomBytes(16);
    const key = await scrypt(password, salt, KEYLEN, { N, r: R, p: P, maxmem: 64 * 1024 * 1024 });
    return `scrypt$${N}$${R}$${P}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}
export async function verifyPassword(password, stored) {
    // Hash even for unknown users so timing does not reveal which names exist.
    const parts = (stored ?? `scrypt$${N}$${R}$${P}$AAAAAAAAAAAAAAAAAAAAAA$${'A'.repeat(43)}`).split('$');
    if (parts.length !== 6 || parts[0] !== 'scrypt')
        return false;
    const [, n, r, p, salt, hash] = parts;
    const expected = Buffer.from(hash, 'base64url');
    const key = await scrypt(password, Buffer.from(salt, 'base64url'), expected.length, { N: Number(n), r: Number(r), p: Number(p), maxmem: 64 * 1024 * 1024 });
    return stored !== undefined && key.length === expected.length && timingSafeEqual(key, expected);
}
/** A readable one-time password for the first admin. */
export function generatePassword() {
    return randomBytes(18).toString('base64url');
}
//# sourceMappingURL=passwords.js.map