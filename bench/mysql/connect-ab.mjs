#!/usr/bin/env node
/**
 * Connect latency through the MySQL door, A/B: two builds of the gateway (two checkouts, each
 * built) in their own processes against one MariaDB target, probed interleaved with a direct
 * connect in every round.
 *
 *   node bench/mysql/connect-ab.mjs A_ROOT B_ROOT [--rounds 5] [--connects 40] [--relays native,node] [--pause 0]
 *
 * e.g. A = a worktree of an older commit, B = this checkout (`.`). A runs with its default data
 * path; B once per data path in `--relays` (the MysqlAdapter option `relay`: `native` refuses
 * to start without the addon). Each gateway is ROOT/bench/mysql/gateway.mjs: for a build from
 * before that script, copy this checkout's into the worktree (it reads nothing newer).
 *
 * Each case in each round is a new probe process (load.mjs `connect`; the order rotates from
 * round to round): 10 uncounted warm-up connects, then `--connects` mysql2
 * `createConnection()`s one at a time, client TLS towards the gateway (the CA verified), the
 * target leg in plaintext; direct is plaintext, as run.mjs
 * counts "added". Prints each round's p50 added to direct's, then each case's p50 and p90 over
 * all its connects, and each B case's p50 less A's, paired by round (median and range), and the
 * same for the whole cycle of a connect and its end() (COM_QUIT until the close). `--pause MS`
 * waits that long after each cycle.
 *
 * Each gateway's CPU per connect is read from /proc around each probe (its warm-ups counted in
 * the divisor): the JavaScript thread, the addon's thread (`gatehouse-relay`) and the rest
 * (libuv's pool, V8's helpers), with how often each of the first two slept, medians over rounds.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { run, timeOfDay } from '../lib/pg-relays.mjs';
import { threadsCpuNs } from '../lib/proc.mjs';
import { quantile } from '../lib/stats.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = fileURLToPath(new URL('../..', import.meta.url));
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { rounds: { type: 'string', default: '5' }, connects: { type: 'string', default: '40' }, relays: { type: 'string', default: 'native,node' }, pause: { type: 'string', default: '0' } },
});
const [rootA, rootB] = positionals.map((p) => resolve(p));
if (!rootA || !rootB) throw new Error('usage: connect-ab.mjs A_ROOT B_ROOT [--rounds N] [--connects N] [--relays native,node] [--pause MS]');
const WARMUP = 10;

const dir = mkdtempSync(join(tmpdir(), 'gh-mysql-ab-'));
const script = join(root, 'test/targets/mariadb.sh');
const target = JSON.parse(execFileSync('bash', [script, 'start'], { encoding: 'utf8' }).trim().split('\n').at(-1));
const cleanups = [() => execFileSync('bash', [script, 'stop', target.dir], { stdio: 'ignore' }), () => rmSync(dir, { recursive: true, force: true })];

/** A gateway from `from`'s build in its own process: { port, pid }. */
async function gateway(from, name, relay) {
  const cfg = { host: target.host, port: target.port, user: target.user, password: target.password, database: target.database, gatewayPassword: password, certDir: join(dir, `certs-${name}`), ...(relay ? { relay } : {}) };
  const child = spawn(process.execPath, [join(from, 'bench/mysql/gateway.mjs'), JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'inherit'] });
  cleanups.unshift(() => child.kill('SIGTERM'));
  const line = await new Promise((ok, fail) => {
    child.stdout.once('data', (d) => ok(String(d)));
    child.once('exit', (code) => fail(new Error(`${name}'s gateway exited ${code}`)));
  });
  return JSON.parse(line.trim());
}

const probe = async (conn) => JSON.parse((await run(process.execPath, [join(here, 'load.mjs'), JSON.stringify({ conn, mode: 'connect', connects: Number(values.connects), warmup: WARMUP, pause: Number(values.pause) })])).trim().split('\n').at(-1));

