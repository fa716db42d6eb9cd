import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuthService } from '../../../src/api/auth.js';
import { createApiServer, type ApiServer } from '../../../src/api/server.js';
import { silentLogger } from '../../../src/core/log.js';
import { hashPassword } from '../../../src/secrets/passwords.js';
import { BUSINESS_HOURS, makeHarness, seed, type Harness } from '../workflow/harness.js';
import { CliHarness, FakeApi } from './harness.js';

/**
 * `gatehouse resource jit`, the ACCOUNT column of `gatehouse sessions` and the account line of
 * `policy explain`: the CLI in-process against the real API server on a real engine and store.
 */

const PW = 'password-123';

let h: Harness;
let api: ApiServer;
let cli: CliHarness;
const tokens: Record<string, string> = {};

async function gh(user: string, args: string[]) {
  return cli.run(args, { env: { GATEHOUSE_TOKEN: tokens[user] } });
}

async function ok(user: string, args: string[]): Promise<string> {
  const r = await gh(user, args);
  expect({ args, ...r }).toMatchObject({ code: 0, stderr: '' });
  return r.stdout;
}

describe('gatehouse resource jit, sessions and policy explain against the API', () => {
  beforeEach(async () => {
    h = makeHarness();
    await seed(h, { limitAccessTime: BUSINESS_HOURS });
    await h.engine.directory.addResource('admin', {
      name: 'ops-ssh', type: 'machine', protocol: 'ssh', host: '127.0.0.1', port: 22, owner: 'bob', access: [{ team: 'eng' }],
    });
    await h.engine.directory.addResource('admin', {
      name: 'grafana', type: 'browser', protocol: 'http', host: '127.0.0.1', port: 3000, owner: 'bob', access: [{ team: 'eng' }],
    });
    const hash = await hashPassword(PW);
    for (const u of await h.store.listUsers()) await h.store.putUser({ ...u, passwordHash: hash });
    const auth = new AuthService(h.engine, { maxFailures: 3 });
    api = createApiServer({ engine: h.engine, auth, log: silentLogger, listeners: {}, sessions: { kill: async () => false } });
    const a = await api.listen('127.0.0.1', 0);
    cli = new CliHarness();
    cli.env.GATEHOUSE_SERVER = `http://127.0.0.1:${a.port}`;
    for (const u of ['admin', 'bob', 'alice']) tokens[u] = (await auth.login(u, PW, undefined, '127.0.0.1')).token;
  });
  afterEach(async () => {
    await api.close();
    await h.store.close();
    cli.cleanup();
  });

  it('shows, sets, merges and clears ephemeral accounts, then switches to elevation and clears that', async () => {
    expect(await ok('admin', ['resource', 'jit', 'prod-pg'])).toBe([
      'prod-pg: the vaulted account (no ephemeral accounts)',
      '  ephemeral: off',
      '  elevate:   off',
      'You may change these settings: gatehouse resource jit prod-pg ...',
      '',
    ].join('\n'));

    expect(await ok('admin', ['resource', 'jit', 'prod-pg', '--ephemeral', 'on', '--grant', 'app_read', '--grant', 'app_write', '--inheritor', 'app_owner'])).toBe([
      'Updated the JIT settings of prod-pg:',
      'prod-pg: a temporary account per grant with app_read, app_write, removed when the grant ends',
      '  ephemeral: on (grants: app_read, app_write; inheritor: app_owner)',
      '  elevate:   off',
      'You may change these settings: gatehouse resource jit prod-pg ...',
      '',
    ].join('\n'));
    expect((await h.store.getResource('prod-pg'))!.jit).toEqual({ ephemeral: { grants: ['app_read', 'app_write'], inheritor: 'app_owner' } });

    // A new --grant list replaces the grants and keeps the rest; --json prints the view.
    const merged = JSON.parse(await ok('admin', ['resource', 'jit', 'prod-pg', '--grant', 'app_read', '--json']));
    expect(merged).toMatchObject({ resource: 'prod-pg', supported: true, canConfigure: true, jit: { ephemeral: { grants: ['app_read'], inheritor: 'app_owner' } } });
    // alice may look but not change: no hint line for her.
    const shown = await ok('alice', ['resource', 'jit', 'prod-pg']);
    expect(shown).toContain('  ephemeral: on (grants: app_read; inheritor: app_owner)\n');
    expect(shown).not.toContain('You may change');

    // Switching to elevation needs the other part turned off in the same command.
    const switching = await gh('admin', ['resource', 'jit', 'prod-pg', '--elevate', 'pg_monitor']);
    expect(switching).toMatchObject({ code: 2, stdout: '', stderr: 'gatehouse: prod-pg uses ephemeral accounts now: add --ephemeral off to elevate the vaulted account instead\n' });
    expect(await ok('admin', ['resource', 'jit', 'prod-pg', '--ephemeral', 'off', '--elevate', 'pg_monitor', '--elevate', 'pg_read_all_data'])).toContain(
      'prod-pg: the vaulted account elevated with pg_monitor, pg_read_all_data for the grant only\n  ephemeral: off\n  elevate:   on (pg_monitor, pg_read_all_data)\n',
    );
    expect((await h.store.getResource('prod-pg'))!.jit).toEqual({ elevate: { grants: ['pg_monitor', 'pg_read_all_data'] } });
    const back = await gh('admin', ['resource', 'jit', 'prod-pg', '--ephemeral', 'on']);
    expect(back).toMatchObject({ code: 2, stderr: 'gatehouse: prod-pg elevates its vaulted account now: add --elevate off to use ephemeral accounts instead\n' });

    expect(await ok('admin', ['resource', 'jit', 'prod-pg', '--elevate', 'off'])).toContain('prod-pg: the vaulted account (no ephemeral accounts)\n');
    expect((await h.store.getResource('prod-pg'))!.jit).toBeUndefined();
    // Fields without an ephemeral part to merge onto say how to turn it on.
    expect(await gh('admin', ['resource', 'jit', 'prod-pg', '--grant', 'app_read'])).toMatchObject({ code: 2, stderr: 'gatehouse: prod-pg has no ephemeral accounts: add --ephemeral on to turn them on\n' });
    expect((await h.store.listAudit({ action: 'resource.jit' })).length).toBe(4);
  });

  it('takes the per-target fields: sudo for a Linux machine; a bad one is refused by the gateway naming the field', async () => {
    const set = await ok('admin', ['resource', 'jit', 'ops-ssh', '--ephemeral', 'on', '--grant', 'adm', '--sudo', '/usr/bin/systemctl restart nginx']);
    expect(set).toContain('  ephemeral: on (grants: adm; sudo: /usr/bin/systemctl restart nginx)\n');
    const bad = await gh('admin', ['resource', 'jit', 'ops-ssh', '--grant', 'Wheel Group']);
    expect(bad).toMatchObject({ code: 1, stdout: '', stderr: "gatehouse: ephemeral.grants[0]: 'Wheel Group' is not a valid Linux group name\n" });
    const wrongTarget = await gh('admin', ['resource', 'jit', 'ops-ssh', '--max-connections', '5']);
    expect(wrongTarget).toMatchObject({ code: 1, stderr: 'gatehouse: ephemeral.maxConnections: applies to MySQL/MariaDB only\n' });
    expect((await h.store.getResource('ops-ssh'))!.jit).toEqual({ ephemeral: { grants: ['adm'], sudo: '/usr/bin/systemctl restart nginx' } });
    expect(await ok('admin', ['resource', 'jit', 'grafana'])).toBe('grafana: http resources have no ephemeral accounts or elevation; sessions use the vaulted account.\n');
  });

  it('refuses the owner without ALLOW_CONFIGURE_WORKFLOW_SETTINGS with exit 4 and one line', async () => {
    const r = await gh('bob', ['resource', 'jit', 'prod-pg', '--ephemeral', 'on', '--grant', 'app_read']);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/^gatehouse: [^\n]*ALLOW_CONFIGURE_WORKFLOW_SETTINGS[^\n]*\n$/);
    expect((await h.store.getResource('prod-pg'))!.jit).toBeUndefined();
  });

  it('sessions shows the temporary account in an ACCOUNT column and in --json', async () => {
    const now = h.clock.now();
    const base = { user: 'alice', resource: 'prod-pg', protocol: 'postgres' as const, client: '127.0.0.1:5000', startedAt: now, deadline: new Date(now.getTime() + 3_600_000), bytesIn: 0, bytesOut: 0, node: 'n1', state: 'live' as const };
    await h.store.putSession({ ...base, id: 'sess-jit', account: 'gh_alice_7kq2' });
    await h.store.putSession({ ...base, id: 'sess-vaulted', startedAt: new Date(now.getTime() - 1000) });
    const table = (await ok('admin', ['sessions'])).split('\n');
    expect(table[0]).toMatch(/^ID\s+USER\s+RESOURCE\s+ACCOUNT\s+PROTOCOL\s+STATE/);
    expect(table.find((l) => l.startsWith('sess-jit'))).toMatch(/^sess-jit\s+alice\s+prod-pg\s+gh_alice_7kq2\s+postgres\s+live/);
    expect(table.find((l) => l.startsWith('sess-vaulted'))).toMatch(/^sess-vaulted\s+alice\s+prod-pg\s+-\s+postgres\s+live/);
    const json = JSON.parse(await ok('admin', ['sessions', '--json'])) as Array<{ id: string; account?: string }>;
    expect(json.find((s) => s.id === 'sess-jit')?.account).toBe('gh_alice_7kq2');
  });

  it('sessions lists a session whose temporary account the target refused, with the reason', async () => {
    const now = h.clock.now();
    const message = 'the vaulted login app_user lacks CREATEROLE on prod-pg';
    await h.store.putSession({
      id: 'sess-failed', user: 'alice', resource: 'prod-pg', protocol: 'postgres', client: '127.0.0.1:5000', startedAt: now, endedAt: now,
      bytesIn: 0, bytesOut: 0, node: 'n1', state: 'ended', endReason: 'error', endMessage: message,
    });
    const out = await ok('admin', ['sessions']);
    expect(out.split('\n').find((l) => l.startsWith('sess-failed'))).toMatch(/ended \(error\)/);
    expect(out).toContain(`Failed to start:\n  sess-failed  ${message}`);
  });

  it('policy explain says which account the session would use', async () => {
    await ok('admin', ['resource', 'jit', 'prod-pg', '--ephemeral', 'on', '--grant', 'app_read']);
    const out = await ok('admin', ['policy', 'explain', '--user', 'alice', '--resource', 'prod-pg']);
    expect(out).toMatch(/^ALLOW: alice may connect to prod-pg until .*\nUpstream account: a temporary account per grant with app_read, removed when the grant ends\.\n$/m);
    const plain = await ok('admin', ['policy', 'explain', '--user', 'alice', '--resource', 'ops-ssh']);
    expect(plain).toContain('Upstream account: the vaulted account (no ephemeral accounts).\n');
  });
});

