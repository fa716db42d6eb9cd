/**
 * Temporary Linux accounts and group elevation over SSH (issue 17), against a real sshd on
 * this machine: the provisioner logs in as the target's sudo-only admin (gh-target-admin,
 * test/targets/sshd.sh) and useradd makes real users here. Every account, group and drop-in
 * a test makes has a unique name and is removed in afterAll, whatever happened.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccountSpec, JitTarget, Provisioner } from '../../src/broker/provisioner.js';
import { JitError } from '../../src/broker/provisioner.js';
import type { JitSettings, TargetCredentials } from '../../src/core/model.js';
import { MARKER_GROUP, SshProvisioner, UID_RANGE } from '../../protocols/ssh/provision.js';
import { SshAdapter } from '../../protocols/ssh/index.js';
import { makeGateway, type GatewayHarness } from './gateway-harness.js';
import { run, startSshFixture, type SshChild, type SshFixture, type TrackedSession } from './ssh-fixture.js';
import { startSshd, type SshdTarget } from '../targets/index.js';

/** sshd.sh's second fixed user: passwordless sudo for the account commands, nothing else. */
const ADMIN = process.env.SSHD_TARGET_ADMIN ?? 'gh-target-admin';
const TAG = Math.random().toString(36).slice(2, 8).replace(/[^a-z0-9]/g, 'x');
const GRANTED = `ghjg${TAG}`;
const OTHER = `ghjo${TAG}`;
const ELEVATED = `ghje${TAG}`;

let gw: GatewayHarness;
let target: SshdTarget;
let prov: Provisioner;
let dir: string;
let adminKey: string;
/** Every account name a test may have made: afterAll removes them all. */
const made = new Set<string>();
const timings: Record<'create' | 'remove' | 'gone', number[]> = { create: [], remove: [], gone: [] };

function name(label: string): string {
  const n = `ghj${TAG}_${label}`;
  made.add(n);
  return n;
}

