#!/usr/bin/env node
/**
 * Instructions per PostgreSQL transaction in each relay, counted by valgrind's callgrind:
 * a figure that does not move with what else runs on the machine, unlike the CPU time the
 * other benches read (on this shared 2-core machine those swing by a third from run to run).
 * Each relay runs under `valgrind --tool=callgrind --separate-threads=yes` (so about 50 times
 * slower: the figure is instructions, not time) and takes `pgbench -n -S -M simple -c C -j 1
 * -t T` with client TLS, target leg in plaintext (unless --target-tls), three times: once to warm up (the logins'
 * JavaScript compiled, not counted), then with T = T1 and T = T2. callgrind's
 * counters are dumped before, between and after (`callgrind_control -d`), so each run's count
 * is its own, logins and ends included; the difference of the two is C × (T2 − T1)
 * transactions and no login, so per transaction = (count2 − count1) / (C × (T2 − T1)).
 *
 *   npm run build && node bench/postgres/relay-instructions.mjs [--relays native,native-openssl] [--pgbouncer] [--clients 4] [--tx 200,1200] [--sql SQL] [--target-tls] [--baseline DIR] [--rounds 1]
 *
 * `--sql`: each transaction is that statement (a pgbench script, simple protocol) instead of
 * -S's point select, e.g. a large result to weigh bulk transfer. `--target-tls`: the gateway's
 * listener with TLS on the target leg too (bench/postgres/gateway.mjs). `--baseline DIR`: each
 * Gatehouse relay runs a second time from DIR, a copy of an earlier build (its dist/ and
 * bench/, with a node_modules link), in the same rounds, alternating with this one.
 *
 * Gatehouse is bench/postgres/gateway.mjs (as the other benches start it, relay chosen as
 * there); the figure is given for the whole process and for its relay thread (the thread that
 * runs the addon's `loop`). `--pgbouncer` adds PgBouncer (session mode, client TLS with
 * the door's suites; bench/lib/pg-relays.mjs) under the same valgrind. The instructions of the
 * kernel (syscalls, TCP) are not counted by callgrind: the accounting bench has those as
 * syscalls per transaction.
 * Runs as root (the target and PgBouncer run as the postgres OS user).
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureTool, passStderr, relayList, relayOptions, run, startPgbouncer, startTarget, timeOfDay, waitPort } from '../lib/pg-relays.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const { values } = parseArgs({
  options: {
    relays: { type: 'string', default: 'native,native-openssl' }, pgbouncer: { type: 'boolean', default: false }, clients: { type: 'string', default: '4' }, tx: { type: 'string', default: '200,1200' },
    sql: { type: 'string' }, 'target-tls': { type: 'boolean', default: false }, baseline: { type: 'string' }, rounds: { type: 'string', default: '1' },
  },
});
const RELAYS = relayList(values.relays);
const CLIENTS = Number(values.clients);
const [T1, T2] = values.tx.split(',').map(Number);
ensureTool('valgrind', 'valgrind');
ensureTool('pgbench', 'postgresql-contrib');

const { target, dir, cleanups } = startTarget('gh-bench-instr-');
// Names written out in every dump file (no compression across dumps), so each thread's file says whether it runs `loop`.
const VALGRIND = (out) => ['valgrind', '--tool=callgrind', '--separate-threads=yes', '--compress-strings=no', `--callgrind-out-file=${out}`];

/**
 * Dumps the counters of process `pid` (each thread's since the last dump) and returns them, per
 * thread. `osUser`: the user the process runs as (valgrind's control pipes are that user's).
 */
function dump(pid, outDir, before, osUser) {
  const control = ['callgrind_control', '-d', String(pid)];
  if (osUser) execFileSync('runuser', ['-u', osUser, '--', ...control], { stdio: 'ignore' });
  else execFileSync(control[0], control.slice(1), { stdio: 'ignore' });
  const files = readdirSync(outDir).filter((f) => f.startsWith('cg.') && !before.has(f));
  for (const f of files) before.add(f);
  return files.map((f) => {
    const text = readFileSync(join(outDir, f), 'utf8');
    const total = Number(/^(?:summary|totals): (\d+)/m.exec(text)?.[1] ?? 0);
    // The addon's loop thread: its start function `loop` (static functions may be inlined into it).
    return { file: f, total, relay: /^fn=loop$/m.test(text) };
  });
}

/** Counters until the dump files stop changing (callgrind_control returns before they are written). */
async function dumpSettled(pid, outDir, seen, osUser) {
  const got = dump(pid, outDir, seen, osUser);
  await new Promise((r) => setTimeout(r, 2_000));
  const late = readdirSync(outDir).filter((f) => f.startsWith('cg.') && !seen.has(f));
  if (late.length) throw new Error(`dump files still appearing: ${late.join(', ')}`);
  return got;
}

const script = values.sql ? join(dir, 'transaction.sql') : undefined;
if (script) writeFileSync(script, `${values.sql};\n`);
const workload = script ? ['-f', script] : ['-S'];

async function pgbench(port, user, password, t) {
  const out = await run('pgbench', ['-h', '127.0.0.1', '-p', String(port), '-U', user, '-n', ...workload, '-M', 'simple', '-c', String(CLIENTS), '-j', '1', '-t', String(t), target.database], { PGPASSWORD: password, PGSSLMODE: 'require' });
  return Number(/number of transactions actually processed: (\d+)/.exec(out)[1]);
}

