/**
 * Finding 10: users could not revoke their own credentials. No route removed an SSH key; API
 * tokens never expired by default and could be neither listed nor revoked; a password change
 * needed no old password and left every other session and token valid.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/core/config.js';
import { CliHarness } from '../unit/cli/harness.js';
import { call, listen, login, PW, startApi, within, type ApiHarness } from './harness-api-server.js';

const DAY = 86_400_000;

/** A syntactically real OpenSSH ed25519 public key line and its `ssh-keygen -l` fingerprint. */
function sshKey(comment: string): { line: string; fingerprint: string } {
  const part = (b: Buffer): Buffer => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
  const blob = Buffer.concat([part(Buffer.from('ssh-ed25519')), part(randomBytes(32))]);
  return {
    line: `ssh-ed25519 ${blob.toString('base64')} ${comment}`,
    fingerprint: `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`,
  };
}

let c: ApiHarness;
let cli: CliHarness;
afterEach(async () => {
  await c.close();
  cli?.cleanup();
});

/** `gatehouse ...` run in-process against the real API with `token`. */
function gatehouse(token: string, args: string[], stdin?: string) {
  cli ??= new CliHarness();
  return cli.run(args, { env: { GATEHOUSE_SERVER: c.base, GATEHOUSE_TOKEN: token }, ...(stdin !== undefined ? { stdin } : {}) });
}

