#!/usr/bin/env node
/**
 * Per-transaction accounting of the PostgreSQL relays side by side (issue 18, item 1):
 * PgBouncer (session mode), a bare Node TLS pipe (bench/lib/bare-tls-pipe.mjs) and Gatehouse
 * (bench/postgres/gateway.mjs, target leg in plaintext like the other two) on each of its door's
 * data paths, the native one (native/pg-relay.c) and the node relay (protocols/postgres/relay.ts),
 * each in its own process, each under the same `pgbench -n -S -M simple -c 32 -j 2 -t TX` with
 * client TLS.
 *
 *   npm run build && node bench/postgres/accounting.mjs [--tx 2000] [--clients 32] [--rounds 3] [--conn-tx 10] [--relays node,native] [--baseline DIR] [--cpu-only]
 *
 * Four passes per relay per round, so that no probe disturbs another's figure:
 *   1. proxy CPU µs/tx: utime + stime of the proxy process over the run (/proc/PID/stat, every
 *      thread; each shown too: user is the relay's own code and the TLS crypto, system its
 *      syscalls), and for the Node processes the JS heap bytes allocated per tx
 *      (bench/lib/heap-meter.mjs, a v8.GCProfiler window opened and closed by SIGUSR2 around the
 *      run; on the native data path that is what JavaScript still does per transaction).
 *   1b. connection start, proxy CPU ms/connection: the same clients under `pgbench -C -t CONN_TX`
 *      (a new connection, TLS handshake and login for every transaction; CONN_TX × clients of
 *      them, 320 by default), proxy CPU over the run read as in pass 1.
 *   2. syscalls/tx by kind: `perf stat -e 'syscalls:sys_enter_*' -p PID` (kernel tracepoints,
 *      every thread of the process) over the run. perf rather than `strace -c -f`: strace
 *      stops the process at every syscall, which slows the proxy several times over and
 *      changes how much each read finds waiting, i.e. the very counts being measured. On the
 *      native data path the addon's thread makes the relay's syscalls, the JS thread the rest.
 *   3. TLS records/tx each way: pgbench connects through a counting TCP tap (bench/lib/tls-tap.mjs)
 *      that parses the 5-byte record headers on the client leg.
 * Every figure of passes 1-3 is over the whole pgbench run, so the 32 connections' handshakes
 * and logins (and their teardowns) are included, spread over clients × TX transactions (64,000
 * by default). Passes 1 and 1b separate the two, per relay and per round, as a two-point fit of
 * proxy CPU = connections × conn + transactions × tx: pass 1b gives a = conn + tx (its CPU over
 * its connections, one transaction each), pass 1 gives b = clients × conn + clients × TX × tx,
 * so tx = (b / clients − a) / (TX − 1) and conn = a − tx. `tx` is the row "proxy CPU µs/tx
 * excluding connection start", i.e. pass 1's CPU less clients × the per-connection CPU (user and
 * system each the same way); `conn` is "connection start and end, proxy CPU ms/connection"
 * (TLS handshake, login, teardown; for Gatehouse the login's store writes and audit too; for
 * PgBouncer the client's SCRAM with it, its server connections being pooled). Both passes wait
 * SETTLE_MS after pgbench before the second CPU reading, so deferred teardown work (Gatehouse's
 * target-leg Terminate comes 250 ms after the client's close) is counted in the pass it belongs to.
 * The relays run in a rotated order per round; the table gives the median and the range across rounds.
 * `--relays` chooses Gatehouse's data paths (default node,native; each a gateway process of its
 * own, started with the PostgresAdapter option `relay`, which every listener must log at listen).
 * With `--baseline DIR` one more relay runs in every round: Gatehouse from DIR, a copy of an
 * earlier build (its dist/ and bench/, with package.json and a node_modules link), so a change
 * is compared with what it replaced under the same load, interleaved (its data path is its own
 * default, or GATEHOUSE_POSTGRES_RELAY from the environment if that build reads it). The last
 * columns are differences of medians: each Gatehouse data path less the bare pipe, and the
 * native one less PgBouncer.
 * `--cpu-only` runs passes 1 and 1b only (quicker rounds, for comparing CPU). SIGINT or SIGTERM
 * stops the relays and the target before exiting.
 * Runs as root (the target and PgBouncer run as the postgres OS user).
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { RELAYS, ensureTool, procCpuSplit, relayList, run, startBarePipe, startGateway, startPgbouncer, startTarget, timeOfDay } from '../lib/pg-relays.mjs';
import { tlsTap } from '../lib/tls-tap.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const { values } = parseArgs({ options: { tx: { type: 'string', default: '2000' }, clients: { type: 'string', default: '32' }, rounds: { type: 'string', default: '3' }, 'conn-tx': { type: 'string', default: '10' }, baseline: { type: 'string' }, relays: { type: 'string', default: 'node,native' }, 'cpu-only': { type: 'boolean', default: false }, scale: { type: 'string', default: '5' } } });
const ROUNDS = Number(values.rounds);
const GATEHOUSE = relayList(values.relays);
const sorted = (xs) => [...xs].sort((a, b) => a - b);
const median = (xs) => sorted(xs)[Math.floor(xs.length / 2)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Pause after a run before the CPU is read again: the relay's deferred teardown work lands in its pass. */
const SETTLE_MS = 700;

