import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ListenerNames } from '../../src/core/config.js';
import { BIN, cliEnv, ensureBuilt } from './serve-process.js';
import { freePort, startRdp, startRedis, type RdpTarget, type RedisTarget } from '../targets/index.js';
import { totpSource } from './totp-source.js';

/**
 * Tunnels (issue 16) end to end: the real `gatehouse` binary against a real `gatehouse serve`
 * process on a fresh data directory, stock clients (xfreerdp, redis-cli) through
 * `gatehouse tunnel` to real targets (FreeRDP's shadow server with NLA, a private redis).
 */


interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** A child process with its output so far, the time it ended (performance.now()) and its result. */
interface Proc {
  child: ChildProcess;
  out: () => string;
  /** `at`: performance.now() when it closed; `code` -1 when a signal ended it. */
  done: Promise<Result & { at: number; signal: string | null }>;
}

let work: string;
let server: ChildProcess | undefined;
let serverOut = '';
let apiUrl = '';
let rdp: RdpTarget | undefined;
let redis: RedisTarget | undefined;

/** Any program, its output collected; stdin left open when `keepStdin` (an interactive client). */
function run(program: string, args: string[], opts: { env?: NodeJS.ProcessEnv; stdin?: string; keepStdin?: boolean } = {}): Proc {
  const child = spawn(program, args, { env: opts.env ?? process.env, cwd: work });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin!.on('error', () => {});
  if (!opts.keepStdin) child.stdin!.end(opts.stdin);
  const done = new Promise<Result & { at: number; signal: string | null }>((res) =>
    child.on('close', (code, signal) => res({ code: code ?? -1, signal, stdout, stderr, at: performance.now() })),
  );
  return { child, out: () => stdout + stderr, done };
}

/** `gatehouse <args>` as the given user (their own GATEHOUSE_HOME). */
function start(user: string, args: string[], stdin?: string, extraEnv: Record<string, string> = {}): Proc {
  const home = join(work, 'homes', user);
  mkdirSync(home, { recursive: true });
  return run(process.execPath, [BIN, ...args], { env: cliEnv({ GATEHOUSE_HOME: home, GATEHOUSE_SERVER: apiUrl, ...extraEnv }), ...(stdin !== undefined ? { stdin } : {}) });
}

async function gh(user: string, args: string[], stdin?: string): Promise<Result> {
  const { code, stdout, stderr } = await start(user, args, stdin).done;
  return { code, stdout, stderr };
}

async function ok(user: string, args: string[], stdin?: string): Promise<string> {
  const r = await gh(user, args, stdin);
  expect({ args, ...r }).toMatchObject({ code: 0, stderr: '' });
  return r.stdout;
}

interface Tunnel extends Proc {
  port: number;
}

/** `gatehouse tunnel RES --port 0 [...]` until it prints its port (rejects with its output if it exits first). */
async function tunnel(user: string, resource: string, extra: string[] = []): Promise<Tunnel> {
  const p = start(user, ['tunnel', resource, '--port', '0', ...extra]);
  const port = await new Promise<number>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`no tunnel within 15 s:\n${p.out()}`)), 15_000);
    const check = (): void => {
      const m = new RegExp(`^Tunnel to ${resource} \\((tcp|rdp)\\) listening on 127\\.0\\.0\\.1:(\\d+)( until [^\\n]+)?\\. Ctrl-C ends it\\.\\n$`).exec(p.out());
      if (m) {
        clearTimeout(timer);
        res(Number(m[2]));
      }
    };
    p.child.stdout!.on('data', check);
    void p.done.then((r) => {
      clearTimeout(timer);
      rej(new Error(`gatehouse tunnel exited with ${r.code}:\n${r.stdout}${r.stderr}`));
    });
  });
  return { ...p, port };
}

/** Ends a tunnel as Ctrl-C does; resolves with its result. */
async function interrupt(p: Proc): Promise<Result> {
  p.child.kill('SIGINT');
  return p.done;
}

function redisCli(port: number, password: string, args: string[], keepStdin = false): Proc {
  return run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), '-a', password, '--no-auth-warning', ...args], { keepStdin });
}

