#!/usr/bin/env node
/**
 * pgbench -S (select-only), simple and prepared, at 1 and 32 clients, three ways in one
 * run against the same PostgreSQL: direct (plaintext), PgBouncer in session mode with
 * client TLS, and Gatehouse with client TLS (target leg plaintext like PgBouncer's default,
 * and with TLS, Gatehouse's default against a target that offers it). Then the price of the
 * gate: pgbench -C (a connection per transaction) and connect latency p50/p90 from a probe
 * process.
 *
 *   npm run build && node bench/postgres/run.mjs [--seconds 5] [--rounds 3] [--clients 1,32] [--connects 200] [--native]
 *
 * `--native` adds a fifth case, interleaved with the others: the native relay prototype
 * (bench/native/pg-relay.c through bench/lib/native-pg-relay.mjs; client TLS, no login of its
 * own, the client authenticating with the target through it), and a table of its ratios.
 *
 * Every workload runs each case `rounds` times, interleaved (the order rotates per round)
 * so that noise from a shared machine hits all cases alike; the median is reported.
 * Runs as root (the target and PgBouncer run as the postgres OS user). The gateway runs in
 * its own process like PgBouncer (bench/postgres/gateway.mjs: SystemClock, in-memory
 * SQLite, one open resource, gateway password auth: each pgbench connection
 * authenticates, so tickets, being single-use, do not fit). "proxy CPU" is the proxy
 * process's user+system time per transaction, the figure that decides throughput once
 * the two cores are saturated. The relays start from bench/lib/pg-relays.mjs, shared with
 * accounting.mjs.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { run, startGateway, startNativeRelay, startPgbouncer, startTarget } from '../lib/pg-relays.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' }, clients: { type: 'string', default: '1,32' }, connects: { type: 'string', default: '200' }, native: { type: 'boolean', default: false }, scale: { type: 'string', default: '5' } },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const CLIENTS = values.clients.split(',').map(Number);
const CONNECTS = Number(values.connects);

const { ensurePki } = await import(join(root, 'dist', 'src/pki/pki.js'));

const { target, dir, cleanups } = startTarget('gh-bench-pg-');

function pgbenchArgs(c, extra) {
  return ['-h', '127.0.0.1', '-p', String(c.port), '-U', c.user, '-n', '-S', '-T', String(SECONDS), ...extra, target.database];
}

async function pgbench(c, extra) {
  const cpu0 = c.cpu?.();
  const out = await run('pgbench', pgbenchArgs(c, extra), { PGPASSWORD: c.password, PGSSLMODE: c.sslmode });
  const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1]);
  const conn = /average connection time = ([\d.]+) ms/.exec(out)?.[1];
  // The proxy's CPU per transaction (connection set-up included; pgbench -T runs ~SECONDS).
  const cpuPerTx = cpu0 === undefined ? undefined : (c.cpu() - cpu0) / (tps * SECONDS);
  return { tps, connMs: conn ? Number(conn) : undefined, cpuPerTx };
}

async function probe(c) {
  const cfg = { host: '127.0.0.1', port: c.port, user: c.user, password: c.password, database: target.database, ssl: c.sslmode === 'require' ? { rejectUnauthorized: false } : false };
  const n = Math.max(10, Math.round(CONNECTS / ROUNDS));
  return JSON.parse((await run(process.execPath, [join(root, 'bench/postgres/connect-probe.mjs'), JSON.stringify(cfg), String(n)])).trim().split('\n').at(-1));
}

try {
  await run('pgbench', ['-i', '-q', '-s', values.scale, '-h', target.host, '-p', String(target.port), '-U', target.user, target.database], { PGPASSWORD: target.password });
  const pki = await ensurePki(join(dir, 'certs'));
  const gwPassword = randomBytes(12).toString('base64url');
  const bouncer = await startPgbouncer({ target, dir, pki, cleanups });
  const gw = await startGateway({ target, certDir: join(dir, 'certs'), gatewayPassword: gwPassword, cleanups });
  const cases = [
    { name: 'direct (plaintext)', port: target.port, user: target.user, password: target.password, sslmode: 'disable' },
    { name: 'PgBouncer (session, client TLS)', port: bouncer.port, cpu: bouncer.cpu, user: target.user, password: target.password, sslmode: 'require' },
    { name: 'Gatehouse (client TLS)', port: gw.plainPort, cpu: gw.cpu, user: 'bench:bench-pg', password: gwPassword, sslmode: 'require' },
    { name: 'Gatehouse (client + target TLS)', port: gw.tlsPort, cpu: gw.cpu, user: 'bench:bench-pg', password: gwPassword, sslmode: 'require' },
  ];
  const NATIVE = 'native relay (C prototype, client TLS)';
  if (values.native) {
    const native = await startNativeRelay({ target, certDir: join(dir, 'certs'), cleanups });
    cases.push({ name: NATIVE, port: native.port, cpu: native.cpu, user: target.user, password: target.password, sslmode: 'require' });
  }
  console.log(`pgbench -S, ${SECONDS} s per case, median of ${ROUNDS} interleaved rounds; ${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores, load ${execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).split(' ').slice(0, 3).join(' ')}; ${target.version}`);
  const results = {};
  for (const mode of ['simple', 'prepared']) {
    for (const clients of CLIENTS) {
      const samples = Object.fromEntries(cases.map((c) => [c.name, []]));
      const cpus = Object.fromEntries(cases.map((c) => [c.name, []]));
      for (let round = 0; round < ROUNDS; round++) {
        for (let i = 0; i < cases.length; i++) {
          const c = cases[(i + round) % cases.length];
          const r = await pgbench(c, ['-M', mode, '-c', String(clients), '-j', String(Math.min(clients, 2))]);
          samples[c.name].push(r.tps);
          if (r.cpuPerTx !== undefined) cpus[c.name].push(r.cpuPerTx);
        }
      }
      const row = (results[`${mode}/${clients}`] = {});
      for (const c of cases) {
        row[c.name] = median(samples[c.name]);
        row[`${c.name} cpu`] = cpus[c.name].length ? median(cpus[c.name]) : undefined;
        const cpu = cpus[c.name].length ? `  proxy CPU ${median(cpus[c.name]).toFixed(1)} µs/tx` : '';
        console.log(`  ${mode.padEnd(8)} c=${String(clients).padEnd(3)} ${c.name.padEnd(34)} ${row[c.name].toFixed(0).padStart(7)} tps  (${samples[c.name].map((x) => x.toFixed(0)).join(', ')})${cpu}`);
      }
    }
  }
  const conn = {};
  const cs = Object.fromEntries(cases.map((c) => [c.name, { tps: [], avg: [], p50: [], p90: [] }]));
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < cases.length; i++) {
      const c = cases[(i + round) % cases.length];
      const r = await pgbench(c, ['-C', '-c', '1', '-j', '1']);
      const p = await probe(c);
      cs[c.name].tps.push(r.tps);
      cs[c.name].avg.push(r.connMs);
      cs[c.name].p50.push(p.p50);
      cs[c.name].p90.push(p.p90);
    }
  }
  for (const c of cases) {
    const m = (conn[c.name] = Object.fromEntries(Object.entries(cs[c.name]).map(([k, v]) => [k, median(v)])));
    console.log(`  -C c=1    ${c.name.padEnd(34)} ${m.tps.toFixed(0).padStart(7)} tps  pgbench avg connect ${m.avg.toFixed(2)} ms  probe p50 ${m.p50.toFixed(2)} ms p90 ${m.p90.toFixed(2)} ms`);
  }

  const [direct, pgb, gate, gateTls] = cases.map((c) => c.name);
  const us = (v) => (v === undefined ? '' : v.toFixed(1));
  console.log('\n| workload | direct | PgBouncer | Gatehouse | Gatehouse + target TLS | Gatehouse / PgBouncer | Gatehouse / direct | PgBouncer / direct | proxy CPU µs/tx (PgBouncer / Gatehouse) |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const [k, r] of Object.entries(results)) {
    console.log(`| -S ${k.replace('/', ', c=')} | ${r[direct].toFixed(0)} | ${r[pgb].toFixed(0)} | ${r[gate].toFixed(0)} | ${r[gateTls].toFixed(0)} | ${(r[gate] / r[pgb]).toFixed(2)} | ${(r[gate] / r[direct]).toFixed(2)} | ${(r[pgb] / r[direct]).toFixed(2)} | ${us(r[`${pgb} cpu`])} / ${us(r[`${gate} cpu`])} |`);
  }
  console.log(`| -S -C, c=1 (tps) | ${conn[direct].tps.toFixed(0)} | ${conn[pgb].tps.toFixed(0)} | ${conn[gate].tps.toFixed(0)} | ${conn[gateTls].tps.toFixed(0)} | ${(conn[gate].tps / conn[pgb].tps).toFixed(2)} | ${(conn[gate].tps / conn[direct].tps).toFixed(2)} | ${(conn[pgb].tps / conn[direct].tps).toFixed(2)} | |`);
  console.log(`| connect p50 (ms, probe) | ${conn[direct].p50.toFixed(2)} | ${conn[pgb].p50.toFixed(2)} | ${conn[gate].p50.toFixed(2)} | ${conn[gateTls].p50.toFixed(2)} | | | | |`);
  console.log(`| connect p90 (ms, probe) | ${conn[direct].p90.toFixed(2)} | ${conn[pgb].p90.toFixed(2)} | ${conn[gate].p90.toFixed(2)} | ${conn[gateTls].p90.toFixed(2)} | | | | |`);
  if (values.native) {
    console.log(`\n| workload | native relay (C prototype) | native / PgBouncer | native / Gatehouse | proxy CPU µs/tx (PgBouncer / native) |`);
    console.log('|---|---:|---:|---:|---:|');
    for (const [k, r] of Object.entries(results)) console.log(`| -S ${k.replace('/', ', c=')} | ${r[NATIVE].toFixed(0)} | ${(r[NATIVE] / r[pgb]).toFixed(2)} | ${(r[NATIVE] / r[gate]).toFixed(2)} | ${us(r[`${pgb} cpu`])} / ${us(r[`${NATIVE} cpu`])} |`);
    console.log(`| connect p50 (ms, probe) | ${conn[NATIVE].p50.toFixed(2)} | | | |`);
  }
  console.log(`\nadded to connect at p50 vs direct: Gatehouse +${(conn[gate].p50 - conn[direct].p50).toFixed(2)} ms, with target TLS +${(conn[gateTls].p50 - conn[direct].p50).toFixed(2)} ms, PgBouncer +${(conn[pgb].p50 - conn[direct].p50).toFixed(2)} ms`);
} finally {
  for (const c of cleanups) {
    try {
      await c();
    } catch {
      // best effort
    }
  }
}
