#!/usr/bin/env node
/**
 * Connect latency through the MySQL door, A/B: two builds of the gateway (two checkouts, each
 * built) in their own processes against one MariaDB target, probed interleaved with a direct
 * connect in every round.
 *
 *   node bench/mysql/connect-ab.mjs A_ROOT B_ROOT [--rounds 5] [--connects 40] [--relays native,node]
 *
 * e.g. A = a worktree of an older commit, B = this checkout (`.`). A runs with its default data
 * path; B once per data path in `--relays` (the MysqlAdapter option `relay`: `native` refuses
 * to start without the addon). Each gateway is ROOT/bench/mysql/gateway.mjs: for a build from
 * before that script, copy this checkout's into the worktree (it reads nothing newer).
 *
 * Each case in each round is a new probe process (load.mjs `connect`): 10 uncounted warm-up
 * connects, then `--connects` mysql2 `createConnection()`s one at a time, client TLS towards
 * the gateway (the CA verified), the target leg in plaintext; direct is plaintext, as run.mjs
 * counts "added". Prints each round's p50 added to direct's, then each case's p50 and p90 over
 * all its connects, and each B case's p50 less A's, paired by round (median and range).
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { run, timeOfDay } from '../lib/pg-relays.mjs';
import { quantile } from '../lib/stats.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = fileURLToPath(new URL('../..', import.meta.url));
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { rounds: { type: 'string', default: '5' }, connects: { type: 'string', default: '40' }, relays: { type: 'string', default: 'native,node' } },
});
const [rootA, rootB] = positionals.map((p) => resolve(p));
if (!rootA || !rootB) throw new Error('usage: connect-ab.mjs A_ROOT B_ROOT [--rounds N] [--connects N] [--relays native,node]');
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

const probe = async (conn) => JSON.parse((await run(process.execPath, [join(here, 'load.mjs'), JSON.stringify({ conn, mode: 'connect', connects: Number(values.connects), warmup: WARMUP })])).trim().split('\n').at(-1));

const password = randomBytes(12).toString('base64url');
try {
  const direct = { host: '127.0.0.1', port: target.port, user: target.user, password: target.password, database: target.database };
  const cases = [{ name: 'direct (plaintext)', conn: direct }];
  const via = (g) => ({ host: '127.0.0.1', port: g.port, user: 'bench:bench-mysql', password, ssl: { ca: g.ca } });
  cases.push({ name: 'A (its default)', conn: via(await gateway(rootA, 'a')) });
  for (const relay of values.relays.split(',').filter(Boolean)) cases.push({ name: `B ${relay}`, conn: via(await gateway(rootB, `b-${relay}`, relay)) });
  console.log(`MySQL connect A/B, ${values.rounds} rounds × ${values.connects} connects per case (after ${WARMUP} warm-ups per probe); A ${rootA} (${git(rootA)}), B ${rootB} (${git(rootB)}); ${target.version}; node ${process.version}`);
  const all = Object.fromEntries(cases.map((c) => [c.name, []]));
  const p50s = Object.fromEntries(cases.map((c) => [c.name, []]));
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const c of cases) {
      const r = await probe(c.conn);
      all[c.name].push(...r.times);
      p50s[c.name].push(r.p50);
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
  // Paired by round: each B case's p50 less A's in the same round, so the drift between rounds cancels.
  for (const c of cases.slice(2)) {
    const diffs = p50s[c.name].map((p, i) => p - p50s[cases[1].name][i]);
    console.log(`${c.name} − A, per round: median ${signed(quantile(diffs, 0.5))} ms (${signed(Math.min(...diffs))} to ${signed(Math.max(...diffs))})`);
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
