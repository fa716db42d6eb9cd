#!/usr/bin/env node
/**
 * Connection-start latency, measured from a separate process so that the client's own TLS
 * and SCRAM work does not share the gateway's event loop.
 *
 *   node bench/postgres/connect-probe.mjs '<pg.Client config as JSON>' COUNT
 *
 * Prints one JSON line: { n, p50, p90, mean } in milliseconds (connect until ReadyForQuery).
 */
import { performance } from 'node:perf_hooks';
import pg from 'pg';

const config = JSON.parse(process.argv[2] ?? '{}');
const count = Number(process.argv[3] ?? 100);
const WARMUP = 5;
const times = [];
for (let i = 0; i < count + WARMUP; i++) {
  const c = new pg.Client(config);
  const t0 = performance.now();
  await c.connect();
  const t1 = performance.now();
  await c.end();
  if (i >= WARMUP) times.push(t1 - t0);
}
times.sort((a, b) => a - b);
const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
const mean = times.reduce((a, b) => a + b, 0) / times.length;
console.log(JSON.stringify({ n: times.length, p50: at(0.5), p90: at(0.9), mean }));
