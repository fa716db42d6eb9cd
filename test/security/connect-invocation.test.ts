import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { doorFor } from '../../protocols/registry.js';
import type { LaunchResponse } from '../../src/api/wire.js';
import type { Protocol, Resource } from '../../src/core/model.js';
import { CliHarness, FakeApi } from '../unit/cli/harness.js';

/**
 * Finding 16: `gatehouse connect` started whatever program, arguments and environment the
 * gateway's answer named (a fake gateway got code execution through LD_PRELOAD). The client
 * now decides the program from the protocol and its own allow-list, accepts only the
 * arguments the door registry builds, and adds only the ticket variable it expects.
 *
 * The fake API plays the hostile gateway; fake psql/mysql/mariadb/ssh scripts on PATH record
 * how they were started instead of connecting anywhere.
 */

const TICKET = 'gh-ticket-0123456789abcdef';

let api: FakeApi;
let cli: CliHarness;
let bin: string;
/** Where a fake client records its argv (one per line) and its environment. */
let record: string;
/** What a successful attack would create. */
let pwned: string;

beforeEach(async () => {
  api = await new FakeApi().start();
  cli = new CliHarness();
  bin = join(cli.home, 'bin');
  record = join(cli.home, 'record');
  pwned = join(cli.home, 'pwned');
  mkdirSync(bin);
  for (const name of ['psql', 'mysql', 'mariadb', 'ssh', 'ldapsearch', 'xdg-open']) {
    const script = join(bin, name);
    // ldapsearch -y /dev/stdin reads the ticket from standard input: the fake records that too.
    writeFileSync(script, `#!/bin/sh\nprintf '%s\\n' "$(basename "$0")" "$@" > "$GH_RECORD.argv"\nenv > "$GH_RECORD.env"\nif [ "$(basename "$0")" = ldapsearch ]; then cat /dev/stdin > "$GH_RECORD.stdin"; fi\n`);
    chmodSync(script, 0o755);
  }
  cli.env = {
    ...cli.env,
    GATEHOUSE_SERVER: api.url,
    GATEHOUSE_TOKEN: 'tok-alice',
    PATH: `${bin}:/usr/bin:/bin`,
    GH_RECORD: record,
    MY_OWN_SETTING: 'kept',
  };
});

afterEach(async () => {
  await api.stop();
  cli.cleanup();
});

function answer(protocol: Protocol, invocation: LaunchResponse['invocation'], resource = 'prod'): void {
  const body: LaunchResponse = { resource, protocol, ticket: TICKET, expiresAt: '2026-01-05T12:01:00Z', command: 'psql ...', ...(invocation ? { invocation } : {}) };
  api.on('POST /launch', { body });
}

/** What the door registry builds for this resource: what an honest gateway answers. */
function honest(protocol: Protocol, resource: Partial<Resource> = {}, caPath?: string): NonNullable<LaunchResponse['invocation']> {
  const door = doorFor(protocol)!;
  const at = { host: '127.0.0.1', port: door.defaultPort, ...(caPath ? { caPath } : {}) };
  return door.client(at, 'alice', { name: 'prod', protocol, ...resource } as Resource, TICKET);
}

function started(): { argv: string[]; env: Record<string, string> } | undefined {
  if (!existsSync(`${record}.argv`)) return undefined;
  const argv = readFileSync(`${record}.argv`, 'utf8').split('\n').slice(0, -1);
  const env = Object.fromEntries(readFileSync(`${record}.env`, 'utf8').split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  return { argv, env };
}

/** The refusal: exit 1, one line naming what was refused, and nothing started. */
async function expectRefused(pattern: RegExp): Promise<void> {
  const r = await cli.run(['connect', 'prod']);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/^gatehouse: refusing to start the client the gateway asked for: [^\n]+\n$/);
  expect(r.stderr).toMatch(pattern);
  expect(started()).toBeUndefined();
  expect(existsSync(pwned)).toBe(false);
}

