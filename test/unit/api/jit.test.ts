import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuthService } from '../../../src/api/auth.js';
import { createApiServer, type ApiServer } from '../../../src/api/server.js';
import { silentLogger } from '../../../src/core/log.js';
import { hashPassword } from '../../../src/secrets/passwords.js';
import { BUSINESS_HOURS, makeHarness, seed, type Harness } from '../workflow/harness.js';

/** GET/PUT /resources/:name/jit, and where the settings and the temporary account show up elsewhere in the API. */

const PW = 'password-123';
const EPHEMERAL = { ephemeral: { grants: ['app_read', 'app_write'], inheritor: 'app_owner' } };

let h: Harness;
let api: ApiServer;
let base: string;

async function call(method: string, path: string, token: string | undefined, body?: unknown) {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(base + path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  return { status: res.status, json: (await res.json()) as Record<string, any> };
}

async function login(user: string): Promise<string> {
  const r = await call('POST', '/api/v1/auth/login', undefined, { user, password: PW });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json.token as string;
}

beforeEach(async () => {
  h = makeHarness();
  await seed(h, { limitAccessTime: BUSINESS_HOURS });
  const hash = await hashPassword(PW);
  for (const u of await h.store.listUsers()) await h.store.putUser({ ...u, passwordHash: hash });
  api = createApiServer({ engine: h.engine, auth: new AuthService(h.engine, { maxFailures: 3 }), log: silentLogger, listeners: {}, sessions: { kill: async () => false } });
  const a = await api.listen('127.0.0.1', 0);
  base = `http://127.0.0.1:${a.port}`;
});

afterEach(async () => {
  await api.close();
  await h.store.close();
});

describe('GET/PUT /api/v1/resources/:name/jit', () => {
  it('refuses the owner without ALLOW_CONFIGURE_WORKFLOW_SETTINGS and changes nothing; the view says they may not', async () => {
    const bob = await login('bob');
    const refused = await call('PUT', '/api/v1/resources/prod-pg/jit', bob, EPHEMERAL);
    expect(refused.status).toBe(403);
    expect(refused.json.error).toMatchObject({ code: 'FORBIDDEN', message: expect.stringMatching(/ALLOW_CONFIGURE_WORKFLOW_SETTINGS/) });
    expect((await h.store.getResource('prod-pg'))!.jit).toBeUndefined();
    const view = await call('GET', '/api/v1/resources/prod-pg/jit', bob);
    expect(view.json).toEqual({
      resource: 'prod-pg', protocol: 'postgres', supported: true, jit: null,
      description: 'the vaulted account (no ephemeral accounts)', canConfigure: false,
    });
    expect(await h.store.listAudit({ action: 'resource.jit' })).toEqual([]);
  });

  it('refuses someone on the access list who does not own it, even with an invalid body; hides it from someone not on the list', async () => {
    const alice = await login('alice');
    const mallory = await login('mallory');
    const refused = await call('PUT', '/api/v1/resources/prod-pg/jit', alice, { ephemeral: { grants: ['x; drop'] }, colour: 'red' });
    expect(refused.status).toBe(403);
    expect((await call('GET', '/api/v1/resources/prod-pg/jit', mallory)).status).toBe(404);
    expect((await call('PUT', '/api/v1/resources/prod-pg/jit', mallory, EPHEMERAL)).json.error.code).toBe('NOT_FOUND');
  });

  it('lets an administrator set ephemeral accounts, shows them in the resource view, audits, and clears them with {}', async () => {
    const admin = await login('admin');
    const set = await call('PUT', '/api/v1/resources/prod-pg/jit', admin, EPHEMERAL);
    expect(set.status, JSON.stringify(set.json)).toBe(200);
    expect(set.json).toEqual({
      resource: 'prod-pg', protocol: 'postgres', supported: true, jit: EPHEMERAL,
      description: 'a temporary account per grant with app_read, app_write, removed when the grant ends', canConfigure: true,
    });
    expect((await h.store.getResource('prod-pg'))!.jit).toEqual(EPHEMERAL);
    // Everyone on the access list sees which account their session will use.
    const alice = await login('alice');
    expect((await call('GET', '/api/v1/resources/prod-pg', alice)).json.jit).toEqual(EPHEMERAL);
    expect((await h.store.listAudit({ action: 'resource.jit' })).map((e) => [e.actor, e.subject])).toEqual([['admin', 'prod-pg']]);

    const cleared = await call('PUT', '/api/v1/resources/prod-pg/jit', admin, {});
    expect(cleared.json).toMatchObject({ jit: null, description: 'the vaulted account (no ephemeral accounts)' });
    expect((await h.store.getResource('prod-pg'))!.jit).toBeUndefined();
    expect((await call('GET', '/api/v1/resources/prod-pg', alice)).json).not.toHaveProperty('jit');
  });

  it('lets the owner holding the enforcement switch to elevation', async () => {
    const admin = await login('admin');
    await call('POST', '/api/v1/roles', admin, { name: 'wf' });
    await call('PUT', '/api/v1/roles/wf/enforcements', admin, { enforcement: 'ALLOW_CONFIGURE_WORKFLOW_SETTINGS', value: true });
    await call('POST', '/api/v1/roles/wf/members', admin, { user: 'bob' });
    const bob = await login('bob');
    const ok = await call('PUT', '/api/v1/resources/prod-pg/jit', bob, { elevate: { grants: ['pg_monitor'] } });
    expect(ok.status).toBe(200);
    expect(ok.json).toMatchObject({ jit: { elevate: { grants: ['pg_monitor'] } }, canConfigure: true, description: 'the vaulted account elevated with pg_monitor for the grant only' });
  });

  it('refuses invalid names and unknown keys with the field they are in', async () => {
    const admin = await login('admin');
    const cases: Array<[unknown, string, RegExp]> = [
      [{ ephemeral: { grants: ['app_read', 'x"; DROP ROLE app; --'] } }, 'ephemeral.grants[1]', /not a valid role name/],
      [{ elevate: { grants: ['1st'] } }, 'elevate.grants[0]', /not a valid role name/],
      [{ ephemeral: { grants: [], inheritor: 'bad inheritor' } }, 'ephemeral.inheritor', /not a valid role name/],
      [{ ephemeral: { grants: [], sudo: 'ALL' } }, 'ephemeral.sudo', /Linux machines \(ssh\) only/],
      [{ ephemeral: { grants: [], shell: '/bin/sh' } }, 'ephemeral.shell', /unknown key/],
      [{ ephemeral: { grants: [] }, elevate: { grants: ['r'] } }, 'jit', /choose ephemeral accounts or elevation/],
    ];
    for (const [body, field, message] of cases) {
      const r = await call('PUT', '/api/v1/resources/prod-pg/jit', admin, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.json.error).toMatchObject({ code: 'VALIDATION', details: { field } });
      expect(r.json.error.message).toMatch(message);
    }
    expect((await h.store.getResource('prod-pg'))!.jit).toBeUndefined();
  });

  it('says a resource whose door cannot provision is not supported, and refuses settings for it', async () => {
    await h.engine.directory.addResource('admin', { name: 'grafana', type: 'browser', protocol: 'http', host: '127.0.0.1', port: 3000, owner: 'bob', access: [{ team: 'eng' }] });
    const admin = await login('admin');
    expect((await call('GET', '/api/v1/resources/grafana/jit', admin)).json).toMatchObject({ supported: false, jit: null });
    const r = await call('PUT', '/api/v1/resources/grafana/jit', admin, { elevate: { grants: ['editors'] } });
    expect(r.json.error).toMatchObject({ code: 'VALIDATION', details: { field: 'jit' }, message: expect.stringMatching(/http resources have no ephemeral accounts/) });
  });

  it('publishes the body schema in the OpenAPI document', async () => {
    const doc = (await call('GET', '/api/v1/openapi.json', undefined)).json;
    expect(doc.paths['/api/v1/resources/{name}/jit'].put.requestBody.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/JitSettings' });
    expect(doc.paths['/api/v1/resources/{name}/jit'].get.summary).toMatch(/elevation/);
    const schema = doc.components.schemas.JitSettings;
    expect(Object.keys(schema.properties)).toEqual(['ephemeral', 'elevate']);
    expect(schema.additionalProperties).toBe(false);
    expect(schema).not.toHaveProperty('$schema');
  });
});

describe('the temporary account elsewhere in the API', () => {
  it('session views carry the account the session logged in upstream as', async () => {
    const now = h.clock.now();
    const base = { user: 'alice', resource: 'prod-pg', protocol: 'postgres' as const, client: '127.0.0.1:5000', startedAt: now, bytesIn: 0, bytesOut: 0, node: 'n1' };
    await h.store.putSession({ ...base, id: 's-jit', state: 'live', account: 'gh_alice_7kq2' });
    await h.store.putSession({ ...base, id: 's-vaulted', state: 'live' });
    const alice = await login('alice');
    const list = (await call('GET', '/api/v1/sessions', alice)).json as unknown as Array<{ id: string; account?: string }>;
    expect(list.find((s) => s.id === 's-jit')?.account).toBe('gh_alice_7kq2');
    expect(list.find((s) => s.id === 's-vaulted')).not.toHaveProperty('account');
  });

  it('policy explain says which account a session would use, to those who can see the resource', async () => {
    const admin = await login('admin');
    await call('PUT', '/api/v1/resources/prod-pg/jit', admin, EPHEMERAL);
    const explained = await call('GET', '/api/v1/policy/explain?user=alice&resource=prod-pg', admin);
    expect(explained.json.jit).toEqual({ ephemeral: true, elevate: false, description: 'a temporary account per grant with app_read, app_write, removed when the grant ends' });
    const alice = await login('alice');
    expect((await call('GET', '/api/v1/policy/explain?resource=prod-pg', alice)).json.jit).toMatchObject({ ephemeral: true });
    const mallory = await login('mallory');
    const hidden = await call('GET', '/api/v1/policy/explain?resource=prod-pg', mallory);
    expect(hidden.json).toMatchObject({ allow: false, code: 'not_on_access_list' });
    expect(hidden.json).not.toHaveProperty('jit');
  });
});