describe('SSH keys', () => {
  beforeEach(async () => {
    c = await startApi();
  });

  it('a leaked SSH key is removed by its owner: the account no longer holds it and the removal is audited', async () => {
    const alice = await login(c, 'alice');
    const laptop = sshKey('alice@laptop');
    const stolen = sshKey('alice@stolen-laptop');
    for (const k of [laptop, stolen]) expect((await call(c, 'POST', '/api/v1/keys', { token: alice, body: { publicKey: k.line } })).status).toBe(200);
    const listed = await call(c, 'GET', '/api/v1/keys', { token: alice });
    expect(listed.json.entries.map((e: any) => e.fingerprint)).toEqual([laptop.fingerprint, stolen.fingerprint]);

    const removed = await call(c, 'DELETE', `/api/v1/keys/${encodeURIComponent(stolen.fingerprint)}`, { token: alice });
    expect(removed.status).toBe(200);
    expect(removed.json.removed).toMatchObject({ fingerprint: stolen.fingerprint, comment: 'alice@stolen-laptop' });
    expect((await c.h.store.getUser('alice'))!.sshKeys).toEqual([laptop.line]);
    expect((await c.h.store.listAudit({ action: 'key.remove' })).map((a) => [a.actor, a.data])).toEqual([['alice', { fingerprint: stolen.fingerprint }]]);
  });

  it("a key is removed only by its owner: another user's attempt is NOT_FOUND and changes nothing", async () => {
    const alice = await login(c, 'alice');
    const k = sshKey('alice@laptop');
    await call(c, 'POST', '/api/v1/keys', { token: alice, body: { publicKey: k.line } });
    const path = `/api/v1/keys/${encodeURIComponent(k.fingerprint)}`;
    const mallory = await call(c, 'DELETE', path, { token: await login(c, 'mallory') });
    expect(mallory.status).toBe(404);
    expect(mallory.json.error.code).toBe('NOT_FOUND');
    expect((await c.h.store.getUser('alice'))!.sshKeys).toEqual([k.line]);
    expect((await call(c, 'DELETE', path, { token: alice })).status).toBe(200);
    expect((await c.h.store.getUser('alice'))!.sshKeys).toEqual([]);
  });

  it('gatehouse key list shows fingerprints and gatehouse key remove FP takes the key away', async () => {
    const alice = await login(c, 'alice');
    const k = sshKey('alice@stolen-laptop');
    await call(c, 'POST', '/api/v1/keys', { token: alice, body: { publicKey: k.line } });
    const list = await gatehouse(alice, ['key', 'list']);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toContain(k.fingerprint);
    expect(list.stdout).toContain('alice@stolen-laptop');
    const rm = await gatehouse(alice, ['key', 'remove', k.fingerprint]);
    expect(rm, rm.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(rm.stdout).toBe(`Removed SSH key ${k.fingerprint} (alice@stolen-laptop).\n`);
    expect((await c.h.store.getUser('alice'))!.sshKeys).toEqual([]);
    const again = await gatehouse(alice, ['key', 'remove', k.fingerprint]);
    expect(again.code).toBe(5);
    expect(again.stderr).toMatch(/no SSH key with fingerprint/);
  });
});

describe('API tokens', () => {
  beforeEach(async () => {
    c = await startApi();
  });

  it('an API token created without a lifetime stops working after 90 days', async () => {
    const alice = await login(c, 'alice');
    const t = await call(c, 'POST', '/api/v1/tokens', { token: alice, body: { label: 'ci' } });
    expect(t.status).toBe(200);
    expect(new Date(t.json.expiresAt as string).getTime()).toBe(c.h.clock.now().getTime() + 90 * DAY);
    c.h.clock.advance(90 * DAY - 1000);
    expect((await call(c, 'GET', '/api/v1/me', { token: t.json.token as string })).status).toBe(200);
    c.h.clock.advance(1000);
    const expired = await call(c, 'GET', '/api/v1/me', { token: t.json.token as string });
    expect(expired.status).toBe(401);
    expect(expired.json.error.code).toBe('UNAUTHENTICATED');
  });

  it('a user lists their sessions and tokens (never the secrets) and revokes a leaked token, which then fails', async () => {
    const alice = await login(c, 'alice');
    const leaked = await call(c, 'POST', '/api/v1/tokens', { token: alice, body: { label: 'laptop script' } });
    const list = await call(c, 'GET', '/api/v1/tokens', { token: alice });
    expect(list.status).toBe(200);
    const tokens = list.json.tokens as any[];
    expect(tokens).toHaveLength(2);
    expect(tokens.find((t) => t.kind === 'session')).toMatchObject({ current: true });
    expect(tokens.find((t) => t.kind === 'api')).toMatchObject({ id: leaked.json.id, label: 'laptop script', current: false });
    expect(JSON.stringify(list.json)).not.toMatch(/gh[as]_|hash/);

    const revoked = await call(c, 'DELETE', `/api/v1/tokens/${leaked.json.id as string}`, { token: alice });
    expect(revoked.json).toEqual({ ok: true, current: false });
    expect((await call(c, 'GET', '/api/v1/me', { token: leaked.json.token as string })).status).toBe(401);
    expect((await call(c, 'GET', '/api/v1/me', { token: alice })).status).toBe(200);
    expect((await c.h.store.listAudit({ action: 'token.revoke' })).map((a) => [a.actor, a.subject])).toEqual([['alice', leaked.json.id]]);
  });

  it("nobody revokes or sees another user's token: it is NOT_FOUND and keeps working", async () => {
    const alice = await login(c, 'alice');
    const t = await call(c, 'POST', '/api/v1/tokens', { token: alice, body: { label: 'ci' } });
    const mallory = await login(c, 'mallory');
    const r = await call(c, 'DELETE', `/api/v1/tokens/${t.json.id as string}`, { token: mallory });
    expect(r.status).toBe(404);
    expect(r.json.error.code).toBe('NOT_FOUND');
    expect((await call(c, 'GET', '/api/v1/tokens', { token: mallory })).json.tokens.map((x: any) => x.id)).not.toContain(t.json.id);
    expect((await call(c, 'GET', '/api/v1/me', { token: t.json.token as string })).status).toBe(200);
  });

  it('gatehouse token list shows the tokens and gatehouse token revoke ID ends one', async () => {
    const alice = await login(c, 'alice');
    const leaked = await call(c, 'POST', '/api/v1/tokens', { token: alice, body: { label: 'laptop script' } });
    const list = await gatehouse(alice, ['token', 'list']);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toContain(leaked.json.id);
    expect(list.stdout).toContain('laptop script');
    const json = await gatehouse(alice, ['token', 'list', '--json']);
    expect(JSON.parse(json.stdout).map((t: any) => t.id)).toContain(leaked.json.id);
    const rm = await gatehouse(alice, ['token', 'revoke', leaked.json.id as string]);
    expect(rm, rm.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(rm.stdout).toBe(`Revoked token ${leaked.json.id as string} (laptop script).\n`);
    expect((await call(c, 'GET', '/api/v1/me', { token: leaked.json.token as string })).status).toBe(401);
  });
});

describe('the token lifetime an administrator sets', () => {
  it('bounds new API tokens: the default follows it and a longer lifetime is refused', async () => {
    c = await startApi({ deps: { apiTokenTtlMs: 30 * DAY } });
    const alice = await login(c, 'alice');
    const t = await call(c, 'POST', '/api/v1/tokens', { token: alice, body: { label: 'ci' } });
    expect(new Date(t.json.expiresAt as string).getTime()).toBe(c.h.clock.now().getTime() + 30 * DAY);
    const long = await call(c, 'POST', '/api/v1/tokens', { token: alice, body: { label: 'forever', ttlDays: 3650 } });
    expect(long.status).toBe(400);
    expect(long.json.error).toMatchObject({ code: 'VALIDATION', details: { field: 'ttlDays' } });
  });

  it('comes from the config file (apiTokenTtlDays, 90 by default) and is validated there', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-ttl-'));
    try {
      expect(loadConfig({ cwd: dir }).apiTokenTtlDays).toBe(90);
      writeFileSync(join(dir, 'good.yaml'), 'apiTokenTtlDays: 30\n');
      expect(loadConfig({ cwd: dir, configFile: 'good.yaml' }).apiTokenTtlDays).toBe(30);
      writeFileSync(join(dir, 'bad.yaml'), 'apiTokenTtlDays: 0\n');
      expect(() => loadConfig({ cwd: dir, configFile: 'bad.yaml' })).toThrow(/apiTokenTtlDays/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('password changes', () => {
  beforeEach(async () => {
    c = await startApi();
  });

  it('a stolen session cannot change the password without the current one, and guessing it locks the account', async () => {
    const alice = await login(c, 'alice');
    const none = await call(c, 'PUT', '/api/v1/users/alice/password', { token: alice, body: { password: 'attacker-pass' } });
    expect(none.status).toBe(400);
    expect(none.json.error).toMatchObject({ code: 'VALIDATION', details: { field: 'oldPassword' } });
    for (let i = 0; i < 3; i++) {
      const wrong = await call(c, 'PUT', '/api/v1/users/alice/password', { token: alice, body: { password: 'attacker-pass', oldPassword: `guess-${i}` } });
      expect(wrong.status).toBe(403);
      expect(wrong.json.error.code).toBe('FORBIDDEN');
    }
    const locked = await call(c, 'PUT', '/api/v1/users/alice/password', { token: alice, body: { password: 'attacker-pass', oldPassword: PW } });
    expect(locked.status).toBe(423);
    expect(locked.json.error.code).toBe('LOCKED');
    // The password never changed.
    c.h.clock.advance(16 * 60_000);
    expect(await login(c, 'alice', PW)).toMatch(/^ghs_/);
    expect((await c.h.store.listAudit({ action: 'user.set_password' }))).toEqual([]);
  });

  it('a password change signs out every other session and API token of the user, and closes their sockets', async () => {
    const here = await login(c, 'alice');
    const elsewhere = await login(c, 'alice');
    const api = await call(c, 'POST', '/api/v1/tokens', { token: here, body: { label: 'ci' } });
    const socket = await listen(c, elsewhere);
    const r = await call(c, 'PUT', '/api/v1/users/alice/password', { token: here, body: { password: 'alice-new-pass', oldPassword: PW } });
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ ok: true, revokedTokens: 2 });
    expect((await call(c, 'GET', '/api/v1/me', { token: elsewhere })).status).toBe(401);
    expect((await call(c, 'GET', '/api/v1/me', { token: api.json.token as string })).status).toBe(401);
    expect((await call(c, 'GET', '/api/v1/me', { token: here })).status).toBe(200);
    expect(await within(socket.closed)).toEqual({ code: 4001, reason: 'password changed' });
  });

  it("an administrator's reset needs no old password and signs the user out everywhere", async () => {
    const admin = await login(c, 'admin');
    const bob = await login(c, 'bob');
    const r = await call(c, 'PUT', '/api/v1/users/bob/password', { token: admin, body: { password: 'bob-new-pass' } });
    expect(r.status).toBe(200);
    expect((await call(c, 'GET', '/api/v1/me', { token: bob })).status).toBe(401);
    expect((await call(c, 'GET', '/api/v1/me', { token: admin })).status).toBe(200);
    expect(r.json).toEqual({ ok: true, revokedTokens: 1 });
  });

  it('gatehouse user passwd for your own account sends the current password with the new one', async () => {
    const alice = await login(c, 'alice');
    const r = await gatehouse(alice, ['user', 'passwd', 'alice', '--password-stdin'], `${PW}\nalice-new-pass\n`);
    expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toBe('Set the password of alice.\n');
    expect(await login(c, 'alice', 'alice-new-pass')).toMatch(/^ghs_/);
    const wrong = await gatehouse(alice, ['user', 'passwd', 'alice', '--password-stdin'], 'not-it\nother-new-pass\n');
    expect(wrong.code).toBe(4);
    expect(wrong.stderr).toBe('gatehouse: the current password is wrong\n');
  });
});
