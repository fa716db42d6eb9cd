import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GatehouseError } from '../../../src/core/errors.js';
import { loadPolicies, policyJsonSchema, resolvePolicyCredentials } from '../../../src/workflow/policies.js';

const POLICIES = fileURLToPath(new URL('../../../policies', import.meta.url));

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gh-policies-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const put = (name: string, text: string) => writeFile(join(dir, name), text);

async function failure(path = dir): Promise<GatehouseError> {
  const e = await loadPolicies(path).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(GatehouseError);
  expect((e as GatehouseError).code).toBe('POLICY_INVALID');
  return e as GatehouseError;
}

const TEAMS = `teams:
  - name: dba
    members: [bob, dave, bob]
`;

const PG = `resources:
  - name: prod-pg
    type: database
    protocol: postgres
    host: 127.0.0.1
    port: 5432
    database: app
    owner: bob
    access: [{ team: dba }, { user: alice }]
    credentials: { login: app_user, passwordEnv: PROD_PG_PASSWORD, keyFile: keys/pg.key }
    options: { allowedTunnelPorts: [5432] }
    workflow:
      limitAccessTime:
        timezone: Europe/Berlin
        schedule: ["mon-fri 08:00-18:00", { days: [sat], start: "10:00", end: "12:00" }]
        maxDuration: 2h
      requireApproval:
        approvers: [{ team: dba }]
        approvals: 1
        requireReason: true
        requireTicket: true
        ticketPattern: "^OPS-[0-9]+$"
      singleUser: true
      mfa: true
`;

/** Replaces one line of the PG fixture (1-based), to build a file with a known bad line. */
function pgWith(lineNo: number, text: string): string {
  const lines = PG.split('\n');
  lines[lineNo - 1] = text;
  return lines.join('\n');
}

describe('loadPolicies: good files', () => {
  it('loads teams and resources across files, normalised to model types', async () => {
    await put('a-teams.yaml', TEAMS);
    await put('b-prod.yml', PG);
    await put('README.md', 'not a policy');
    const set = await loadPolicies(dir);
    expect(set.files).toEqual([join(dir, 'a-teams.yaml'), join(dir, 'b-prod.yml')]);
    expect(set.teams).toEqual([{ name: 'dba', members: ['bob', 'dave'] }]);
    expect(set.resources).toHaveLength(1);
    const { resource, credentials } = set.resources[0]!;
    expect(resource).toMatchObject({
      name: 'prod-pg',
      type: 'database',
      protocol: 'postgres',
      host: '127.0.0.1',
      port: 5432,
      database: 'app',
      owner: 'bob',
      source: join(dir, 'b-prod.yml'),
      options: { allowedTunnelPorts: [5432] },
    });
    expect(resource.settings.limitAccessTime).toEqual({
      timezone: 'Europe/Berlin',
      schedule: [
        { days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '08:00', end: '18:00' },
        { days: ['sat'], start: '10:00', end: '12:00' },
      ],
      maxDurationMinutes: 120,
    });
    expect(resource.settings.requireApproval).toMatchObject({ approvals: 1, startOn: 'approval', requireTicket: true });
    expect(credentials).toEqual({ login: 'app_user', passwordEnv: 'PROD_PG_PASSWORD', keyFile: join(dir, 'keys/pg.key') });
  });

  it('accepts maxDuration in minutes, empty files, and teams known from elsewhere', async () => {
    await put('empty.yaml', '# nothing yet\n');
    await put('pg.yaml', PG.replace('maxDuration: 2h', 'maxDuration: 45'));
    const set = await loadPolicies(dir, { teams: new Map([['dba', ['bob']]]) });
    expect(set.resources[0]?.resource.settings.limitAccessTime?.maxDurationMinutes).toBe(45);
    expect(set.teams).toEqual([]);
  });

  it('loads the shipped example policies', async () => {
    const set = await loadPolicies(POLICIES);
    expect(set.files).toEqual([join(POLICIES, 'example.yaml'), join(POLICIES, 'teams.yaml')]);
    const byName = new Map(set.resources.map((r) => [r.resource.name, r.resource]));
    expect([...byName.keys()].sort()).toEqual(['billing-mysql', 'corp-ldap', 'grafana', 'prod-pg', 'prod-web']);
    expect(byName.get('prod-web')?.settings).toMatchObject({ mfa: true, requireApproval: { approvals: 1 } });
    expect(byName.get('prod-pg')?.settings.singleUser).toBe(true);
    expect(byName.get('billing-mysql')?.settings.requireApproval?.secondStage?.approvals).toBe(1);
    expect(byName.get('grafana')?.settings).toEqual({
      limitAccessTime: expect.objectContaining({ maxDurationMinutes: 720 }) as unknown,
    });
    expect(set.resources.every((r) => r.resource.host === '127.0.0.1')).toBe(true);
  });
});

