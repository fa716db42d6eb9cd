#!/usr/bin/env node
/**
 * The client side of bench/ldap/run.mjs, in its own process so it shares no event loop with
 * the gateway. ldapts over LDAPS. Prints one JSON line.
 *
 * Throughput: `conns` connections, each bound once and warmed up; a `{"ready":true}` line;
 * then, after a line on stdin (the parent starts every worker of a run at once), a closed
 * loop of base-object searches of uid=userNNNN (random, 1..entries) for `seconds`:
 *
 *   node load.mjs '{"mode":"search","path":{"url","ca","dn","password"},"conns":32,"seconds":5,"peopleDn":"ou=people,...","entries":2000}'
 *
 * Connect-plus-bind: `connects` times, for each path in turn (the order rotates every
 * iteration, so the paths share the machine's noise), a new connection (TCP + TLS) and a
 * simple bind, timed until the bind succeeds; then an unbind, awaited but not timed. A path
 * may carry `passwords` (one per connect: single-use launch tickets) instead of `password`.
 *
 *   node load.mjs '{"mode":"connect","paths":[{"name","url","ca","dn","password"|"passwords"}],"connects":50}'
 */
import { performance } from 'node:perf_hooks';
import { Client } from 'ldapts';

const cfg = JSON.parse(process.argv[2]);
const ATTRIBUTES = ['cn', 'mail', 'employeeNumber'];

const client = (p) => new Client({ url: p.url, tlsOptions: { ca: p.ca }, connectTimeout: 10_000, timeout: 30_000 });

if (cfg.mode === 'connect') {
  const times = Object.fromEntries(cfg.paths.map((p) => [p.name, []]));
  for (let i = 0; i < cfg.connects; i++) {
    for (let j = 0; j < cfg.paths.length; j++) {
      const p = cfg.paths[(i + j) % cfg.paths.length];
      const c = client(p);
      const t0 = performance.now();
      await c.bind(p.dn, p.passwords ? p.passwords[i] : p.password);
      times[p.name].push(performance.now() - t0);
      await c.unbind();
    }
  }
  console.log(JSON.stringify({ times }));
} else {
  const p = cfg.path;
  const conns = await Promise.all(Array.from({ length: cfg.conns }, async () => {
    const c = client(p);
    await c.bind(p.dn, p.password);
    return c;
  }));
  const one = async (c) => {
    const uid = `user${String(1 + Math.floor(Math.random() * cfg.entries)).padStart(4, '0')}`;
    const r = await c.search(`uid=${uid},${cfg.peopleDn}`, { scope: 'base', attributes: ATTRIBUTES });
    if (r.searchEntries.length !== 1 || r.searchEntries[0].mail !== `${uid}@example.com`) throw new Error(`unexpected result for ${uid}: ${JSON.stringify(r.searchEntries)}`);
  };
  // Warm-up: JIT settled, every connection used at least once.
  await Promise.all(conns.map(async (c) => { for (let i = 0; i < 20; i++) await one(c); }));
  // All workers of a run start together, when the parent says go (a line on stdin).
  console.log(JSON.stringify({ ready: true }));
  await new Promise((resolve) => process.stdin.once('data', resolve));
  process.stdin.pause();
  let count = 0;
  let stop = false;
  const t0 = performance.now();
  setTimeout(() => (stop = true), cfg.seconds * 1000);
  await Promise.all(conns.map(async (c) => {
    while (!stop) {
      await one(c);
      count++;
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(conns.map((c) => c.unbind()));
  console.log(JSON.stringify({ count, seconds, rate: count / seconds }));
}