/** xfreerdp on the RDP target's own Xvfb (it needs a display even for +auth-only). */
function xfreerdp(port: number, args: string[]): Proc {
  const env = { ...process.env, DISPLAY: rdp!.display, XAUTHORITY: rdp!.xauthority, HOME: join(work, 'xfreerdp-home') };
  return run('xfreerdp', [`/v:127.0.0.1:${port}`, ...args], { env });
}

const count = (file: string, needle: string): number => readFileSync(file, 'utf8').split(needle).length - 1;

async function until(what: string, cond: () => boolean, withinMs: number): Promise<void> {
  const deadline = performance.now() + withinMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Whether anything accepts a TCP connection on the loopback port. */
function listening(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), res(true)));
    s.once('error', () => res(false));
  });
}

/**
 * `gatehouse serve` on this file's data directory; resolves once the API listener and the CA
 * are printed. `listen`: NAME=HOST:PORT per listener (port 0 on the first start).
 */
async function startServe(listen: string[]): Promise<void> {
  serverOut = '';
  const child = spawn(process.execPath, [BIN, 'serve', '--data', join(work, 'data'), ...listen.flatMap((l) => ['--listen', l])], { env: cliEnv({}), cwd: work });
  server = child;
  child.stderr!.on('data', (d: Buffer) => (serverOut += d.toString()));
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`gatehouse serve did not start:\n${serverOut}`)), 60_000);
    child.once('exit', (code) => rej(new Error(`gatehouse serve exited with ${code}:\n${serverOut}`)));
    child.stdout!.on('data', (d: Buffer) => {
      serverOut += d.toString();
      const m = /listening api (http:\/\/127\.0\.0\.1:\d+)/.exec(serverOut);
      if (m && /gateway CA: /.test(serverOut)) {
        apiUrl = m[1]!;
        clearTimeout(timer);
        res();
      }
    });
  });
}

/** Every listener where the running serve put it, for a restart on the same ports. */
function listenersNow(): string[] {
  return ListenerNames.map((n) => {
    const port = new RegExp(`^listening ${n} \\w+://127\\.0\\.0\\.1:(\\d+)`, 'm').exec(serverOut)?.[1];
    if (!port) throw new Error(`no ${n} listener in:\n${serverOut}`);
    return `${n}=127.0.0.1:${port}`;
  });
}

/** Stops serve with a signal; resolves with performance.now() at its exit. */
function stopServe(signal: NodeJS.Signals): Promise<number> {
  const child = server!;
  const gone = new Promise<number>((res) => child.once('exit', () => res(performance.now())));
  child.kill(signal);
  return gone;
}

/**
 * How `gatehouse tunnel` prefixes the gateway's end message today: the CLI's `gatehouse: `
 * before the gateway's own `Gatehouse: ` (a doubled prefix; see the report of issue 16's tests).
 */
const GH = 'gatehouse: ';

const always = ['--timezone', 'UTC', '--schedule', 'daily 00:00-24:00', '--max-duration', '2h'];

