#!/usr/bin/env node
/**
 * Where a MySQL point select's CPU goes behind the gateway (issue 18): mysql2 `query()` point
 * selects at 32 connections with client TLS through the door (target leg in plaintext, the
 * data path in `--relay`), against a real MariaDB (test/targets/mariadb.sh) and direct to it,
 * alternately. Per query it prints the CPU of each thread of the gateway process (from
 * /proc/self/task: the addon's `gatehouse-relay`, the JavaScript thread, libuv's and V8's) and
 * how often each went to sleep, and MariaDB's CPU; with `--strace`, MariaDB's system calls per
 * query by kind for direct and gateway rounds (`strace -c -f -p`; it slows everything, so the
 * CPU figures of those rounds are not printed).
 *
 *   npm run build && node bench/mysql/accounting.mjs [--rounds 2] [--seconds 5] [--relay native|node] [--strace]
 *
 * Runs as root (the target runs as the mysql OS user). The gateway runs in this process
 * (bench/lib/gateway.mjs, in-memory SQLite), the load in a child (load.mjs).
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import mysql from 'mysql2/promise';
import { threadsCpuNs } from '../lib/proc.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dist = (p) => import(join(root, 'dist', p));
const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '2' }, seconds: { type: 'string', default: '5' }, relay: { type: 'string', default: 'native' }, strace: { type: 'boolean', default: false } },
});
const ROWS = 10_000;
const [{ ensurePki }, { MysqlAdapter }, { benchGateway, silentLogger }] = await Promise.all([
  dist('src/pki/pki.js'), dist('protocols/mysql/index.js'), import('../lib/gateway.mjs'),
]);

const script = join(root, 'test/targets/mariadb.sh');
const target = JSON.parse(execFileSync('bash', [script, 'start'], { encoding: 'utf8' }).trim().split('\n').at(-1));
const dir = mkdtempSync(join(tmpdir(), 'gh-bench-myacct-'));
const cleanups = [() => execFileSync('bash', [script, 'stop', target.dir], { stdio: 'ignore' }), () => rmSync(dir, { recursive: true, force: true })];

/** CPU ms, sleeps (voluntary context switches) and preemptions (involuntary ones) of each thread of a process, by `name/tid`. */
function threads(pid) {
  return Object.fromEntries(threadsCpuNs(pid).map((t) => [`${t.name}/${t.tid}`, { cpu: t.ns / 1e6, sleeps: t.sleeps, preempted: t.preempted }]));
}
/** A process's CPU ms, sleeps and preemptions, summed over its threads. */
const totals = (pid) => Object.values(threads(pid)).reduce((s, t) => ({ cpu: s.cpu + t.cpu, sleeps: s.sleeps + t.sleeps, preempted: s.preempted + t.preempted }), { cpu: 0, sleeps: 0, preempted: 0 });

function load(conn, seconds) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, 'bench/mysql/load.mjs'), JSON.stringify({ conn, mode: 'query', clients: 32, seconds, rows: ROWS })]);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').at(-1))) : reject(new Error(`load exited ${code}: ${out}`))));
  });
}

/** MariaDB's system calls per query during one load (`strace -c`), the kinds above 0.05 per query. */
async function straced(conn, seconds) {
  const file = join(dir, 'strace.txt');
  const st = spawn('strace', ['-c', '-f', '-p', String(target.pid), '-o', file]);
  await new Promise((r) => setTimeout(r, 300));
  const r = await load(conn, seconds);
  st.kill('SIGINT');
  await new Promise((r2) => st.once('exit', r2));
  const calls = readFileSync(file, 'utf8').split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 5 && /^\d+$/.test(f[3]) && f.at(-1) !== 'total');
  return calls.map((f) => [f.at(-1), Number(f[3]) / r.count]).filter(([, n]) => n >= 0.05).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n.toFixed(2)}`).join(', ');
}

try {
  const c = await mysql.createConnection({ host: target.host, port: target.port, user: target.user, password: target.password, database: target.database });
  await c.query('CREATE TABLE sbtest (id INT PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL)');
  for (let i = 0; i < ROWS; i += 1000) {
    await c.query('INSERT INTO sbtest VALUES ?', [Array.from({ length: 1000 }, (_, j) => [i + j + 1, j, randomBytes(60).toString('hex'), randomBytes(30).toString('hex')])]);
  }
  await c.end();
  const pki = await ensurePki(join(dir, 'certs'));
  const password = randomBytes(12).toString('base64url');
  const { broker, stop } = await benchGateway({
    password,
    resource: { name: 'bench-mysql', type: 'database', protocol: 'mysql', host: target.host, port: target.port, database: target.database, credentials: { login: target.user, password: target.password } },
  });
  const listener = await new MysqlAdapter({ relay: values.relay, upstreamTls: 'disable' }).listen({ host: '127.0.0.1', port: 0, broker, log: silentLogger, tls: { cert: pki.certPem, key: pki.keyPem, ca: pki.caCertPem } });
  cleanups.unshift(async () => { await listener.close(); await stop(); });
  const direct = { host: '127.0.0.1', port: target.port, user: target.user, password: target.password, database: target.database };
  const gw = { host: '127.0.0.1', port: listener.address.port, user: 'bench:bench-mysql', password, ssl: { ca: pki.caCertPem } };
  const seconds = Number(values.seconds);
  console.log(`mysql2 query() point selects, 32 connections, ${seconds} s per case; gateway relay ${values.relay}, client TLS, target leg plaintext; node ${process.version}`);
  for (let round = 1; round <= Number(values.rounds); round++) {
    for (const [name, conn] of [['direct', direct], ['gateway', gw]]) {
      if (values.strace) {
        console.log(`  round ${round} ${name.padEnd(7)} MariaDB system calls per query: ${await straced(conn, seconds)}`);
        continue;
      }
      const before = threads(process.pid);
      const dbBefore = totals(target.pid);
      const r = await load(conn, seconds);
      const after = threads(process.pid);
      const us = (ms) => ((ms * 1000) / r.count).toFixed(1);
      const dbAfter = totals(target.pid);
      const per = (n) => (n / r.count).toFixed(2);
      const db = `MariaDB ${us(dbAfter.cpu - dbBefore.cpu)} µs/query, sleeps ${per(dbAfter.sleeps - dbBefore.sleeps)} and preemptions ${per(dbAfter.preempted - dbBefore.preempted)} per query`;
      if (name === 'direct') {
        console.log(`  round ${round} direct  ${r.qps.toFixed(0).padStart(6)} qps  ${db}`);
        continue;
      }
      const mine = Object.keys(after).filter((k) => before[k]).map((k) => ({ k, cpu: after[k].cpu - before[k].cpu, sleeps: after[k].sleeps - before[k].sleeps, preempted: after[k].preempted - before[k].preempted }))
        .filter((t) => t.cpu > 0).sort((a, b) => b.cpu - a.cpu);
      console.log(`  round ${round} gateway ${r.qps.toFixed(0).padStart(6)} qps  ${db}; gateway threads, µs CPU / sleeps / preemptions per query: ${mine.map((t) => `${t.k} ${us(t.cpu)} / ${(t.sleeps / r.count).toFixed(3)} / ${(t.preempted / r.count).toFixed(3)}`).join(', ')}`);
    }
  }
} finally {
  for (const f of cleanups) await f();
}
