#!/usr/bin/env node
/**
 * Many idle PostgreSQL sessions through one gateway (issue 18, item 5): what each costs the
 * gateway in RSS, and how long one force check-in of the lease they share takes to close them.
 *
 *   npm run build && node bench/postgres/sessions.mjs [--sizes 20,400,1000] [--runs 3] [--upstream tls|plain] [--workers 1[,2]] [--client-procs 1] [--relays native,node] [--client-tls node[,native]]
 *
 * `--workers 1,2`: each size also with the door in two data-path workers (`gatehouse serve
 * --workers 2`), interleaved; RSS is then the gateway's and its workers' together.
 * `--client-tls node,native`: each case with the clients' TLS in Node (TLSSocket) and in the
 * gateway's addon (sessions-clients.mjs explains why), interleaved.
 * `--relays native,node`: each case on each of the door's data paths (the PostgresAdapter option
 * `relay`), interleaved: the native one (native/pg-relay.c, the sockets held by the addon's
 * thread) and the node relay (protocols/postgres/relay.ts). A case stops the bench unless every
 * process serving the door logged that relay at listen, and, on the native path in one process,
 * unless the addon holds two sockets per session (its own count, `nativeEndpoints`).
 *
 * A real PostgreSQL (test/targets/postgres.sh, max_connections raised and restarted), and per
 * case a fresh gateway process (sessions-gateway.mjs: startGateway as `gatehouse serve` runs it,
 * SystemClock, SQLite in a data directory, API + PostgreSQL door, `--expose-gc`) and a fresh
 * client process (sessions-clients.mjs: raw TLS sockets that log in like psql and stay idle).
 * Every session uses client TLS and, by default, TLS to the target (the gateway's default);
 * all of them run under bench's one check-out of the single-user resource bench-pg.
 *
 * Per case: 20 sessions are opened and ended first (warm-up: code compiled, pools made); then
 * RSS (VmRSS after three GCs) before, N sessions opened, RSS after → KiB per idle session, split
 * into JS heap, ArrayBuffers/external and the rest (native: OpenSSL, libuv, malloc), with the
 * gateway process's glibc bytes in use and free-but-kept (bench/native/mallinfo.c); RSS again
 * after the sessions idled 3 s (the native data path hands glibc's free pages back once, 2 s
 * after a burst of logins). Then the
 * client process POSTs /api/v1/resources/bench-pg/force-checkin (admin's API token) and times,
 * from just before the request, the moment each of its sockets saw `close`; the gateway reports
 * when the last session_ended notice went out (published once a session's record and its
 * session.end audit row are written). Cases run size by size, the order rotating per run, so
 * noise on this shared machine hits every size alike; the summary gives the median and range.
 * Runs as root (the target runs as the postgres OS user).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { helper } from '../lib/ipc-helper.mjs';
import { commandCpuNs, relayList, relayLogged, relayOptions, restartTarget, startTarget, threadsCpuNs, timeOfDay } from '../lib/pg-relays.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '20,400,1000' }, runs: { type: 'string', default: '3' }, upstream: { type: 'string', default: 'tls' }, workers: { type: 'string', default: '1' },
    'client-procs': { type: 'string', default: '1' }, relays: { type: 'string', default: 'native,node' }, 'client-tls': { type: 'string', default: 'node' },
  },
});
const SIZES = values.sizes.split(',').map(Number);
const RUNS = Number(values.runs);
const WORKERS = values.workers.split(',').map(Number);
const RELAYS = relayList(values.relays);
const CLIENT_PROCS = Number(values['client-procs']);
const CLIENT_TLS = values['client-tls'].split(',');
if (CLIENT_TLS.some((t) => t !== 'node' && t !== 'native')) throw new Error('--client-tls takes node, native or both');
const PLAIN = values.upstream === 'plain';
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const range = (xs, f = (x) => x.toFixed(0)) => `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;
const KiB = (b) => b / 1024;
/** How long the sessions idle before the second reading of the gateway's memory. */
const IDLE_MS = 3_000;

const { target, dir, cleanups } = startTarget('gh-bench-sessions-');

const cases = [];

