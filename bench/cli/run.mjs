#!/usr/bin/env node
/**
 * CLI start-up: wall time from spawn to exit of `gatehouse --version`, `gatehouse --help`
 * and `gatehouse resources --json` against a local gateway, beside `node -e 0` (Node's own
 * start, the floor no CLI goes under).
 *
 *   npm run build && node bench/cli/run.mjs [--runs 20] [--rounds 3] [--bin PATH]
 *
 * Starts `gatehouse serve` from this checkout on free loopback ports (temporary data dir,
 * the example policies, doors off: only the API matters here), signs in as the first-run
 * admin with `gatehouse login --password-stdin` into a temporary GATEHOUSE_HOME, then runs
 * `rounds` rounds of `runs` runs of each command. Within a round the commands take turns,
 * so noise from a shared machine hits them alike. Each round prints p50/p90 per command;
 * the end prints the range of those across rounds and checks the goals
 * (`--version` <= 150 ms, `resources` <= 250 ms at p50, every round).
 *
 * --bin times another build of the CLI against the same gateway: a checkout of an older
 * commit, built, gives the "before" figures.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('../..', import.meta.url));
const { values } = parseArgs({
  options: { runs: { type: 'string', default: '20' }, rounds: { type: 'string', default: '3' }, bin: { type: 'string', default: join(root, 'bin', 'gatehouse.js') } },
});
const RUNS = Number(values.runs);
const ROUNDS = Number(values.rounds);
const BIN = resolve(values.bin);
const GOALS = { '--version': 150, resources: 250 };

const dir = mkdtempSync(join(tmpdir(), 'gh-bench-cli-'));
const env = { PATH: process.env.PATH, HOME: dir, GATEHOUSE_HOME: join(dir, 'home') };

/** `gatehouse serve` until it prints the CA line; resolves with its API URL and one-time admin password. */
function startGateway() {
  const child = spawn(process.execPath, [join(root, 'bin', 'gatehouse.js'), 'serve', '--data', join(dir, 'data'), '--policies', join(root, 'policies'),
    '--listen', 'api=127.0.0.1:0', '--listen', 'ssh=off', '--listen', 'postgres=off', '--listen', 'mysql=off', '--log-format', 'json'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stderr.resume();
  return new Promise((ok, fail) => {
    child.once('exit', (code) => fail(new Error(`gatehouse serve exited ${code}:\n${out}`)));
    child.stdout.on('data', (d) => {
      out += d;
      if (!out.includes('gateway CA:')) return;
      ok({ child, api: /listening api (\S+)/.exec(out)[1], password: /one-time password: (\S+)/.exec(out)[1] });
    });
  });
}

/** One run: milliseconds from spawn to exit. A command that fails stops the benchmark. */
function timeOnce(args) {
  const start = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}

const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const f = (ms) => ms.toFixed(0).padStart(5);

const gateway = await startGateway();
try {
  const login = spawnSync(process.execPath, [BIN, 'login', '--user', 'admin', '--password-stdin', '--server', gateway.api], { env, input: `${gateway.password}\n`, encoding: 'utf8' });
  if (login.status !== 0) throw new Error(`gatehouse login failed: ${login.stderr}`);
  const cases = [
    { name: 'node -e 0', args: ['-e', '0'] },
    { name: '--version', args: [BIN, '--version'] },
    { name: '--help', args: [BIN, '--help'] },
    { name: 'resources', args: [BIN, 'resources', '--json'] },
  ];
  const resources = JSON.parse(spawnSync(process.execPath, [BIN, 'resources', '--json'], { env, encoding: 'utf8' }).stdout);

  console.log(`CLI start-up: ${BIN}`);
  console.log(`${cpus().length} cores, Node ${process.version}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}; gateway ${gateway.api} with ${resources.length} resources`);
  console.log(`${ROUNDS} rounds x ${RUNS} runs of each command, interleaved; milliseconds, spawn to exit\n`);
  const p50s = new Map(cases.map((c) => [c.name, []]));
  const p90s = new Map(cases.map((c) => [c.name, []]));
  for (const c of cases) timeOnce(c.args); // warm the file cache
  for (let round = 1; round <= ROUNDS; round++) {
    const samples = new Map(cases.map((c) => [c.name, []]));
    for (let i = 0; i < RUNS; i++) for (const c of cases) samples.get(c.name).push(timeOnce(c.args));
    console.log(`round ${round}`);
    for (const c of cases) {
      const xs = samples.get(c.name);
      p50s.get(c.name).push(pct(xs, 50));
      p90s.get(c.name).push(pct(xs, 90));
      console.log(`  ${c.name.padEnd(10)} p50 ${f(pct(xs, 50))}  p90 ${f(pct(xs, 90))}  min ${f(Math.min(...xs))}  max ${f(Math.max(...xs))}`);
    }
  }
  console.log(`\nacross ${ROUNDS} rounds (range of the per-round figures)`);
  let met = true;
  for (const c of cases) {
    const a = p50s.get(c.name);
    const b = p90s.get(c.name);
    const goal = GOALS[c.name];
    const ok = goal === undefined || Math.max(...a) <= goal;
    met &&= ok;
    const verdict = goal === undefined ? '' : `  goal p50 <= ${goal}: ${ok ? 'met' : 'NOT met'}`;
    console.log(`  ${c.name.padEnd(10)} p50 ${f(Math.min(...a))} - ${f(Math.max(...a)).trim()}  p90 ${f(Math.min(...b))} - ${f(Math.max(...b)).trim()}${verdict}`);
  }
  process.exitCode = met ? 0 : 1;
} finally {
  const exited = new Promise((r) => gateway.child.once('exit', r));
  gateway.child.kill('SIGTERM');
  await exited;
  rmSync(dir, { recursive: true, force: true });
}
