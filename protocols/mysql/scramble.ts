/**
 * The password maths of the MySQL auth plugins the gateway speaks: mysql_native_password and
 * caching_sha2_password (scramble tokens, and the RSA exchange of its full authentication),
 * in both roles: computing what a client sends, and opening what a client sent us.
 */
import { constants, createHash, privateDecrypt, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import { SCRAMBLE_LENGTH } from './codec.js';

export const NATIVE_PASSWORD = 'mysql_native_password';
export const CACHING_SHA2 = 'caching_sha2_password';
export const CLEAR_PASSWORD = 'mysql_clear_password';

/** caching_sha2_password AuthMoreData codes. */
export const Sha2 = {
  REQUEST_PUBLIC_KEY: 0x02,
  FAST_AUTH_SUCCESS: 0x03,
  PERFORM_FULL_AUTH: 0x04,
} as const;

/**
 * A nonce as MySQL servers make them: printable ASCII without NUL or '$', since the second
 * half travels NUL-terminated and some clients treat the bytes as a C string.
 */
export function makeScramble(): Buffer {
  const raw = randomBytes(SCRAMBLE_LENGTH);
  for (let i = 0; i < raw.length; i++) {
    let c = (raw[i]! % 94) + 33;
    if (c === 0x24) c = 0x25;
    raw[i] = c;
  }
  return raw;
}

function hash(alg: 'sha1' | 'sha256', ...parts: Buffer[]): Buffer {
  const h = createHash(alg);
  for (const p of parts) h.update(p);
  return h.digest();
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i % b.length]!;
  return out;
}

/** mysql_native_password: SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw))); empty for an empty password. */
export function nativePasswordToken(password: string, scramble: Buffer): Buffer {
  if (!password) return Buffer.alloc(0);
  const stage1 = hash('sha1', Buffer.from(password, 'utf8'));
  const stage2 = hash('sha1', stage1);
  return xor(stage1, hash('sha1', scramble.subarray(0, SCRAMBLE_LENGTH), stage2));
}

/** caching_sha2_password fast path: SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce). */
export function cachingSha2Token(password: string, scramble: Buffer): Buffer {
  if (!password) return Buffer.alloc(0);
  const stage1 = hash('sha256', Buffer.from(password, 'utf8'));
  const stage2 = hash('sha256', stage1);
  return xor(stage1, hash('sha256', stage2, scramble.subarray(0, SCRAMBLE_LENGTH)));
}

/** Full authentication over TLS (and mysql_clear_password): the password, NUL-terminated. */
export function clearPasswordPayload(password: string): Buffer {
  return Buffer.from(`${password}\0`, 'utf8');
}

/**
 * Full authentication without TLS: (password + NUL) XOR nonce, RSA-OAEP (SHA-1) encrypted
 * with the server's public key, as MySQL 8.0.5+ servers expect.
 */
export function rsaEncryptPassword(password: string, scramble: Buffer, publicKeyPem: string | KeyObject): Buffer {
  const plain = xor(clearPasswordPayload(password), scramble.subarray(0, SCRAMBLE_LENGTH));
  return publicEncrypt({ key: publicKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, plain);
}

/** The server side of `rsaEncryptPassword`; undefined when the blob does not decrypt. */
export function rsaDecryptPassword(blob: Buffer, scramble: Buffer, privateKey: KeyObject): string | undefined {
  let plain: Buffer;
  try {
    plain = privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, blob);
  } catch {
    return undefined;
  }
  return clearPasswordFrom(xor(plain, scramble.subarray(0, SCRAMBLE_LENGTH)));
}

/** A cleartext password packet: everything up to the first NUL (clients send it terminated). */
export function clearPasswordFrom(data: Buffer): string {
  const end = data.indexOf(0);
  return data.subarray(0, end < 0 ? data.length : end).toString('utf8');
}