describe('loadPolicies: errors point at file, line and field', () => {
  it('a semantic workflow error', async () => {
    await put('teams.yaml', TEAMS);
    await put('prod.yaml', PG.replace('approvals: 1', 'approvals: 4'));
    const e = await failure();
    const file = join(dir, 'prod.yaml');
    expect(e.details).toEqual({ file, line: 19, field: 'resources[0].workflow.requireApproval.approvals' });
    expect(e.message).toBe(`${file}:19: resources[0].workflow.requireApproval.approvals: must be between 1 and 2`);
  });

  it('a structural error, an unknown key, a bad enum', async () => {
    await put('teams.yaml', TEAMS);
    await put('prod.yaml', pgWith(6, '    port: 70000'));
    expect((await failure()).details).toEqual({ file: join(dir, 'prod.yaml'), line: 6, field: 'resources[0].port' });
    await put('prod.yaml', pgWith(7, '    databse: app'));
    expect((await failure()).details).toMatchObject({ line: 7, field: 'resources[0].databse' });
    await put('prod.yaml', pgWith(4, '    protocol: ssh'));
    expect((await failure()).details).toMatchObject({ line: 4, field: 'resources[0].protocol' });
    await put('prod.yaml', pgWith(22, '        startOn: later'));
    expect((await failure()).details).toMatchObject({ line: 22, field: 'resources[0].workflow.requireApproval.startOn' });
  });

  it('reports the earliest problem in the file', async () => {
    await put('teams.yaml', TEAMS);
    // zod lists the bad port first and the unknown key last; the reader meets the key first.
    await put('prod.yaml', pgWith(6, '    port: 0').replace('    type: database', '    type: database\n    colour: blue'));
    expect((await failure()).details).toMatchObject({ line: 4, field: 'resources[0].colour' });
  });

  it('file-form schedules and durations', async () => {
    await put('teams.yaml', TEAMS);
    await put('prod.yaml', PG.replace('"mon-fri 08:00-18:00"', '"mon-fry 08:00-18:00"'));
    const bad = await failure();
    expect(bad.details).toMatchObject({ line: 15, field: 'resources[0].workflow.limitAccessTime.schedule[0]' });
    expect(bad.message).toMatch(/unknown day "fry"/);
    await put('prod.yaml', PG.replace('maxDuration: 2h', 'maxDuration: 2 hours'));
    expect((await failure()).details).toMatchObject({ line: 16, field: 'resources[0].workflow.limitAccessTime.maxDuration' });
    await put('prod.yaml', PG.replace('maxDuration: 2h', 'maxDuration: 31d'));
    const long = await failure();
    expect(long.details).toMatchObject({ line: 16, field: 'resources[0].workflow.limitAccessTime.maxDuration' });
    expect(long.message).toMatch(/between 1 and 43200/);
  });

  it('a missing field points at its parent; limitAccessTime missing points at workflow', async () => {
    await put('teams.yaml', TEAMS);
    await put('prod.yaml', PG.replace('    host: 127.0.0.1\n', ''));
    expect((await failure()).details).toMatchObject({ line: 2, field: 'resources[0].host' });
    const noLimit = PG.replace(/ {6}limitAccessTime:\n(?: {8}.*\n){3}/, '');
    await put('prod.yaml', noLimit);
    expect((await failure()).details).toMatchObject({ line: 12, field: 'resources[0].workflow.limitAccessTime' });
  });

  it('inline secrets are refused with a pointer to the right key', async () => {
    await put('teams.yaml', TEAMS);
    await put('prod.yaml', pgWith(10, '    credentials: { login: app_user, password: hunter2 }'));
    const e = await failure();
    expect(e.details).toMatchObject({ line: 10, field: 'resources[0].credentials.password' });
    expect(e.message).toMatch(/use passwordEnv or passwordFile/);
    expect(e.message).not.toMatch(/hunter2/);
  });

  it('YAML syntax errors carry the line', async () => {
    await put('bad.yaml', 'teams:\n  - name: dba\n    members: [bob\n');
    const e = await failure();
    expect(e.details).toMatchObject({ file: join(dir, 'bad.yaml'), field: '' });
    expect(e.details?.line).toBeGreaterThanOrEqual(3);
    await put('bad.yaml', 'teams: []\nteams: []\n');
    expect((await failure()).details).toMatchObject({ line: 2 });
  });

  it('an undefined team on an access list', async () => {
    await put('prod.yaml', PG);
    expect((await failure()).details).toEqual({ file: join(dir, 'prod.yaml'), line: 9, field: 'resources[0].access[0]' });
  });

  it('an unreadable directory', async () => {
    const e = await failure(join(dir, 'missing'));
    expect(e.details).toEqual({ file: join(dir, 'missing') });
  });
});

