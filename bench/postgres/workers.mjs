#!/usr/bin/env node
/**
 * Data-path workers (issue 18, item 4): does serving the PostgreSQL door from worker processes
 * cost more per transaction than serving it in the gateway's own process, and does a second
 * worker? Against one PostgreSQL in one run: PgBouncer (session mode, client TLS;
 * single-threaded) and, for each of the door's data paths chosen (`--relays`: the native one,
 * native/pg-relay.c, and the node relay, protocols/postgres/relay.ts; the PostgresAdapter option
 * `relay`, which every process serving the door must log at listen), Gatehouse with everything
 * in one process, with one data-path worker and with two (bench/postgres/gateway.mjs with
 * `workers`, as `gatehouse serve --workers N` runs it). All with client TLS and a plaintext
 * target leg.
 *
 *   npm run build && node bench/postgres/workers.mjs [--seconds 5] [--rounds 3] [--clients 32] [--modes simple,prepared] [--relays native,node] [--syscalls] [--threads]
 *
 * Load: `pgbench -n -S -M MODE -c C -j 2 -T SECONDS`, each case once per round, the order
 * rotated every round, median (and range) of the rounds. CPU per transaction is the user +
 * system time of the relay's processes over the run (/proc/PID/stat; for Gatehouse the primary
 * and every worker, also shown apart), divided by the transactions pgbench reports; connection
 * start-up (32 logins) is included, as in run.mjs. On the native data path a process's CPU
 * includes its addon's thread.
 *
 * After each mode's table: two workers' CPU per transaction less one worker's, paired round by
 * round (median, range, and in how many rounds two cost no more), item 4's question.
 *
 * `--syscalls`: afterwards, one more pgbench run per relay (simple mode) under `perf stat -e
 * 'syscalls:sys_enter_{epoll_wait,epoll_pwait,read,write,recvfrom,sendto,futex}'` over all its
 * processes: how many wake-ups (epoll calls) and reads/writes each transaction costs, which is
 * what spreading the same sessions over more processes changes. (recvfrom and sendto are reads
 * and writes too: PgBouncer's on one leg, the native data path's on its plaintext target leg.)
 *
 * `--threads`: each round's line is followed by the split of its CPU per transaction over the
 * processes' threads (the native data path's relay thread `gatehouse-relay` apart from the rest of
 * its process), with each thread's sleeps (voluntary context switches) and preemptions per
 * transaction: whether the workers shared the load, and how often each relay thread went to
 * sleep and was woken again.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { RELAYS, ensureTool, procCpuMicros, relayList, run, startGateway, startPgbouncer, startTarget, threadsCpuNs, timeOfDay } from '../lib/pg-relays.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' }, clients: { type: 'string', default: '32' }, modes: { type: 'string', default: 'simple,prepared' }, relays: { type: 'string', default: 'native,node' }, scale: { type: 'string', default: '5' }, syscalls: { type: 'boolean', default: false }, threads: { type: 'boolean', default: false } },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const sorted = (xs) => [...xs].sort((a, b) => a - b);
const median = (xs) => sorted(xs)[Math.floor(xs.length / 2)];
const range = (xs, d = 1) => `${median(xs).toFixed(d)} (${sorted(xs)[0].toFixed(d)}–${sorted(xs).at(-1).toFixed(d)})`;

const { ensurePki } = await import(join(root, 'dist', 'src/pki/pki.js'));

/** Every thread of the case's processes: [process label, thread name] → CPU ns, sleeps, preemptions (threads of one name summed). */
function threadSnapshot(c) {
  const out = new Map();
  c.pids.forEach((pid, i) => {
    const label = c.name === 'PgBouncer' ? 'pgbouncer' : i === 0 ? 'primary' : `worker ${i}`;
    for (const t of threadsCpuNs(pid)) {
      const key = `${label} ${t.name === 'gatehouse-relay' ? 'relay' : 'rest'}`;
      const s = out.get(key) ?? { ns: 0, sleeps: 0, preempted: 0 };
      out.set(key, { ns: s.ns + t.ns, sleeps: s.sleeps + t.sleeps, preempted: s.preempted + t.preempted });
    }
  });
  return out;
}

