#!/usr/bin/env node
/**
 * Point selects (sysbench-style `SELECT c FROM sbtest WHERE id = ?`) from mysql2 at 32
 * connections, text protocol (COM_QUERY) and prepared (COM_STMT_EXECUTE), several ways in the
 * same run against the same MariaDB: direct (plaintext); direct with TLS (what the client's and
 * MariaDB's own TLS cost, without a proxy; ratios stay to plaintext); through a bare Node TCP proxy
 * (`pipe()` both ways: the floor for any proxy in Node); through nginx's stream module with one
 * worker (test/targets/nginx.sh stream: a TCP relay written in C, no TLS, no parsing; nginx cannot
 * terminate MySQL's TLS, which starts inside the protocol); through Gatehouse with client TLS
 * and the target leg in plaintext (`upstreamTls: 'disable'`); and through Gatehouse with
 * TLS on both legs (target CA verified, the default against a target that offers TLS), each
 * Gatehouse case once per data path in `--relays` (`native`: the addon, the default where it
 * loads; `node`: the relay on Node's streams). Then connect latency p50/p90 for each, from a
 * separate probe process.
 *
 *   npm run build && node bench/mysql/run.mjs [--seconds 5] [--rounds 3] [--clients 32] [--connects 200] [--connect-rounds 5] [--pause 0] [--rows 10000] [--relays native,node] [--no-target-tls] [--timings] [--connect-only]
 *
 * The connects run in `--connect-rounds` rounds, every case in each (`--connects` in all per case,
 * split evenly), and the p50 and p90 are over all of a case's connects; each case's p50 added to
 * direct's in the same round is printed too. Each probe process first connects 10 times
 * uncounted (a new process compiles mysql2's and TLS's code on its first connects); `--pause MS`
 * waits that long after each connect's end (a machine's idle states then show). `--connect-only`
 * skips the point selects.
 *
 * `--timings`: during the connect phase the gateways log at debug level, and the medians of
 * their own `login timings` (protocols/mysql/session.ts: accept to the client's OK, step by
 * step; the warm-up connects' left out) are printed beside each case's connect figures.
 *
 * Direct and gateway runs alternate, `rounds` times each, and the median counts: on a shared
 * machine the background load drifts, and alternating spreads it over both sides.
 * Runs as root (the target runs as the mysql OS user). The gateway runs in this process
 * (SystemClock, in-memory SQLite, one open resource, gateway password auth, remembered for
 * 60 s like a pool would see it); the load runs in a child process.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { clearInterval, setInterval } from 'node:timers';
import { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';
import { procCpuMicros } from '../lib/proc.mjs';
import { quantile } from '../lib/stats.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dist = (p) => import(join(root, 'dist', p));
const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' }, clients: { type: 'string', default: '32' },
    connects: { type: 'string', default: '200' }, rows: { type: 'string', default: '10000' },
    relays: { type: 'string', default: 'native,node' }, 'no-target-tls': { type: 'boolean', default: false }, timings: { type: 'boolean', default: false },
    'connect-rounds': { type: 'string', default: '5' }, pause: { type: 'string', default: '0' }, 'connect-only': { type: 'boolean', default: false },
  },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const CLIENTS = Number(values.clients);
const CONNECTS = Number(values.connects);
const ROWS = Number(values.rows);
const CONNECT_ROUNDS = Number(values['connect-rounds']);
/** Connects per probe process before the counted ones (a new process compiles mysql2's and TLS's code on its first). */
const WARMUP = 10;

const [{ ensurePki }, { MysqlAdapter }, { benchGateway, silentLogger }, { createLogger }] = await Promise.all([
  dist('src/pki/pki.js'), dist('protocols/mysql/index.js'), import('../lib/gateway.mjs'), dist('src/core/log.js'),
]);

/** `--timings`: each gateway's `login timings` lines, once its logger is turned to debug for the connect phase. */
const timingLogs = [];
function timingLogger() {
  const lines = [];
  const log = createLogger({ level: 'info' }, {
    format: 'json',
    destination: new Writable({
      write(chunk, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l.includes('"login timings"')) lines.push(JSON.parse(l).ms);
        cb();
      },
    }),
  });
  timingLogs.push(log);
  return { log, lines };
}

const dir = mkdtempSync(join(tmpdir(), 'gh-bench-mysql-'));
const script = join(root, 'test/targets/mariadb.sh');
const target = JSON.parse(execFileSync('bash', [script, 'start'], { encoding: 'utf8' }).trim().split('\n').at(-1));
const cleanups = [() => execFileSync('bash', [script, 'stop', target.dir], { stdio: 'ignore' }), () => rmSync(dir, { recursive: true, force: true })];

/** CPU seconds (user + system) a process has used, from /proc. */
const cpuOf = (pid) => procCpuMicros(pid) / 1e6;