function host(cmd: string, args: string[]): { code: number; out: string } {
  try {
    return { code: 0, out: execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) };
  } catch (err) {
    const e = err as { status?: number; stdout?: string; stderr?: string };
    return { code: e.status ?? -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

const passwd = (n: string): string[] | undefined => {
  const r = host('getent', ['passwd', n]);
  return r.code === 0 ? r.out.trim().split(':') : undefined;
};

async function jitTarget(resource: string, jit: JitSettings, admin: TargetCredentials): Promise<JitTarget> {
  const r = await gw.store.getResource(resource);
  return { resource: r!, admin, jit };
}

function spec(n: string, deadline?: Date): AccountSpec {
  return { name: n, owner: { user: 'alice', accountId: `acc-${n}` }, note: `Gatehouse alice lease:L1 acc-${n}`, ...(deadline ? { deadline } : {}) };
}

async function create(t: JitTarget, s: AccountSpec): Promise<TargetCredentials> {
  const t0 = performance.now();
  const c = await prov.create(t, s);
  timings.create.push(performance.now() - t0);
  return c;
}

async function remove(t: JitTarget, n: string): ReturnType<Provisioner['remove']> {
  const t0 = performance.now();
  const r = await prov.remove(t, n);
  timings.remove.push(performance.now() - t0);
  return r;
}

/** OpenSSH straight to the target as `login` with `key` (a private key's text). */
function sshArgs(login: string, key: string, command: string): string[] {
  const file = join(dir, `key-${login}-${Math.random().toString(36).slice(2)}`);
  writeFileSync(file, key, { mode: 0o600 });
  return ['-F', '/dev/null', '-i', file, '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${target.knownHosts}`, '-o', 'BatchMode=yes',
    '-o', 'ConnectTimeout=10', '-p', String(target.port), `${login}@127.0.0.1`, command];
}

interface SshResult {
  code: number;
  stdout: string;
  stderr: string;
  /** For an assertion's message: the exit code, OpenSSH's stderr and what the target's sshd logged of this login. */
  why: string;
}

async function ssh(login: string, key: string, command: string): Promise<SshResult> {
  const r = await run('ssh', sshArgs(login, key, command)).exited;
  const logged = existsSync(target.log) ? readFileSync(target.log, 'utf8').split('\n').filter((l) => l.includes(login)).slice(-20).join('\n') : '';
  const why = `ssh ${login} exited ${r.code ?? r.signal}; stderr: ${r.stderr}\nsshd log:\n${logged}`;
  return { code: r.code ?? -1, stdout: r.stdout, stderr: r.stderr, why };
}

/** Polls `probe` until it is true; fails after `ms`. */
async function until(what: string, probe: () => boolean, ms = 10_000): Promise<void> {
  const end = performance.now() + ms;
  while (!probe()) {
    if (performance.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * The live processes of `user` (a name or UID), as `ps` lists them; '' when there are none.
 * Killed ones may stay zombies a while: this machine's PID 1 reaps orphans lazily.
 */
const processesOf = (user: string): string =>
  host('ps', ['-o', 'pid=,ppid=,stat=,args=', '-u', user]).out.split('\n').filter((l) => l.trim() && !/^\s*\d+\s+\d+\s+Z/.test(l)).join('\n');

beforeAll(async () => {
  [gw, target] = await Promise.all([makeGateway(), startSshd()]);
  dir = mkdtempSync(join(tmpdir(), 'gh-jit-ssh-'));
  adminKey = readFileSync(target.clientKey, 'utf8');
  for (const g of [GRANTED, OTHER, ELEVATED]) execFileSync('groupadd', [g]);
  const base = { type: 'machine' as const, protocol: 'ssh' as const, host: target.host, port: target.port };
  await gw.addResource({ ...base, name: 'jit-linux', credentials: { login: ADMIN, privateKey: adminKey } });
  await gw.addResource({ ...base, name: 'jit-nosudo', credentials: { login: target.user, privateKey: adminKey } });
  prov = new SshAdapter().provisioner!(gw.broker.portFor({ protocol: 'ssh', loginExample: '' }));
});

afterAll(async () => {
  for (const n of made) {
    if (!passwd(n)) continue;
    host('pkill', ['-KILL', '-u', n]);
    for (let i = 0; i < 50 && host('userdel', ['-r', n]).code === 8; i++) {
      host('pkill', ['-KILL', '-u', n]);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  for (const n of made) {
    rmSync(`/etc/sudoers.d/gatehouse-${n}`, { force: true });
    rmSync(`/etc/sudoers.d/gatehouse-${n}.new`, { force: true });
  }
  host('gpasswd', ['-d', ADMIN, ELEVATED]);
  for (const g of [GRANTED, OTHER, ELEVATED]) host('groupdel', [g]);
  if (process.env.GATEHOUSE_TIMINGS) {
    const fmt = (xs: number[]): string => xs.map((x) => x.toFixed(0)).join(', ');
    console.info(`jit-ssh create ms: ${fmt(timings.create)}; remove ms: ${fmt(timings.remove)}; grant end to account gone (gateway) ms: ${fmt(timings.gone)}`);
  }
  await Promise.all([gw?.cleanup(), target?.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('ssh provisioner, vaulted login with sudo', () => {
  const jit: JitSettings = { ephemeral: { grants: [GRANTED], sudo: '/usr/bin/id -u' } };

  it('creates a key-only account with the granted group and nothing more, and a sudo drop-in that allows exactly its command until the deadline', async () => {
    const t = await jitTarget('jit-linux', jit, { login: ADMIN, privateKey: adminKey });
    const n = name('a');
    const deadline = new Date(Date.now() + 3_600_000);
    const creds = await create(t, spec(n, deadline));
    expect(creds.login).toBe(n);
    expect(creds.password).toBeUndefined();
    expect(creds.privateKey).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----/);

    const r = await ssh(n, creds.privateKey!, 'whoami; id -nG; sudo -n /usr/bin/id -u; echo "rc=$?"; sudo -n /usr/bin/id -g; echo "rc=$?"; sudo -n /usr/bin/whoami; echo "rc=$?"');
    const lines = r.stdout.trim().split('\n');
    expect(lines[0], r.why).toBe(n);
    expect(new Set(lines[1]!.split(' '))).toEqual(new Set([n, MARKER_GROUP, GRANTED]));
    expect(lines.slice(2)).toEqual(['0', 'rc=0', 'rc=1', 'rc=1']);
    expect(r.stderr).toContain('sudo: a password is required');

    const [, pw, uid, , gecos, home, shell] = passwd(n)!;
    expect(pw).toBe('x');
    expect(Number(uid)).toBeGreaterThanOrEqual(UID_RANGE.low);
    expect(Number(uid)).toBeLessThanOrEqual(UID_RANGE.high);
    expect(gecos).toBe(`Gatehouse alice lease_L1 acc-${n}`);
    expect(shell).toBe('/bin/bash');
    // '*': no password can match, and keys still work (sshd without PAM refuses a '!' account outright).
    const shadow = host('getent', ['shadow', n]).out.trim().split(':');
    expect(shadow[1]).toBe('*');
    const dayAfter = Math.floor(deadline.getTime() / 86_400_000) + 1;
    expect(Number(shadow[7])).toBe(dayAfter);
    const keys = statSync(join(home!, '.ssh', 'authorized_keys'));
    expect(keys.mode & 0o777).toBe(0o600);
    expect(keys.uid).toBe(Number(uid));

    const drop = `/etc/sudoers.d/gatehouse-${n}`;
    expect(statSync(drop).mode & 0o777).toBe(0o440);
    const notAfter = deadline.toISOString().replace(/[-:T]/g, '').replace(/\.\d{3}Z$/, 'Z');
    expect(readFileSync(drop, 'utf8')).toBe(`${n} ALL=(ALL) NOTAFTER=${notAfter} NOPASSWD: /usr/bin/id -u\n`);
    expect(host('visudo', ['-cf', drop]).code).toBe(0);
    expect(host('visudo', ['-c']).code).toBe(0);
    expect(existsSync(`${drop}.new`)).toBe(false);
  });

  it('a deadline already past leaves no sudo: NOTAFTER is enforced by sudo itself', async () => {
    const t = await jitTarget('jit-linux', jit, { login: ADMIN, privateKey: adminKey });
    const n = name('p');
    // A second ago, so the account itself (expiring the day after) still logs in.
    const creds = await create(t, spec(n, new Date(Date.now() - 1000)));
    const r = await ssh(n, creds.privateKey!, 'whoami; sudo -n /usr/bin/id -u; echo "rc=$?"');
    expect(r.stdout.trim().split('\n'), r.why).toEqual([n, 'rc=1']);
    expect((await remove(t, n)).done).toBe(true);
  });

  it('remove ends a live session and a detached process, deletes the account, its home and its drop-in; again is done; the UID is not reused', async () => {
    const t = await jitTarget('jit-linux', jit, { login: ADMIN, privateKey: adminKey });
    const n = name('r');
    const creds = await create(t, spec(n, new Date(Date.now() + 3_600_000)));
    const [, , uid, , , home] = passwd(n)!;
    const session = run('ssh', sshArgs(n, creds.privateKey!, 'setsid sleep 601 </dev/null >/dev/null 2>&1 & echo started; exec sleep 600'));
    await session.waitFor('started');
    await until('both sleeps run', () => host('pgrep', ['-u', n, '-f', '^sleep 60[01]$']).out.trim().split('\n').length === 2);

    const res = await remove(t, n);
    expect(res).toEqual({ done: true, detail: 'its processes were killed' });
    expect(passwd(n)).toBeUndefined();
    expect(existsSync(home!)).toBe(false);
    expect(existsSync(`/etc/sudoers.d/gatehouse-${n}`)).toBe(false);
    expect(processesOf(uid!)).toBe('');
    const ended = await session.exited;
    expect(ended.code).not.toBe(0);

    expect(await remove(t, n)).toEqual({ done: true });
    const next = name('n');
    await create(t, spec(next));
    expect(Number(passwd(next)![2])).toBeGreaterThan(Number(uid));
    expect(readFileSync('/var/lib/gatehouse/uid-watermark', 'utf8').trim()).toBe(passwd(next)![2]);
    expect((await remove(t, next)).done).toBe(true);
  });

  it('an account made by hand with a similar name is never removed or listed, nor a marked one outside the UID range', async () => {
    const t = await jitTarget('jit-linux', jit, { login: ADMIN, privateKey: adminKey });
    const hand = name('h');
    expect(host('useradd', ['-m', '-u', String(UID_RANGE.low + 4000 + Math.floor(Math.random() * 900)), hand]).code).toBe(0);
    const stray = name('s');
    execFileSync('useradd', ['-m', '-G', MARKER_GROUP, stray]);
    const ours = name('o');
    await create(t, spec(ours));

    expect(await remove(t, hand)).toEqual({ done: true, detail: `${hand} was left alone: not in ${MARKER_GROUP} (not an account Gatehouse made)` });
    expect((await remove(t, stray)).detail).toMatch(/left alone: UID \d+ outside 60000-64999/);
    expect(passwd(hand)).toBeDefined();
    expect(passwd(stray)).toBeDefined();
    const marked = await prov.listMarked(t);
    expect(marked).toContain(ours);
    expect(marked).not.toContain(hand);
    expect(marked).not.toContain(stray);
    expect(marked).not.toContain(ADMIN);
    expect((await remove(t, ours)).done).toBe(true);
    expect(await prov.listMarked(t)).not.toContain(ours);
  });

  it('a name already taken is refused and the account that has it is left as it was', async () => {
    const t = await jitTarget('jit-linux', jit, { login: ADMIN, privateKey: adminKey });
    const hand = name('t');
    execFileSync('useradd', ['-m', hand]);
    const err = await prov.create(t, spec(hand)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JitError);
    expect((err as JitError).message).toBe(`an account named ${hand} already exists on jit-linux; it was left alone`);
    expect(passwd(hand)).toBeDefined();
    expect(host('id', ['-nG', hand]).out.trim()).toBe(hand);
  });

  it('a group that does not exist is refused before anything is made', async () => {
    const t = await jitTarget('jit-linux', { ephemeral: { grants: [`ghjz${TAG}`] } }, { login: ADMIN, privateKey: adminKey });
    const n = name('g');
    const err = await prov.create(t, spec(n)).catch((e: unknown) => e);
    expect((err as JitError).kind).toBe('refused');
    expect((err as JitError).message).toBe(`the group ghjz${TAG} does not exist on jit-linux`);
    expect(passwd(n)).toBeUndefined();
  });

  it('settings that would mark the vaulted login are refused by check()', () => {
    expect(prov.check({ elevate: { grants: [MARKER_GROUP] } })).toEqual([`elevate.grants: ${MARKER_GROUP} marks temporary accounts for removal; the vaulted login must never be in it`]);
    expect(prov.check(jit)).toEqual([]);
    expect(prov.nameLimit).toBe(32);
  });
});

describe('ssh provisioner, vaulted login without sudo rights', () => {
  it('create fails naming the commands it cannot run through sudo, and leaves nothing behind', async () => {
    const t = await jitTarget('jit-nosudo', { ephemeral: { grants: [GRANTED], sudo: 'ALL' } }, { login: target.user, privateKey: adminKey });
    const n = name('x');
    const err = await prov.create(t, spec(n)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JitError);
    expect((err as JitError).kind).toBe('missing_right');
    expect((err as JitError).message).toBe(`the vaulted login ${target.user} cannot run groupadd, useradd, install, usermod, userdel, pkill, rm, visudo, mv via sudo on jit-nosudo (sudo -n -l refused; it needs passwordless sudo for them, see the SSH README)`);
    expect(passwd(n)).toBeUndefined();
    expect(existsSync(`/etc/sudoers.d/gatehouse-${n}`)).toBe(false);
  });

  it('elevation fails the same way', async () => {
    const t = await jitTarget('jit-nosudo', { elevate: { grants: [ELEVATED] } }, { login: target.user, privateKey: adminKey });
    const err = await prov.elevate(t, { user: 'alice', accountId: 'e1' }).catch((e: unknown) => e);
    expect((err as JitError).kind).toBe('missing_right');
    expect((err as JitError).message).toMatch(/^the vaulted login gh-target cannot run usermod via sudo on jit-nosudo/);
  });
});

describe('ssh provisioner, elevation of the vaulted login', () => {
  it('adds the group for the grant; unelevate takes it away and ends exactly the sessions that hold it', async () => {
    const admin = { login: ADMIN, privateKey: adminKey };
    const t = await jitTarget('jit-linux', { elevate: { grants: [ELEVATED] } }, admin);
    const before = run('ssh', sshArgs(ADMIN, adminKey, `echo started; exec sleep 597`));
    await before.waitFor('started');
    expect(host('id', ['-nG', ADMIN]).out.split(' ').map((s) => s.trim())).not.toContain(ELEVATED);

    await prov.elevate(t, { user: 'alice', accountId: 'e2' });
    await prov.elevate(t, { user: 'alice', accountId: 'e2' });
    expect(host('id', ['-nG', ADMIN]).out.trim().split(' ')).toContain(ELEVATED);
    const during = run('ssh', sshArgs(ADMIN, adminKey, 'id -nG; exec sleep 598'));
    await during.waitFor(ELEVATED);

    const res = await prov.unelevate(t);
    expect(res.done).toBe(true);
    expect(res.detail).toMatch(new RegExp(`^ended [1-9]\\d* process(es)? of ${ADMIN} that held ${ELEVATED}$`));
    expect(host('id', ['-nG', ADMIN]).out.trim().split(' ')).not.toContain(ELEVATED);
    expect((await during.exited).code).not.toBe(0);
    await until('the elevated sleep is gone', () => host('pgrep', ['-u', ADMIN, '-f', '^sleep 598$']).code !== 0);
    // The session from before the grant never held the group: it is still there.
    expect(host('pgrep', ['-u', ADMIN, '-f', '^sleep 597$']).code).toBe(0);
    before.child.kill('SIGTERM');
    await before.exited;
    expect(await prov.unelevate(t)).toEqual({ done: true });
  });
});

// The provisioner is the adapter's: the same class the gateway registers.
it('the SSH adapter hands out its provisioner', () => {
  expect(prov).toBeInstanceOf(SshProvisioner);
  expect(prov.protocol).toBe('ssh');
});

/**
 * Through the gateway: OpenSSH to the SSH door of a resource with `jit.ephemeral`, the
 * JitManager making and removing the account. The fake workflow clock is set to the real
 * time first: the account's expiry date and sudo's NOTAFTER are read by the real machine.
 */
describe('ssh gateway with ephemeral accounts', () => {
  let fx: SshFixture;
  /** Marker-group members before these tests: afterAll removes any gh_ account made since. */
  let before: Set<string>;
  const markedNow = (): string[] => host('getent', ['group', MARKER_GROUP]).out.trim().split(':')[3]?.split(',').filter(Boolean) ?? [];
  const jit = { ephemeral: { grants: [GRANTED] } };

  beforeAll(async () => {
    before = new Set(markedNow());
    fx = await startSshFixture();
    fx.gw.clock.set(new Date());
    const credentials = { login: ADMIN, privateKey: readFileSync(fx.target.clientKey, 'utf8') };
    const always = { timezone: 'UTC', schedule: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], start: '00:00', end: '24:00' }], maxDurationMinutes: 60 };
    await fx.addSshResource('jit-single', { settings: { singleUser: true, limitAccessTime: always }, credentials });
    await fx.addSshResource('jit-open', { credentials });
    await fx.addSshResource('jit-denied', { credentials: { login: fx.target.user, privateKey: credentials.privateKey } });
    for (const r of ['jit-single', 'jit-open', 'jit-denied']) await fx.gw.engine.directory.setJit('admin', r, jit);
    await fx.gw.useDoor(new SshAdapter());
  });

  afterAll(async () => {
    await fx?.close();
    for (const n of markedNow()) if (!before.has(n) && n.startsWith('gh_')) made.add(n);
  });

  /** The account a live session of `resource` by alice logs in as, from `id -un` on the target. */
  async function interactive(resource: string): Promise<{ c: SshChild; account: string; session: TrackedSession }> {
    const session = fx.nextSession(resource);
    const c = fx.spawnSsh('alice', resource, ['-tt', 'echo "gh-ready:$(id -un):$(id -nG | tr " " ,)"; exec sleep 600']);
    await c.waitFor('gh-ready:');
    await until('the id line is complete', () => /gh-ready:\S+:\S+\r?\n/.test(c.stdout()));
    const [, account, groups] = /gh-ready:(\S+):(\S+)\r?\n/.exec(c.stdout())!;
    made.add(account!);
    expect(new Set(groups!.split(','))).toEqual(new Set([account, MARKER_GROUP, GRANTED]));
    return { c, account: account!, session: await session };
  }

  /** Waits until `account` is gone from the machine; resolves with how long that took after `t0`. */
  async function goneWithin(account: string, t0: number, ms = 2000): Promise<number> {
    await until(`${account} is removed`, () => passwd(account) === undefined, ms);
    timings.gone.push(performance.now() - t0);
    return performance.now() - t0;
  }

  it('a check-out gets its own account, shared by its connections; check-in cuts the session and removes the account within 2 s', async () => {
    await fx.gw.engine.leases.checkout('alice', 'jit-single');
    const first = await fx.ssh('alice', 'jit-single', ['whoami']);
    expect(first.code).toBe(0);
    const name = first.stdout.trim();
    made.add(name);
    expect(name).toMatch(/^gh_alice_[a-z0-9]{8}$/);
    const { c, account, session } = await interactive('jit-single');
    expect(account).toBe(name);
    expect((await fx.gw.store.getSession(session.id))?.account).toBe(name);
    const uid = passwd(name)![2]!;

    const t0 = performance.now();
    await fx.gw.engine.leases.checkin('alice', 'jit-single');
    const ms = await goneWithin(name, t0);
    expect(ms).toBeLessThan(2000);
    const r = await c.exited;
    expect(r.code).not.toBe(0);
    expect(processesOf(uid)).toBe('');
    expect(existsSync(`/home/${name}`)).toBe(false);
    await fx.gw.broker.jit.drain();
    const audit = await fx.gw.store.listAudit({ action: 'jit.remove' });
    expect(audit.some((e) => e.data.account === name)).toBe(true);
  });

  it('the lease expiring on the workflow clock cuts the session and removes the account within 2 s; the next grant gets a new one', async () => {
    await fx.gw.engine.leases.checkout('alice', 'jit-single');
    const { c, account } = await interactive('jit-single');
    const t0 = performance.now();
    fx.gw.clock.advance(60 * 60_000);
    expect(await goneWithin(account, t0)).toBeLessThan(2000);
    expect((await c.exited).code).not.toBe(0);

    await fx.gw.engine.leases.checkout('alice', 'jit-single');
    const next = await fx.ssh('alice', 'jit-single', ['whoami']);
    made.add(next.stdout.trim());
    expect(next.stdout.trim()).toMatch(/^gh_alice_[a-z0-9]{8}$/);
    expect(next.stdout.trim()).not.toBe(account);
    await fx.gw.engine.leases.checkin('alice', 'jit-single');
    await goneWithin(next.stdout.trim(), performance.now());
  });

  it('without a lease or approval the session is the grant: the account goes when the connection ends', async () => {
    const r = await fx.ssh('alice', 'jit-open', ['whoami']);
    expect(r.code).toBe(0);
    const name = r.stdout.trim();
    made.add(name);
    expect(name).toMatch(/^gh_alice_[a-z0-9]{8}$/);
    await goneWithin(name, performance.now());
  });

  it('a vaulted login without sudo rights: the connection fails naming the missing right, and no account is left', async () => {
    const r = await fx.ssh('alice', 'jit-denied', ['whoami']);
    expect(r.code).toBe(255);
    expect(r.stderr).toContain(`the vaulted login ${fx.target.user} cannot run groupadd, useradd, install, usermod, userdel, pkill, rm via sudo on jit-denied`);
    expect(r.stdout).toBe('');
    await fx.gw.broker.jit.drain();
    expect(markedNow().filter((n) => !before.has(n) && !made.has(n))).toEqual([]);
    const fail = await fx.gw.store.listAudit({ action: 'session.fail' });
    expect(fail.some((e) => e.data.resource === 'jit-denied' && String(e.data.message).includes('cannot run groupadd'))).toBe(true);
  });
});