ensureTool('perf', 'linux-perf');
const { ensurePki } = await import(join(root, 'dist', 'src/pki/pki.js'));
const { target, dir, cleanups } = startTarget('gh-bench-pg-acct-');
async function cleanUp() {
  for (const c of cleanups.splice(0)) {
    try {
      await c();
    } catch {
      // best effort
    }
  }
}
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => void cleanUp().finally(() => process.exit(130)));

const heapMeter = join(root, 'bench/lib/heap-meter.mjs');
const metered = (name) => ({ nodeArgs: ['--import', heapMeter], env: { HEAP_METER_OUT: join(dir, `heap-${name}.json`) } });

/** The fixed-count load; resolves with the number of transactions pgbench says it processed (and logs its tps). */
async function pgbench(relay, port, extra = ['-t', values.tx]) {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-U', relay.user, '-n', '-S', '-M', 'simple', '-c', values.clients, '-j', String(Math.min(Number(values.clients), 2)), ...extra, target.database];
  const out = await run('pgbench', args, { PGPASSWORD: relay.password, PGSSLMODE: 'require' });
  relay.tps = Number(/tps = ([\d.]+)/.exec(out)?.[1]);
  return Number(/number of transactions actually processed: (\d+)/.exec(out)[1]);
}

/** Pass 1: proxy CPU per tx, and JS heap bytes per tx for a Node relay. */
async function cpuAndHeap(relay) {
  const heapFile = relay.heapFile;
  if (heapFile) {
    rmSync(heapFile, { force: true });
    process.kill(relay.pid, 'SIGUSR2');
  }
  const cpu0 = procCpuSplit(relay.pid);
  const tx = await pgbench(relay, relay.port);
  await sleep(SETTLE_MS);
  const cpu1 = procCpuSplit(relay.pid);
  const user = (cpu1.user - cpu0.user) / tx;
  const system = (cpu1.system - cpu0.system) / tx;
  const cpu = { cpu: user + system, user, system, totalUser: cpu1.user - cpu0.user, totalSystem: cpu1.system - cpu0.system };
  if (!heapFile) return cpu;
  process.kill(relay.pid, 'SIGUSR2');
  while (!existsSync(heapFile)) await sleep(20);
  await sleep(20);
  const h = JSON.parse(readFileSync(heapFile, 'utf8'));
  return { ...cpu, heap: h.allocatedBytes / tx, gcPer1kTx: (h.gcs / tx) * 1000 };
}

/** Pass 1b: proxy CPU per connection and its one transaction (µs, user and system), under pgbench -C. */
async function perConnection(relay) {
  const cpu0 = procCpuSplit(relay.pid);
  const conns = await pgbench(relay, relay.port, ['-C', '-t', values['conn-tx']]);
  await sleep(SETTLE_MS);
  const cpu1 = procCpuSplit(relay.pid);
  relay.connTps = relay.tps;
  return { user: (cpu1.user - cpu0.user) / conns, system: (cpu1.system - cpu0.system) / conns };
}

/**
 * The two-point fit (see the header): from pass 1's totals and pass 1b's per-connection
 * figures, the CPU of one transaction without connection start, and of one connection start.
 */
function split(pass1, pass1b) {
  const clients = Number(values.clients);
  const T = Number(values.tx);
  const one = (total, a) => {
    const tx = (total / clients - a) / (T - 1);
    return { tx, conn: a - tx };
  };
  const u = one(pass1.totalUser, pass1b.user);
  const s = one(pass1.totalSystem, pass1b.system);
  return { tx: u.tx + s.tx, txUser: u.tx, txSystem: s.tx, conn: u.conn + s.conn };
}

