#!/usr/bin/env node
/**
 * The client side of bench/mysql/run.mjs, in its own process so it does not share an event
 * loop with the gateway. Prints one JSON line.
 *
 *   node load.mjs '{"conn":{...mysql2 options},"mode":"query"|"execute","clients":32,"seconds":10,"rows":10000}'
 *   node load.mjs '{"conn":{...},"mode":"connect","connects":200,"warmup":10}'
 */
import { performance } from 'node:perf_hooks';
import mysql from 'mysql2/promise';

const cfg = JSON.parse(process.argv[2]);

if (cfg.mode === 'connect') {
  const times = [];
  // Each connect with its end() (COM_QUIT until the server's close): the whole cycle a client
  // that reconnects at once goes through, whichever side of it a proxy's teardown falls on.
  const cycles = [];
  // A new process's first connects compile mysql2's and TLS's code: not counted.
  for (let i = 0; i < (cfg.warmup ?? 0); i++) await (await mysql.createConnection(cfg.conn)).end();
  for (let i = 0; i < cfg.connects; i++) {
    const t0 = performance.now();
    const c = await mysql.createConnection(cfg.conn);
    times.push(performance.now() - t0);
    await c.end();
    cycles.push(performance.now() - t0);
    if (cfg.pause) await new Promise((resolve) => setTimeout(resolve, cfg.pause));
  }
  for (const xs of [times, cycles]) xs.sort((a, b) => a - b);
  const q = (xs, p) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))];
  console.log(JSON.stringify({ p50: q(times, 0.5), p90: q(times, 0.9), cycleP50: q(cycles, 0.5), n: times.length, times }));
} else {
  const conns = await Promise.all(Array.from({ length: cfg.clients }, () => mysql.createConnection(cfg.conn)));
  const sql = 'SELECT c FROM sbtest WHERE id = ?';
  const one = (c) => {
    const id = 1 + Math.floor(Math.random() * cfg.rows);
    return cfg.mode === 'execute' ? c.execute(sql, [id]) : c.query(`SELECT c FROM sbtest WHERE id = ${id}`);
  };
  // Warm-up: statements prepared, TLS sessions and JIT settled.
  await Promise.all(conns.map(async (c) => { for (let i = 0; i < 50; i++) await one(c); }));
  let count = 0;
  let stop = false;
  const t0 = performance.now();
  setTimeout(() => (stop = true), cfg.seconds * 1000);
  await Promise.all(conns.map(async (c) => {
    while (!stop) {
      const [rows] = await one(c);
      if (rows.length !== 1) throw new Error('point select returned no row');
      count++;
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(conns.map((c) => c.end()));
  console.log(JSON.stringify({ count, seconds, qps: count / seconds }));
}
