#!/usr/bin/env node
/**
 * Summarises a V8 CPU profile of a tunnel process (`node bench/tunnel/run.mjs --cpu-prof DIR`
 * writes one for the loopback gateway and one for its iperf3 `gatehouse tunnel` CLI): which
 * process it is, the busy share of the samples, the functions with the most self time, and
 * the inclusive time of the stages of a carried byte (WebSocket framing and masking, reads,
 * writes, the relay handlers, GC).
 *
 *   node bench/tunnel/profile-top.mjs FILE.cpuprofile [--top 20]
 *
 * Percentages are of the busy samples (everything but `(idle)`), so the time the process
 * waited while the other paths ran does not dilute them.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '20' } } });
if (positionals.length !== 1) {
  console.error('usage: node bench/tunnel/profile-top.mjs FILE.cpuprofile [--top N]');
  process.exit(2);
}
const prof = JSON.parse(readFileSync(positionals[0], 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const self = new Map();
for (let i = 0; i < prof.samples.length; i++) {
  const id = prof.samples[i];
  self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
}
const total = [...self.values()].reduce((a, b) => a + b, 0);
const nameOf = (n) => n.callFrame.functionName || '(anonymous)';
const urlOf = (n) => n.callFrame.url;
const where = (n) => {
  const u = urlOf(n).replace(/^file:\/\/.*?\/(node_modules|dist)\//, '$1/');
  return u ? `${u}:${n.callFrame.lineNumber + 1}` : '';
};
const idle = [...self].filter(([id]) => nameOf(byId.get(id)) === '(idle)').reduce((a, [, t]) => a + t, 0);
const busy = total - idle;
const pct = (t) => `${((t / busy) * 100).toFixed(1)}%`;
const urls = new Set(prof.nodes.map(urlOf));
const kind = [...urls].some((u) => u.includes('protocols/tunnel/session')) ? 'the gateway (gatehouse serve)'
  : [...urls].some((u) => u.includes('cli/actions/tunnel')) ? 'the tunnel CLI (gatehouse tunnel)' : 'unknown process';
console.log(`${positionals[0]}: ${kind}; ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy (${((busy / total) * 100).toFixed(0)}%); percentages of busy time`);

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

/** Inclusive time of a frame: the samples with it on their stack (counted once per sample). */
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
const inWs = (file) => (n) => urlOf(n).includes(`node_modules/ws/lib/${file}`);
const stages = [
  ['ws Sender (framing, masking, the write)', (n) => inWs('sender.js')(n)],
  ['  masking in JavaScript (buffer-util _mask: client -> gateway frames)', (n) => nameOf(n) === '_mask' && inWs('buffer-util.js')(n)],
  ['ws Receiver (parsing frames, unmasking, delivering messages)', (n) => inWs('receiver.js')(n)],
  ['  unmasking in JavaScript (buffer-util _unmask)', (n) => nameOf(n) === '_unmask' && inWs('buffer-util.js')(n)],
  ['  Buffer concatenation of fragments (buffer-util concat)', (n) => nameOf(n) === 'concat' && inWs('buffer-util.js')(n)],
  ['the door\'s own frames (protocols/tunnel/session.js: the relay handlers) and below', (n) => urlOf(n).includes('protocols/tunnel/session')],
  ['the CLI\'s own frames (src/cli/actions/tunnel.js: carryConnection handlers) and below', (n) => urlOf(n).includes('cli/actions/tunnel')],
  ['Buffer.from (copies; the relay and carryConnection copy each received message)', (n) => nameOf(n) === 'from' && urlOf(n) === 'node:buffer'],
  ['native socket writes (writeBuffer / writev / writeGeneric)', (n) => /^(writeBuffer|writev|writeGeneric|writeUtf8String|writeLatin1String)$/.test(nameOf(n))],
  ['onStreamRead (socket reads and what runs on them)', (n) => nameOf(n) === 'onStreamRead'],
  ['garbage collector', (n) => nameOf(n) === '(garbage collector)'],
  ['(program): native code outside JS frames', (n) => nameOf(n) === '(program)'],
];
console.log('\ninclusive time of the stages:');
for (const [label, m] of stages) console.log(`  ${pct(inclusive(m)).padStart(6)}  ${label}`);
