import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { applyPolicyDir } from '../../../src/workflow/policy-sync.js';
import { makeHarness } from './harness.js';

const resource = (name: string, extra = '') => `
  - name: ${name}
    type: database
    protocol: postgres
    host: 127.0.0.1
    port: 5432
    owner: bob
    access: [{ team: dba }]
    credentials: { login: app, passwordEnv: GH_TEST_UNSET_PASSWORD }${extra}`;

describe('applying a policy directory', () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('creates teams, members and resources; removes what a file no longer defines; keeps API resources', async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-policies-'));
    const h = makeHarness();
    await h.store.putUser({ id: 'admin', name: 'admin', admin: true, disabled: false, teams: [], totpConfirmed: false, sshKeys: [], createdAt: h.clock.now() });
    writeFileSync(join(dir, 'teams.yaml'), 'teams:\n  - name: dba\n    members: [bob, dave]\n');
    writeFileSync(join(dir, 'db.yaml'), `resources:${resource('orders')}${resource('billing')}\n`);
    const first = await applyPolicyDir(h.engine, dir);
    expect(first).toMatchObject({ teams: 1, resources: 2, removed: [], missingSecrets: { orders: ['env GH_TEST_UNSET_PASSWORD'] } });
    expect(first.createdUsers.sort()).toEqual(['bob', 'dave']);
    expect((await h.store.getUser('dave'))?.teams).toEqual(['dba']);
    expect((await h.store.getResource('orders'))?.source).toBe(join(dir, 'db.yaml'));
    await h.engine.directory.addResource('admin', { name: 'by-api', type: 'machine', protocol: 'ssh', host: 'h', port: 22, owner: 'bob' });

    // Applying the same files again writes nothing.
    const writes = (await h.store.listAudit({ actor: 'policy' })).length;
    await applyPolicyDir(h.engine, dir);
    expect((await h.store.listAudit({ actor: 'policy' })).length).toBe(writes);

    writeFileSync(join(dir, 'db.yaml'), `resources:${resource('orders')}\n`);
    const second = await applyPolicyDir(h.engine, dir);
    expect(second.removed).toEqual(['billing']);
    expect(await h.store.getResource('billing')).toBeUndefined();
    expect(await h.store.getResource('by-api')).toBeDefined();
    expect(h.revokes).toContainEqual(expect.objectContaining({ kind: 'resource_removed', resource: 'billing' }));
    expect(second.createdUsers).toEqual([]);
  });

  it('a bad file changes nothing', async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-policies-'));
    const h = makeHarness();
    writeFileSync(join(dir, 'a.yaml'), `teams:\n  - name: dba\n    members: [bob]\nresources:${resource('orders')}\n`);
    writeFileSync(join(dir, 'b.yaml'), 'resources:\n  - name: broken\n    type: spaceship\n');
    await expect(applyPolicyDir(h.engine, dir)).rejects.toMatchObject({ code: 'POLICY_INVALID', details: { file: join(dir, 'b.yaml') } });
    expect(await h.store.listResources()).toEqual([]);
    expect(await h.store.listUsers()).toEqual([]);
  });
});