/** Pass 2: syscalls per tx by kind, from the kernel's syscall tracepoints. */
async function syscalls(relay) {
  const out = join(dir, `perf-${relay.key}.csv`);
  const perf = spawn('perf', ['stat', '-x', ',', '-o', out, '-e', 'syscalls:sys_enter_*', '-p', String(relay.pid)], { stdio: 'ignore' });
  await sleep(500); // attaching 300-odd tracepoints to every thread
  const tx = await pgbench(relay, relay.port);
  const done = new Promise((r) => perf.once('exit', r));
  perf.kill('SIGINT');
  await done;
  const byKind = {};
  for (const line of readFileSync(out, 'utf8').split('\n')) {
    const [count, , event] = line.split(',');
    const m = /syscalls:sys_enter_(\w+)/.exec(event ?? '');
    const n = Number(count);
    if (m && n > 0) byKind[m[1]] = n / tx;
  }
  return byKind;
}

/** Pass 3: TLS records per tx each way, through the counting tap. */
async function records(relay, tap) {
  tap.reset();
  const tx = await pgbench(relay, tap.port);
  await sleep(100);
  const per = (c) => Object.fromEntries(Object.entries(c).map(([k, v]) => [k, v / tx]));
  return { toProxy: per(tap.counts.toProxy), fromProxy: per(tap.counts.fromProxy) };
}

