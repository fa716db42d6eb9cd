import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadPolicies } from '../../src/workflow/policies.js';
import { BUSINESS_HOURS, makeHarness, seed, type Harness, refusal } from '../unit/workflow/harness.js';

/**
 * Finding 7 (server side): control characters in names, request reasons, review comments
 * and ticket ids reach approvers' terminals through `gatehouse requests` and `gatehouse
 * audit`. The server refuses them with a ValidationError naming the field; the CLI's
 * escaping is the other half, tested with the CLI.
 */

const APPROVAL = { approvers: [{ team: 'dba' }], approvals: 1, requireReason: true, requireTicket: true, startOn: 'approval' as const };

/** Line overwrite, OSC 52 clipboard write, cursor up, an 8-bit CSI, BEL, NUL, DEL, a bare CR. */
const PAYLOADS = [
  'fix db\r\x1b[2Kapproved by admin',
  'fix db\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07',
  'fix db\x1b[1A\x1b[2K',
  'fix db\u009b2K',
  'fix db\x07',
  'fix\x00db',
  'fix db\x7f',
  'fix db\rall good',
];

describe('control characters are refused by the server', () => {
  let h: Harness;
  beforeEach(async () => {
    h = makeHarness();
    await seed(h, { limitAccessTime: BUSINESS_HOURS, requireApproval: APPROVAL, singleUser: true });
  });
  afterEach(async () => {
    await h.store.close();
  });

  it('a request reason carrying terminal escapes (line overwrite, OSC 52 clipboard write) is refused naming the reason', async () => {
    for (const reason of PAYLOADS) {
      const e = await refusal(h.engine.requests.create('alice', { resource: 'prod-pg', reason, ticket: 'OPS-1' }));
      expect(e, JSON.stringify(reason)).toMatchObject({ code: 'VALIDATION', details: { field: 'reason' } });
    }
    expect(await h.store.listRequests({ requester: 'alice' })).toEqual([]);
    // A multi-line reason from the vault's text area is still fine.
    const ok = await h.engine.requests.create('alice', { resource: 'prod-pg', reason: 'fix the index\nthen vacuum\tfull', ticket: 'OPS-1' });
    expect(ok.reason).toBe('fix the index\nthen vacuum\tfull');
  });

  it('a ticket id carrying terminal escapes or a line break is refused naming the ticket', async () => {
    for (const ticket of [...PAYLOADS, 'OPS-1\nOPS-2', 'OPS-1\tOPS-2']) {
      const e = await refusal(h.engine.requests.create('alice', { resource: 'prod-pg', reason: 'fix', ticket: `OPS-1 ${ticket}` }));
      expect(e, JSON.stringify(ticket)).toMatchObject({ code: 'VALIDATION', details: { field: 'ticket' } });
    }
    expect(await h.store.listRequests({ requester: 'alice' })).toEqual([]);
  });

  it('an approval comment or a denial reason carrying terminal escapes is refused and records no review', async () => {
    const req = await h.engine.requests.create('alice', { resource: 'prod-pg', reason: 'fix', ticket: 'OPS-1' });
    for (const text of PAYLOADS) {
      const a = await refusal(h.engine.requests.approve(req.id, 'dave', text));
      expect(a, JSON.stringify(text)).toMatchObject({ code: 'VALIDATION', details: { field: 'comment' } });
      const d = await refusal(h.engine.requests.deny(req.id, 'dave', text));
      expect(d, JSON.stringify(text)).toMatchObject({ code: 'VALIDATION', details: { field: 'reason' } });
    }
    expect(await h.store.getRequest(req.id)).toMatchObject({ state: 'pending', reviews: [] });
  });

  it('a force check-in reason carrying terminal escapes is refused and the lease stays held', async () => {
    await h.engine.directory.setWorkflow('admin', 'prod-pg', { limitAccessTime: BUSINESS_HOURS, singleUser: true });
    await h.engine.leases.checkout('alice', 'prod-pg');
    for (const reason of PAYLOADS) {
      const e = await refusal(h.engine.leases.forceCheckin('bob', 'prod-pg', reason));
      expect(e, JSON.stringify(reason)).toMatchObject({ code: 'VALIDATION', details: { field: 'reason' } });
    }
    expect(await h.store.getHeldLease('prod-pg')).toMatchObject({ holder: 'alice', state: 'held' });
  });

  it('user, team and resource names carrying terminal escapes are refused naming the name', async () => {
    const d = h.engine.directory;
    for (const bad of ['eve\x1b[2K', 'eve\r', 'eve\u009b1m']) {
      expect(await refusal(d.addUser('admin', { name: bad }))).toMatchObject({ code: 'VALIDATION', details: { field: 'name' } });
      expect(await refusal(d.addTeam('admin', bad))).toMatchObject({ code: 'VALIDATION', details: { field: 'name' } });
      const res = d.addResource('admin', { name: bad, type: 'database', protocol: 'postgres', host: '127.0.0.1', port: 5432, owner: 'bob' });
      expect(await refusal(res)).toMatchObject({ code: 'VALIDATION', details: { field: 'name' } });
    }
  });
});

describe('control characters in policy files', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gh-sec-policies-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const resource = (owner: string, access: string, members = '[bob]') => `teams:
  - name: dba
    members: ${members}
resources:
  - name: prod-pg
    type: database
    protocol: postgres
    host: 127.0.0.1
    port: 5432
    owner: ${owner}
    access: ${access}
`;

  it('a policy file naming a user with terminal escapes (owner, access list, team member) is refused naming the field', async () => {
    const cases: Array<[string, string]> = [
      [resource('"bob\\e[2K"', '[]'), 'resources[0].owner'],
      [resource('bob', '[{ user: "eve\\e]52;c;AA==\\a" }]'), 'resources[0].access[0].user'],
      [resource('bob', '[{ team: dba }]', '[bob, "eve\\r"]'), 'teams[0].members[1]'],
    ];
    for (const [text, field] of cases) {
      await writeFile(join(dir, 'p.yaml'), text);
      const e = await refusal(loadPolicies(dir));
      expect(e.code, text).toBe('POLICY_INVALID');
      expect(e.details?.field, text).toBe(field);
      expect(e.message).toMatch(/control character/);
    }
  });
});
