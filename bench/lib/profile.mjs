/**
 * Summarises a V8 CPU profile (`node --cpu-prof`) for the benchmarks' profile-top scripts:
 * the busy share of the samples, the functions with the most self time, and the inclusive
 * time of the stages a script names. Percentages are of the busy samples (everything but
 * `(idle)`), so time the process waited while other paths ran does not dilute them.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

export const nameOf = (n) => n.callFrame.functionName || '(anonymous)';
export const urlOf = (n) => n.callFrame.url;

/**
 * Reads `FILE.cpuprofile [--top N]` from the command line and prints the summary.
 * `stages(profile)` gives `[label, match(node)]` pairs; `describe(urls)` may name the process.
 */
export function summarise({ usage, top = 20, stages, describe = () => '' }) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: String(top) } } });
  if (positionals.length !== 1) {
    console.error(`usage: ${usage} FILE.cpuprofile [--top N]`);
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
  const where = (n) => {
    const u = urlOf(n).replace(/^file:\/\/.*?\/(node_modules|dist)\//, '$1/');
    return u ? `${u}:${n.callFrame.lineNumber + 1}` : '';
  };
  const idle = [...self].filter(([id]) => nameOf(byId.get(id)) === '(idle)').reduce((a, [, t]) => a + t, 0);
  const busy = total - idle;
  const pct = (t) => `${((t / busy) * 100).toFixed(1)}%`;
  const kind = describe(new Set(prof.nodes.map(urlOf)));
  console.log(`${positionals[0]}: ${kind ? `${kind}; ` : ''}${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy (${((busy / total) * 100).toFixed(0)}%); percentages of busy time`);

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

  /** Inclusive time of a frame: the samples with it on their stack (counted once per sample). */
  const inclusive = (match) => {
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
  };
  console.log('\ninclusive time of the stages:');
  for (const [label, m] of stages) console.log(`  ${pct(inclusive(m)).padStart(6)}  ${label}`);
}

/** Stages every Node process has: GC, native code, socket writes and reads. */
export const NODE_STAGES = [
  ['garbage collector', (n) => nameOf(n) === '(garbage collector)'],
  ['(program): native code outside JS frames (TLS, syscalls, parser callbacks)', (n) => nameOf(n) === '(program)'],
  ['native socket writes (writeBuffer / writev / writeGeneric)', (n) => /^(writeBuffer|writev|writeGeneric|writeUtf8String|writeLatin1String)$/.test(nameOf(n))],
  ['onStreamRead (socket reads and what runs on them)', (n) => nameOf(n) === 'onStreamRead'],
];