try {
  await run('pgbench', ['-i', '-q', '-s', values.scale, '-h', target.host, '-p', String(target.port), '-U', target.user, target.database], { PGPASSWORD: target.password });
  const certDir = join(dir, 'certs');
  const pki = await ensurePki(certDir);
  const gatewayPassword = randomBytes(12).toString('base64url');
  const bouncer = await startPgbouncer({ target, dir, pki, cleanups });
  const bare = await startBarePipe({ target, certDir, cleanups, ...metered('bare') });
  const base = values.baseline && (await startGateway({ target, certDir, gatewayPassword, cleanups, from: values.baseline, ...metered('baseline') }));
  const asTarget = { user: target.user, password: target.password };
  const relays = [
    { key: 'pgbouncer', name: 'PgBouncer', ...bouncer, ...asTarget },
    { key: 'bare', name: 'bare Node TLS pipe', ...bare, ...asTarget, heapFile: metered('bare').env.HEAP_METER_OUT },
  ];
  for (const relay of GATEHOUSE) {
    const key = `gatehouse-${relay}`;
    const gw = await startGateway({ target, certDir, gatewayPassword, cleanups, relay, ...metered(key) });
    console.log(`${RELAYS[relay]}: pid ${gw.pid}, its listeners logged relay ${gw.relays.join(', ')}`);
    relays.push({ key, name: RELAYS[relay], ...gw, port: gw.plainPort, user: 'bench:bench-pg', password: gatewayPassword, heapFile: metered(key).env.HEAP_METER_OUT });
  }
  if (base) relays.push({ key: 'baseline', name: 'Gatehouse (baseline)', ...base, port: base.plainPort, user: 'bench:bench-pg', password: gatewayPassword, heapFile: metered('baseline').env.HEAP_METER_OUT });
  for (const r of relays) r.tap = await tlsTap(r.port);
  cleanups.unshift(() => relays.forEach((r) => r.tap.close()));
  console.log(`pgbench -n -S -M simple -c ${values.clients} -j 2 -t ${values.tx}, client TLS, ${ROUNDS} rounds; ${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores, load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}; node ${process.version}; ${target.version}`);

  // samples[relay][metric] = [one value per round]
  const samples = Object.fromEntries(relays.map((r) => [r.key, {}]));
  const add = (r, metric, v) => (samples[r.key][metric] ??= []).push(v);
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < relays.length; i++) {
      const r = relays[(i + round) % relays.length];
      const t0 = timeOfDay();
      const a = await cpuAndHeap(r);
      add(r, 'tps (pass 1, not a throughput race: one relay at a time)', r.tps);
      add(r, 'proxy CPU µs/tx', a.cpu);
      add(r, '… of it user (µs/tx)', a.user);
      add(r, '… of it system (µs/tx)', a.system);
      if (a.heap !== undefined) {
        add(r, 'JS heap bytes allocated/tx', a.heap);
        add(r, 'GCs per 1000 tx', a.gcPer1kTx);
      }
      const c = split(a, await perConnection(r));
      add(r, 'connections/s (pass 1b, pgbench -C)', r.connTps);
      add(r, 'connection start and end, proxy CPU ms/connection', c.conn / 1000);
      add(r, 'proxy CPU µs/tx excluding connection start', c.tx);
      add(r, '… of it user (µs/tx), excl. connection start', c.txUser);
      add(r, '… of it system (µs/tx), excl. connection start', c.txSystem);
      if (values['cpu-only']) {
        console.log(`  ${t0}–${timeOfDay()} round ${round + 1} ${r.name}: ${samples[r.key]['tps (pass 1, not a throughput race: one relay at a time)'].at(-1).toFixed(0)} tps, ${a.cpu.toFixed(1)} µs/tx (${c.tx.toFixed(1)} without connection start, ${(c.conn / 1000).toFixed(2)} ms/connection)`);
        continue;
      }
      const s = await syscalls(r);
      add(r, 'syscalls/tx, all', Object.values(s).reduce((x, y) => x + y, 0));
      for (const [k, v] of Object.entries(s)) add(r, `syscalls/tx: ${k}`, v);
      const t = await records(r, r.tap);
      add(r, 'TLS records/tx client → proxy (application data)', t.toProxy.application_data ?? 0);
      add(r, 'TLS records/tx proxy → client (application data)', t.fromProxy.application_data ?? 0);
      add(r, 'TLS bytes/tx client → proxy', t.toProxy.bytes ?? 0);
      add(r, 'TLS bytes/tx proxy → client', t.fromProxy.bytes ?? 0);
      console.log(`  ${t0}–${timeOfDay()} round ${round + 1} ${r.name}: ${samples[r.key]['tps (pass 1, not a throughput race: one relay at a time)'].at(-1).toFixed(0)} tps, ${a.cpu.toFixed(1)} µs/tx (${c.tx.toFixed(1)} without connection start, ${(c.conn / 1000).toFixed(2)} ms/connection)${a.heap === undefined ? '' : `, ${a.heap.toFixed(0)} B heap/tx`}, ${Object.values(s).reduce((x, y) => x + y, 0).toFixed(2)} syscalls/tx, records/tx ${(t.toProxy.application_data ?? 0).toFixed(2)} in / ${(t.fromProxy.application_data ?? 0).toFixed(2)} out`);
    }
  }

  // A syscall kind shows if any relay makes at least 0.01 of it per tx; a relay that never
  // made it in a round counts 0 there.
  const metrics = new Set(relays.flatMap((r) => Object.keys(samples[r.key])));
  const value = (r, m) => {
    const xs = samples[r.key][m] ?? [];
    return [...xs, ...Array(Math.max(0, ROUNDS - xs.length)).fill(0)];
  };
  const shown = [...metrics].filter((m) => !m.startsWith('syscalls/tx: ') || relays.some((r) => median(value(r, m)) >= 0.01));
  const order = (m) => (m.startsWith('syscalls/tx: ') ? 1 : m.startsWith('syscalls') ? 0.5 : 0);
  const byKey = Object.fromEntries(relays.map((r) => [r.key, r]));
  const first = byKey[`gatehouse-${GATEHOUSE[0]}`];
  shown.sort((a, b) => order(a) - order(b) || (order(a) === 1 ? median(value(first, b)) - median(value(first, a)) : 0));
  const nodeOnly = (m) => m.startsWith('JS heap') || m.startsWith('GCs');
  const digits = (m) => (m.startsWith('tps') || m.startsWith('connections/s') ? 0 : m.includes('µs') || m.startsWith('GCs') ? 1 : m.includes('bytes') ? 0 : m.includes('ms/connection') ? 3 : 2);
  const cell = (r, m) => {
    if (nodeOnly(m) && r.key === 'pgbouncer') return 'n/a';
    const xs = sorted(value(r, m));
    const d = digits(m);
    return ROUNDS > 1 ? `${median(xs).toFixed(d)} (${xs[0].toFixed(d)}–${xs.at(-1).toFixed(d)})` : median(xs).toFixed(d);
  };
  // Differences of medians: each Gatehouse data path less the bare pipe, the native one less PgBouncer.
  const diffs = [
    ...GATEHOUSE.map((g) => [`${g} − bare pipe`, byKey[`gatehouse-${g}`], byKey.bare]),
    ...(GATEHOUSE.includes('native') ? [['native − PgBouncer', byKey['gatehouse-native'], byKey.pgbouncer]] : []),
  ];
  const diff = (m, a, b) => {
    if (nodeOnly(m) && (a.key === 'pgbouncer' || b.key === 'pgbouncer')) return 'n/a';
    const d = median(value(a, m)) - median(value(b, m));
    return `${d >= 0 ? '+' : ''}${d.toFixed(digits(m))}`;
  };
  console.log(`\n| per transaction (median, range over ${ROUNDS} rounds) | ${relays.map((r) => r.name).join(' | ')} | ${diffs.map(([n]) => n).join(' | ')} |`);
  console.log(`|---|${relays.map(() => '---:|').join('')}${diffs.map(() => '---:|').join('')}`);
  for (const m of shown) console.log(`| ${m} | ${relays.map((r) => cell(r, m)).join(' | ')} | ${diffs.map(([, a, b]) => diff(m, a, b)).join(' | ')} |`);
  console.log(`\n${JSON.stringify(samples)}`);
} finally {
  await cleanUp();
}
