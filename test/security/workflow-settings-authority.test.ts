import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuthService } from '../../src/api/auth.js';
import { createApiServer, type ApiServer } from '../../src/api/server.js';
import { silentLogger } from '../../src/core/log.js';
import { hashPassword } from '../../src/secrets/passwords.js';
import { BUSINESS_HOURS, makeHarness, seed, type Harness } from '../unit/workflow/harness.js';

/**
 * Finding 9: ALLOW_CONFIGURE_WORKFLOW_SETTINGS was global. A holder stripped MFA and the
 * approval requirement from resources they could not even see, then used one without
 * approval. As in Keeper, the enforcement covers the resources the holder owns; an
 * administrator may change any; a resource the caller cannot see is NOT_FOUND, exactly
 * like one that does not exist.
 */

const PW = 'password-123';
const GUARDED = {
  limitAccessTime: BUSINESS_HOURS,
  requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, requireReason: false, requireTicket: false, startOn: 'approval' as const },
  mfa: true,
};
const STRIPPED = { limitAccessTime: BUSINESS_HOURS };
/** hr-db has no access list, so only its owner approves. */
const OWNER_APPROVES = { ...GUARDED, requireApproval: { ...GUARDED.requireApproval, approvers: [] } };

interface Ctx {
  h: Harness;
  api: ApiServer;
  base: string;
}

async function call(c: Ctx, method: string, path: string, token: string, body?: unknown) {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(c.base + path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  return { status: res.status, json: (await res.json()) as Record<string, any> };
}

async function login(c: Ctx, user: string): Promise<string> {
  const res = await fetch(`${c.base}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user, password: PW }) });
  const json = (await res.json()) as { token: string };
  expect(res.status, JSON.stringify(json)).toBe(200);
  return json.token;
}

describe('ALLOW_CONFIGURE_WORKFLOW_SETTINGS is bounded by ownership', () => {
  let c: Ctx;
  beforeEach(async () => {
    const h = makeHarness();
    await seed(h, GUARDED); // prod-pg: owner bob, access eng (alice, carol) and dba
    // hr-db: owner bob, shared with nobody; alice and mallory cannot see it.
    await h.engine.directory.addResource('admin', {
      name: 'hr-db', type: 'database', protocol: 'postgres', host: '127.0.0.1', port: 5433, owner: 'bob', settings: OWNER_APPROVES,
    });
    const hash = await hashPassword(PW);
    for (const u of await h.store.listUsers()) await h.store.putUser({ ...u, passwordHash: hash });
    const d = h.engine.directory;
    await d.createRole('admin', 'wf');
    await d.setEnforcement('admin', 'wf', 'ALLOW_CONFIGURE_WORKFLOW_SETTINGS', true);
    for (const u of ['alice', 'mallory', 'bob']) await d.assignRole('admin', 'wf', u);
    const auth = new AuthService(h.engine, { maxFailures: 5 });
    const api = createApiServer({ engine: h.engine, auth, log: silentLogger, listeners: {}, sessions: { kill: async () => false } });
    const a = await api.listen('127.0.0.1', 0);
    c = { h, api, base: `http://127.0.0.1:${a.port}` };
  });
  afterEach(async () => {
    await c.api.close();
    await c.h.store.close();
  });

  const settingsOf = async (name: string) => (await c.h.store.getResource(name))!.settings;

  it("a role holder cannot strip MFA and approval from a resource they cannot see: it is NOT_FOUND, like one that does not exist", async () => {
    for (const who of ['mallory', 'alice']) {
      const token = await login(c, who);
      const hidden = await call(c, 'PUT', '/api/v1/resources/hr-db/workflow', token, STRIPPED);
      const missing = await call(c, 'PUT', '/api/v1/resources/no-such-db/workflow', token, STRIPPED);
      expect(hidden.status, who).toBe(404);
      expect(hidden.json.error.code).toBe('NOT_FOUND');
      expect(missing.json.error.code).toBe('NOT_FOUND');
      // Nothing tells a hidden resource from a missing one but its name.
      expect(hidden.json.error.message.replace('hr-db', 'X')).toBe(missing.json.error.message.replace('no-such-db', 'X'));
      // Reading it is no different.
      expect((await call(c, 'GET', '/api/v1/resources/hr-db/workflow', token)).json.error.code).toBe('NOT_FOUND');
    }
    expect(await settingsOf('hr-db')).toMatchObject({ mfa: true, requireApproval: { approvals: 1 } });
    expect(await c.h.store.listAudit({ action: 'workflow.set' })).toEqual([]);
  });

  it('a role holder on the access list cannot remove the approval requirement of a resource they do not own, and still needs approval to connect', async () => {
    const alice = await login(c, 'alice');
    const r = await call(c, 'PUT', '/api/v1/resources/prod-pg/workflow', alice, STRIPPED);
    expect(r.status).toBe(403);
    expect(r.json.error.code).toBe('FORBIDDEN');
    expect(await settingsOf('prod-pg')).toMatchObject({ mfa: true, requireApproval: { approvals: 1 } });
    const d = await c.h.engine.explain('alice', 'prod-pg');
    expect(d).toMatchObject({ allow: false, code: 'approval_required' });
    // The workflow view does not offer her the change either.
    expect((await call(c, 'GET', '/api/v1/resources/prod-pg/workflow', alice)).json.canConfigure).toBe(false);
  });

  it('the owner holding the enforcement, and an administrator, may still change the workflow', async () => {
    const bob = await login(c, 'bob');
    const own = await call(c, 'PUT', '/api/v1/resources/hr-db/workflow', bob, STRIPPED);
    expect(own.status).toBe(200);
    expect(own.json.canConfigure).toBe(true);
    expect(await settingsOf('hr-db')).toEqual(STRIPPED);
    const admin = await login(c, 'admin');
    expect((await call(c, 'PUT', '/api/v1/resources/prod-pg/workflow', admin, STRIPPED)).status).toBe(200);
    expect(await settingsOf('prod-pg')).toEqual(STRIPPED);
    // The owner without the enforcement may not.
    await c.h.store.putRole({ ...(await c.h.store.getRole('wf'))!, members: ['alice', 'mallory'] });
    const refused = await call(c, 'PUT', '/api/v1/resources/hr-db/workflow', bob, OWNER_APPROVES);
    expect(refused.json.error.code).toBe('FORBIDDEN');
    expect(refused.json.error.message).toMatch(/ALLOW_CONFIGURE_WORKFLOW_SETTINGS/);
  });
});
