import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { AuthService } from '../../../src/api/auth.js';
import { createApiServer, type ApiServer } from '../../../src/api/server.js';
import { silentLogger } from '../../../src/core/log.js';
import { hashPassword } from '../../../src/secrets/passwords.js';
import { totpCode } from '../../../src/workflow/mfa.js';
import { BUSINESS_HOURS, makeHarness, seed, type Harness } from '../workflow/harness.js';

const PW = 'password-123';

interface Ctx {
  h: Harness;
  api: ApiServer;
  base: string;
}

async function call(c: Ctx, method: string, path: string, opts: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let body: string | undefined;
  if (opts.raw !== undefined) body = opts.raw;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined && !headers['content-type']) headers['content-type'] = 'application/json';
  const res = await fetch(c.base + path, { method, headers, ...(body !== undefined ? { body } : {}) });
  return { status: res.status, json: (await res.json()) as Record<string, any> };
}

async function login(c: Ctx, user: string, totp?: string): Promise<string> {
  const r = await call(c, 'POST', '/api/v1/auth/login', { body: { user, password: PW, ...(totp ? { totp } : {}) } });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json.token as string;
}

describe('control-plane API', () => {
  let c: Ctx;
  beforeEach(async () => {
    const h = makeHarness();
    await seed(h, { limitAccessTime: BUSINESS_HOURS, requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, requireReason: true, requireTicket: true, startOn: 'approval' }, singleUser: true });
    const hash = await hashPassword(PW);
    for (const u of await h.store.listUsers()) await h.store.putUser({ ...u, passwordHash: hash });
    const auth = new AuthService(h.engine, { maxFailures: 3 });
    const api = createApiServer({ engine: h.engine, auth, log: silentLogger, listeners: {}, sessions: { kill: async () => false } });
    const a = await api.listen('127.0.0.1', 0);
    c = { h, api, base: `http://127.0.0.1:${a.port}` };
  });
  afterEach(async () => {
    await c.api.close();
    await c.h.store.close();
  });

  it('rejects malformed JSON, unknown fields, oversized bodies and bad tokens with a code', async () => {
    const admin = await login(c, 'admin');
    expect((await call(c, 'POST', '/api/v1/users', { token: admin, raw: '{"name":' })).json.error.code).toBe('BAD_REQUEST');
    const unknown = await call(c, 'POST', '/api/v1/users', { token: admin, body: { name: 'zed', shoeSize: 44 } });
    expect(unknown.status).toBe(400);
    expect(unknown.json.error).toMatchObject({ code: 'VALIDATION', details: { field: 'shoeSize' } });
    const big = await call(c, 'POST', '/api/v1/users', { token: admin, raw: JSON.stringify({ name: 'x'.repeat(70_000) }) });
    expect(big.status).toBe(413);
    expect(big.json.error.code).toBe('PAYLOAD_TOO_LARGE');
    expect((await call(c, 'GET', '/api/v1/me', { token: 'ghs_forged' })).json.error.code).toBe('UNAUTHENTICATED');
    expect((await call(c, 'GET', '/api/v1/me')).status).toBe(401);
    c.h.clock.advance(13 * 3600_000); // past the 12 h session lifetime
    const expired = await call(c, 'GET', '/api/v1/me', { token: admin });
    expect(expired.status).toBe(401);
    expect(expired.json.error.message).toMatch(/expired/);
    // The server is still fine.
    expect((await call(c, 'GET', '/api/v1/openapi.json')).json.openapi).toBe('3.1.0');
  });

  it('locks an account after repeated wrong TOTP codes', async () => {
    const alice = await login(c, 'alice');
    const { secret } = (await call(c, 'POST', '/api/v1/mfa/enroll', { token: alice })).json as { secret: string };
    expect((await call(c, 'POST', '/api/v1/mfa/verify', { token: alice, body: { code: totpCode(secret, c.h.clock.now()) } })).json).toEqual({ ok: true });
    const noTotp = await call(c, 'POST', '/api/v1/auth/login', { body: { user: 'alice', password: PW } });
    expect(noTotp.json.error.code).toBe('MFA_REQUIRED');
    for (let i = 0; i < 3; i++) {
      const bad = await call(c, 'POST', '/api/v1/auth/login', { body: { user: 'alice', password: PW, totp: '000000' } });
      expect(bad.status).toBe(401);
    }
    c.h.clock.advance(60_000);
    const locked = await call(c, 'POST', '/api/v1/auth/login', { body: { user: 'alice', password: PW, totp: totpCode(secret, c.h.clock.now()) } });
    expect(locked.status).toBe(423);
    expect(locked.json.error.code).toBe('LOCKED');
    c.h.clock.advance(16 * 60_000);
    expect(await login(c, 'alice', totpCode(secret, c.h.clock.now()))).toMatch(/^ghs_/);
  });

  it('launches a tunneled resource with the gatehouse tunnel command', async () => {
    await c.h.engine.directory.addResource('admin', {
      name: 'win-rdp', type: 'machine', protocol: 'rdp', host: '127.0.0.1', port: 3389, owner: 'bob', access: [{ team: 'eng' }],
    });
    const alice = await login(c, 'alice');
    const r = await call(c, 'POST', '/api/v1/launch', { token: alice, body: { resource: 'win-rdp' } });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ protocol: 'rdp', command: 'gatehouse tunnel win-rdp --port 0' });
    expect(r.json.invocation).toBeUndefined();
  });

  it('workflow settings need ALLOW_CONFIGURE_WORKFLOW_SETTINGS', async () => {
    const admin = await login(c, 'admin');
    const bob = await login(c, 'bob');
    const settings = { limitAccessTime: BUSINESS_HOURS, singleUser: true };
    const refused = await call(c, 'PUT', '/api/v1/resources/prod-pg/workflow', { token: bob, body: settings });
    expect(refused.status).toBe(403);
    expect(refused.json.error.message).toMatch(/ALLOW_CONFIGURE_WORKFLOW_SETTINGS/);
    await call(c, 'POST', '/api/v1/roles', { token: admin, body: { name: 'wf' } });
    await call(c, 'PUT', '/api/v1/roles/wf/enforcements', { token: admin, body: { enforcement: 'ALLOW_CONFIGURE_WORKFLOW_SETTINGS', value: true } });
    await call(c, 'POST', '/api/v1/roles/wf/members', { token: admin, body: { user: 'bob' } });
    const ok = await call(c, 'PUT', '/api/v1/resources/prod-pg/workflow', { token: bob, body: settings });
    expect(ok.status).toBe(200);
    expect(ok.json.settings.requireApproval).toBeUndefined();
    const invalid = await call(c, 'PUT', '/api/v1/resources/prod-pg/workflow', { token: bob, body: { mfa: true } });
    expect(invalid.json.error).toMatchObject({ code: 'VALIDATION', details: { field: 'limitAccessTime' } });
  });

  it('pushes a new request to the approver over the WebSocket and the check-out refusal names the holder', async () => {
    const alice = await login(c, 'alice');
    const dave = await login(c, 'dave');
    const carol = await login(c, 'carol');
    const ws = new WebSocket(`${c.base.replace('http', 'ws')}/api/v1/events?token=${dave}`);
    const messages: any[] = [];
    await new Promise<void>((resolve, reject) => {
      ws.on('message', (m) => {
        messages.push(JSON.parse(String(m)));
        if (messages.length === 1) resolve();
      });
      ws.on('error', reject);
    });
    expect(messages[0]).toEqual({ type: 'hello', user: 'dave' });
    const got = new Promise<any>((resolve) => ws.on('message', (m) => resolve(JSON.parse(String(m)))));
    const req = await call(c, 'POST', '/api/v1/requests', { token: alice, body: { resource: 'prod-pg', reason: 'hotfix', ticket: 'OPS-1' } });
    expect(req.status).toBe(200);
    const pushed = await got;
    expect(pushed).toMatchObject({ type: 'request_created', request: { id: req.json.id, requester: 'alice', reason: 'hotfix', ticket: 'OPS-1' } });
    ws.close();
    expect((await call(c, 'POST', `/api/v1/requests/${req.json.id}/approve`, { token: alice })).json.error.code).toBe('FORBIDDEN');
    expect((await call(c, 'POST', `/api/v1/requests/${req.json.id}/approve`, { token: dave, body: { comment: 'ok' } })).json.state).toBe('approved');
    expect((await call(c, 'POST', '/api/v1/resources/prod-pg/checkout', { token: alice })).json.holder).toBe('alice');
    const refused = await call(c, 'POST', '/api/v1/resources/prod-pg/checkout', { token: carol });
    expect(refused.status).toBe(409);
    expect(refused.json.error.message).toMatch(/checked out by alice for another 2 h/);
    const list = await call(c, 'GET', '/api/v1/resources', { token: alice });
    expect((list.json as unknown as any[])[0].state.lease).toMatchObject({ holder: 'alice', mine: true });
  });

  it('sets passwords: admins for anyone, users only their own and with the current one', async () => {
    const admin = await login(c, 'admin');
    const alice = await login(c, 'alice');
    expect((await call(c, 'PUT', '/api/v1/users/bob/password', { token: alice, body: { password: 'new-password-1' } })).json.error.code).toBe('FORBIDDEN');
    expect((await call(c, 'PUT', '/api/v1/users/bob/password', { token: admin, body: { password: 'short' } })).json.error.details.field).toBe('password');
    expect((await call(c, 'PUT', '/api/v1/users/bob/password', { token: admin, body: { password: 'new-password-1' } })).status).toBe(200);
    expect((await call(c, 'POST', '/api/v1/auth/login', { body: { user: 'bob', password: 'new-password-1' } })).status).toBe(200);
    expect((await call(c, 'PUT', '/api/v1/users/alice/password', { token: alice, body: { password: 'alice-new-pass' } })).json.error.details.field).toBe('oldPassword');
    expect((await call(c, 'PUT', '/api/v1/users/alice/password', { token: alice, body: { password: 'alice-new-pass', oldPassword: PW } })).status).toBe(200);
    expect((await call(c, 'POST', '/api/v1/auth/login', { body: { user: 'alice', password: PW } })).status).toBe(401);
  });

  it('serves /healthz and Prometheus /metrics with decisions, requests and sessions', async () => {
    expect((await call(c, 'GET', '/healthz')).json).toEqual({ ok: true });
    await c.h.engine.decide({ user: 'mallory', resource: 'prod-pg', at: c.h.clock.now(), mfa: { kind: 'none' } });
    await c.h.engine.requests.create('alice', { resource: 'prod-pg', reason: 'r', ticket: 'T' });
    const text = await (await fetch(`${c.base}/metrics`)).text();
    expect(text).toContain('gatehouse_decisions_total{result="deny",code="not_on_access_list"} 1');
    expect(text).toContain('gatehouse_requests{state="pending"} 1');
    expect(text).toContain('# TYPE gatehouse_live_sessions gauge');
  });

  it('a WebSocket without a valid token is refused', async () => {
    const ws = new WebSocket(`${c.base.replace('http', 'ws')}/api/v1/events?token=bad`);
    const status = await new Promise<number>((resolve) => ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(401);
  });
});
