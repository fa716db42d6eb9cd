/**
 * Findings 1–4, 11 and 14 of the adversarial review: guessing passwords, TOTP codes and
 * tickets, from one client or many at once, through the API and through the doors' one
 * login path (the broker's port, as every door uses it).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuthService } from '../../src/api/auth.js';
import { createApiServer, type ApiServer } from '../../src/api/server.js';
import { Broker } from '../../src/broker/broker.js';
import type { GatewayPort } from '../../src/broker/port.js';
import { silentLogger } from '../../src/core/log.js';
import { hashPassword } from '../../src/secrets/passwords.js';
import { hashSecretToken } from '../../src/workflow/mfa.js';
import { enrolTotp, makeHarness, seed, type Harness } from '../unit/workflow/harness.js';

const PW = 'password-123';

interface World {
  h: Harness;
  auth: AuthService;
  broker: Broker;
  api: ApiServer;
  base: string;
  ssh: GatewayPort;
  pg: GatewayPort;
}

async function post(w: World, path: string, body: unknown, token?: string): Promise<{ status: number; json: any }> {
  const res = await fetch(w.base + path, {
    method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

describe('guessing secrets', () => {
  let w: World;
  beforeEach(async () => {
    const h = makeHarness();
    await seed(h, {});
    await h.engine.directory.addResource('admin', {
      name: 'prod-web', type: 'machine', protocol: 'ssh', host: '127.0.0.1', port: 22, owner: 'bob', access: [{ team: 'eng' }], settings: {},
    });
    const hash = await hashPassword(PW);
    for (const u of await h.store.listUsers()) await h.store.putUser({ ...u, passwordHash: hash });
    const auth = new AuthService(h.engine);
    // As in production: the doors and the API share one failure tracker.
    const broker = new Broker({ engine: h.engine, log: silentLogger, node: 't', failures: auth.failures, login: { passwordCacheMs: 0 } });
    const api = createApiServer({ engine: h.engine, auth, log: silentLogger, listeners: {}, sessions: { kill: async () => false } });
    const a = await api.listen('127.0.0.1', 0);
    w = {
      h, auth, broker, api, base: `http://127.0.0.1:${a.port}`,
      ssh: broker.portFor({ protocol: 'ssh', loginExample: '' }), pg: broker.portFor({ protocol: 'postgres', loginExample: '' }),
    };
  });
  afterEach(async () => {
    await w.api.close();
    await w.h.store.close();
  });

  async function mfaWeb(): Promise<() => string> {
    await w.h.engine.directory.setWorkflow('admin', 'prod-web', { limitAccessTime: { timezone: 'UTC', schedule: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], start: '00:00', end: '24:00' }], maxDurationMinutes: 60 }, mfa: true });
    const code = await enrolTotp(w.h, 'alice');
    w.h.clock.advance(30_000);
    return () => code();
  }

  it('(1) wrong TOTP codes at the SSH door count towards the lockout: after five, the right code is refused', async () => {
    const code = await mfaWeb();
    const open = (c: string) => w.ssh.open({ user: 'alice', resource: 'prod-web', client: '203.0.113.5:2000', mfa: { kind: 'totp', code: c } });
    for (let i = 0; i < 5; i++) expect(await open('000000')).toMatchObject({ ok: false, refusal: { code: 'mfa_invalid' } });
    expect(await open(code())).toMatchObject({ ok: false, refusal: { code: 'locked' } });
    expect(await w.h.store.listAudit({ action: 'login.refuse' })).toEqual(expect.arrayContaining([expect.objectContaining({ data: expect.objectContaining({ code: 'locked', door: 'ssh', method: 'totp' }) })]));
  });

  it('(1) concurrent TOTP guesses at the SSH door are bounded by the lockout, whatever the parallelism', async () => {
    await mfaWeb();
    const guesses = await Promise.all(
      Array.from({ length: 30 }, (_, i) => w.ssh.open({ user: 'alice', resource: 'prod-web', client: `203.0.113.${i}:2000`, mfa: { kind: 'totp', code: String(100000 + i) } })),
    );
    const checked = guesses.filter((g) => !g.ok && g.refusal.code === 'mfa_invalid');
    expect(checked.length).toBeLessThanOrEqual(5);
    expect(guesses.filter((g) => !g.ok && g.refusal.code === 'locked').length).toBeGreaterThanOrEqual(25);
  });

  it('(1) a user locked on the API is refused at the SSH door with a registered key and a current code', async () => {
    const code = await mfaWeb();
    const alice = (await w.h.store.getUser('alice'))!;
    await w.h.store.putUser({ ...alice, sshKeys: ['ssh-ed25519 AAAAKEY alice'] });
    for (let i = 0; i < 5; i++) await post(w, '/api/v1/auth/login', { user: 'alice', password: 'wrong' });
    const key = await w.ssh.login({ name: 'alice:prod-web', secret: { kind: 'publickey', keyType: 'ssh-ed25519', keyBase64: 'AAAAKEY', signatureValid: true }, client: '198.51.100.1:1' });
    expect(key).toMatchObject({ ok: false, code: 'locked' });
    expect(await w.ssh.open({ user: 'alice', resource: 'prod-web', client: '198.51.100.1:1', mfa: { kind: 'totp', code: code() } })).toMatchObject({ ok: false, refusal: { code: 'locked' } });
  });

  it('(2) POST /launch while locked refuses even the right TOTP code, and issues no ticket', async () => {
    const code = await mfaWeb();
    const token = (await post(w, '/api/v1/auth/login', { user: 'alice', password: PW, totp: code() })).json.token as string;
    w.h.clock.advance(30_000);
    for (let i = 0; i < 5; i++) expect((await post(w, '/api/v1/launch', { resource: 'prod-web', totp: '000000' }, token)).status).toBe(401);
    w.h.clock.advance(30_000);
    const locked = await post(w, '/api/v1/launch', { resource: 'prod-web', totp: code() }, token);
    expect(locked.status).toBe(423);
    expect(locked.json.error.code).toBe('LOCKED');
    expect(await w.h.store.listAudit({ action: 'ticket.issue' })).toEqual([]);
  });

  it('(2) a signed-in user guessing TOTP codes does not lock out other users behind the same address', async () => {
    const code = await mfaWeb();
    const token = (await post(w, '/api/v1/auth/login', { user: 'alice', password: PW, totp: code() })).json.token as string;
    for (let i = 0; i < 6; i++) await post(w, '/api/v1/launch', { resource: 'prod-web', totp: '000000' }, token);
    const carol = await post(w, '/api/v1/auth/login', { user: 'carol', password: PW });
    expect(carol.status).toBe(200);
  });

  it('(3) twenty parallel API sign-ins for one user: at most five passwords are checked', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => post(w, '/api/v1/auth/login', { user: 'alice', password: 'guess' })));
    expect(results.filter((r) => r.json.error?.code === 'UNAUTHENTICATED')).toHaveLength(5);
    expect(results.filter((r) => r.json.error?.code === 'LOCKED')).toHaveLength(15);
    expect(await w.h.store.listAudit({ action: 'auth.fail' })).toHaveLength(5);
  });

  it('(3) twelve parallel guesses at a database door: at most five passwords are checked', async () => {
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => w.pg.login({ name: 'alice:prod-pg', secret: { kind: 'password', value: `guess-${i}` }, client: `192.0.2.${i}:5432` })));
    expect(results.filter((r) => !r.ok && r.code === 'bad_password')).toHaveLength(5);
    expect(results.filter((r) => !r.ok && r.code === 'locked')).toHaveLength(7);
  });

  it('(3) a pool opening sixteen connections at once with the right password is slowed by the limit, never refused', async () => {
    const results = await Promise.all(Array.from({ length: 16 }, (_, i) => w.pg.login({ name: `${i % 2 ? 'alice' : 'carol'}:prod-pg`, secret: { kind: 'password', value: PW }, client: `192.0.2.50:${i}` })));
    expect(results.map((r) => r.ok)).toEqual(Array(16).fill(true));
  });

  it('(4) an address locked on the API is refused at the doors for every user, and refusals carry the address', async () => {
    for (let i = 0; i < 5; i++) await post(w, '/api/v1/auth/login', { user: `nobody${i}`, password: 'x' });
    const ip = (await w.h.store.listAudit({ action: 'auth.fail' }))[0]!.data!.ip as string;
    const r = await w.pg.login({ name: 'carol:prod-pg', secret: { kind: 'password', value: PW }, client: `${ip}:40000` });
    expect(r).toMatchObject({ ok: false, code: 'locked' });
    const row = (await w.h.store.listAudit({ action: 'login.refuse' })).sort((a, b) => b.seq - a.seq)[0]!;
    expect(row.data).toMatchObject({ door: 'postgres', client: `${ip}:40000`, code: 'locked' });
  });

  it('(4) a flood of unknown user names from one address does not grow the audit table without bound', async () => {
    const flood = async (n: number) => {
      for (let i = 0; i < n; i++) expect((await w.pg.login({ name: `ghost${i}:prod-pg`, secret: { kind: 'password', value: 'x' }, client: '192.0.2.99:1' })).ok).toBe(false);
      return (await w.h.store.listAudit({ action: 'login.refuse' })).length;
    };
    const after200 = await flood(200);
    expect(after200).toBeLessThanOrEqual(80);
    expect(await flood(600)).toBe(after200);
    // Nothing is lost: the next row for that address and reason says how many it stands for.
    w.h.clock.advance(60_000);
    await w.pg.login({ name: 'ghost:prod-pg', secret: { kind: 'password', value: 'x' }, client: '192.0.2.99:1' });
    const last = (await w.h.store.listAudit({ action: 'login.refuse' })).sort((a, b) => b.seq - a.seq)[0]!;
    expect(last.data).toMatchObject({ client: '192.0.2.99:1', code: 'locked' });
    expect(last.data?.folded).toBeGreaterThan(0);
  });

  it('(11) a ticket for an SSH resource presented at the PostgreSQL door is refused and stays valid', async () => {
    const { ticket } = await w.h.engine.mfa.issueTicket('alice', 'prod-web', false);
    expect(await w.pg.login({ name: 'alice:prod-web', secret: { kind: 'password', value: ticket }, client: '192.0.2.1:1' })).toMatchObject({ ok: false, code: 'wrong_protocol' });
    expect((await w.h.store.getTicket(hashSecretToken(ticket)))?.usedAt).toBeUndefined();
    expect(await w.h.store.listAudit({ action: 'decision.allow' })).toEqual([]);
    expect(await w.ssh.login({ name: 'alice:prod-web', secret: { kind: 'password', value: ticket }, client: '192.0.2.1:1' })).toMatchObject({ ok: true, via: 'ticket' });
  });

  it('(14) refused sign-ins leave an audit row with the door, the address and the reason; a misdirected ticket is not consumed', async () => {
    const { ticket } = await w.h.engine.mfa.issueTicket('alice', 'prod-pg', false);
    await w.pg.login({ name: 'mallory:prod-pg', secret: { kind: 'password', value: ticket }, client: '192.0.2.7:1' });
    await w.pg.login({ name: 'alice:prod-pg', secret: { kind: 'password', value: `ght_${'Z'.repeat(43)}` }, client: '192.0.2.7:2' });
    await w.ssh.login({ name: 'alice:prod-web', secret: { kind: 'publickey', keyType: 'ssh-ed25519', keyBase64: 'FORGED', signatureValid: false }, client: '192.0.2.7:3' });
    const codes = (await w.h.store.listAudit({ action: 'login.refuse' })).map((a) => [a.data?.door, a.data?.client, a.data?.code]);
    expect(codes).toEqual(expect.arrayContaining([
      ['postgres', '192.0.2.7:1', 'ticket_other_user'], ['postgres', '192.0.2.7:2', 'bad_ticket'], ['ssh', '192.0.2.7:3', 'bad_key'],
    ]));
    expect((await w.h.store.getTicket(hashSecretToken(ticket)))?.usedAt).toBeUndefined();
    for (let i = 0; i < 5; i++) await post(w, '/api/v1/auth/login', { user: 'dave', password: 'wrong' });
    await post(w, '/api/v1/auth/login', { user: 'dave', password: PW });
    expect(await w.h.store.listAudit({ action: 'auth.locked' })).toEqual([expect.objectContaining({ actor: 'dave', data: expect.objectContaining({ door: 'api' }) })]);
  });
});