/** Per transaction, what each thread group spent between two snapshots: µs, sleeps, preemptions (groups under 0.05 µs left out). */
function threadSplit(before, after, tx) {
  return [...after].flatMap(([key, a]) => {
    const b = before.get(key) ?? { ns: 0, sleeps: 0, preempted: 0 };
    const us = (a.ns - b.ns) / 1000 / tx;
    return us < 0.05 ? [] : [{ key, us, sleeps: (a.sleeps - b.sleeps) / tx, preempted: (a.preempted - b.preempted) / tx }];
  });
}
const { target, dir, cleanups } = startTarget('gh-bench-pg-workers-');

/** A Gatehouse gateway process on data path `relay` with `workers` data-path workers (0: none, all in one process). */
async function gateway(relay, workers, gatewayPassword) {
  const g = await startGateway({ target, certDir: join(dir, 'certs'), gatewayPassword, cleanups, relay, workers });
  console.log(`${RELAYS[relay]}, ${workers ? `${workers} worker(s)` : 'one process'}: pids ${[g.pid, ...g.workers].join(', ')}, relay logged ${g.relays.join(', ')}`);
  return { port: g.plainPort, pids: [g.pid, ...g.workers], primary: g.cpu, workers: () => g.workers.reduce((sum, pid) => sum + procCpuMicros(pid), 0) };
}