beforeAll(async () => {
  ensureBuilt();
  work = mkdtempSync(join(tmpdir(), 'gatehouse-e2e-tunnel-'));
  mkdirSync(join(work, 'xfreerdp-home'));
  const targets = Promise.all([startRdp(), startRedis()]);
  await startServe(ListenerNames.map((n) => `${n}=127.0.0.1:0`));
  [rdp, redis] = await targets;

  const password = /one-time password: (\S+)/.exec(serverOut)?.[1];
  expect(password, serverOut).toBeTruthy();
  await ok('admin', ['login', '--user', 'admin', '--password-stdin'], `${password}\n`);
  for (const u of ['alice', 'bob', 'carol']) await ok('admin', ['user', 'add', u, '--password-stdin'], `${u}-secret-pass\n`);

  // win-rdp: approval by bob, single-user (so it can be force checked in).
  await ok('admin', ['resource', 'add', 'win-rdp', '--type', 'machine', '--protocol', 'rdp', '--host', '127.0.0.1', '--port', String(rdp.port),
    '--login', rdp.user, '--password-stdin'], `${rdp.password}\n`);
  for (const u of ['alice', 'bob', 'carol']) await ok('admin', ['resource', 'share', 'win-rdp', '--user', u]);
  await ok('admin', ['workflow', 'set', 'win-rdp', ...always, '--approvals', '1', '--approver', 'bob', '--single-user']);
  // redis-any: no workflow; redis-mfa: a TOTP code per connection; redis-single: check-out, bob owns it.
  for (const name of ['redis-any', 'redis-mfa', 'redis-single']) {
    await ok('admin', ['resource', 'add', name, '--type', 'database', '--protocol', 'tcp', '--host', '127.0.0.1', '--port', String(redis.port),
      ...(name === 'redis-single' ? ['--owner', 'bob'] : [])]);
    for (const u of ['alice', 'bob', 'carol']) await ok('admin', ['resource', 'share', name, '--user', u]);
  }
  // redis-down: nothing listens on its port, which only the tunnel door finds out.
  await ok('admin', ['resource', 'add', 'redis-down', '--type', 'database', '--protocol', 'tcp', '--host', '127.0.0.1', '--port', String(await freePort())]);
  await ok('admin', ['resource', 'share', 'redis-down', '--user', 'alice']);
  // win-cut, redis-cut: the force check-in test's own single-user resources (no approval; bob
  // owns them, so he may force them checked in).
  await ok('admin', ['resource', 'add', 'win-cut', '--type', 'machine', '--protocol', 'rdp', '--host', '127.0.0.1', '--port', String(rdp.port),
    '--login', rdp.user, '--password-stdin', '--owner', 'bob'], `${rdp.password}\n`);
  await ok('admin', ['resource', 'add', 'redis-cut', '--type', 'database', '--protocol', 'tcp', '--host', '127.0.0.1', '--port', String(redis.port), '--owner', 'bob']);
  for (const name of ['win-cut', 'redis-cut']) {
    await ok('admin', ['resource', 'share', name, '--user', 'alice']);
    await ok('admin', ['workflow', 'set', name, ...always, '--single-user']);
  }
  await ok('admin', ['workflow', 'set', 'redis-mfa', ...always, '--mfa']);
  await ok('admin', ['workflow', 'set', 'redis-single', ...always, '--single-user']);
  for (const u of ['alice', 'bob', 'carol']) await ok(u, ['login', '--user', u, '--password-stdin'], `${u}-secret-pass\n`);
}, 120_000);

