#!/usr/bin/env node
/**
 * Where the two cores go under pgbench -S (32 clients, client TLS) through PgBouncer and through
 * Gatehouse's native data path: per transaction, the CPU of pgbench, of PostgreSQL's processes
 * and of the proxy, and the machine's idle time (/proc/stat), per round, interleaved. Asks one
 * question: when the native path spends less proxy CPU than PgBouncer and still serves fewer
 * transactions, is the difference CPU spent elsewhere, or idle time?
 *
 *   npm run build && node bench/postgres/cpu-split.mjs [--seconds 5] [--rounds 3] [--mode simple|prepared]
 */
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { commandCpuNs, run, startGateway, startPgbouncer, startTarget } from '../lib/pg-relays.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' }, mode: { type: 'string', default: 'simple' } } });
const SECONDS = Number(values.seconds);
const { ensurePki } = await import(join(root, 'dist/src/pki/pki.js'));

/** Jiffies of the whole machine: busy (all but idle and iowait) and idle. */
function machine() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + f[4];
  return { busy: f.reduce((a, b) => a + b, 0) - idle, idle };
}
/** CPU (ns) of the processes in both readings, the change of each summed: those that came or went between them are not in it. */
function delta(before, after) {
  let ns = 0;
  for (const [pid, v] of after) if (before.has(pid)) ns += v - before.get(pid);
  return ns;
}
const TICK_NS = 1e7;
/** CPU (ns) of a process's children that it has waited for (cutime + cstime): PostgreSQL's ended backends. */
function reapedNs(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[13]) + Number(f[14])) * TICK_NS;
}

const { target, dir, cleanups } = startTarget('gh-cpusplit-');
try {
  await run('pgbench', ['-i', '-q', '-s', '5', '-h', target.host, '-p', String(target.port), '-U', target.user, target.database], { PGPASSWORD: target.password });
  const certDir = join(dir, 'certs');
  const pki = await ensurePki(certDir);
  const gatewayPassword = randomBytes(12).toString('base64url');
  const bouncer = await startPgbouncer({ target, dir, pki, cleanups });
  const gw = await startGateway({ target, certDir, gatewayPassword, cleanups, relay: 'native' });
  const postmaster = Number(readFileSync(join(target.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  const cases = [
    { name: 'PgBouncer', port: bouncer.port, user: target.user, password: target.password, proxy: bouncer.cpu },
    { name: 'native', port: gw.plainPort, user: 'bench:bench-pg', password: gatewayPassword, proxy: gw.cpu },
  ];
  console.log(`pgbench -S -M ${values.mode} -c 32 -j 2, ${SECONDS} s, client TLS; CPU µs per transaction; idle = share of both cores' time`);
  for (let round = 0; round < Number(values.rounds); round++) {
    for (let i = 0; i < cases.length; i++) {
      const c = cases[(i + round) % cases.length];
      const m0 = machine();
      const p0 = c.proxy();
      const s0 = commandCpuNs('postgres');
      const r0 = reapedNs(postmaster);
      // pgbench's own CPU: bash's `times` (its children's user and system time), on the last line.
      const args = ['-h', '127.0.0.1', '-p', String(c.port), '-U', c.user, '-n', '-S', '-M', values.mode, '-c', '32', '-j', '2', '-T', String(SECONDS), target.database];
      const out = await run('bash', ['-c', 'pgbench "$@" && times', 'pgbench', ...args], { PGPASSWORD: c.password, PGSSLMODE: 'require' });
      const m1 = machine();
      const tx = Number(/tps = ([\d.]+)/.exec(out)[1]) * SECONDS;
      const seconds = (t) => Number(/(\d+)m([\d.]+)s/.exec(t).slice(1, 3).reduce((m, sec) => Number(m) * 60 + Number(sec)));
      const pgbenchNs = out.trim().split('\n').at(-1).split(' ').map(seconds).reduce((a, b) => a + b, 0) * 1e9;
      const postgresNs = delta(s0, commandCpuNs('postgres')) + reapedNs(postmaster) - r0;
      const proxy = (c.proxy() - p0) / tx;
      const idle = (m1.idle - m0.idle) / (m1.idle - m0.idle + m1.busy - m0.busy);
      const busyUs = ((m1.busy - m0.busy) * 1e6) / 100 / tx;
      console.log(`round ${round + 1} ${c.name.padEnd(10)} ${(tx / SECONDS).toFixed(0).padStart(6)} tps  machine busy ${busyUs.toFixed(1)} µs/tx, idle ${(idle * 100).toFixed(1)}%  proxy ${proxy.toFixed(1)}  postgres ${(postgresNs / 1e3 / tx).toFixed(1)}  pgbench ${(pgbenchNs / 1e3 / tx).toFixed(1)}`);
    }
  }
} finally {
  for (const c of cleanups.reverse()) {
    try {
      await c();
    } catch {
      // best effort
    }
  }
}
