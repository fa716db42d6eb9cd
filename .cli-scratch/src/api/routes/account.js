import { z } from 'zod';
import { GatehouseError } from '../../core/errors.js';
import { parseBody, route } from '../http.js';
import { userView } from '../views.js';
const Login = z.strictObject({ user: z.string().min(1).max(64), password: z.string().min(1).max(1024), totp: z.string().max(16).optional() });
const TokenBody = z.strictObject({ label: z.string().min(1).max(100), ttlDays: z.number().int().min(1).max(3650).optional() });
const Code = z.strictObject({ code: z.string().min(1).max(16) });
const Key = z.strictObject({ publicKey: z.string().min(20).max(16_384) });
const SSH_KEY_RE = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/=]+( .*)?$/;
/** Sign-in, tokens, my account, MFA enrolment and my SSH keys. */
export function accountRoutes(d) {
    const { engine, auth } = d;
    return [
        route('POST', '/api/v1/auth/login', 'Sign in with password (+ TOTP once enrolled)', async (c) => {
            const b = parseBody(Login, c.body);
            const r = await auth.login(b.user, b.password, b.totp, c.ip);
            return { token: r.token, expiresAt: r.expiresAt, user: await me(d, r.user.name) };
        }, { public: true }),
        route('POST', '/api/v1/auth/logout', 'Revoke the current session token', async (c) => {
            if (c.tokenId)
                await auth.logout(c.tokenId);
            return { ok: true };
        }, {}),
        route('GET', '/api/v1/me', 'Who am I', async (c) => me(d, c.user.name), {}),
        route('POST', '/api/v1/tokens', 'Create an API token for automation', async (c) => {
            const b = parseBody(TokenBody, c.body);
            const t = await auth.issue(c.user.name, 'api', b.ttlDays ? b.ttlDays * 86_400_000 : undefined, b.label);
            await engine.ctx.audit.record(c.user.name, 'token.create', t.id, { label: b.label });
            return t;
        }, {}),
        route('POST', '/api/v1/mfa/enroll', 'Start TOTP enrolment (secret + otpauth URI)', async (c) => engine.mfa.enroll(c.user.name), {}),
        route('POST', '/api/v1/mfa/verify', 'Confirm TOTP enrolment with a code', async (c) => {
            const b = parseBody(Code, c.body);
            const locked = auth.failures.lockedFor(`user:${c.user.name}`);
            if (locked > 0)
                throw new GatehouseError('LOCKED', `too many failed codes; try again in ${Math.ceil(locked / 60_000)} min`);
            try {
                if (c.user.totpConfirmed)
                    await engine.mfa.verify(c.user.name, b.code);
                else
                    await engine.mfa.confirm(c.user.name, b.code);
            }
            catch (e) {
                auth.fail(c.user.name, c.ip);
                throw e;
            }
            return { ok: true };
        }, {}),
        route('GET', '/api/v1/keys', 'My SSH public keys', async (c) => ({ keys: c.user.sshKeys }), {}),
        route('POST', '/api/v1/keys', 'Add an SSH public key', async (c) => {
            const b = parseBody(Key, c.body);
            const key = b.publicKey.trim();
            if (!SSH_KEY_RE.test(key))
                throw new GatehouseError('VALIDATION', 'publicKey: not an OpenSSH public key line', { field: 'publicKey' });
            const keys = c.user.sshKeys.includes(key) ? c.user.sshKeys : [...c.user.sshKeys, key];
            await engine.directory.updateUser(c.user.name, c.user.name, { sshKeys: keys }, 'key.add');
            return { keys };
        }, {}),
    ];
}
async function me(d, name) {
    const u = await d.engine.directory.requireUser(name);
    return { ...userView(u), canConfigureWorkflow: await d.engine.directory.canConfigureWorkflow(name) };
}
//# sourceMappingURL=account.js.map