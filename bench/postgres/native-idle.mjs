#!/usr/bin/env node
/**
 * Idle sessions and a mass teardown on the native relay prototype (issue 18, items 3 and 5):
 * what an idle TLS session costs when C holds it (bench/native/pg-relay.c) against a bare Node
 * TLS pipe (bench/lib/bare-tls-pipe.mjs), and how long the native thread takes to send 1,000
 * goodbyes and close the sockets. Both relays keep the target leg in plaintext, so compare them
 * with `bench/postgres/sessions.mjs --upstream plain` for Gatehouse itself.
 *
 *   node bench/postgres/native-idle.mjs [--n 1000] [--runs 3] [--client-procs 2]
 *
 * Per run and relay (the order rotating per run): a fresh relay process, 20 sessions opened and
 * ended (warm-up), RSS (VmRSS) read, N idle sessions opened by sessions-clients.mjs (raw TLS
 * sockets that log in like psql; here as the target's own user, whose pg_hba line this bench
 * switches to `password` so those clients can answer it), RSS read again after a second's
 * settling → KiB per session. Then, for the native relay only, SIGUSR2 (closeAll: FATAL 57P01,
 * close_notify, close, for every session) and the time from just before the signal to each
 * client socket's close, from the client processes (one monotonic clock for all processes).
 * Runs as root (the target runs as the postgres OS user).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { helper } from '../lib/ipc-helper.mjs';
import { restartTarget, startBarePipe, startNativeRelay, startTarget } from '../lib/pg-relays.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const { values } = parseArgs({ options: { n: { type: 'string', default: '1000' }, runs: { type: 'string', default: '3' }, 'client-procs': { type: 'string', default: '2' } } });
const N = Number(values.n);
const RUNS = Number(values.runs);
const PROCS = Number(values['client-procs']);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (xs, d = 1) => `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

const { target, dir, cleanups } = startTarget('gh-bench-native-idle-');

const results = { bare: { rss: [] }, native: { rss: [], lastMs: [], p50Ms: [], goodbyes: [] } };

async function runCase(kind) {
  const local = [];
  const relay = await (kind === 'native' ? startNativeRelay : startBarePipe)({ target, certDir: join(dir, 'certs'), cleanups: local });
  const procs = Array.from({ length: PROCS }, () => helper(join(root, 'bench/postgres/sessions-clients.mjs')));
  try {
    await Promise.all(procs.map((p) => p.first()));
    const login = { port: relay.port, user: target.user, password: target.password, database: target.database };
    await procs[0].ask({ cmd: 'open', n: 20, ...login });
    await procs[0].ask({ cmd: 'end' });
    await sleep(1000);
    const before = rssKiB(relay.pid);
    await Promise.all(procs.map((p, i) => p.ask({ cmd: 'open', n: Math.floor(N / PROCS) + (i < N % PROCS ? 1 : 0), ...login })));
    await sleep(1000);
    const perSession = (rssKiB(relay.pid) - before) / N;
    results[kind].rss.push(perSession);
    let line = `  ${kind.padEnd(6)} ${N} idle sessions: RSS ${(before / 1024).toFixed(1)} → ${(rssKiB(relay.pid) / 1024).toFixed(1)} MiB = ${perSession.toFixed(1)} KiB/session`;
    if (kind === 'native') {
      const watching = procs.map((p) => p.ask({ cmd: 'watch', timeoutMs: 20_000 }));
      const t0 = process.hrtime.bigint();
      process.kill(relay.pid, 'SIGUSR2');
      const seen = await Promise.all(watching);
      const closes = seen.flatMap((w) => w.closedAt.map((t) => Number(BigInt(t) - t0) / 1e6)).sort((a, b) => a - b);
      const goodbyes = seen.reduce((a, w) => a + w.goodbyes, 0);
      results.native.lastMs.push(closes.at(-1));
      results.native.p50Ms.push(closes[Math.floor(closes.length / 2)]);
      results.native.goodbyes.push(goodbyes);
      line += ` | closeAll → last socket closed ${closes.at(-1).toFixed(0)} ms (p50 ${closes[Math.floor(closes.length / 2)].toFixed(0)}), ${closes.length}/${N} closed, ${goodbyes} read FATAL 57P01`;
    } else await Promise.all(procs.map((p) => p.ask({ cmd: 'end' })));
    console.log(line);
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    for (const c of local) c();
  }
}

try {
  // The clients answer a cleartext password request (sessions-clients.mjs): the target user gets one.
  restartTarget(target, { maxConnections: N + 200, hbaFirst: `host all ${target.user} 127.0.0.1/32 password` });
  console.log(`${N} idle sessions, ${RUNS} runs, clients in ${PROCS} processes, client TLS, target leg plaintext; ${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores, load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}; node ${process.version}`);
  for (let run = 0; run < RUNS; run++) for (const kind of run % 2 ? ['native', 'bare'] : ['bare', 'native']) await runCase(kind);
  console.log('\n| relay | KiB RSS / idle session | closeAll → last client socket closed (ms) | → p50 (ms) | read FATAL 57P01 |');
  console.log('|---|---:|---:|---:|---:|');
  console.log(`| bare Node TLS pipe | ${fmt(results.bare.rss)} | n/a | n/a | n/a |`);
  console.log(`| native relay (C prototype) | ${fmt(results.native.rss)} | ${fmt(results.native.lastMs, 0)} | ${fmt(results.native.p50Ms, 0)} | ${fmt(results.native.goodbyes, 0)} |`);
} finally {
  for (const c of cleanups) {
    try {
      c();
    } catch {
      // best effort
    }
  }
}
