import { describe, expect, it } from 'vitest';
import { Broker } from '../../../src/broker/broker.js';
import { parseLoginName, sourceOf } from '../../../src/broker/login.js';
import { LOGIN_REFUSAL_CODES } from '../../../src/broker/refusals.js';
import { StoreError } from '../../../src/core/errors.js';
import { FailureTracker } from '../../../src/core/limits.js';
import { silentLogger } from '../../../src/core/log.js';
import { hashPassword } from '../../../src/secrets/passwords.js';
import { hashSecretToken } from '../../../src/workflow/mfa.js';
import { makeHarness, seed, type Harness } from '../workflow/harness.js';

const PW = 'right-password';
const CLIENT = '192.0.2.10:40000';

async function setup(opts: { throttle?: { rate: number; burst: number }; maxFailures?: number } = {}): Promise<{ h: Harness; broker: Broker }> {
  const h = makeHarness();
  await seed(h, {});
  await h.engine.directory.addResource('admin', {
    name: 'prod-web', type: 'machine', protocol: 'ssh', host: '127.0.0.1', port: 22, owner: 'bob', access: [{ team: 'eng' }],
  });
  const hash = await hashPassword(PW);
  for (const u of await h.store.listUsers()) await h.store.putUser({ ...u, passwordHash: hash });
  const failures = new FailureTracker(h.clock, { maxFailures: opts.maxFailures ?? 5, windowMs: 15 * 60_000, lockMs: 15 * 60_000 });
  const broker = new Broker({ engine: h.engine, log: silentLogger, node: 'test', failures, login: { passwordCacheMs: 0, ...(opts.throttle ? { throttle: opts.throttle } : {}) } });
  return { h, broker };
}

const pw = (value: string) => ({ kind: 'password' as const, value });

