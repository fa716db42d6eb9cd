import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GatehouseError } from '../../../src/core/errors.js';
import { loadPolicies } from '../../../src/workflow/policies.js';
import { applyPolicyDir } from '../../../src/workflow/policy-sync.js';
import { makeHarness } from './harness.js';

/** `jit:` on a policy resource: the same schema and per-target checks as the API, synced like the workflow. */

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gh-policy-jit-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const resource = (name: string, protocol: string, type: string, jit: string) => `
  - name: ${name}
    type: ${type}
    protocol: ${protocol}
    host: 127.0.0.1
    port: 5432
    owner: bob
    credentials: { login: app_admin, passwordEnv: GH_TEST_UNSET_PASSWORD }${jit}`;

const PG_EPHEMERAL = `
    jit:
      ephemeral:
        grants: [app_read, app_write]
        inheritor: app_owner`;

async function failure(): Promise<GatehouseError> {
  const e = await loadPolicies(dir).then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(GatehouseError);
  expect((e as GatehouseError).code).toBe('POLICY_INVALID');
  return e as GatehouseError;
}

describe('jit in policy files', () => {
  it('loads ephemeral accounts and elevation onto the resource', async () => {
    await writeFile(join(dir, 'r.yaml'), `resources:${resource('prod-pg', 'postgres', 'database', PG_EPHEMERAL)}${resource('ops', 'ssh', 'machine', `
    jit:
      elevate: { grants: [adm, systemd-journal] }`)}${resource('plain', 'mysql', 'database', '')}\n`);
    const set = await loadPolicies(dir);
    const byName = new Map(set.resources.map((r) => [r.resource.name, r.resource]));
    expect(byName.get('prod-pg')!.jit).toEqual({ ephemeral: { grants: ['app_read', 'app_write'], inheritor: 'app_owner' } });
    expect(byName.get('ops')!.jit).toEqual({ elevate: { grants: ['adm', 'systemd-journal'] } });
    expect(byName.get('plain')).not.toHaveProperty('jit');
  });

  it('refuses a name the target would not take, at its line and field', async () => {
    await writeFile(join(dir, 'r.yaml'), `resources:${resource('prod-pg', 'postgres', 'database', `
    jit:
      ephemeral:
        grants:
          - app_read
          - "app; DROP ROLE x"`)}\n`);
    const e = await failure();
    expect(e.message).toBe(`${join(dir, 'r.yaml')}:13: resources[0].jit.ephemeral.grants[1]: 'app; DROP ROLE x' is not a valid role name`);
    expect(e.details).toMatchObject({ line: 13, field: 'resources[0].jit.ephemeral.grants[1]' });
  });

  it('refuses both parts at once, a field of another target, jit on a protocol without it, and unknown keys', async () => {
    const cases: Array<[string, string, string, string]> = [
      ['postgres', 'database', '\n    jit: { ephemeral: { grants: [] }, elevate: { grants: [r] } }', 'resources[0].jit: choose ephemeral accounts or elevation'],
      ['postgres', 'database', '\n    jit: { ephemeral: { grants: [], sudo: ALL } }', 'resources[0].jit.ephemeral.sudo: applies to Linux machines (ssh) only'],
      ['ldap', 'directory', '\n    jit: { ephemeral: { grants: ["cn=admins,ou=groups,dc=example,dc=com"] } }', 'resources[0].jit.ephemeral.ou: name the OU temporary entries are made under'],
      ['http', 'browser', '\n    jit: { elevate: { grants: [editors] } }', 'resources[0].jit: http resources have no ephemeral accounts or elevation'],
      ['postgres', 'database', '\n    jit: { ephemeral: { grants: [], shell: /bin/sh } }', 'resources[0].jit.ephemeral.shell: unknown key'],
    ];
    for (const [protocol, type, jit, message] of cases) {
      await writeFile(join(dir, 'r.yaml'), `resources:${resource('r1', protocol, type, jit)}\n`);
      expect((await failure()).message).toContain(`:9: ${message}`);
    }
  });

  it('applies, re-applies without writing, and takes away what the file no longer says, auditing each change', async () => {
    const h = makeHarness();
    const file = join(dir, 'r.yaml');
    await writeFile(file, `resources:${resource('prod-pg', 'postgres', 'database', PG_EPHEMERAL)}\n`);
    await applyPolicyDir(h.engine, dir);
    expect((await h.store.getResource('prod-pg'))!.jit).toEqual({ ephemeral: { grants: ['app_read', 'app_write'], inheritor: 'app_owner' } });
    const audited = async () => (await h.store.listAudit({ action: 'resource.jit' })).map((e) => [e.actor, e.subject, (e.data as { jit: unknown }).jit]);
    expect(await audited()).toEqual([['policy', 'prod-pg', { ephemeral: { grants: ['app_read', 'app_write'], inheritor: 'app_owner' } }]]);

    const writes = (await h.store.listAudit({ actor: 'policy' })).length;
    await applyPolicyDir(h.engine, dir);
    expect((await h.store.listAudit({ actor: 'policy' })).length).toBe(writes);

    // Set through the API in between: the file is the source of truth and wins at the next apply.
    await h.store.putUser({ id: 'admin', name: 'admin', admin: true, disabled: false, teams: [], totpConfirmed: false, sshKeys: [], createdAt: h.clock.now() });
    await h.engine.directory.setJit('admin', 'prod-pg', { elevate: { grants: ['pg_monitor'] } });
    await applyPolicyDir(h.engine, dir);
    expect((await h.store.getResource('prod-pg'))!.jit).toEqual({ ephemeral: { grants: ['app_read', 'app_write'], inheritor: 'app_owner' } });

    await writeFile(file, `resources:${resource('prod-pg', 'postgres', 'database', '')}\n`);
    await applyPolicyDir(h.engine, dir);
    expect((await h.store.getResource('prod-pg'))!.jit).toBeUndefined();
    expect((await audited()).map(([actor, , jit]) => [actor, jit ? Object.keys(jit) : null])).toEqual([
      ['policy', ['ephemeral']], ['admin', ['elevate']], ['policy', ['ephemeral']], ['policy', null],
    ]);
    await h.store.close();
  });
});