/** The force's figures with the other client processes' closes folded in (their times are hrtime too). */
function merge(tear, watched) {
  if (!watched.length) return tear;
  const t0 = BigInt(tear.t0);
  const ms = (xs) => xs.map((x) => Number(BigInt(x) - t0) / 1e6);
  const all = (k) => [...ms(tear[k]), ...watched.flatMap((w) => ms(w[k]))];
  const closes = all('closedAt').sort((a, b) => a - b);
  return {
    ...tear,
    sessions: tear.sessions + watched.reduce((a, w) => a + w.sessions, 0),
    closed: closes.length,
    goodbyes: tear.goodbyes + watched.reduce((a, w) => a + w.goodbyes, 0),
    firstMs: closes[0], p50Ms: closes[Math.floor(closes.length / 2)], lastMs: closes.at(-1),
    lastGoodbyeMs: Math.max(...all('fatalAt')), lastEndMs: Math.max(...all('endAt')),
  };
}

/**
 * CPU time so far, in ns, of what shares the machine during a force check-in: the gateway's
 * JavaScript thread, the addon's thread (named gatehouse-relay), the gateway's other threads
 * (libuv's pool, V8's), the client processes, and PostgreSQL's processes by pid (`cpuSpent`
 * counts those alive at both ends: a backend's exit is not in it). The gateway's data-path
 * worker processes are not in it.
 */
function cpuNow(gatewayPid, clientPids) {
  const sum = (ts) => ts.reduce((a, t) => a + t.ns, 0);
  const gw = threadsCpuNs(gatewayPid);
  const js = sum(gw.filter((t) => t.tid === gatewayPid));
  const relay = sum(gw.filter((t) => t.name === 'gatehouse-relay'));
  return { js, relay, otherThreads: sum(gw) - js - relay, clients: sum(clientPids.flatMap((pid) => threadsCpuNs(pid))), postgres: commandCpuNs('postgres') };
}

/** What each part spent between two cpuNow() readings, in ms. */
function cpuSpent(a, b) {
  let postgres = 0;
  for (const [pid, ns] of b.postgres) if (a.postgres.has(pid)) postgres += ns - a.postgres.get(pid);
  const ms = (k) => (b[k] - a[k]) / 1e6;
  return { js: ms('js'), relay: ms('relay'), otherThreads: ms('otherThreads'), clients: ms('clients'), postgres: postgres / 1e6 };
}

