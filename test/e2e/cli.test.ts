import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ListenerNames } from '../../src/core/config.js';
import { BIN, cliEnv, ensureBuilt } from './serve-process.js';
import { startMariadb, startPostgres, startSlapd, startSshd, type MariadbTarget, type PostgresTarget, type SlapdTarget, type SshdTarget } from '../targets/index.js';

/**
 * The control-plane acceptance: the real `gatehouse` binary against a real `gatehouse serve`
 * process on a fresh data directory, every step through the CLI a user would type.
 */


interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

let work: string;
let server: ChildProcess | undefined;
let serverOut = '';
let apiUrl = '';

/** Starts `gatehouse <args>` as the given user (their own GATEHOUSE_HOME). */
function start(user: string, args: string[], stdin?: string): { child: ChildProcess; done: Promise<Result> } {
  const home = join(work, 'homes', user);
  mkdirSync(home, { recursive: true });
  const child = spawn(process.execPath, [BIN, ...args], { env: cliEnv({ GATEHOUSE_HOME: home, GATEHOUSE_SERVER: apiUrl }), cwd: work });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin!.end(stdin);
  const done = new Promise<Result>((res) => child.on('close', (code) => res({ code: code ?? -1, stdout, stderr })));
  return { child, done };
}

function gh(user: string, args: string[], stdin?: string): Promise<Result> {
  return start(user, args, stdin).done;
}

async function ok(user: string, args: string[], stdin?: string): Promise<string> {
  const r = await gh(user, args, stdin);
  expect({ args, ...r }).toMatchObject({ code: 0, stderr: '' });
  return r.stdout;
}

function tokenOf(user: string): string {
  return (JSON.parse(readFileSync(join(work, 'homes', user, 'credentials.json'), 'utf8')) as { token: string }).token;
}

interface Listener {
  messages: Array<Record<string, unknown> & { type: string; receivedAt: number }>;
  next(pred: (m: Record<string, unknown> & { type: string }) => boolean, timeoutMs: number): Promise<Record<string, unknown> & { type: string; receivedAt: number }>;
  close(): void;
}

/** A WebSocket client on /api/v1/events, as a browser tab or a chat bot would hold one. */
async function listen(user: string): Promise<Listener> {
  const ws = new WebSocket(`${apiUrl.replace(/^http/, 'ws')}/api/v1/events`, { headers: { authorization: `Bearer ${tokenOf(user)}` } });
  const messages: Listener['messages'] = [];
  const waiters: Array<() => void> = [];
  ws.on('message', (data) => {
    messages.push({ ...(JSON.parse(data.toString()) as { type: string }), receivedAt: Date.now() });
    for (const w of waiters.splice(0)) w();
  });
  await new Promise<void>((res, rej) => {
    ws.once('error', rej);
    const check = (): void => (messages.some((m) => m.type === 'hello') ? res() : void waiters.push(check));
    check();
  });
  return {
    messages,
    next: (pred, timeoutMs) =>
      new Promise((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`no matching message for ${user} within ${timeoutMs} ms; got ${messages.map((m) => m.type).join(', ')}`)), timeoutMs);
        const check = (): void => {
          const m = messages.find(pred);
          if (m) {
            clearTimeout(timer);
            res(m);
          } else waiters.push(check);
        };
        check();
      }),
    close: () => ws.close(),
  };
}

beforeAll(async () => {
  ensureBuilt();
  work = mkdtempSync(join(tmpdir(), 'gatehouse-e2e-cli-'));
  const listen = ListenerNames.flatMap((n) => ['--listen', `${n}=127.0.0.1:0`]);
  server = spawn(process.execPath, [BIN, 'serve', '--data', join(work, 'data'), ...listen], { env: cliEnv({}), cwd: work });
  server.stderr!.on('data', (d: Buffer) => (serverOut += d.toString()));
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`gatehouse serve did not start:\n${serverOut}`)), 60_000);
    server!.on('exit', (code) => rej(new Error(`gatehouse serve exited with ${code}:\n${serverOut}`)));
    server!.stdout!.on('data', (d: Buffer) => {
      serverOut += d.toString();
      const m = /listening api (http:\/\/127\.0\.0\.1:\d+)/.exec(serverOut);
      if (m && /gateway CA: /.test(serverOut)) {
        apiUrl = m[1]!;
        clearTimeout(timer);
        res();
      }
    });
  });
});