describe('loadPolicies: all or nothing, no duplicates', () => {
  it('a bad second file means nothing loads', async () => {
    await put('a.yaml', TEAMS + PG);
    await put('b.yaml', 'resources:\n  - name: other\n    type: browser\n');
    const e = await failure();
    expect(e.details).toMatchObject({ file: join(dir, 'b.yaml'), line: 2 });
    await rm(join(dir, 'b.yaml'));
    expect((await loadPolicies(dir)).resources).toHaveLength(1);
  });

  it('duplicate team names across files', async () => {
    await put('a.yaml', TEAMS);
    await put('b.yaml', '\n' + TEAMS);
    const e = await failure();
    expect(e.details).toEqual({ file: join(dir, 'b.yaml'), line: 3, field: 'teams[0].name' });
    expect(e.message).toContain(`already defined at ${join(dir, 'a.yaml')}:2`);
  });

  it('duplicate resource names, in one file or across files', async () => {
    await put('a.yaml', TEAMS + PG);
    await put('b.yaml', PG);
    expect((await failure()).details).toEqual({ file: join(dir, 'b.yaml'), line: 2, field: 'resources[0].name' });
    await rm(join(dir, 'b.yaml'));
    await put('a.yaml', TEAMS + PG + PG.replace('resources:\n', ''));
    expect((await failure()).details).toMatchObject({ field: 'resources[1].name' });
  });
});

describe('resolvePolicyCredentials', () => {
  it('reads env vars and files; what is missing stays empty and is named', async () => {
    const files = new Map([['/k/pw', 's3cret\n']]);
    const readFile = async (p: string) => {
      const v = files.get(p);
      if (v === undefined) throw new Error('ENOENT');
      return v;
    };
    const env = { PG_PW: 'from-env' };
    expect(await resolvePolicyCredentials({ login: 'u', passwordEnv: 'PG_PW' }, { env, readFile })).toEqual({
      credentials: { login: 'u', password: 'from-env' },
      missing: [],
    });
    expect(await resolvePolicyCredentials({ login: 'u', passwordFile: '/k/pw', keyFile: '/k/key' }, { env, readFile })).toEqual({
      credentials: { login: 'u', password: 's3cret' },
      missing: ['file /k/key'],
    });
    expect(await resolvePolicyCredentials({ login: 'u', passwordEnv: 'NOPE' }, { env, readFile })).toEqual({
      credentials: { login: 'u' },
      missing: ['env NOPE'],
    });
  });
});

describe('policies/schema.json', () => {
  it('is generated from the zod definitions (UPDATE_SCHEMA=1 rewrites it)', async () => {
    const expected = `${JSON.stringify(policyJsonSchema(), null, 2)}\n`;
    if (process.env.UPDATE_SCHEMA === '1') await writeFile(join(POLICIES, 'schema.json'), expected);
    expect(await readFile(join(POLICIES, 'schema.json'), 'utf8')).toBe(expected);
    const schema = policyJsonSchema() as { properties: Record<string, unknown>; additionalProperties: boolean };
    expect(Object.keys(schema.properties)).toEqual(['version', 'teams', 'resources']);
    expect(schema.additionalProperties).toBe(false);
  });
});
