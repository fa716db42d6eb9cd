#!/usr/bin/env node
/**
 * pgbench -S (select-only), simple and prepared, at 1 and 32 clients, against one PostgreSQL in
 * one run: direct (plaintext); PgBouncer in session mode with client TLS; the bare Node TLS
 * pipe (bench/lib/bare-tls-pipe.mjs: client TLS, no login, the floor of a relay in Node); and
 * Gatehouse with client TLS on each of its door's two data paths, the native one
 * (native/pg-relay.c through protocols/postgres/native.ts) and the node relay
 * (protocols/postgres/relay.ts), each with the target leg in plaintext like PgBouncer's default
 * and with TLS, Gatehouse's default against a target that offers it. Then the price of the
 * gate: pgbench -C (a connection per transaction) and connect latency p50/p90 from a probe
 * process.
 *
 *   npm run build && node bench/postgres/run.mjs [--seconds 5] [--rounds 3] [--clients 1,32] [--connects 200] [--relays native,node] [--no-target-tls]
 *
 * `--relays`: the gateway's data paths to race (default both, each in a gateway process of its
 * own, started with the PostgresAdapter option `relay`; the bench stops unless every listener
 * of that process logged that relay at listen). `--no-target-tls`: leave out the cases with TLS
 * on the target leg.
 *
 * Every workload runs each case `rounds` times, interleaved (the order rotates per round)
 * so that noise from a shared machine hits all cases alike; the median is reported, the rounds
 * beside it; a line per sample, as it is taken, gives its time of day (UTC). Runs as root (the target and PgBouncer run as the postgres OS user). The gateway
 * runs in its own process like PgBouncer (bench/postgres/gateway.mjs: SystemClock, in-memory
 * SQLite, one open resource, gateway password auth: each pgbench connection authenticates, so
 * tickets, being single-use, do not fit). "proxy CPU" is the proxy process's user+system time
 * per transaction (every thread of it), the figure that decides throughput once the two cores
 * are saturated. The relays start from bench/lib/pg-relays.mjs, shared with accounting.mjs.
 * The last line is every sample as JSON.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { RELAYS, relayList, run, startBarePipe, startGateway, startPgbouncer, startTarget, timeOfDay } from '../lib/pg-relays.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' }, clients: { type: 'string', default: '1,32' }, connects: { type: 'string', default: '200' },
    relays: { type: 'string', default: 'native,node' }, 'no-target-tls': { type: 'boolean', default: false }, scale: { type: 'string', default: '5' },
  },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const CLIENTS = values.clients.split(',').map(Number);
const CONNECTS = Number(values.connects);
const GATEHOUSE = relayList(values.relays);

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
  const failed = Number(/number of failed transactions: (\d+)/.exec(out)?.[1] ?? 0);
  if (failed) console.log(`  ! ${c.name}: pgbench reports ${failed} failed transactions`);
  // The proxy's CPU per transaction (connection set-up included; pgbench -T runs ~SECONDS).
  const cpuPerTx = cpu0 === undefined ? undefined : (c.cpu() - cpu0) / (tps * SECONDS);
  return { tps, connMs: conn ? Number(conn) : undefined, cpuPerTx };
}

async function probe(c) {
  const cfg = { host: '127.0.0.1', port: c.port, user: c.user, password: c.password, database: target.database, ssl: c.sslmode === 'require' ? { rejectUnauthorized: false } : false };
  const n = Math.max(10, Math.round(CONNECTS / ROUNDS));
  return JSON.parse((await run(process.execPath, [join(root, 'bench/postgres/connect-probe.mjs'), JSON.stringify(cfg), String(n)])).trim().split('\n').at(-1));
}

const DIRECT = 'direct (plaintext)';
const PGBOUNCER = 'PgBouncer (session, client TLS)';
const BARE = 'bare Node TLS pipe (client TLS)';
const withTargetTls = (relay) => `${RELAYS[relay]} + target TLS`;
const signed = (x) => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`;

try {
  await run('pgbench', ['-i', '-q', '-s', values.scale, '-h', target.host, '-p', String(target.port), '-U', target.user, target.database], { PGPASSWORD: target.password });
  const certDir = join(dir, 'certs');
  const pki = await ensurePki(certDir);
  const gwPassword = randomBytes(12).toString('base64url');
  const bouncer = await startPgbouncer({ target, dir, pki, cleanups });
  const bare = await startBarePipe({ target, certDir, cleanups });
  const asTarget = { user: target.user, password: target.password, sslmode: 'require' };
  const cases = [
    { name: DIRECT, short: 'direct', port: target.port, user: target.user, password: target.password, sslmode: 'disable' },
    { name: PGBOUNCER, short: 'PgBouncer', port: bouncer.port, cpu: bouncer.cpu, ...asTarget },
    { name: BARE, short: 'bare pipe', port: bare.port, cpu: bare.cpu, ...asTarget },
  ];
  const gateways = [];
  for (const relay of GATEHOUSE) {
    const gw = await startGateway({ target, certDir, gatewayPassword: gwPassword, cleanups, relay });
    gateways.push(`${RELAYS[relay]}: pid ${gw.pid}, its listeners logged relay ${gw.relays.join(', ')}`);
    const login = { cpu: gw.cpu, password: gwPassword, sslmode: 'require' };
    // Each listener has its own resource (gateway.mjs): a pin taken on the TLS one must not turn the plaintext one's leg to TLS.
    cases.push({ name: RELAYS[relay], short: relay, port: gw.plainPort, user: gw.plainUser, ...login });
    if (!values['no-target-tls']) cases.push({ name: withTargetTls(relay), short: `${relay} + target TLS`, port: gw.tlsPort, user: gw.tlsUser, ...login });
  }
  console.log(`pgbench -S, ${SECONDS} s per case, median of ${ROUNDS} interleaved rounds; ${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores, load ${execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).split(' ').slice(0, 3).join(' ')}; node ${process.version}; ${target.version}`);
  for (const g of gateways) console.log(`  ${g}`);
  const results = {};
  const rounds = {};
  for (const mode of ['simple', 'prepared']) {
    for (const clients of CLIENTS) {
      const samples = Object.fromEntries(cases.map((c) => [c.name, []]));
      const cpus = Object.fromEntries(cases.map((c) => [c.name, []]));
      for (let round = 0; round < ROUNDS; round++) {
        for (let i = 0; i < cases.length; i++) {
          const c = cases[(i + round) % cases.length];
          const t0 = timeOfDay();
          const r = await pgbench(c, ['-M', mode, '-c', String(clients), '-j', String(Math.min(clients, 2))]);
          samples[c.name].push(r.tps);
          if (r.cpuPerTx !== undefined) cpus[c.name].push(r.cpuPerTx);
          console.log(`    ${t0}–${timeOfDay()} ${mode} c=${clients} round ${round + 1} ${c.short}: ${r.tps.toFixed(0)} tps${r.cpuPerTx === undefined ? '' : `, ${r.cpuPerTx.toFixed(1)} µs/tx`}`);
        }
      }
      const row = (results[`${mode}/${clients}`] = {});
      rounds[`${mode}/${clients}`] = { tps: samples, cpu: cpus };
      for (const c of cases) {
        row[c.name] = median(samples[c.name]);
        row[`${c.name} cpu`] = cpus[c.name].length ? median(cpus[c.name]) : undefined;
        const cpu = cpus[c.name].length ? `  proxy CPU ${median(cpus[c.name]).toFixed(1)} µs/tx (${cpus[c.name].map((x) => x.toFixed(1)).join(', ')})` : '';
        console.log(`  ${mode.padEnd(8)} c=${String(clients).padEnd(3)} ${c.name.padEnd(48)} ${row[c.name].toFixed(0).padStart(7)} tps  (${samples[c.name].map((x) => x.toFixed(0)).join(', ')})${cpu}`);
      }
    }
  }
  const conn = {};
  const cs = Object.fromEntries(cases.map((c) => [c.name, { tps: [], avg: [], p50: [], p90: [] }]));
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < cases.length; i++) {
      const c = cases[(i + round) % cases.length];
      const t0 = timeOfDay();
      const r = await pgbench(c, ['-C', '-c', '1', '-j', '1']);
      const p = await probe(c);
      console.log(`    ${t0}–${timeOfDay()} -C round ${round + 1} ${c.short}: ${r.tps.toFixed(0)} tps, probe p50 ${p.p50.toFixed(2)} ms`);
      cs[c.name].tps.push(r.tps);
      cs[c.name].avg.push(r.connMs);
      cs[c.name].p50.push(p.p50);
      cs[c.name].p90.push(p.p90);
    }
  }
  for (const c of cases) {
    const m = (conn[c.name] = Object.fromEntries(Object.entries(cs[c.name]).map(([k, v]) => [k, median(v)])));
    console.log(`  -C c=1    ${c.name.padEnd(48)} ${m.tps.toFixed(0).padStart(7)} tps  pgbench avg connect ${m.avg.toFixed(2)} ms  probe p50 ${m.p50.toFixed(2)} ms (${cs[c.name].p50.map((x) => x.toFixed(2)).join(', ')}) p90 ${m.p90.toFixed(2)} ms`);
  }

  const us = (v) => (v === undefined ? '' : v.toFixed(1));
  const ratio = (r, a, b) => (r[a] !== undefined && r[b] !== undefined ? (r[a] / r[b]).toFixed(2) : '');
  const [native, node] = [RELAYS.native, RELAYS.node];
  const cpuCases = cases.filter((c) => c.cpu);
  console.log(`\n| workload (tps) | ${cases.map((c) => c.short).join(' | ')} | native / PgBouncer | native / direct | node / PgBouncer | native / node | proxy CPU µs/tx (${cpuCases.map((c) => c.short).join(' / ')}) |`);
  console.log(`|---|${cases.map(() => '---:|').join('')}---:|---:|---:|---:|---:|`);
  for (const [k, r] of Object.entries(results)) {
    console.log(`| -S ${k.replace('/', ', c=')} | ${cases.map((c) => r[c.name].toFixed(0)).join(' | ')} | ${ratio(r, native, PGBOUNCER)} | ${ratio(r, native, DIRECT)} | ${ratio(r, node, PGBOUNCER)} | ${ratio(r, native, node)} | ${cpuCases.map((c) => us(r[`${c.name} cpu`])).join(' / ')} |`);
  }
  const tpsC = Object.fromEntries(cases.map((c) => [c.name, conn[c.name].tps]));
  console.log(`| -S -C, c=1 (tps) | ${cases.map((c) => tpsC[c.name].toFixed(0)).join(' | ')} | ${ratio(tpsC, native, PGBOUNCER)} | ${ratio(tpsC, native, DIRECT)} | ${ratio(tpsC, node, PGBOUNCER)} | ${ratio(tpsC, native, node)} | |`);
  for (const q of ['p50', 'p90']) console.log(`| connect ${q} (ms, probe) | ${cases.map((c) => conn[c.name][q].toFixed(2)).join(' | ')} | | | | | |`);
  console.log(`\nadded to connect at p50 vs direct: ${cases.slice(1).map((c) => `${c.short} ${signed(conn[c.name].p50 - conn[DIRECT].p50)} ms`).join(', ')}`);
  console.log(`\n${JSON.stringify({ rounds, connect: cs })}`);
} finally {
  for (const c of cleanups) {
    try {
      await c();
    } catch {
      // best effort
    }
  }
}
