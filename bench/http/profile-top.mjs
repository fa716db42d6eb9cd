#!/usr/bin/env node
/**
 * Summarises a V8 CPU profile (`node --cpu-prof`, e.g. the gateway's from
 * `node bench/http/run.mjs --cpu-prof DIR`): the busy share of the samples, the functions
 * with the most self time, and the inclusive time of the stages of a proxied request.
 *
 *   node bench/http/profile-top.mjs FILE.cpuprofile [--top 25]
 *
 * Percentages are of the busy samples (everything but `(idle)`), so the idle time of the
 * direct and nginx runs in a whole-bench profile does not dilute them.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } });
if (positionals.length !== 1) {
  console.error('usage: node bench/http/profile-top.mjs FILE.cpuprofile [--top N]');
  process.exit(2);
}
const prof = JSON.parse(readFileSync(positionals[0], 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// Time per sample: the deltas (µs) say how long each sample stood for.
const self = new Map();
for (let i = 0; i < prof.samples.length; i++) {
  const id = prof.samples[i];
  self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
}
const total = [...self.values()].reduce((a, b) => a + b, 0);
const nameOf = (n) => n.callFrame.functionName || '(anonymous)';
const where = (n) => {
  const u = n.callFrame.url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, '$1/').replace(/^node:/, 'node:');
  return u ? `${u}:${n.callFrame.lineNumber + 1}` : '';
};
const idle = [...self].filter(([id]) => nameOf(byId.get(id)) === '(idle)').reduce((a, [, t]) => a + t, 0);
const busy = total - idle;
const pct = (t) => `${((t / busy) * 100).toFixed(1)}%`;
console.log(`${positionals[0]}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy (${((busy / total) * 100).toFixed(0)}%); percentages of busy time`);

// Self time by function (name + place).
const selfBy = new Map();
for (const [id, t] of self) {
  const n = byId.get(id);
  const k = `${nameOf(n)}  ${where(n)}`;
  selfBy.set(k, (selfBy.get(k) ?? 0) + t);
}
console.log('\nself time, top functions:');
for (const [k, t] of [...selfBy].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) {
  console.log(`  ${pct(t).padStart(6)}  ${k}`);
}

// Inclusive time of a frame: the samples with it on their stack (counted once per sample).
function inclusive(match) {
  let t = 0;
  for (const [id, dt] of self) {
    for (let n = byId.get(id); n; n = byId.get(parent.get(n.id))) {
      if (match(n)) {
        t += dt;
        break;
      }
    }
  }
  return t;
}
const stages = [
  ['HttpDoor.request (routing, cookie, relay set-up, proxy.web)', (n) => nameOf(n) === 'request' && n.callFrame.url.includes('protocols/http/session')],
  ['  identityHeaders (the ES256 assertion and the user header)', (n) => nameOf(n) === 'identityHeaders'],
  ['    AssertionSigner.sign', (n) => nameOf(n) === 'sign' && n.callFrame.url.includes('assertion')],
  ['  upstreamHeaders (the allow-list rebuild)', (n) => nameOf(n) === 'upstreamHeaders'],
  ['rewriteResponse (proxyRes: hop-by-hop, Location, cookies)', (n) => nameOf(n) === 'rewriteResponse'],
  ['http-proxy-3 (all frames under node_modules/http-proxy-3)', (n) => n.callFrame.url.includes('node_modules/http-proxy-3')],
  ['garbage collector', (n) => nameOf(n) === '(garbage collector)'],
  ['(program): native code outside JS frames (TLS, syscalls, parser callbacks)', (n) => nameOf(n) === '(program)'],
  ['writeBuffer / writev / writeUtf8String (native socket and TLS writes)', (n) => /^(writeBuffer|writev|writeUtf8String|writeLatin1String)$/.test(nameOf(n))],
  ['onStreamRead (socket reads, TLS decryption, HTTP parsing)', (n) => nameOf(n) === 'onStreamRead'],
  ['parserOnHeadersComplete (request and response heads)', (n) => nameOf(n) === 'parserOnHeadersComplete'],
];
console.log('\ninclusive time of the stages:');
for (const [label, m] of stages) console.log(`  ${pct(inclusive(m)).padStart(6)}  ${label}`);
