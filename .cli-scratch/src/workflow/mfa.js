import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { authenticator } from 'otplib';
/**
 * TOTP (RFC 6238, 30 s steps, 6 digits, SHA-1 as authenticator apps expect) and one-time
 * launch tickets. The store enforces single use of a (user, step) pair and of a ticket;
 * these functions are pure apart from randomness.
 */
export const TOTP_STEP_MS = 30_000;
const ISSUER = 'Gatehouse';
export function newTotpSecret() {
    return authenticator.generateSecret(20);
}
export function otpauthUri(user, secret) {
    return authenticator.keyuri(user, ISSUER, secret);
}
export function totpCode(secret, at) {
    return authenticator.clone({ epoch: at.getTime() }).generate(secret);
}
/**
 * The step a code belongs to, accepting the previous, current and next step (clock skew),
 * or undefined if it matches none. Comparison is constant-time.
 */
export function matchTotpStep(secret, code, at) {
    const clean = code.replace(/\s+/g, '');
    if (!/^\d{6}$/.test(clean))
        return undefined;
    const current = Math.floor(at.getTime() / TOTP_STEP_MS);
    let found;
    for (const step of [current - 1, current, current + 1]) {
        const expected = totpCode(secret, new Date(step * TOTP_STEP_MS));
        if (timingSafeEqual(Buffer.from(expected), Buffer.from(clean)) && found === undefined)
            found = step;
    }
    return found;
}
/** Launch tickets look like `ght_<43 chars>` so they fit any password field. */
export function newTicket() {
    return `ght_${randomBytes(32).toString('base64url')}`;
}
export function looksLikeTicket(s) {
    return /^ght_[A-Za-z0-9_-]{43}$/.test(s);
}
export function hashSecretToken(token) {
    return createHash('sha256').update(token).digest('hex');
}
//# sourceMappingURL=mfa.js.map