describe('the one login path', () => {
  it('parses USER:RESOURCE and refuses anything else', () => {
    expect(parseLoginName('alice:prod-pg')).toEqual({ user: 'alice', resource: 'prod-pg' });
    for (const bad of ['alice', ':prod-pg', 'alice:', 'alice:prod:pg', 'al ice:prod-pg', 'alice:prod-pg\n', 'a'.repeat(64) + ':x', 'alice:../etc']) {
      expect(parseLoginName(bad), bad).toBeUndefined();
    }
    expect(sourceOf('10.1.2.3:5432')).toBe('10.1.2.3');
    expect(sourceOf('[::1]:5432')).toBe('::1');
  });

  it('signs in with the gateway password and with a ticket, telling which', async () => {
    const { h, broker } = await setup();
    const port = broker.portFor({ protocol: 'postgres', loginExample: 'psql' });
    expect(await port.login({ name: 'alice:prod-pg', secret: pw(PW), client: CLIENT })).toEqual({ ok: true, user: 'alice', resource: 'prod-pg', mfa: { kind: 'none' }, via: 'password' });
    const { ticket } = await h.engine.mfa.issueTicket('alice', 'prod-pg', true);
    const t = await port.login({ name: 'alice:prod-pg', secret: pw(ticket), client: CLIENT });
    expect(t).toMatchObject({ ok: true, via: 'ticket', mfa: { kind: 'verified' } });
    expect(await port.login({ name: 'alice:prod-pg', secret: pw(ticket), client: CLIENT })).toMatchObject({ ok: false, code: 'bad_ticket' });
  });

  it('refuses each way with its own code, audited with the door and the client address', async () => {
    const { h, broker } = await setup({ maxFailures: 100 });
    const port = broker.portFor({ protocol: 'postgres', loginExample: 'psql "user=alice:prod-pg"' });
    const seen = new Set<string>();
    const expectCode = async (code: string, name: string, secret: ReturnType<typeof pw>) => {
      const r = await port.login({ name, secret, client: CLIENT });
      expect(r, `${name} → ${code}`).toMatchObject({ ok: false, code });
      if (!r.ok) expect(r.refusal.message.length).toBeGreaterThan(10);
      seen.add(code);
      return r;
    };
    const bad = await expectCode('bad_login_name', 'alice', pw(PW));
    expect(!bad.ok && bad.refusal.hint).toBe('psql "user=alice:prod-pg"');
    await expectCode('bad_password', 'alice:prod-pg', pw('wrong'));
    await expectCode('bad_password', 'nobody:prod-pg', pw(PW));
    await expectCode('no_secret', 'alice:prod-pg', pw(''));
    await expectCode('bad_ticket', 'alice:prod-pg', pw(`ght_${'x'.repeat(43)}`));
    const forAlice = (await h.engine.mfa.issueTicket('alice', 'prod-pg', false)).ticket;
    await expectCode('ticket_other_user', 'carol:prod-pg', pw(forAlice));
    const forWeb = (await h.engine.mfa.issueTicket('alice', 'prod-web', false)).ticket;
    await expectCode('ticket_other_resource', 'alice:prod-pg', pw(forWeb));
    // A ticket for the SSH resource typed into the PostgreSQL door: refused, not used up.
    const r = await expectCode('wrong_protocol', 'alice:prod-web', pw(forWeb));
    expect(!r.ok && r.refusal.message).toBe('prod-web is a ssh resource and cannot be reached through the postgres gateway.');
    expect((await h.store.getTicket(hashSecretToken(forWeb)))?.usedAt).toBeUndefined();
    expect((await h.store.getTicket(hashSecretToken(forAlice)))?.usedAt).toBeUndefined();
    // Both misdirected tickets still work for their owner, where they belong.
    expect(await broker.portFor({ protocol: 'ssh', loginExample: '' }).login({ name: 'alice:prod-web', secret: pw(forWeb), client: CLIENT })).toMatchObject({ ok: true, via: 'ticket' });
    expect(await port.login({ name: 'alice:prod-pg', secret: pw(forAlice), client: CLIENT })).toMatchObject({ ok: true, via: 'ticket' });

    const audit = await h.store.listAudit({ action: 'login.refuse' });
    expect(audit.length).toBe(8);
    for (const a of audit) expect(a.data).toMatchObject({ door: 'postgres', client: CLIENT });
    expect(audit.map((a) => a.data?.code)).toContain('ticket_other_user');
    // The rest of the catalogue's login codes are covered below (locked, throttled) and by the SSH key tests.
    expect([...seen].every((c) => (LOGIN_REFUSAL_CODES as readonly string[]).includes(c) || c === 'wrong_protocol')).toBe(true);
  });

  it('a lockout earned on one door holds on every door, for the user and for the source address', async () => {
    const { h, broker } = await setup();
    const pg = broker.portFor({ protocol: 'postgres', loginExample: '' });
    const ssh = broker.portFor({ protocol: 'ssh', loginExample: '' });
    for (let i = 0; i < 5; i++) await pg.login({ name: 'alice:prod-pg', secret: pw('wrong'), client: CLIENT });
    expect(await ssh.login({ name: 'alice:prod-web', secret: pw(PW), client: '198.51.100.7:1' })).toMatchObject({ ok: false, code: 'locked' });
    // The source that guessed is locked for other users too.
    expect(await ssh.login({ name: 'carol:prod-web', secret: pw(PW), client: '192.0.2.10:40001' })).toMatchObject({ ok: false, code: 'locked' });
    expect(await ssh.knowsKey('carol:prod-web', '192.0.2.10:40001', 'ssh-ed25519', 'AAAA')).toBe(false);
    // Another source, another user: unaffected.
    expect(await ssh.login({ name: 'carol:prod-web', secret: pw(PW), client: '198.51.100.7:2' })).toMatchObject({ ok: true });
    h.clock.advance(15 * 60_000);
    expect(await ssh.login({ name: 'alice:prod-web', secret: pw(PW), client: CLIENT })).toMatchObject({ ok: true });
  });

  it('throttles a source that tries too fast, before any password is checked', async () => {
    const { h, broker } = await setup({ throttle: { rate: 1, burst: 3 } });
    const port = broker.portFor({ protocol: 'mysql', loginExample: '' });
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await port.login({ name: `alice:prod-pg`, secret: pw(PW), client: CLIENT }));
    expect(results.map((r) => (r.ok ? 'ok' : r.code))).toEqual(['ok', 'ok', 'ok', 'throttled']);
    h.clock.advance(1_000);
    expect(await port.login({ name: 'alice:prod-pg', secret: pw(PW), client: CLIENT })).toMatchObject({ ok: true });
  });

  it('a store that cannot be read refuses the sign-in as gateway_unavailable, failing closed', async () => {
    const { h, broker } = await setup();
    const port = broker.portFor({ protocol: 'postgres', loginExample: '' });
    h.store.getUser = () => Promise.reject(new StoreError('connection refused'));
    h.store.getTicket = () => Promise.reject(new StoreError('connection refused'));
    expect(await port.login({ name: 'alice:prod-pg', secret: pw(PW), client: CLIENT })).toMatchObject({ ok: false, code: 'gateway_unavailable', refusal: { code: 'gateway_unavailable' } });
    expect(await port.login({ name: 'alice:prod-pg', secret: pw(`ght_${'q'.repeat(43)}`), client: CLIENT })).toMatchObject({ ok: false, code: 'gateway_unavailable' });
  });

  it('an SSH key signs in only when registered and its signature checked; a probe counts nothing', async () => {
    const { h, broker } = await setup();
    const alice = (await h.store.getUser('alice'))!;
    await h.store.putUser({ ...alice, sshKeys: ['ssh-ed25519 AAAAKEY alice@laptop'] });
    const ssh = broker.portFor({ protocol: 'ssh', loginExample: '' });
    expect(await ssh.knowsKey('alice:prod-web', CLIENT, 'ssh-ed25519', 'AAAAKEY')).toBe(true);
    expect(await ssh.knowsKey('alice:prod-web', CLIENT, 'ssh-ed25519', 'OTHER')).toBe(false);
    const key = (keyBase64: string, signatureValid: boolean) => ({ kind: 'publickey' as const, keyType: 'ssh-ed25519', keyBase64, signatureValid });
    expect(await ssh.login({ name: 'alice:prod-web', secret: key('AAAAKEY', false), client: CLIENT })).toMatchObject({ ok: false, code: 'bad_key' });
    expect(await ssh.login({ name: 'alice:prod-web', secret: key('OTHER', true), client: CLIENT })).toMatchObject({ ok: false, code: 'bad_key' });
    expect(await ssh.login({ name: 'alice:prod-web', secret: key('AAAAKEY', true), client: CLIENT })).toEqual({ ok: true, user: 'alice', resource: 'prod-web', mfa: { kind: 'none' }, via: 'publickey' });
  });
});