async function runCase(n, workers, relay, clientTls) {
  const t0 = timeOfDay();
  const dataDir = mkdtempSync(join(dir, 'gw-'));
  const gatewayPassword = randomBytes(12).toString('base64url');
  const path = relayOptions(relay);
  const cfg = { host: target.host, port: target.port, user: target.user, password: target.password, database: target.database, dataDir, gatewayPassword, plainUpstream: PLAIN, workers, ...path };
  const logged = [];
  const gw = helper(join(root, 'bench/postgres/sessions-gateway.mjs'), [JSON.stringify(cfg)], ['--expose-gc'], (line) => {
    const r = relayLogged(line);
    if (r) logged.push(r);
  });
  // Client sockets in CLIENT_PROCS processes: one process handling a thousand TLS closes is
  // itself a bound on how soon the last one is seen closed.
  const procs = Array.from({ length: CLIENT_PROCS }, () => helper(join(root, 'bench/postgres/sessions-clients.mjs'), clientTls === 'native' ? ['native'] : []));
  const [clients, ...others] = procs;
  try {
    const g = await gw.first();
    if (!g.ok) throw new Error(g.error);
    await Promise.all(procs.map((p) => p.first()));
    const login = { port: g.pgPort, user: 'bench:bench-pg', password: gatewayPassword, database: target.database };
    await clients.ask({ cmd: 'open', n: 20, ...login });
    await clients.ask({ cmd: 'end' });
    await gw.ask({ cmd: 'recorded', t0: '0', expect: 20 });
    // Every process serving the door has logged its data path by now (20 sessions went through it).
    const serving = workers > 1 ? workers : 1;
    if (logged.length !== serving || logged.some((r) => r !== path.relay)) throw new Error(`relay ${relay}: the door's ${serving} process(es) logged [${logged.join(', ')}]`);
    const before = await gw.ask({ cmd: 'mem' });
    const t1 = performance.now();
    await Promise.all(procs.map((p, i) => p.ask({ cmd: 'open', n: Math.floor(n / CLIENT_PROCS) + (i < n % CLIENT_PROCS ? 1 : 0), ...login })));
    const opened = { ms: performance.now() - t1 };
    const after = await gw.ask({ cmd: 'mem' });
    if (after.live !== n) throw new Error(`expected ${n} live sessions, the broker has ${after.live}`);
    if (after.nativeEndpoints !== undefined && after.nativeEndpoints < 2 * n) throw new Error(`${n} sessions on the native data path, its addon holds ${after.nativeEndpoints} sockets`);
    // Lean: every TLS leg of every live session (both with a TLS target leg, the client's alone without).
    const leanLegs = path.tlsRecords === 'lean' ? (PLAIN ? n : 2 * n) : 0;
    if (after.nativeEndpoints !== undefined && after.leanEndpoints < leanLegs) throw new Error(`${n} sessions, ${after.leanEndpoints} legs on the lean record layer (expected ${leanLegs})`);
    // The sessions idle on: after 3 s the addon's one trim after a burst of logins has run
    // (TRIM_QUIET_NS, 2 s), and what glibc kept free of the logins' burst is handed back.
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const idle = await gw.ask({ cmd: 'mem' });
    // Before the CPU readings and the clock: its CPU is not the teardown's.
    await clients.ask({ cmd: 'warm', apiPort: g.apiPort });
    const watching = others.map((p) => p.ask({ cmd: 'watch' }));
    const cpu0 = cpuNow(gw.pid, procs.map((p) => p.pid));
    const tear = merge(await clients.ask({ cmd: 'force', apiPort: g.apiPort, resource: 'bench-pg', token: g.token }), await Promise.all(watching));
    const cpu1 = cpuNow(gw.pid, procs.map((p) => p.pid));
    const cpuMs = cpuSpent(cpu0, cpu1);
    const rec = await gw.ask({ cmd: 'recorded', t0: tear.t0, expect: n });
    const per = (k) => KiB(after[k] - before[k]) / n;
    const c = {
      n, workers, relay, clientTls, openMs: opened.ms, nativeEndpoints: after.nativeEndpoints, leanEndpoints: after.leanEndpoints, rss: per('rss'), rssIdle: KiB(idle.rss - before.rss) / n, mallocFreeIdle: KiB(idle.mallocFree - before.mallocFree) / n, heap: per('heapUsed'), heapTotal: per('heapTotal'), buffers: per('arrayBuffers'), external: per('external') - per('arrayBuffers'),
      malloc: per('mallocInUse'), mallocFree: per('mallocFree'), rssBeforeMiB: before.rss / 2 ** 20, rssAfterMiB: after.rss / 2 ** 20, primaryKiB: KiB(after.primaryRss - before.primaryRss) / n,
      fdsBefore: before.fds, fdsAfter: after.fds,
      workersKiB: after.workersRss.map((r, i) => KiB(r - before.workersRss[i]) / n), ...tear, recordedMs: rec.recordedMs, liveRecords: rec.liveRecords, endAudits: rec.sessionEndAudits, cpuMs,
    };
    c.native = c.rss - c.heap - c.buffers - c.external;
    // Which arenas keep what glibc holds free after the idle wait, and what they have in use, per session.
    c.arenasIdle = idle.arenas.map((a) => {
      const b = before.arenas.find((x) => x.nr === a.nr) ?? { free: 0, inUse: 0 };
      return { nr: a.nr, free: KiB(a.free - b.free) / n, inUse: KiB(a.inUse - b.inUse) / n };
    }).filter((a) => Math.abs(a.free) >= 0.5 || Math.abs(a.inUse) >= 0.5);
    cases.push(c);
    console.log(
      `  ${t0}–${timeOfDay()} n=${String(n).padEnd(5)} workers=${workers} relay=${relay.padEnd(6)} client TLS=${clientTls.padEnd(6)} RSS ${c.rssBeforeMiB.toFixed(1)} → ${c.rssAfterMiB.toFixed(1)} MiB = ${c.rss.toFixed(1)} KiB/session, ${c.rssIdle.toFixed(1)} after ${IDLE_MS / 1000} s idle (malloc free kept ${c.mallocFreeIdle.toFixed(1)}; by arena, free / in use: ${c.arenasIdle.map((a) => `#${a.nr} ${a.free.toFixed(1)} / ${a.inUse.toFixed(1)}`).join(', ')}) ` +
        `(JS heap ${c.heap.toFixed(1)} used / ${c.heapTotal.toFixed(1)} committed, ${workers > 1 ? 'primary ' : ''}malloc in use ${c.malloc.toFixed(1)} + free kept ${c.mallocFree.toFixed(1)}, ArrayBuffers ${c.buffers.toFixed(1)}, other external ${c.external.toFixed(1)}, native ${c.native.toFixed(1)}); ` +
        `gateway fds ${c.fdsBefore} → ${c.fdsAfter}${c.nativeEndpoints === undefined ? '' : `, addon sockets ${c.nativeEndpoints} (lean ${c.leanEndpoints})`}; ${workers > 1 ? `primary ${c.primaryKiB.toFixed(1)} + workers ${c.workersKiB.map((k) => k.toFixed(1)).join(' + ')} KiB/session; ` : ''}opened in ${(c.openMs / 1000).toFixed(1)} s | force check-in: API answered ${c.apiMs.toFixed(0)} ms, sockets closed first ${c.firstMs?.toFixed(0)} / p50 ${c.p50Ms?.toFixed(0)} / last ${c.lastMs?.toFixed(0)} ms, last goodbye read ${c.lastGoodbyeMs?.toFixed(0)}, last end ${c.lastEndMs?.toFixed(0)} ` +
        `(${c.closed}/${c.sessions} closed, ${c.goodbyes} read FATAL 57P01), records + audit written by ${c.recordedMs.toFixed(0)} ms (${c.liveRecords} left live, ${c.endAudits} session.end rows incl. 20 warm-up); ` +
        `CPU until the clients saw the last close: gateway JS ${cpuMs.js.toFixed(0)} ms, relay thread ${cpuMs.relay.toFixed(0)}, other gateway threads ${cpuMs.otherThreads.toFixed(0)}${workers > 1 ? ' (primary only)' : ''}, clients ${cpuMs.clients.toFixed(0)}, PostgreSQL's live processes ${cpuMs.postgres.toFixed(0)}`,
    );
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    await gw.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

try {
  restartTarget(target, { maxConnections: Math.max(...SIZES) + 200 });
  console.log(
    `${SIZES.join(', ')} idle sessions, ${RUNS} runs (order rotating), relays ${RELAYS.join(', ')}, client TLS, target leg ${PLAIN ? 'plaintext' : 'TLS'}; ` +
      `${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores, load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}; ${target.version}; node ${process.version}`,
  );
  for (let run = 0; run < RUNS; run++) {
    for (let i = 0; i < SIZES.length; i++) {
      for (let j = 0; j < WORKERS.length; j++) {
        for (let k = 0; k < RELAYS.length; k++) {
          for (let l = 0; l < CLIENT_TLS.length; l++) {
            await runCase(SIZES[(i + run) % SIZES.length], WORKERS[(j + run) % WORKERS.length], RELAYS[(k + run) % RELAYS.length], CLIENT_TLS[(l + run) % CLIENT_TLS.length]);
          }
        }
      }
    }
  }
  console.log('\n| sessions | workers | relay | client TLS | KiB RSS / session | … after 3 s idle | JS heap | ArrayBuffers | native + other | malloc in use / free kept | force check-in → last socket closed (ms) | → first / p50 closed (ms) | → records + audit written (ms) | CPU until the last close (ms): gateway / clients | read FATAL 57P01 |');
  console.log('|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const n of SIZES) for (const w of WORKERS) for (const relay of RELAYS) for (const clientTls of CLIENT_TLS) {
    const cs = cases.filter((c) => c.n === n && c.workers === w && c.relay === relay && c.clientTls === clientTls);
    const cpu = (f) => { const xs = cs.map((c) => f(c.cpuMs)); return `${median(xs).toFixed(0)} (${range(xs)})`; };
    const m = (k, f = (x) => x.toFixed(1)) => `${f(median(cs.map((c) => c[k])))} (${range(cs.map((c) => c[k]), f)})`;
    const ms = (x) => x.toFixed(0);
    const one = (k) => median(cs.map((c) => c[k])).toFixed(1);
    console.log(`| ${n} | ${w} | ${relay} | ${clientTls} | ${m('rss')} | ${m('rssIdle')} | ${m('heap')} | ${m('buffers')} | ${median(cs.map((c) => c.native + c.external)).toFixed(1)} | ${one('malloc')} / ${one('mallocFree')} | ${m('lastMs', ms)} | ${m('firstMs', ms)} / ${m('p50Ms', ms)} | ${m('recordedMs', ms)} | ${cpu((c) => c.js + c.relay + c.otherThreads)} / ${cpu((c) => c.clients)} | ${cs.map((c) => `${c.goodbyes}/${c.sessions}`).join(', ')} |`);
  }
  // Every case's figures, without the per-socket times.
  console.log(`\n${JSON.stringify(cases, (k, v) => (['closedAt', 'fatalAt', 'endAt'].includes(k) ? undefined : v))}`);
} finally {
  for (const c of cleanups) {
    try {
      await c();
    } catch {
      // best effort
    }
  }
}