afterAll(async () => {
  if (server && server.exitCode === null && server.signalCode === null) {
    const exited = new Promise((res) => server!.once('exit', res));
    server.kill('SIGTERM');
    await exited;
  }
  await rdp?.stop();
  await redis?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('gatehouse tunnel against gatehouse serve', () => {
  it('rdp: refused with the reason and fix until approved; then xfreerdp passes NLA through the tunnel with the right password only', async () => {
    const refused = await gh('alice', ['tunnel', 'win-rdp', '--port', '0']);
    expect(refused).toEqual({
      code: 4,
      stdout: '',
      stderr: 'gatehouse: win-rdp requires an approved access request. (try: gatehouse request win-rdp --reason "...")\n',
    });

    const waiting = start('alice', ['request', 'win-rdp', '--reason', 'patch the desktop', '--wait']);
    let pending: Array<{ id: string; resource: string }> = [];
    for (let i = 0; i < 50 && pending.length === 0; i++) {
      pending = (JSON.parse(await ok('bob', ['requests', '--to-approve', '--json'])) as typeof pending).filter((r) => r.resource === 'win-rdp');
      if (pending.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(pending).toHaveLength(1);
    await ok('bob', ['approve', pending[0]!.id, '--comment', 'ok']);
    expect((await waiting.done).code).toBe(0);
    await ok('alice', ['checkout', 'win-rdp']);

    const t = await tunnel('alice', 'win-rdp');
    expect(t.out()).toMatch(/^Tunnel to win-rdp \(rdp\) listening on 127\.0\.0\.1:\d+ until [^\n]+\. Ctrl-C ends it\.\n$/);
    const accepted = count(rdp!.log, rdp!.acceptLine);
    const refusedNla = count(rdp!.log, rdp!.refuseLine);
    const good = await xfreerdp(t.port, [`/u:${rdp!.user}`, `/p:${rdp!.password}`, '/sec:nla', '+auth-only', '/cert:ignore']).done;
    expect(good.code, good.stdout + good.stderr).toBe(0);
    expect(good.stdout + good.stderr).toContain('Authentication only, exit status 0');
    await until('acceptLine', () => count(rdp!.log, rdp!.acceptLine) === accepted + 1, 2000);
    const bad = await xfreerdp(t.port, [`/u:${rdp!.user}`, '/p:wrong-password', '/sec:nla', '+auth-only', '/cert:ignore']).done;
    expect(bad.code, bad.stdout + bad.stderr).toBe(147);
    await until('refuseLine', () => count(rdp!.log, rdp!.refuseLine) === refusedNla + 1, 2000);
    expect(count(rdp!.log, rdp!.acceptLine)).toBe(accepted + 1);

    // Ctrl-C ends the tunnel cleanly (exit 0) and its port closes.
    expect(await interrupt(t)).toMatchObject({ code: 0, stderr: '' });
    expect(await listening(t.port)).toBe(false);
  });

  it('tcp: redis-cli PING through a tunnel; MFA wants --totp; a single-user resource names its holder', async () => {
    const any = await tunnel('alice', 'redis-any');
    expect(any.out()).toMatch(/^Tunnel to redis-any \(tcp\) listening on 127\.0\.0\.1:\d+\. Ctrl-C ends it\.\n$/);
    expect(await redisCli(any.port, redis!.password, ['ping']).done).toMatchObject({ code: 0, stdout: 'PONG\n', stderr: '' });
    expect(await interrupt(any)).toMatchObject({ code: 0, stderr: '' });

    // A refusal by the tunnel door itself (after the launch): its code and fix are printed.
    const down = await gh('alice', ['tunnel', 'redis-down', '--port', '0']);
    expect(down).toEqual({
      // 502 from the door: not a refusal of the user, so the generic exit code.
      code: 1,
      stdout: '',
      stderr: expect.stringMatching(
        /^gatehouse: could not open redis-down: cannot connect to 127\.0\.0\.1:\d+: connect ECONNREFUSED 127\.0\.0\.1:\d+ \(target_unreachable\) To fix: try again; if it persists, tell the owner of redis-down\n$/,
      ),
    });

    const { secret } = JSON.parse(await ok('alice', ['mfa', 'enroll', '--json'])) as { secret: string };
    const code = totpSource(secret);
    await ok('alice', ['mfa', 'verify', await code()]);
    const noCode = await gh('alice', ['tunnel', 'redis-mfa', '--port', '0']);
    expect(noCode).toEqual({ code: 3, stdout: '', stderr: 'gatehouse: redis-mfa requires MFA: pass a TOTP code (--totp CODE)\n' });
    const mfa = await tunnel('alice', 'redis-mfa', ['--totp', await code()]);
    expect(await redisCli(mfa.port, redis!.password, ['ping']).done).toMatchObject({ code: 0, stdout: 'PONG\n' });
    expect(await interrupt(mfa)).toMatchObject({ code: 0, stderr: '' });

    await ok('alice', ['checkout', 'redis-single']);
    const single = await tunnel('alice', 'redis-single');
    expect(await redisCli(single.port, redis!.password, ['ping']).done).toMatchObject({ code: 0, stdout: 'PONG\n' });
    const carol = await gh('carol', ['tunnel', 'redis-single', '--port', '0']);
    expect(carol.stdout).toBe('');
    expect(carol.stderr).toMatch(
      /^gatehouse: redis-single is checked out by alice for another (1 h 59 min|2 h) \(until \S+\)\. \(try: wait, or ask an approver: gatehouse force-checkin redis-single\)\n$/,
    );
    expect(carol.code).toBe(4);
    expect(await interrupt(single)).toMatchObject({ code: 0, stderr: '' });
  });

  it('force check-in cuts a live RDP session and a redis-cli connection; gatehouse tunnel exits 1 with the reason within 1 s', async () => {
    await ok('alice', ['checkout', 'win-cut']);
    await ok('alice', ['checkout', 'redis-cut']);
    const rdpTunnel = await tunnel('alice', 'win-cut');
    const redisTunnel = await tunnel('alice', 'redis-cut');

    // A real RDP session (no +auth-only), left running on the target's own display.
    const accepted = count(rdp!.log, rdp!.acceptLine);
    const session = xfreerdp(rdpTunnel.port, [`/u:${rdp!.user}`, `/p:${rdp!.password}`, '/sec:nla', '/cert:ignore']);
    await until('the RDP login', () => count(rdp!.log, rdp!.acceptLine) === accepted + 1, 10_000);
    // redis-cli subscribed (no terminal: raw replies) holds its connection open until the server goes away.
    const sub = redisCli(redisTunnel.port, redis!.password, ['subscribe', 'ch']);
    await until('the subscription', () => sub.out() === 'subscribe\nch\n1\n', 5000);
    // Let the RDP session settle past its login (capabilities, first frames).
    await new Promise((r) => setTimeout(r, 1000));
    expect(session.child.exitCode).toBeNull();
    expect(sub.child.exitCode).toBeNull();

    // Both force check-ins at once; each tunnel is measured from its own call. `started` is
    // taken just before the force-checkin CLI is spawned, `returned` when its process has
    // closed (both performance.now() in this process), and a tunnel's end when its process has
    // closed: < 1500 ms from the start (node's start-up for the CLI is ~100-200 ms of that on
    // an idle machine; more on a loaded one, measured just before), < 1000 ms from the return.
    // The gateway cuts the tunnel before it answers, so the end usually comes a few ms *before*
    // the return (a negative difference).
    // A CLI's own start-up, on this machine at this moment (two start at once below): the
    // bound from the calls' start allows for it, and never less than 1500 ms.
    const t0 = performance.now();
    await ok('bob', ['--version']);
    const fromStart = Math.max(1500, 1000 + 2 * (performance.now() - t0));
    const force = async (resource: string): Promise<{ started: number; returned: number }> => {
      const started = performance.now();
      await ok('bob', ['force-checkin', resource, '--reason', 'incident 42']);
      return { started, returned: performance.now() };
    };
    const [rdpCall, redisCall] = await Promise.all([force('win-cut'), force('redis-cut')]);

    const [rdpEnd, redisEnd, sessionEnd, subEnd] = await Promise.all([rdpTunnel.done, redisTunnel.done, session.done, sub.done]);
    expect(rdpEnd).toMatchObject({ code: 1, stdout: expect.stringMatching(/^Tunnel to win-cut/), stderr: `${GH}win-cut was force checked in by bob: incident 42; session closed.\n` });
    expect(redisEnd).toMatchObject({ code: 1, stderr: `${GH}redis-cut was force checked in by bob: incident 42; session closed.\n` });
    for (const [end, call] of [[rdpEnd, rdpCall], [redisEnd, redisCall]] as const) {
      expect(end.at - call.started).toBeLessThan(fromStart);
      expect(end.at - call.returned).toBeLessThan(1000);
    }
    // The clients lost their connections: xfreerdp ends on its own (131, XF_EXIT_CONN_FAILED,
    // "Network disconnect!"), redis-cli reports the close and exits 1.
    expect(sessionEnd.code, sessionEnd.stdout + sessionEnd.stderr).toBe(131);
    expect(sessionEnd.stdout).toContain('Network disconnect!');
    expect(sessionEnd.at - rdpCall.returned).toBeLessThan(1000);
    expect(subEnd).toMatchObject({ code: 1, stdout: 'subscribe\nch\n1\n', stderr: 'Error: Server closed the connection\n' });
    expect(subEnd.at - redisCall.returned).toBeLessThan(1000);
    expect(await listening(rdpTunnel.port)).toBe(false);
    expect(await listening(redisTunnel.port)).toBe(false);
    const sessions = JSON.parse(await ok('admin', ['sessions', '--json'])) as Array<{ user: string; resource: string; state: string; endReason?: string }>;
    for (const resource of ['win-cut', 'redis-cut']) {
      expect(sessions).toContainEqual(expect.objectContaining({ user: 'alice', resource, state: 'ended', endReason: 'force_checked_in' }));
    }
  });

  it('gatehouse connect on an rdp resource that hands out its login: xfreerdp signs in with it from stdin, never on a command line', async () => {
    await ok('admin', ['resource', 'add', 'win-handout', '--type', 'machine', '--protocol', 'rdp', '--host', '127.0.0.1', '--port', String(rdp!.port),
      '--login', rdp!.user, '--password-stdin', '--hand-out-credentials'], `${rdp!.password}\n`);
    await ok('admin', ['resource', 'share', 'win-handout', '--user', 'alice']);
    await ok('admin', ['workflow', 'set', 'win-handout', ...always]);
    const accepted = count(rdp!.log, rdp!.acceptLine);
    const env = { DISPLAY: rdp!.display, XAUTHORITY: rdp!.xauthority, HOME: join(work, 'xfreerdp-home') };
    const connected = start('alice', ['connect', 'win-handout'], undefined, env);
    await until('the handed-out login to be accepted', () => count(rdp!.log, rdp!.acceptLine) === accepted + 1, 15_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${connected.out()}`);
    });
    // No process shows the password in its arguments (ps shows them to every user).
    const ps = run('ps', ['-eo', 'args']);
    expect((await ps.done).stdout).not.toContain(rdp!.password);
    expect((await ps.done).stdout).toMatch(/xfreerdp \/v:127\.0\.0\.1:\d+ \/cert:ignore \/u:rdpuser \/from-stdin/);
    // The session is on the record as one that handed out the login.
    const live = JSON.parse(await ok('admin', ['sessions', '--json'])) as Array<{ id: string; resource: string; state: string }>;
    const s = live.find((x) => x.resource === 'win-handout' && x.state === 'live')!;
    expect(s).toBeDefined();
    await ok('admin', ['sessions', 'kill', s.id]);
    const end = await connected.done;
    expect(end.code).toBe(1);
    expect(end.stderr).toContain('this session was ended by admin');
  });

  it('a gateway that stops or goes away ends the tunnel with exit 1; it never reconnects', async () => {
    // SIGTERM: serve ends its live sessions on the way out, the tunnel's included, with a reason.
    const t = await tunnel('alice', 'redis-any');
    const cli = redisCli(t.port, redis!.password, ['subscribe', 'ch']);
    await until('the subscription', () => cli.out() === 'subscribe\nch\n1\n', 5000);
    const ports = listenersNow();
    const [end, serverGone, cliEnd] = await Promise.all([t.done, stopServe('SIGTERM'), cli.done]);
    expect(end).toMatchObject({ code: 1, stderr: `${GH}the gateway is shutting down. Start it again with: gatehouse tunnel redis-any\n` });
    expect(end.at - serverGone).toBeLessThan(1000);
    expect(cliEnd).toMatchObject({ code: 1, stderr: 'Error: Server closed the connection\n' });

    // serve again on the same data directory and ports: the ended tunnel stays ended (its
    // process is gone, its port closed, no live session); a new one is a new decision.
    await startServe(ports);
    expect(await listening(t.port)).toBe(false);
    const live = JSON.parse(await ok('admin', ['sessions', '--json'])) as Array<{ resource: string; state: string; endReason?: string }>;
    expect(live.filter((x) => x.resource === 'redis-any' && x.state === 'live')).toEqual([]);
    expect(live).toContainEqual(expect.objectContaining({ resource: 'redis-any', state: 'ended', endReason: 'shutdown' }));

    // SIGKILL: nothing says goodbye, the link is simply lost.
    const again = await tunnel('alice', 'redis-any');
    expect(await redisCli(again.port, redis!.password, ['ping']).done).toMatchObject({ code: 0, stdout: 'PONG\n' });
    const cli2 = redisCli(again.port, redis!.password, ['subscribe', 'ch']);
    await until('the subscription', () => cli2.out() === 'subscribe\nch\n1\n', 5000);
    const [lost, killedAt, cli2End] = await Promise.all([again.done, stopServe('SIGKILL'), cli2.done]);
    expect(lost).toMatchObject({
      code: 1,
      stderr: `${GH}the connection to the gateway was lost (1006); the tunnel is closed. Start it again with: gatehouse tunnel redis-any\n`,
    });
    expect(lost.at - killedAt).toBeLessThan(1000);
    expect(cli2End).toMatchObject({ code: 1, stderr: 'Error: Server closed the connection\n' });
    expect(await listening(again.port)).toBe(false);
  });
});