const password = randomBytes(12).toString('base64url');
try {
  const direct = { host: '127.0.0.1', port: target.port, user: target.user, password: target.password, database: target.database };
  const cases = [{ name: 'direct (plaintext)', conn: direct }];
  const via = (g) => ({ host: '127.0.0.1', port: g.port, user: 'bench:bench-mysql', password, ssl: { ca: g.ca } });
  const add = async (name, from, id, relay) => {
    const g = await gateway(from, id, relay);
    cases.push({ name, conn: via(g), pid: g.pid });
  };
  await add('A (its default)', rootA, 'a');
  for (const relay of values.relays.split(',').filter(Boolean)) await add(`B ${relay}`, rootB, `b-${relay}`, relay);
  console.log(`MySQL connect A/B, ${values.rounds} rounds × ${values.connects} connects per case (after ${WARMUP} warm-ups per probe); A ${rootA} (${git(rootA)}), B ${rootB} (${git(rootB)}); ${target.version}; node ${process.version}`);
  const all = Object.fromEntries(cases.map((c) => [c.name, []]));
  const p50s = Object.fromEntries(cases.map((c) => [c.name, []]));
  const cpu = Object.fromEntries(cases.map((c) => [c.name, []]));
  const cycles = Object.fromEntries(cases.map((c) => [c.name, []]));
  for (let round = 0; round < Number(values.rounds); round++) {
    // Each round starts one case later: a probe's place in the round (right after direct, or
    // after another gateway's burst) costs it up to half a millisecond here, spread evenly.
    for (const c of [...cases.slice(round % cases.length), ...cases.slice(0, round % cases.length)]) {
      const before = c.pid ? threadSplit(c.pid) : undefined;
      const r = await probe(c.conn);
      if (before) cpu[c.name].push(perConnect(before, threadSplit(c.pid), Number(values.connects) + WARMUP));
      all[c.name].push(...r.times);
      p50s[c.name].push(r.p50);
      cycles[c.name].push(r.cycleP50);
    }
    const d = p50s[cases[0].name][round];
    console.log(`  round ${round + 1} ${timeOfDay()}  direct p50 ${d.toFixed(2)} ms; added: ${cases.slice(1).map((c) => `${c.name} +${(p50s[c.name][round] - d).toFixed(2)}`).join(', ')}  (load ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]})`);
  }
  const d50 = quantile(all[cases[0].name], 0.5);
  const d90 = quantile(all[cases[0].name], 0.9);
  console.log('\n| case | connect p50 (added) | p90 (added) | added per round (p50) |');
  console.log('|---|---:|---:|---|');
  for (const c of cases) {
    const p50 = quantile(all[c.name], 0.5);
    const p90 = quantile(all[c.name], 0.9);
    const rounds = c === cases[0] ? '–' : p50s[c.name].map((p, i) => `+${(p - p50s[cases[0].name][i]).toFixed(2)}`).join(' ');
    console.log(c === cases[0] ? `| ${c.name} | ${p50.toFixed(2)} | ${p90.toFixed(2)} | ${rounds} |` : `| ${c.name} | ${p50.toFixed(2)} (+${(p50 - d50).toFixed(2)}) | ${p90.toFixed(2)} (+${(p90 - d90).toFixed(2)}) | ${rounds} |`);
  }
  console.log('\n| case | gateway CPU µs per connect: JS thread (sleeps) | relay thread (sleeps) | the rest | in all |');
  console.log('|---|---:|---:|---:|---:|');
  for (const c of cases.slice(1)) {
    const m = (f) => quantile(cpu[c.name].map(f), 0.5);
    console.log(`| ${c.name} | ${m((x) => x.js).toFixed(0)} (${m((x) => x.jsSleeps).toFixed(1)}) | ${m((x) => x.relay).toFixed(0)} (${m((x) => x.relaySleeps).toFixed(1)}) | ${m((x) => x.rest).toFixed(0)} | ${m((x) => x.js + x.relay + x.rest).toFixed(0)} |`);
  }
  // Paired by round: each B case's p50 less A's in the same round, so the drift between rounds cancels.
  for (const c of cases.slice(2)) {
    const diffs = p50s[c.name].map((p, i) => p - p50s[cases[1].name][i]);
    console.log(`${c.name} − A, per round: median ${signed(quantile(diffs, 0.5))} ms (${signed(Math.min(...diffs))} to ${signed(Math.max(...diffs))})`);
  }
  // The connect with its end(): a reconnecting client's whole cycle, teardown included.
  for (const c of cases.slice(2)) {
    const diffs = cycles[c.name].map((p, i) => p - cycles[cases[1].name][i]);
    console.log(`${c.name} − A, connect + end() cycle p50, per round: median ${signed(quantile(diffs, 0.5))} ms (${signed(Math.min(...diffs))} to ${signed(Math.max(...diffs))})`);
  }
} finally {
  for (const c of cleanups) {
    try {
      await c();
    } catch {
      // best effort
    }
  }
}

/** A gateway's CPU so far (ns) and sleeps: its JavaScript thread, the addon's thread, the rest. */
function threadSplit(pid) {
  const s = { js: 0, jsSleeps: 0, relay: 0, relaySleeps: 0, rest: 0 };
  for (const t of threadsCpuNs(pid)) {
    if (t.tid === pid) [s.js, s.jsSleeps] = [t.ns, t.sleeps];
    else if (t.name === 'gatehouse-relay') [s.relay, s.relaySleeps] = [t.ns, t.sleeps];
    else s.rest += t.ns;
  }
  return s;
}

/** Per connect between two readings: CPU in µs, sleeps as counts. */
function perConnect(a, b, n) {
  return {
    js: (b.js - a.js) / 1e3 / n, jsSleeps: (b.jsSleeps - a.jsSleeps) / n,
    relay: (b.relay - a.relay) / 1e3 / n, relaySleeps: (b.relaySleeps - a.relaySleeps) / n,
    rest: (b.rest - a.rest) / 1e3 / n,
  };
}

function signed(x) {
  return `${x < 0 ? '−' : '+'}${Math.abs(x).toFixed(2)}`;
}

function git(at) {
  try {
    return execFileSync('git', ['-C', at, 'log', '-1', '--format=%h'], { encoding: 'utf8' }).trim();
  } catch {
    return 'not a git checkout';
  }
}
