import { z } from 'zod';
import type { CredentialService } from '../credentials.js';
import type { ApiDeps } from '../deps.js';
import { parseBody, route, type Route } from '../http.js';

const TokenBody = z.strictObject({ label: z.string().min(1).max(100), ttlDays: z.number().int().min(1).max(3650).optional() });
const Key = z.strictObject({ publicKey: z.string().min(20).max(16_384) });
const PasswordBody = z.strictObject({ password: z.string().min(8).max(1024), oldPassword: z.string().min(1).max(1024).optional() });

/** A user's own credentials: sign-out, API tokens, SSH keys and the password. */
export function credentialRoutes(_d: ApiDeps, creds: CredentialService): Route[] {
  return [
    route('POST', '/api/v1/auth/logout', 'Revoke the current session token', async (c) => {
      if (c.tokenId) await creds.revokeToken(c.user.name, c.tokenId, 'signed_out');
      return { ok: true };
    }, {}),
    route('POST', '/api/v1/tokens', 'Create an API token for automation (expires after ttlDays, or the gateway\'s token lifetime)', async (c) => {
      const b = parseBody(TokenBody, c.body);
      return creds.createApiToken(c.user.name, b.label, b.ttlDays);
    }, {}),
    route('GET', '/api/v1/tokens', 'My sessions and API tokens (never the tokens themselves)', async (c) => ({ tokens: await creds.listTokens(c.user.name, c.tokenId) }), {}),
    route('DELETE', '/api/v1/tokens/:id', 'Revoke one of my sessions or API tokens', async (c) => {
      const id = c.params.id!;
      await creds.revokeToken(c.user.name, id);
      return { ok: true, current: id === c.tokenId };
    }, {}),
    route('GET', '/api/v1/keys', 'My SSH public keys', async (c) => keysReply(await creds.listKeys(c.user.name)), {}),
    route('POST', '/api/v1/keys', 'Add an SSH public key', async (c) => keysReply(await creds.addKey(c.user.name, parseBody(Key, c.body).publicKey)), {}),
    route('DELETE', '/api/v1/keys/:fingerprint', 'Remove one of my SSH public keys by its SHA256 fingerprint', async (c) => ({
      removed: await creds.removeKey(c.user.name, c.params.fingerprint!),
    }), {}),
    route('PUT', '/api/v1/users/:name/password', "Set a password: your own with the current one, anyone's as an administrator; other tokens of the user are revoked", async (c) => {
      const b = parseBody(PasswordBody, c.body);
      const r = await creds.changePassword(c.user, c.tokenId, c.params.name!, b.password, b.oldPassword);
      return { ok: true, ...r };
    }, {}),
  ];
}

/** `keys` stays the list of key lines older clients read; `entries` adds fingerprints. */
function keysReply(entries: Awaited<ReturnType<CredentialService['listKeys']>>): { keys: string[]; entries: typeof entries } {
  return { keys: entries.map((e) => e.publicKey), entries };
}