try {
  await run('pgbench', ['-i', '-q', '-s', values.scale, '-h', target.host, '-p', String(target.port), '-U', target.user, target.database], { PGPASSWORD: target.password });
  const pki = await ensurePki(join(dir, 'certs'));
  const password = randomBytes(12).toString('base64url');
  const bouncer = await startPgbouncer({ target, dir, pki, cleanups });
  const login = { user: 'bench:bench-pg', password };
  const cases = [{ name: 'PgBouncer', port: bouncer.port, pids: [bouncer.pid], primary: bouncer.cpu, workers: () => 0, user: target.user, password: target.password }];
  for (const relay of relayList(values.relays)) {
    const name = RELAYS[relay];
    cases.push(
      { name: `${name}, one process`, ...(await gateway(relay, 0, password)), ...login },
      { name: `${name}, 1 worker`, ...(await gateway(relay, 1, password)), ...login },
      { name: `${name}, 2 workers`, ...(await gateway(relay, 2, password)), ...login },
    );
  }
  const load = execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).split(' ').slice(0, 3).join(' ');
  console.log(`pgbench -n -S -c ${values.clients} -j 2 -T ${SECONDS}, client TLS, ${ROUNDS} rounds; ${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores, load ${load}; node ${process.version}; ${target.version}`);
  const results = {};
  for (const mode of values.modes.split(',')) {
    const r = Object.fromEntries(cases.map((c) => [c.name, { tps: [], cpu: [], primary: [], workers: [] }]));
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < cases.length; i++) {
        const c = cases[(i + round) % cases.length];
        const [p0, w0] = [c.primary(), c.workers()];
        const threads0 = values.threads ? threadSnapshot(c) : undefined;
        const t0 = timeOfDay();
        const out = await run('pgbench', ['-h', '127.0.0.1', '-p', String(c.port), '-U', c.user, '-n', '-S', '-M', mode, '-c', values.clients, '-j', '2', '-T', String(SECONDS), target.database], { PGPASSWORD: c.password, PGSSLMODE: 'require' });
        const tx = Number(/number of transactions actually processed: (\d+)/.exec(out)[1]);
        const tps = Number(/tps = ([\d.]+)/.exec(out)[1]);
        const [p, w] = [(c.primary() - p0) / tx, (c.workers() - w0) / tx];
        Object.assign(r[c.name], { tps: [...r[c.name].tps, tps], cpu: [...r[c.name].cpu, p + w], primary: [...r[c.name].primary, p], workers: [...r[c.name].workers, w] });
        console.log(`  ${t0}–${timeOfDay()} ${mode} round ${round + 1} ${c.name}: ${tps.toFixed(0)} tps, ${(p + w).toFixed(1)} µs/tx (primary ${p.toFixed(1)}, workers ${w.toFixed(1)})`);
        if (threads0) {
          const split = threadSplit(threads0, threadSnapshot(c), tx);
          console.log(`      threads, per tx: ${split.map((t) => `${t.key} ${t.us.toFixed(1)} µs, ${t.sleeps.toFixed(2)} sleeps, ${t.preempted.toFixed(2)} preempted`).join('; ')}`);
          r[c.name].threads = [...(r[c.name].threads ?? []), split];
        }
      }
    }
    results[mode] = r;
    console.log(`\n-S ${mode}, ${values.clients} clients: median (range) of ${ROUNDS} rounds\n`);
    console.log('| relay | tps | vs PgBouncer (median of per-round ratios) | CPU µs/tx, all processes | … primary | … workers |');
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const c of cases) {
      const x = r[c.name];
      const ratios = x.tps.map((t, i) => t / r.PgBouncer.tps[i]);
      console.log(`| ${c.name} | ${range(x.tps, 0)} | ${c.name === 'PgBouncer' ? '1.00' : `${range(ratios, 2)}`} | ${range(x.cpu)} | ${range(x.primary)} | ${c.name.includes('worker') ? range(x.workers) : '–'} |`);
    }
    // Item 4's question, paired by round: the two cases ran one after the other in every round,
    // so the machine's drift between rounds (often larger than the difference) cancels.
    for (const relay of relayList(values.relays)) {
      const [one, two] = [r[`${RELAYS[relay]}, 1 worker`].cpu, r[`${RELAYS[relay]}, 2 workers`].cpu];
      const diffs = two.map((t, i) => t - one[i]);
      const signed = (v) => `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(1)}`;
      r[`${RELAYS[relay]}, 2 workers − 1 worker`] = { cpu: diffs };
      console.log(`\n${RELAYS[relay]}: 2 workers − 1 worker, CPU µs/tx paired by round: median ${signed(median(diffs))} (${signed(sorted(diffs)[0])} to ${signed(sorted(diffs).at(-1))}); two cost no more in ${diffs.filter((d) => d <= 0).length} of ${diffs.length} rounds`);
    }
  }
  if (values.syscalls) {
    ensureTool('perf', 'linux-perf');
    const KINDS = ['epoll_wait', 'epoll_pwait', 'read', 'write', 'recvfrom', 'sendto', 'futex'];
    console.log(`\nsyscalls per transaction, pgbench -S simple -c ${values.clients} -T ${SECONDS}, every process of the relay (perf stat on the syscall tracepoints)\n`);
    console.log(`| relay | ${KINDS.join(' | ')} | all |`);
    console.log(`|---|${KINDS.map(() => '---:').join('|')}|---:|`);
    for (const c of cases) {
      const out = join(dir, `perf-${c.pids[0]}.csv`);
      const perf = spawn('perf', ['stat', '-x', ',', '-o', out, ...KINDS.flatMap((k) => ['-e', `syscalls:sys_enter_${k}`]), '-p', c.pids.join(',')], { stdio: 'ignore' });
      await new Promise((r) => setTimeout(r, 500));
      const text = await run('pgbench', ['-h', '127.0.0.1', '-p', String(c.port), '-U', c.user, '-n', '-S', '-c', values.clients, '-j', '2', '-T', String(SECONDS), target.database], { PGPASSWORD: c.password, PGSSLMODE: 'require' });
      const tx = Number(/number of transactions actually processed: (\d+)/.exec(text)[1]);
      const done = new Promise((r) => perf.once('exit', r));
      perf.kill('SIGINT');
      await done;
      const per = Object.fromEntries(KINDS.map((k) => [k, 0]));
      for (const line of readFileSync(out, 'utf8').split('\n')) {
        const [count, , event] = line.split(',');
        const m = /syscalls:sys_enter_(\w+)/.exec(event ?? '');
        if (m && Number(count) > 0) per[m[1]] += Number(count) / tx;
      }
      results.syscalls = { ...results.syscalls, [c.name]: per };
      console.log(`| ${c.name} | ${KINDS.map((k) => per[k].toFixed(3)).join(' | ')} | ${KINDS.reduce((a, k) => a + per[k], 0).toFixed(2)} |`);
    }
  }
  console.log(`\n${JSON.stringify(results)}`);
} finally {
  for (const c of cleanups) {
    try {
      c();
    } catch {
      // best effort
    }
  }
}
