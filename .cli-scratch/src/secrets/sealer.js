import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import { GatehouseError } from '../core/errors.js';
/** Envelope format version; bump when the layout or the cipher changes. */
const VERSION = 'gh1';
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
// Fixed HKDF salt: the master key is already uniformly random, the salt only separates this
// application's derivations from any other use of the same bytes.
const HKDF_SALT = Buffer.from('gatehouse/hkdf/v1');
const SEAL_KEY_LABEL = 'gatehouse/sealer/aes-256-gcm/v1';
/**
 * Why a sealed value could not be opened. The code is INTERNAL (the API must not tell a caller
 * more); `reason` is the stable machine detail for operators and tests. Messages never carry
 * plaintext, ciphertext or key material.
 */
export class SealError extends GatehouseError {
    reason;
    constructor(reason, message) {
        super('INTERNAL', message, { reason });
        this.name = 'SealError';
        this.reason = reason;
    }
}
/** First 8 hex chars of sha256(key): identifies a key without revealing anything useful about it. */
export function keyIdOf(key) {
    return createHash('sha256').update(key).digest('hex').slice(0, 8);
}
function decodePart(part, what, expectedLength) {
    const buf = Buffer.from(part, 'base64url');
    // Node's decoder skips junk characters and ignores trailing bits; demanding the canonical
    // encoding keeps one sealed value from having several spellings.
    if (buf.toString('base64url') !== part) {
        throw new SealError('malformed', `sealed value is malformed: ${what} is not canonical base64url`);
    }
    if (expectedLength !== undefined && buf.length !== expectedLength) {
        throw new SealError('malformed', `sealed value is malformed: ${what} must be ${expectedLength} bytes`);
    }
    return buf;
}
/**
 * Encrypts secrets at rest with AES-256-GCM under a key derived from the 32-byte master key.
 *
 * Envelope: `gh1.<keyId>.<iv>.<tag>.<ciphertext>` (base64url parts). The key id lets a wrong
 * master key fail with a clear message instead of a bare authentication error. The AAD names
 * the record the value belongs to (`resource:prod-pg:credentials`), so a sealed blob copied
 * onto another record does not open; the version and key id are authenticated too.
 */
export class Sealer {
    keyId;
    #master;
    #sealKey;
    constructor(masterKey) {
        if (!Buffer.isBuffer(masterKey) || masterKey.length !== KEY_BYTES) {
            throw new GatehouseError('CONFIG_INVALID', `master key must be exactly ${KEY_BYTES} bytes`);
        }
        this.#master = Buffer.from(masterKey);
        this.keyId = keyIdOf(this.#master);
        this.#sealKey = this.deriveKey(SEAL_KEY_LABEL);
    }
    /** A 32-byte subkey for one purpose (audit MAC key, token pepper...), via HKDF-SHA256. */
    deriveKey(label) {
        if (label.length === 0)
            throw new GatehouseError('INTERNAL', 'deriveKey needs a non-empty label');
        return Buffer.from(hkdfSync('sha256', this.#master, HKDF_SALT, Buffer.from(label, 'utf8'), KEY_BYTES));
    }
    seal(plaintext, aad = '') {
        const iv = randomBytes(IV_BYTES);
        const cipher = createCipheriv('aes-256-gcm', this.#sealKey, iv, { authTagLength: TAG_BYTES });
        cipher.setAAD(this.aadFor(aad));
        const data = typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext;
        const ciphertext = Buffer.concat([cipher.update(data), cipher.final()]);
        const tag = cipher.getAuthTag();
        return [VERSION, this.keyId, iv.toString('base64url'), tag.toString('base64url'), ciphertext.toString('base64url')].join('.');
    }
    unseal(envelope, aad = '') {
        if (typeof envelope !== 'string')
            throw new SealError('malformed', 'sealed value is malformed: not a string');
        const parts = envelope.split('.');
        if (parts.length !== 5)
            throw new SealError('malformed', 'sealed value is malformed: expected 5 dot-separated parts');
        const [version, keyId, ivPart, tagPart, ctPart] = parts;
        if (version !== VERSION) {
            throw new SealError('malformed', `sealed value has unsupported version '${version.slice(0, 8)}' (this gateway reads ${VERSION})`);
        }
        if (keyId !== this.keyId) {
            throw new SealError('wrong_key', `sealed value was sealed under master key ${keyId.slice(0, 8)}, but this gateway's master key is ${this.keyId}; ` +
                'check GATEHOUSE_MASTER_KEY or <data>/master.key');
        }
        const iv = decodePart(ivPart, 'iv', IV_BYTES);
        const tag = decodePart(tagPart, 'tag', TAG_BYTES);
        const ciphertext = decodePart(ctPart, 'ciphertext');
        const decipher = createDecipheriv('aes-256-gcm', this.#sealKey, iv, { authTagLength: TAG_BYTES });
        decipher.setAAD(this.aadFor(aad));
        decipher.setAuthTag(tag);
        try {
            return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
        }
        catch {
            throw new SealError('auth_failed', 'sealed value failed authentication: it was altered, or it belongs to a different record');
        }
    }
    unsealString(envelope, aad = '') {
        return this.unseal(envelope, aad).toString('utf8');
    }
    // The header is bound into the AAD so the version and key id cannot be swapped independently.
    aadFor(aad) {
        return Buffer.from(`${VERSION}.${this.keyId}\n${aad}`, 'utf8');
    }
    // Keeps key material out of console.log / util.inspect / JSON output.
    toJSON() {
        return { keyId: this.keyId };
    }
    [Symbol.for('nodejs.util.inspect.custom')]() {
        return `Sealer { keyId: '${this.keyId}' }`;
    }
}
//# sourceMappingURL=sealer.js.map