describe('gatehouse resource jit flag mistakes', () => {
  let fake: FakeApi;
  beforeAll(async () => {
    fake = await new FakeApi().start();
  });
  afterAll(async () => {
    await fake.stop();
  });

  const cases: Array<[string[], RegExp]> = [
    [['--ephemeral', 'off', '--grant', 'app_read'], /^--ephemeral off cannot be combined with --grant, --sudo, --ou, --inheritor and --max-connections$/],
    [['--elevate', 'off', '--elevate', 'pg_monitor'], /^--elevate off cannot be combined with roles or groups to elevate with$/],
    [['--ephemeral', 'on', '--elevate', 'pg_monitor'], /^ephemeral accounts and --elevate cannot be combined: a session logs in as one account/],
    [['--grant', 'app_read', '--elevate', 'pg_monitor'], /^ephemeral accounts and --elevate cannot be combined/],
    [['--ephemeral', 'maybe'], /argument 'maybe' is invalid\. Allowed choices are on, off\.$/],
    [['--max-connections', '0'], /'--max-connections <n>' argument '0' is invalid\. must be a whole number from 1 to 1000$/],
  ];

  it.each(cases)('gatehouse resource jit prod-pg %j exits 2 with one line and calls nothing', async (args, pattern) => {
    const local = new CliHarness();
    local.env.GATEHOUSE_SERVER = fake.url;
    local.env.GATEHOUSE_TOKEN = 'tok-admin';
    const before = fake.calls.length;
    const r = await local.run(['resource', 'jit', 'prod-pg', ...args]);
    local.cleanup();
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^gatehouse: [^\n]+\n$/);
    expect(r.stderr.slice('gatehouse: '.length, -1)).toMatch(pattern);
    expect(fake.calls.length).toBe(before);
  });
});