/** Both runs against one relay under callgrind: instructions per transaction, whole process and relay thread. */
async function measure(name, pid, outDir, port, user, password, osUser) {
  const seen = new Set(readdirSync(outDir));
  // A first run, not counted: the logins' code compiled, pools and caches made.
  await pgbench(port, user, password, T1);
  await new Promise((r) => setTimeout(r, 3_000));
  await dumpSettled(pid, outDir, seen, osUser);
  const counts = [];
  for (const t of [T1, T2]) {
    const t0 = timeOfDay();
    const tx = await pgbench(port, user, password, t);
    if (tx !== CLIENTS * t) throw new Error(`${name}: pgbench processed ${tx} of ${CLIENTS * t}`);
    // Ends finish after the clients (the target leg's Terminate comes 250 ms later): waited for.
    await new Promise((r) => setTimeout(r, 3_000));
    const threads = await dumpSettled(pid, outDir, seen, osUser);
    const all = threads.reduce((a, x) => a + x.total, 0);
    const relay = threads.filter((x) => x.relay).reduce((a, x) => a + x.total, 0);
    counts.push({ all, relay });
    console.log(`  ${t0}–${timeOfDay()} ${name}: -t ${t} × ${CLIENTS} clients: ${(all / 1e6).toFixed(1)} M instructions in ${threads.length} threads${relay ? `, relay thread ${(relay / 1e6).toFixed(1)} M` : ''}`);
  }
  const per = (k) => (counts[1][k] - counts[0][k]) / (CLIENTS * (T2 - T1));
  const login = (k) => (counts[0][k] - CLIENTS * T1 * per(k)) / CLIENTS;
  return { name, perTx: per('all'), relayPerTx: per('relay'), perConnection: login('all') };
}

const results = [];
try {
  execFileSync('pgbench', ['-i', '-q', '-s', '5', '-h', target.host, '-p', String(target.port), '-U', target.user, target.database], { env: { ...process.env, PGPASSWORD: target.password }, stdio: 'ignore' });
  console.log(`pgbench -n ${script ? `-f (${values.sql})` : '-S'} -M simple -c ${CLIENTS} -j 1 -t ${T1} and -t ${T2}, client TLS, target leg ${values['target-tls'] ? 'TLS' : 'in plaintext'}, each relay under valgrind --tool=callgrind; ${execFileSync('valgrind', ['--version'], { encoding: 'utf8' }).trim()}; node ${process.version}; ${target.version}`);
  const builds = [['', root], ...(values.baseline ? [[' (baseline)', values.baseline]] : [])];
  for (let round = 0; round < Number(values.rounds); round++) for (const name of RELAYS) for (const [suffix, from] of round % 2 ? [...builds].reverse() : builds) {
    const outDir = mkdtempSync(join(dir, `cg-${name}-`));
    const gatewayPassword = randomBytes(12).toString('base64url');
    const { relay, tlsRecords } = relayOptions(name);
    const cfg = { host: target.host, port: target.port, user: target.user, password: target.password, database: target.database, gatewayPassword, certDir: join(dir, 'pki'), relay };
    const [valgrind, ...options] = VALGRIND(join(outDir, 'cg.%p'));
    const child = spawn(valgrind, [...options, process.execPath, join(from, 'bench/postgres/gateway.mjs'), JSON.stringify(cfg)], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GATEHOUSE_POSTGRES_RELAY: relay, ...(tlsRecords ? { GATEHOUSE_POSTGRES_TLS_RECORDS: tlsRecords } : {}) },
    });
    const stop = () => child.kill('SIGTERM');
    cleanups.unshift(stop);
    passStderr(child, () => undefined);
    const g = JSON.parse(await new Promise((resolve, reject) => {
      child.stdout.once('data', (d) => resolve(String(d).trim().split('\n')[0]));
      child.once('exit', (code) => reject(new Error(`gateway under valgrind exited ${code}`)));
    }));
    results.push(await measure(`${name}${suffix}`, g.pid, outDir, ...(values['target-tls'] ? [g.tlsPort, g.tlsUser] : [g.plainPort, g.plainUser]), gatewayPassword));
    stop();
  }
  if (values.pgbouncer) {
    const { ensurePki } = await import(join(root, 'dist/src/pki/pki.js'));
    const pki = await ensurePki(join(dir, 'pki'));
    const outDir = mkdtempSync(join(dir, 'cg-pgbouncer-'));
    chmodSync(outDir, 0o777);
    const pb = await startPgbouncer({ target, dir, pki, cleanups, wrap: VALGRIND(join(outDir, 'cg.%p')), waitMs: 60_000 });
    await waitPort(pb.port);
    results.push(await measure('PgBouncer', pb.pid, outDir, pb.port, target.user, target.password, 'postgres'));
  }
  console.log('\n| relay | instructions per transaction (whole process) | … of it the relay thread | per connection: TLS handshake, login, end (whole process) |');
  console.log('|---|---:|---:|---:|');
  for (const r of results) console.log(`| ${r.name} | ${Math.round(r.perTx).toLocaleString('en')} | ${r.relayPerTx ? Math.round(r.relayPerTx).toLocaleString('en') : ''} | ${(r.perConnection / 1e6).toFixed(1)} M |`);
  console.log(`\n${JSON.stringify(results)}`);
} finally {
  for (const c of cleanups) {
    try {
      await c();
    } catch {
      // best effort
    }
  }
}
