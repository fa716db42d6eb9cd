#!/usr/bin/env node
/**
 * The PostgreSQL relay's message framer (protocols/postgres/codec.ts, Framer) on its own, fed
 * what one `pgbench -S` transaction puts on the wire: the client's Query in one chunk, the
 * target's RowDescription, DataRow, CommandComplete and ReadyForQuery in another. The hooks are
 * the relay's (requests counted, ReadyForQuery counted, the Query's SQL captured for the audit).
 *
 *   npm run build && node bench/postgres/framer.mjs [--tx 1000000] [--rounds 5] [--baseline DIR]
 *
 * `--baseline DIR`: the Framer of another build too (DIR/dist, e.g. a worktree of an earlier
 * commit after `npx tsc -p tsconfig.build.json`), the two interleaved round by round. Prints ns
 * per transaction (both directions), median and range over the rounds.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('../..', import.meta.url));
const { values } = parseArgs({ options: { tx: { type: 'string', default: '1000000' }, rounds: { type: 'string', default: '5' }, baseline: { type: 'string' } } });
const TX = Number(values.tx);

const msg = (type, body) => {
  const b = Buffer.alloc(5 + body.length);
  b[0] = type.charCodeAt(0);
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
};
const cstr = (s) => Buffer.from(`${s}\0`);
const query = msg('Q', cstr('SELECT abalance FROM pgbench_accounts WHERE aid = 123456;'));
const field = Buffer.concat([cstr('abalance'), Buffer.alloc(18)]);
const answer = Buffer.concat([
  msg('T', Buffer.concat([Buffer.from([0, 1]), field])),
  msg('D', Buffer.concat([Buffer.from([0, 1, 0, 0, 0, 1]), Buffer.from('0')])),
  msg('C', cstr('SELECT 1')),
  msg('Z', Buffer.from('I')),
]);

async function variant(name, dir) {
  const { Framer, MAX_CLIENT_MESSAGE, MAX_SERVER_MESSAGE } = await import(join(dir, 'dist/protocols/postgres/codec.js'));
  let awaiting = 0;
  let captured = 0;
  const c2s = new Framer(MAX_CLIENT_MESSAGE, {
    types: (t) => {
      if (t === 0x51) awaiting++;
      return t === 0x51;
    },
    limit: 4096,
    done: (_t, prefix) => (captured += prefix.length),
  });
  const s2c = new Framer(MAX_SERVER_MESSAGE, {
    types: (t) => {
      if (t === 0x5a && awaiting > 0) awaiting--;
      return false;
    },
    limit: 0,
    done: () => undefined,
  });
  return {
    name,
    run() {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < TX; i++) {
        c2s.feed(query);
        s2c.feed(answer);
      }
      const ns = Number(process.hrtime.bigint() - t0) / TX;
      if (awaiting !== 0 || captured === 0) throw new Error(`${name}: the framer lost count`);
      return ns;
    },
  };
}

const variants = [await variant('this build', root)];
if (values.baseline) variants.push(await variant(`baseline (${values.baseline})`, values.baseline));
for (const v of variants) v.run(); // warm-up
const results = new Map(variants.map((v) => [v.name, []]));
for (let r = 0; r < Number(values.rounds); r++) {
  for (let i = 0; i < variants.length; i++) {
    const v = variants[(i + r) % variants.length];
    results.get(v.name).push(v.run());
  }
}
const sorted = (xs) => [...xs].sort((a, b) => a - b);
console.log(`Framer, one pgbench -S transaction both ways, ${TX} tx per round, ${values.rounds} rounds interleaved; node ${process.version}`);
for (const [name, xs] of results) {
  const s = sorted(xs);
  console.log(`  ${name}: ${s[Math.floor(s.length / 2)].toFixed(1)} ns/tx (${s[0].toFixed(1)}–${s.at(-1).toFixed(1)})`);
}
