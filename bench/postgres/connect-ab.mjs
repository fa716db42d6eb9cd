#!/usr/bin/env node
/**
 * Connect latency through the PostgreSQL door, A/B: two builds of the gateway (two checkouts,
 * each built with `npx tsc -p tsconfig.build.json`, or `npm run build` for the native data path)
 * in their own processes against one PostgreSQL target, probed interleaved with a direct connect
 * in every round.
 *
 *   node bench/postgres/connect-ab.mjs A_ROOT B_ROOT [--rounds 3] [--connects 60] [--relay native|node] [--timings]
 *
 * e.g. A = a worktree of an older commit, B = this checkout (`.`). Prints, per round, the p50
 * added to a direct connect by each build, with the target leg in plaintext and with TLS.
 * `--relay`: the door's data path in both builds, through GATEHOUSE_POSTGRES_RELAY (a build from
 * before the choice ignores it and logs none); absent, each build's default. The data path each
 * build's listeners logged is printed first.
 *
 * `--timings`: a third gateway, B's build at log level debug, probed after A and B in every
 * round (its own connects are not in the A/B figures: debug logging has a cost), whose
 * `login timings` lines (protocols/postgres/session.ts) give the median of each step of the
 * gateway's side of a connect, per listener: `tls` (SSLRequest, handshake, StartupMessage),
 * `ask` (asking for the password until it came), `signIn`, `decision`, `target` (the target's connect,
 * TLS, login and greeting), `live` (hand-over and the live record).
 */
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { run, startGateway, startTarget } from '../lib/pg-relays.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const { values, positionals } = parseArgs({ allowPositionals: true, options: { rounds: { type: 'string', default: '3' }, connects: { type: 'string', default: '60' }, relay: { type: 'string' }, timings: { type: 'boolean', default: false } } });
const [rootA, rootB] = positionals.map((p) => resolve(p));
if (!rootA || !rootB) throw new Error('usage: connect-ab.mjs A_ROOT B_ROOT [--rounds N] [--connects N] [--relay native|node]');
const { target, dir, cleanups } = startTarget('gh-ab-');

const probe = async (config) => JSON.parse((await run(process.execPath, [join(here, 'connect-probe.mjs'), JSON.stringify(config), values.connects])).trim().split('\n').at(-1)).p50;

const password = randomBytes(12).toString('base64url');
try {
  // Through the environment only: a build from before the relay choice neither reads it nor logs a data path.
  const env = values.relay ? { GATEHOUSE_POSTGRES_RELAY: values.relay } : {};
  const a = await startGateway({ target, certDir: join(dir, 'certs-a'), gatewayPassword: password, cleanups, from: rootA, env });
  const b = await startGateway({ target, certDir: join(dir, 'certs-b'), gatewayPassword: password, cleanups, from: rootB, env });
  const steps = { plain: [], tls: [] };
  const onLog = (line) => {
    if (!line.includes('"login timings"')) return;
    const l = JSON.parse(line);
    steps[l.listener]?.push(l.ms);
  };
  const c = values.timings ? await startGateway({ target, certDir: join(dir, 'certs-c'), gatewayPassword: password, cleanups, from: rootB, env, logLevel: 'debug', onLog }) : undefined;
  await new Promise((r) => setTimeout(r, 500)); // the listeners' log lines, on stderr
  for (const [name, g] of [['A', a], ['B', b]]) {
    if (values.relay && g.relays.some((r) => r !== values.relay)) throw new Error(`${name} asked for relay ${values.relay}, logged [${g.relays.join(', ')}]`);
    console.log(`${name}: ${name === 'A' ? rootA : rootB}, data path logged: ${g.relays.join(', ') || 'none (a build from before the choice)'}`);
  }
  // Each listener logs in to its own resource, so that the TLS listener's pin of the target's
  // certificate does not turn the plaintext listener's leg to TLS (gateway.mjs). A build from
  // before that has one resource for both: its plaintext figures after round 1 are a TLS leg's.
  for (const [name, g] of [['A', a], ['B', b]]) if (!g.tlsUser) console.log(`${name}: one resource for both listeners (an older gateway.mjs): its 'plaintext' figures after round 1 are over TLS`);
  const user = (g, port) => (port === g.tlsPort ? g.tlsUser : g.plainUser) ?? 'bench:bench-pg';
  const via = (g, port) => ({ host: '127.0.0.1', port, user: user(g, port), password, database: target.database, ssl: { rejectUnauthorized: false } });
  for (let r = 1; r <= Number(values.rounds); r++) {
    const direct = await probe({ host: '127.0.0.1', port: target.port, user: target.user, password: target.password, database: target.database, ssl: false });
    const [aPlain, bPlain, bTls, aTls] = [await probe(via(a, a.plainPort)), await probe(via(b, b.plainPort)), await probe(via(b, b.tlsPort)), await probe(via(a, a.tlsPort))];
    const add = (x) => `+${(x - direct).toFixed(2)}`;
    console.log(`round ${r}: direct p50 ${direct.toFixed(2)} ms | A ${add(aPlain)} (target TLS ${add(aTls)}) | B ${add(bPlain)} (target TLS ${add(bTls)}) ms`);
    if (c) {
      await probe(via(c, c.plainPort));
      await probe(via(c, c.tlsPort));
    }
  }
  if (c) {
    const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    for (const [listener, rows] of Object.entries(steps)) {
      if (!rows.length) continue;
      const cols = Object.keys(rows[0]);
      const total = median(rows.map((row) => cols.reduce((a, k) => a + row[k], 0)));
      console.log(`B's login steps, target leg ${listener === 'tls' ? 'TLS' : 'plaintext'} (${rows.length} logins, median ms): ${cols.map((k) => `${k} ${median(rows.map((row) => row[k])).toFixed(2)}`).join(', ')}; accept to greeting ${total.toFixed(2)}`);
    }
  }
} finally {
  for (const c of cleanups) {
    try {
      await c();
    } catch {
      // best effort
    }
  }
}