/**
 * Runs one load child. Besides its throughput, counts the CPU the three processes involved
 * (load client, gateway or proxy = this process, MariaDB) spent on the run: on a shared machine the
 * CPU per query is steadier than queries per second.
 */
function load(cfg, proxyPids = []) {
  const proxyCpu = () => proxyPids.reduce((s, pid) => s + cpuOf(pid), 0);
  return new Promise((resolve, reject) => {
    const before = { me: process.cpuUsage(), db: cpuOf(target.pid), proxy: proxyCpu() };
    const child = spawn(process.execPath, [join(root, 'bench/mysql/load.mjs'), JSON.stringify(cfg)]);
    let childCpu = 0;
    const sample = setInterval(() => {
      try {
        childCpu = cpuOf(child.pid);
      } catch {
        // exited
      }
    }, 50);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code) => {
      clearInterval(sample);
      if (code !== 0) return reject(new Error(`load exited ${code}:\n${out}`));
      const me = process.cpuUsage(before.me);
      const r = JSON.parse(out.trim().split('\n').at(-1));
      resolve({ ...r, cpu: { client: childCpu, gateway: (me.user + me.system) / 1e6 + proxyCpu() - before.proxy, db: cpuOf(target.pid) - before.db } });
    });
  });
}

async function seed() {
  const c = await mysql.createConnection({ host: target.host, port: target.port, user: target.user, password: target.password, database: target.database });
  await c.query('CREATE TABLE sbtest (id INT PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL)');
  for (let i = 0; i < ROWS; i += 1000) {
    const rows = Array.from({ length: Math.min(1000, ROWS - i) }, (_, j) => [i + j + 1, Math.floor(Math.random() * ROWS), randomBytes(60).toString('hex'), randomBytes(30).toString('hex')]);
    await c.query('INSERT INTO sbtest VALUES ?', [rows]);
  }
  await c.end();
}

async function gateway(pki, password, upstreamTls, relay) {
  const { broker, stop } = await benchGateway({
    password,
    resource: {
      name: 'bench-mysql', type: 'database', protocol: 'mysql', host: target.host, port: target.port, database: target.database,
      credentials: { login: target.user, password: target.password },
    },
  });
  const adapter = new MysqlAdapter({ relay, ...(upstreamTls === 'disable' ? { upstreamTls } : { upstreamCa: { '*': readFileSync(target.ca, 'utf8') } }) });
  const logged = values.timings ? timingLogger() : undefined;
  const listener = await adapter.listen({ host: '127.0.0.1', port: 0, broker, log: logged?.log ?? silentLogger, tls: { cert: pki.certPem, key: pki.keyPem, ca: pki.caCertPem } });
  cleanups.unshift(async () => { await listener.close(); await stop(); });
  return { port: listener.address.port, timings: logged?.lines };
}

