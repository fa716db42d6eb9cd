import { statSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { apiError, CliHarness, FakeApi } from './harness.js';

let api: FakeApi;
let cli: CliHarness;

beforeEach(async () => {
  api = await new FakeApi().start();
  cli = new CliHarness();
  cli.env.GATEHOUSE_SERVER = api.url;
  cli.env.GATEHOUSE_TOKEN = 'tok-admin';
});

afterEach(async () => {
  await api.stop();
  cli.cleanup();
});

/** Exactly one line on stderr, starting with "gatehouse: ". */
function oneLine(stderr: string): string {
  expect(stderr).toMatch(/^gatehouse: [^\n]+\n$/);
  return stderr.slice('gatehouse: '.length, -1);
}

describe('argument errors', () => {
  const cases: Array<[string[], RegExp]> = [
    [[], /^missing command; see gatehouse --help$/],
    [['user'], /^missing command; see gatehouse user --help$/],
    [['frobnicate'], /^unknown command 'frobnicate'/],
    [['user', 'add'], /^missing required argument 'name'$/],
    [['requests', '--mine', '--to-approve'], /cannot be used with option '--to-approve'/],
    [['requests', '--mnie'], /^unknown option '--mnie' \(Did you mean --mine\?\)$/],
    [['resource', 'add', 'db', '--type', 'database', '--protocol', 'ssh', '--host', 'h', '--port', '5432'], /^--protocol: a database resource speaks postgres or mysql or tcp, not ssh$/],
    [['resource', 'add', 'db', '--type', 'database', '--protocol', 'postgres', '--host', 'h', '--port', '0'], /'--port <port>' argument '0' is invalid/],
    [['resource', 'add', 'mail', '--type', 'machine', '--protocol', 'smtp', '--host', 'h', '--port', '25'], /argument 'smtp' is invalid\. Allowed choices are ssh, postgres, mysql, ldap, http, tcp, rdp\.$/],
    [['resource', 'add', 'db', '--type', 'disk', '--protocol', 'postgres', '--host', 'h', '--port', '1'], /Allowed choices are machine, database/],
    [['resource', 'share', 'db'], /^give --user NAME or --team NAME$/],
    [['role', 'set', 'r', '--enforcement', 'ALLOW_EVERYTHING=true'], /^--enforcement: unknown policy ALLOW_EVERYTHING/],
    [['workflow', 'set', 'db'], /^nothing to change/],
    [['workflow', 'set', 'db', '--schedule', 'weekdays 9-5'], /^--schedule: /],
    [['workflow', 'set', 'db', '--max-duration', 'a while'], /^--max-duration: /],
    [['audit', '--limit', 'lots'], /'--limit <n>' argument 'lots' is invalid/],
    [['policy', 'explain', '--user', 'alice', '--resource', 'db', '--at', 'tomorrowish'], /^--at: /],
    [['login', '--user', 'alice'], /stdin is not a terminal; use --password-stdin$/],
    [['whoami', '--server', 'ftp://gw'], /must be an http:\/\/ or https:\/\/ URL$/],
  ];

  it.each(cases)('gatehouse %j exits 2 with one line and calls nothing', async (args, pattern) => {
    const r = await cli.run(args);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(pattern);
    expect(r.stdout).toBe('');
    expect(api.calls).toEqual([]);
  });

  it('prints help on --help with exit 0', async () => {
    const r = await cli.run(['workflow', 'set', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--require-ticket');
    expect(r.stderr).toBe('');
  });
});

describe('API errors become one line and an exit code', () => {
  const cases: Array<[number, string, number]> = [
    [401, 'UNAUTHENTICATED', 3],
    [401, 'MFA_REQUIRED', 3],
    [423, 'LOCKED', 3],
    [403, 'FORBIDDEN', 4],
    [404, 'NOT_FOUND', 5],
    [409, 'CHECKED_OUT', 6],
    [409, 'INVALID_STATE', 6],
    [400, 'VALIDATION', 1],
    [429, 'RATE_LIMITED', 1],
  ];

  it.each(cases)('HTTP %i %s → exit %i', async (status, code, exit) => {
    api.on('POST /resources/prod-pg/checkout', apiError(status, code, `the ${code} sentence`));
    const r = await cli.run(['checkout', 'prod-pg']);
    expect(r.code).toBe(exit);
    expect(oneLine(r.stderr)).toContain(code === 'UNAUTHENTICATED' ? 'sign in again' : `the ${code} sentence`);
  });

  it('adds the denial hint to the message', async () => {
    api.on('POST /resources/prod-pg/checkout', apiError(409, 'CHECKED_OUT', 'prod-pg is checked out by alice for another 58 min.', {
      denyCode: 'checked_out_by_other',
      hint: 'gatehouse force-checkin prod-pg',
    }));
    const r = await cli.run(['checkout', 'prod-pg']);
    expect(r.code).toBe(6);
    expect(oneLine(r.stderr)).toBe('prod-pg is checked out by alice for another 58 min. (try: gatehouse force-checkin prod-pg)');
  });

  it('tells a signed-out user to log in', async () => {
    api.on('GET /me', apiError(401, 'UNAUTHENTICATED', 'missing token'));
    const r = await cli.run(['whoami'], { env: { GATEHOUSE_TOKEN: undefined } });
    expect(r.code).toBe(3);
    expect(oneLine(r.stderr)).toBe('not signed in; run gatehouse login --user NAME');
    expect(api.calls[0]!.headers.authorization).toBeUndefined();
  });

  it('reports a non-JSON answer by its status', async () => {
    api.on('GET /me', { status: 502, raw: '<html>Bad Gateway</html>' });
    const r = await cli.run(['whoami']);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toBe('the gateway answered HTTP 502: <html>Bad Gateway</html>');
  });

  it('says when the gateway cannot be reached', async () => {
    const url = api.url;
    await api.stop();
    const r = await cli.run(['resources']);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toMatch(new RegExp(`^cannot reach the gateway at ${url}: .*ECONNREFUSED`));
    api = await new FakeApi().start();
  });
});

describe('login and tokens', () => {
  const me = { name: 'alice', admin: false, teams: ['dba'], mfaEnrolled: true, canConfigureWorkflow: false };

  it('saves the session token 0600 and uses it afterwards', async () => {
    api.on('POST /auth/login', { body: { token: 'tok-alice', expiresAt: '2026-01-06T00:00:00Z', user: me } });
    api.on('GET /me', { body: me });
    const login = await cli.run(['login', '--user', 'alice', '--password-stdin', '--totp', '123456'], { stdin: 's3cret\n', env: { GATEHOUSE_TOKEN: undefined } });
    expect(login).toMatchObject({ code: 0, stderr: '' });
    expect(login.stdout).toBe(`Signed in to ${api.url} as alice until Tue 01:00.\n`);
    expect(api.calls[0]!.body).toEqual({ user: 'alice', password: 's3cret', totp: '123456' });
    expect(api.calls[0]!.headers.authorization).toBeUndefined();
    const file = join(cli.home, 'credentials.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ server: api.url, token: 'tok-alice', user: 'alice' });

    const who = await cli.run(['whoami'], { env: { GATEHOUSE_SERVER: undefined, GATEHOUSE_TOKEN: undefined } });
    expect(who.code).toBe(0);
    expect(who.stdout).toBe(`alice on ${api.url} (teams: dba; MFA enrolled)\n`);
    expect(api.calls[1]!.headers.authorization).toBe('Bearer tok-alice');
  });

  it('never sends the saved token to another server, and GATEHOUSE_TOKEN wins', async () => {
    writeFileSync(join(cli.home, 'credentials.json'), JSON.stringify({ server: 'http://elsewhere:8080', token: 'tok-saved', user: 'alice' }));
    api.on('GET /me', { body: me });
    await cli.run(['whoami', '--server', api.url], { env: { GATEHOUSE_TOKEN: undefined } });
    expect(api.calls[0]!.headers.authorization).toBeUndefined();
    await cli.run(['whoami', '--server', api.url], { env: { GATEHOUSE_TOKEN: 'tok-env' } });
    expect(api.calls[1]!.headers.authorization).toBe('Bearer tok-env');
  });

  it('logout revokes and forgets the token', async () => {
    writeFileSync(join(cli.home, 'credentials.json'), JSON.stringify({ server: api.url, token: 'tok-saved', user: 'alice' }));
    api.on('POST /auth/logout', { body: { ok: true } });
    const r = await cli.run(['logout'], { env: { GATEHOUSE_TOKEN: undefined } });
    expect(r).toMatchObject({ code: 0, stdout: `Signed out of ${api.url}.\n` });
    expect(api.calls[0]!.headers.authorization).toBe('Bearer tok-saved');
    expect(() => statSync(join(cli.home, 'credentials.json'))).toThrow();
  });
});

describe('commands send what the API expects', () => {
  it('resource add reads the target password from stdin', async () => {
    api.on('POST /resources', (c) => ({ body: { ...(c.body as object), owner: 'admin', access: [], settings: {}, state: { canConnect: true } } }));
    const r = await cli.run(
      ['resource', 'add', 'prod-pg', '--type', 'database', '--protocol', 'postgres', '--host', 'db1', '--port', '5432', '--database', 'app', '--login', 'svc', '--password-stdin'],
      { stdin: 'pw\n' },
    );
    expect(r.code).toBe(0);
    expect(api.calls[0]!.body).toEqual({ name: 'prod-pg', type: 'database', protocol: 'postgres', host: 'db1', port: 5432, database: 'app', login: 'svc', password: 'pw' });
    expect(api.calls[0]!.headers.authorization).toBe('Bearer tok-admin');
    expect(r.stdout).toBe('Added database resource prod-pg (postgres db1:5432), owner admin.\n');
  });

  it('role set sends the enforcement policy', async () => {
    api.on('PUT /roles/Workflow%20Admins/enforcements', { body: { name: 'Workflow Admins', enforcements: {}, members: [] } });
    const r = await cli.run(['role', 'set', 'Workflow Admins', '--enforcement', '"ALLOW_CONFIGURE_WORKFLOW_SETTINGS":true']);
    expect(r.code).toBe(0);
    expect(api.calls[0]!.body).toEqual({ enforcement: 'ALLOW_CONFIGURE_WORKFLOW_SETTINGS', value: true });
  });

  it('workflow set merges the flags onto the fetched settings', async () => {
    const settings = { limitAccessTime: { timezone: 'UTC', schedule: [{ days: ['mon'], start: '08:00', end: '17:00' }], maxDurationMinutes: 60 } };
    api.on('GET /resources/prod-pg/workflow', { body: { settings, lines: [], canConfigure: true } });
    api.on('PUT /resources/prod-pg/workflow', (c) => ({ body: { settings: c.body, lines: ['Limit access time: mon 08:00-17:00 (UTC), at most 2h', 'MFA: required before each connection'], canConfigure: true } }));
    const r = await cli.run(['workflow', 'set', 'prod-pg', '--max-duration', '2h', '--mfa']);
    expect(r.code).toBe(0);
    expect(api.calls[1]!.body).toEqual({ limitAccessTime: { ...settings.limitAccessTime, maxDurationMinutes: 120 }, mfa: true });
    expect(r.stdout).toContain('  MFA: required before each connection\n');
  });

  it('workflow set --clear sends {} without reading first', async () => {
    api.on('PUT /resources/prod-pg/workflow', { body: { settings: {}, lines: ['No workflow'], canConfigure: true } });
    const r = await cli.run(['workflow', 'set', 'prod-pg', '--clear']);
    expect(r.code).toBe(0);
    expect(api.calls.map((c) => [c.method, c.body])).toEqual([['PUT', {}]]);
  });

  it('resources prints my state per resource, and --json the raw list', async () => {
    const list = [
      { name: 'prod-pg', type: 'database', protocol: 'postgres', host: 'h', port: 1, owner: 'o', access: [], settings: {}, state: { canConnect: true, lease: { holder: 'alice', expiresAt: '2026-01-05T13:12:00Z', mine: true } } },
      { name: 'web', type: 'machine', protocol: 'ssh', host: 'h', port: 22, owner: 'o', access: [], settings: {}, state: { canConnect: false, code: 'approval_required' } },
    ];
    api.on('GET /resources', { body: list });
    const table = await cli.run(['resources']);
    expect(table.stdout).toBe(
      'NAME     TYPE      PROTOCOL  STATE\n' +
        'prod-pg  database  postgres  checked out by me — 1 h 12 min left\n' +
        'web      machine   ssh       needs approval\n',
    );
    const json = await cli.run(['resources', '--json']);
    expect(JSON.parse(json.stdout)).toEqual(list);
  });

  it('requests without a filter merges mine and to-approve', async () => {
    const r1 = { id: 'a', resource: 'x', requester: 'alice', state: 'pending', stage: 0, reviews: [], createdAt: '2026-01-05T10:00:00Z', pendingUntil: '2026-01-06T10:00:00Z', version: 1 };
    const r2 = { ...r1, id: 'b', requester: 'bob', createdAt: '2026-01-05T11:00:00Z' };
    api.on('GET /requests', (c) => ({ body: c.query.get('view') === 'mine' ? [r1] : [r1, r2] }));
    api.on('GET /resources', { body: [] });
    const r = await cli.run(['requests', '--json']);
    expect(JSON.parse(r.stdout).map((x: { id: string }) => x.id)).toEqual(['b', 'a']);
    expect(api.calls.map((c) => c.query.get('view'))).toEqual(['mine', 'to-approve']);
  });

  it('audit verify fails loudly on a broken chain', async () => {
    api.on('GET /audit/verify', { body: { ok: false, count: 41, firstBadSeq: 42, problem: 'mac_mismatch' } });
    const r = await cli.run(['audit', 'verify']);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toBe('audit log verification FAILED at entry 42 (mac_mismatch); 41 entries before it check out');
  });
});