let sshd: SshdTarget | undefined;
let pg: PostgresTarget | undefined;
let maria: MariadbTarget | undefined;
let slapd: SlapdTarget | undefined;

afterAll(async () => {
  await maria?.stop();
  await slapd?.stop();
  await sshd?.stop();
  await pg?.stop();
  if (server && server.exitCode === null) {
    const exited = new Promise((res) => server!.once('exit', res));
    server.kill('SIGTERM');
    await exited;
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('gatehouse CLI against gatehouse serve', () => {
  it('runs the request → approve → check-out → force check-in workflow', async () => {
    // First run: the printed one-time admin password signs in.
    const password = /one-time password: (\S+)/.exec(serverOut)?.[1];
    expect(password, serverOut).toBeTruthy();
    expect(await ok('admin', ['login', '--user', 'admin', '--password-stdin'], `${password}\n`)).toContain('as admin');

    for (const u of ['alice', 'bob', 'carol']) await ok('admin', ['user', 'add', u, '--password-stdin'], `${u}-secret-pass\n`);
    await ok('admin', ['team', 'add', 'dba']);
    await ok('admin', ['team', 'member', 'dba', 'bob']);
    await ok('admin', ['role', 'create', 'workflow-admins']);
    await ok('admin', ['role', 'set', 'workflow-admins', '--enforcement', 'ALLOW_CONFIGURE_WORKFLOW_SETTINGS=true']);
    await ok('admin', ['role', 'assign', 'workflow-admins', 'bob']);
    // bob owns prod-pg: the enforcement lets him configure the workflow of resources he owns.
    await ok('admin', ['resource', 'add', 'prod-pg', '--type', 'database', '--protocol', 'postgres', '--host', '127.0.0.1', '--port', '5432',
      '--database', 'app', '--owner', 'bob', '--login', 'app_admin', '--password-stdin'], 'target-pw\n');
    await ok('admin', ['resource', 'share', 'prod-pg', '--user', 'alice']);
    await ok('admin', ['resource', 'share', 'prod-pg', '--user', 'carol']);
    await ok('admin', ['resource', 'share', 'prod-pg', '--team', 'dba']);
    for (const u of ['alice', 'bob', 'carol']) await ok(u, ['login', '--user', u, '--password-stdin'], `${u}-secret-pass\n`);

    // Without ALLOW_CONFIGURE_WORKFLOW_SETTINGS the workflow is not alice's to change.
    const refused = await gh('alice', ['workflow', 'set', 'prod-pg', '--mfa']);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/^gatehouse: [^\n]+\n$/);
    await ok('bob', ['workflow', 'set', 'prod-pg', '--timezone', 'UTC', '--schedule', 'daily 00:00-24:00', '--max-duration', '2h',
      '--approvals', '1', '--approver', 'bob', '--require-reason', '--require-ticket', '--ticket-pattern', '^CHG-[0-9]+$', '--single-user']);
    const shown = JSON.parse(await ok('alice', ['workflow', 'show', 'prod-pg', '--json'])) as { settings: { singleUser?: boolean } };
    expect(shown.settings.singleUser).toBe(true);

    // alice asks and waits; bob's open client hears of it within a second.
    const bobWs = await listen('bob');
    const waiting = start('alice', ['request', 'prod-pg', '--reason', 'reindex orders', '--ticket', 'CHG-42', '--wait']);
    const created = await bobWs.next((m) => m.type === 'request_created', 10_000);
    const request = created.request as { id: string; createdAt: string; reason: string; ticket: string };
    expect(request).toMatchObject({ reason: 'reindex orders', ticket: 'CHG-42' });
    expect(created.receivedAt - Date.parse(request.createdAt)).toBeLessThan(1000);

    const toApprove = JSON.parse(await ok('bob', ['requests', '--to-approve', '--json'])) as Array<{ id: string }>;
    expect(toApprove.map((r) => r.id)).toContain(request.id);
    await ok('bob', ['approve', request.id, '--comment', 'go ahead']);
    const waited = await waiting.done;
    expect(waited).toMatchObject({ code: 0, stderr: '' });
    expect(waited.stdout).toMatch(/approved, access until/);

    // alice checks out; carol is told who holds it and for how long.
    expect(await ok('alice', ['checkout', 'prod-pg'])).toMatch(/^Checked out prod-pg until/);
    expect(await ok('alice', ['resources'])).toMatch(/prod-pg\s+database\s+postgres\s+checked out by me — (1 h 59 min|2 h) left/);
    const carol = await gh('carol', ['checkout', 'prod-pg']);
    expect(carol.code).toBe(6);
    expect(carol.stderr).toMatch(/^gatehouse: [^\n]*alice[^\n]*\d+ (h|min)[^\n]*\n$/);

    // bob forces the check-in; alice's client is told.
    const aliceWs = await listen('alice');
    await ok('bob', ['force-checkin', 'prod-pg', '--reason', 'incident 7']);
    const forced = await aliceWs.next((m) => m.type === 'lease_force_checked_in', 1000);
    expect(forced.lease).toMatchObject({ resource: 'prod-pg', holder: 'alice', state: 'force_checked_in' });
    bobWs.close();
    aliceWs.close();

    expect(await ok('admin', ['audit', 'verify'])).toMatch(/^OK: \d+ entries, hash chain intact/);
  });
});

describe('stock clients through gatehouse serve', () => {
  const listenerPort = (name: string): number => Number(new RegExp(`listening ${name} \\w+://127\\.0\\.0\\.1:(\\d+)`).exec(serverOut)?.[1]);

  it('ssh: an admin vaults a key through the CLI, the user registers theirs and runs a command on the target', async () => {
    sshd = await startSshd();
    await ok('admin', ['user', 'add', 'dave', '--password-stdin'], 'dave-secret-pass\n');
    await ok('admin', ['resource', 'add', 'web', '--type', 'machine', '--protocol', 'ssh', '--host', '127.0.0.1', '--port', String(sshd.port),
      '--login', sshd.user, '--key', sshd.clientKey]);
    await ok('admin', ['resource', 'share', 'web', '--user', 'dave']);
    await ok('dave', ['login', '--user', 'dave', '--password-stdin'], 'dave-secret-pass\n');
    const key = join(work, 'dave_ed25519');
    expect(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]).status).toBe(0);
    await ok('dave', ['key', 'add', `${key}.pub`]);
    const port = listenerPort('ssh');
    expect(port).toBeGreaterThan(0);
    const r = spawnSync('ssh', ['-i', key, '-p', String(port), '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
      '-o', 'LogLevel=ERROR', 'dave:web@127.0.0.1', 'uname -s; whoami'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`Linux\n${sshd.user}\n`);
    const sessions = JSON.parse(await ok('admin', ['sessions', '--json'])) as Array<{ user: string; resource: string; state: string; endReason?: string }>;
    expect(sessions).toContainEqual(expect.objectContaining({ user: 'dave', resource: 'web', state: 'ended', endReason: 'client_closed' }));
  });

  it('psql: a one-time launch ticket from the CLI logs in as the vaulted role over verified TLS, once', async () => {
    pg = await startPostgres();
    await ok('admin', ['resource', 'add', 'appdb', '--type', 'database', '--protocol', 'postgres', '--host', '127.0.0.1', '--port', String(pg.port),
      '--database', pg.database, '--login', pg.user, '--password-stdin'], `${pg.password}\n`);
    await ok('admin', ['resource', 'share', 'appdb', '--user', 'dave']);
    const launch = JSON.parse(await ok('dave', ['launch', 'appdb', '--json'])) as { ticket: string; command: string };
    expect(launch.command).toContain('user=dave:appdb');
    const ca = /gateway CA: (\S+)/.exec(serverOut)?.[1] ?? '';
    const conn = `host=localhost port=${listenerPort('postgres')} user=dave:appdb dbname=${pg.database} sslmode=verify-full sslrootcert=${ca}`;
    const psql = () => spawnSync('psql', [conn, '-XAtc', 'select current_user'], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, PGPASSWORD: launch.ticket } });
    const first = psql();
    expect(first.stderr).toBe('');
    expect(first.stdout.trim()).toBe(pg.user);
    const again = psql();
    expect(again.status).not.toBe(0);
    // `connect` launches and starts psql itself, the ticket in its environment.
    const connected = await gh('dave', ['connect', 'appdb'], 'select current_user;\n');
    expect(connected).toMatchObject({ code: 0, stderr: '' });
    expect(connected.stdout).toMatch(new RegExp(`current_user\\s*\\n-+\\n\\s*${pg.user}\\s*\\n\\(1 row\\)`));
    expect(again.stderr).toContain('Gatehouse: the launch ticket is not valid for appdb (unknown, already used or expired).');
  });

  it('mysql: gatehouse connect starts the mysql client with a ticket and it runs as the vaulted user', async () => {
    maria = await startMariadb();
    await ok('admin', ['resource', 'add', 'appmy', '--type', 'database', '--protocol', 'mysql', '--host', '127.0.0.1', '--port', String(maria.port),
      '--database', maria.database, '--login', maria.user, '--password-stdin'], `${maria.password}\n`);
    await ok('admin', ['resource', 'share', 'appmy', '--user', 'dave']);
    const r = await gh('dave', ['connect', 'appmy'], 'select current_user() as who;\n');
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toBe(`who\n${maria.user}@127.0.0.1\n`);
  });

  it('ldap: gatehouse connect starts ldapsearch with the ticket on its standard input; it searches as the vaulted account below the base DN', async () => {
    slapd = await startSlapd();
    await ok('admin', ['resource', 'add', 'corp-ldap', '--type', 'directory', '--protocol', 'ldap', '--host', '127.0.0.1', '--port', String(slapd.port),
      '--login', slapd.user, '--password-stdin', '--base-dn', slapd.peopleDn], `${slapd.password}\n`);
    await ok('admin', ['resource', 'share', 'corp-ldap', '--user', 'dave']);
    const launch = JSON.parse(await ok('dave', ['launch', 'corp-ldap', '--json'])) as { ticket: string; command: string; invocation: { args: string[] } };
    expect(launch.command).toContain(`ldapsearch -x -ZZ -H ldap://127.0.0.1:${listenerPort('ldap')} -D dave:corp-ldap -y /dev/stdin -b ${slapd.peopleDn}`);
    // The ticket is never an argument: ps shows arguments to every user of the machine.
    expect(launch.invocation.args.join(' ')).not.toContain(launch.ticket);

    const r = await gh('dave', ['connect', 'corp-ldap']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`dn: uid=user0001,${slapd.peopleDn}`);
    expect(r.stdout).not.toContain(slapd.restrictedDn);
    const sessions = JSON.parse(await ok('admin', ['sessions', '--json'])) as Array<{ user: string; resource: string; state: string; endReason?: string }>;
    expect(sessions).toContainEqual(expect.objectContaining({ user: 'dave', resource: 'corp-ldap', state: 'ended', endReason: 'client_closed' }));
  });
});