/** The floor for any proxy written in Node: socket.pipe() both ways, no TLS, no parsing. */
async function pipeProxy() {
  const server = createServer({ noDelay: true }, (c) => {
    const u = netConnect({ port: target.port, host: '127.0.0.1', noDelay: true });
    c.pipe(u);
    u.pipe(c);
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.unshift(() => server.close());
  return server.address().port;
}

/** nginx's stream module in front of the target, one worker; its master's and worker's pids for the CPU count. */
function nginxStream() {
  const nginx = join(root, 'test/targets/nginx.sh');
  const n = JSON.parse(execFileSync('bash', [nginx, 'stream', `127.0.0.1:${target.port}`], { encoding: 'utf8' }).trim().split('\n').at(-1));
  cleanups.unshift(() => execFileSync('bash', [nginx, 'stop', n.dir], { stdio: 'ignore' }));
  const workers = execFileSync('pgrep', ['-P', String(n.pid)], { encoding: 'utf8' }).trim().split('\n').map(Number);
  return { port: n.port, pids: [n.pid, ...workers] };
}

try {
  await seed();
  const pki = await ensurePki(join(dir, 'certs'));
  const gwPassword = randomBytes(12).toString('base64url');
  const gw = ({ port }) => ({ host: '127.0.0.1', port, user: 'bench:bench-mysql', password: gwPassword, ssl: { ca: pki.caCertPem } });
  const direct = { host: '127.0.0.1', port: target.port, user: target.user, password: target.password, database: target.database };
  const nginx = nginxStream();
  const cases = [
    { name: 'direct (plaintext)', conn: direct },
    { name: 'direct (TLS)', conn: { ...direct, ssl: { ca: readFileSync(target.ca, 'utf8') } } },
    { name: 'bare TCP proxy (Node pipe)', conn: { ...direct, port: await pipeProxy() } },
    { name: 'nginx stream (C, plaintext)', conn: { ...direct, port: nginx.port }, pids: nginx.pids },
  ];
  const relays = values.relays.split(',');
  const gatehouse = async (name, upstreamTls, relay) => {
    const g = await gateway(pki, gwPassword, upstreamTls, relay);
    cases.push({ name, conn: gw(g), timings: g.timings });
  };
  for (const relay of relays) await gatehouse(`Gatehouse ${relay} (client TLS)`, 'disable', relay);
  if (!values['no-target-tls']) {
    for (const relay of relays) await gatehouse(`Gatehouse ${relay} (client + target TLS)`, 'verify', relay);
  }
  console.log(`mysql2 point selects, ${CLIENTS} connections, ${ROUNDS} alternating rounds of ${SECONDS} s per case; ${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores; ${target.version}; node ${process.version}`);
  const median = (xs) => quantile(xs, 0.5);
  const qps = {};
  const cpuPerQuery = {};
  for (const mode of values['connect-only'] ? [] : ['query', 'execute']) {
    const runs = Object.fromEntries(cases.map((c) => [c.name, []]));
    const cpus = Object.fromEntries(cases.map((c) => [c.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of cases) {
        const r = await load({ conn: c.conn, mode, clients: CLIENTS, seconds: SECONDS, rows: ROWS }, c.pids);
        runs[c.name].push(r.qps);
        const us = (x) => (x / r.count) * 1e6;
        const perQuery = us(r.cpu.client + r.cpu.gateway + r.cpu.db);
        cpus[c.name].push(perQuery);
        console.log(`  ${mode.padEnd(8)} round ${round + 1} ${c.name.padEnd(40)} ${r.qps.toFixed(0).padStart(7)} qps   CPU/query ${perQuery.toFixed(1)} µs (client ${us(r.cpu.client).toFixed(1)}, proxy ${us(r.cpu.gateway).toFixed(1)}, MariaDB ${us(r.cpu.db).toFixed(1)})  load ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}`);
      }
    }
    qps[mode] = Object.fromEntries(cases.map((c) => [c.name, median(runs[c.name])]));
    cpuPerQuery[mode] = Object.fromEntries(cases.map((c) => [c.name, median(cpus[c.name])]));
  }
  // Connects in rounds, every case in each round, so that the machine's drift falls on all of them alike.
  const conn = {};
  const samples = Object.fromEntries(cases.map((c) => [c.name, []]));
  const roundP50 = Object.fromEntries(cases.map((c) => [c.name, []]));
  for (const log of timingLogs) log.level = 'debug';
  const perRound = Math.max(1, Math.round(CONNECTS / CONNECT_ROUNDS));
  for (let round = 0; round < CONNECT_ROUNDS; round++) {
    for (const c of cases) {
      const logged = c.timings?.length ?? 0;
      const r = await load({ conn: c.conn, mode: 'connect', connects: perRound, warmup: WARMUP, pause: Number(values.pause) });
      // Connects are one at a time: the first lines logged in this round are the warm-ups'.
      c.timings?.splice(logged, WARMUP);
      samples[c.name].push(...r.times);
      roundP50[c.name].push(r.p50);
    }
  }
  for (const c of cases) {
    conn[c.name] = { p50: quantile(samples[c.name], 0.5), p90: quantile(samples[c.name], 0.9) };
    const added = c.name === cases[0].name ? '' : `   added per round: ${roundP50[c.name].map((p, i) => `+${(p - roundP50[cases[0].name][i]).toFixed(2)}`).join(' ')}`;
    const steps = c.timings?.length ? `\n           gateway's steps (median ms): ${Object.keys(c.timings[0]).map((k) => `${k} ${median(c.timings.map((t) => t[k])).toFixed(2)}`).join(', ')}` : '';
    console.log(`  connect  ${c.name.padEnd(40)} p50 ${conn[c.name].p50.toFixed(2)} ms  p90 ${conn[c.name].p90.toFixed(2)} ms${added}${steps}`);
  }
  const d = cases[0].name;
  console.log(`\nload average at the end: ${execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).trim()}`);
  console.log('\n| case | `query()` qps (x direct) | `execute()` qps (x direct) | CPU µs/query, query / execute (client + proxy + MariaDB) | connect p50 / p90 (ms; added) |');
  console.log('|---|---:|---:|---:|---:|');
  for (const c of cases) {
    const n = c.name;
    const x = (mode) => (!qps[mode] ? '–' : n === d ? `${qps[mode][n].toFixed(0)}` : `${qps[mode][n].toFixed(0)} (${(qps[mode][n] / qps[mode][d]).toFixed(2)}x)`);
    const added = (p) => (n === d ? conn[n][p].toFixed(2) : `${conn[n][p].toFixed(2)} (+${(conn[n][p] - conn[d][p]).toFixed(2)})`);
    console.log(`| ${n} | ${x('query')} | ${x('execute')} | ${cpuPerQuery.query ? `${cpuPerQuery.query[n].toFixed(1)} / ${cpuPerQuery.execute[n].toFixed(1)}` : '–'} | ${added('p50')} / ${added('p90')} |`);
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