describe('gatehouse connect refuses what the gateway should not decide', () => {
  it('a gateway answer naming another program (sh -c) runs nothing', async () => {
    const pg = honest('postgres');
    answer('postgres', { program: 'sh', args: ['-c', `echo pwned > ${pwned}`], env: pg.env });
    await expectRefused(/sh is not a client for postgres \(connect starts psql\)/);
  });

  it('a gateway answer naming a path that merely ends in psql runs nothing', async () => {
    const pg = honest('postgres');
    const evil = join(cli.home, 'psql');
    writeFileSync(evil, `#!/bin/sh\necho pwned > ${pwned}\n`);
    chmodSync(evil, 0o755);
    answer('postgres', { ...pg, program: evil });
    await expectRefused(/is not a client for postgres/);
  });

  it('a gateway answer adding LD_PRELOAD to psql\'s environment is refused', async () => {
    const pg = honest('postgres');
    answer('postgres', { ...pg, env: { ...pg.env, LD_PRELOAD: join(cli.home, 'evil.so') } });
    await expectRefused(/LD_PRELOAD/);
  });

  it('a gateway answer setting PSQL_PAGER or PSQLRC (commands psql runs) is refused', async () => {
    const pg = honest('postgres');
    answer('postgres', { ...pg, env: { ...pg.env, PSQL_PAGER: `sh -c 'echo pwned > ${pwned}'`, PSQLRC: join(cli.home, 'rc') } });
    await expectRefused(/PSQL_PAGER, PSQLRC/);
  });

  it('psql arguments that run a shell command (-c "\\! ...") are refused', async () => {
    const pg = honest('postgres');
    answer('postgres', { ...pg, args: [...pg.args, '-c', `\\! echo pwned > ${pwned}`] });
    await expectRefused(/arguments/);
  });

  it('a psql connection string with extra keys (service, passfile, sslmode=disable) is refused', async () => {
    const pg = honest('postgres');
    answer('postgres', { ...pg, args: [`${pg.args[0]!.replace('sslmode=require', 'sslmode=disable')} passfile=/etc/shadow`] });
    await expectRefused(/arguments/);
  });

  it('ssh options smuggled into the arguments (-o ProxyCommand) are refused', async () => {
    const ssh = honest('ssh');
    answer('ssh', { ...ssh, args: ['-o', `ProxyCommand=sh -c 'echo pwned > ${pwned}'`, ...ssh.args] });
    await expectRefused(/arguments/);
  });

  it('an ssh destination that is an option in disguise (-oProxyCommand=...) is refused', async () => {
    answer('ssh', { program: 'ssh', args: ['-p', '2222', `-oProxyCommand=echo pwned > ${pwned}`], env: {} });
    await expectRefused(/arguments/);
  });

  it('a mysql client asked to load a plugin or start a pager is refused', async () => {
    const my = honest('mysql');
    answer('mysql', { ...my, args: [...my.args, `--plugin-dir=${cli.home}`, '--default-auth=evil', `--pager=sh -c 'echo pwned > ${pwned}'`] });
    await expectRefused(/arguments/);
  });

  it('a ticket variable of another client (MYSQL_PWD for psql) is refused', async () => {
    const pg = honest('postgres');
    answer('postgres', { ...pg, env: { MYSQL_PWD: TICKET } });
    await expectRefused(/MYSQL_PWD/);
  });

  it('a PGPASSWORD other than the answer\'s ticket is refused', async () => {
    const pg = honest('postgres');
    answer('postgres', { ...pg, env: { PGPASSWORD: 'something-else' } });
    await expectRefused(/PGPASSWORD/);
  });

  it('the program of another protocol (ssh for a postgres resource) is refused', async () => {
    answer('postgres', honest('ssh'));
    await expectRefused(/ssh is not a client for postgres/);
  });

  it('ldapsearch options smuggled into the arguments (-o, -f, -H to another host with extra flags) are refused', async () => {
    const ldap = honest('ldap', { options: { baseDn: 'ou=people,dc=example,dc=com' } });
    answer('ldap', { ...ldap, args: [...ldap.args, '-f', '/etc/shadow'] });
    await expectRefused(/arguments/);
  });

  it('a base DN that is an option in disguise (-b -oX) is refused', async () => {
    const ldap = honest('ldap', { options: { baseDn: 'ou=people,dc=example,dc=com' } });
    answer('ldap', { ...ldap, args: [...ldap.args.slice(0, -1), '-oldif_wrap=no'] });
    await expectRefused(/arguments/);
  });

  it('an ldapsearch answer that puts the ticket on the command line (-w) instead of standard input is refused', async () => {
    const ldap = honest('ldap');
    answer('ldap', { ...ldap, args: [...ldap.args.slice(0, -2), '-w', TICKET] });
    await expectRefused(/arguments/);
  });

  it('an ldapsearch answer whose standard input is not the ticket, or that sets LDAPTLS_REQCERT=never, is refused', async () => {
    answer('ldap', { ...honest('ldap'), stdin: 'something-else' });
    await expectRefused(/standard input/);
    answer('ldap', { ...honest('ldap', {}, '/var/lib/gatehouse/certs/ca.pem'), env: { LDAPTLS_CACERT: '/var/lib/gatehouse/certs/ca.pem', LDAPTLS_REQCERT: 'never' } });
    await expectRefused(/LDAPTLS_REQCERT/);
  });

  it('a web app link to another host, or not the enter link, is not opened', async () => {
    const web = honest('http', {}, undefined);
    answer('http', { ...web, args: [web.args[0]!.replace('prod.apps.localhost', 'evil.example')] });
    await expectRefused(/arguments/);
    answer('http', { ...web, args: ['https://prod.apps.localhost:8443/.gatehouse/enter?user=alice&ticket=x', '--new-window'] });
    await expectRefused(/arguments/);
    answer('http', { ...web, args: ['file:///etc/passwd'] });
    await expectRefused(/arguments/);
  });

  it('an rdp answer with a program to run never runs it: connect opens a tunnel itself', async () => {
    answer('rdp', { program: 'sh', args: ['-c', `echo pwned > ${pwned}`], env: {} });
    const r = await cli.run(['connect', 'prod']);
    expect(r.code).not.toBe(0);
    expect(started()).toBeUndefined();
    expect(existsSync(pwned)).toBe(false);
  });
});

describe('gatehouse connect starts the stock client the registry builds', () => {
  const cases: Array<[string, Protocol, Partial<Resource>, string | undefined, string | undefined]> = [
    ['psql, sslmode=require', 'postgres', {}, undefined, 'PGPASSWORD'],
    ['psql, verified TLS and a database', 'postgres', { database: 'app' }, '/var/lib/gatehouse/certs/ca.pem', 'PGPASSWORD'],
    ['mysql with a database and the CA', 'mysql', { database: 'app' }, '/var/lib/gatehouse/certs/ca.pem', 'MYSQL_PWD'],
    ['mysql, plain', 'mysql', {}, undefined, 'MYSQL_PWD'],
    ['ssh (no ticket variable)', 'ssh', {}, undefined, undefined],
    ['ldapsearch with the CA and a base DN (the ticket on standard input)', 'ldap', { options: { baseDn: 'ou=people,dc=example,dc=com' } }, '/var/lib/gatehouse/certs/ca.pem', undefined],
  ];

  it.each(cases)('%s: exactly its arguments, the user\'s environment plus only the ticket variable', async (_what, protocol, resource, caPath, ticketVar) => {
    const inv = honest(protocol, resource, caPath);
    answer(protocol, inv);
    const r = await cli.run(['connect', 'prod']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const s = started()!;
    expect(s.argv).toEqual([inv.program, ...inv.args]);
    expect(s.env.MY_OWN_SETTING).toBe('kept');
    for (const v of ['PGPASSWORD', 'MYSQL_PWD']) expect(s.env[v]).toBe(v === ticketVar ? TICKET : undefined);
    if (protocol === 'ldap') {
      expect(s.env.LDAPTLS_CACERT).toBe(caPath);
      expect(readFileSync(`${record}.stdin`, 'utf8')).toBe(TICKET);
      expect(s.argv.join(' ')).not.toContain(TICKET);
    }
  });

  it('a web app: xdg-open gets exactly the enter link; without a desktop the link is printed', async () => {
    const web = honest('http');
    answer('http', web);
    const r = await cli.run(['connect', 'prod']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(started()!.argv).toEqual(['xdg-open', web.args[0]]);
    expect(r.stdout).toContain('Opened in your browser.');

    writeFileSync(join(bin, 'xdg-open'), '#!/bin/sh\nexit 3\n');
    const printed = await cli.run(['connect', 'prod']);
    expect(printed).toMatchObject({ code: 0, stderr: '' });
    expect(printed.stdout).toContain(`Open in your browser (single use): ${web.args[0]}`);
  });

  it('mariadb is accepted for a mysql resource', async () => {
    answer('mysql', { ...honest('mysql'), program: 'mariadb' });
    const r = await cli.run(['connect', 'prod']);
    expect(r.code).toBe(0);
    expect(started()!.argv[0]).toBe('mariadb');
  });
});
