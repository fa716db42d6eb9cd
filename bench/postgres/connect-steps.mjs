#!/usr/bin/env node
/**
 * A connect through the PostgreSQL door as the client sees it, step by step, on both data
 * paths at once: two gateways of this build (bench/postgres/gateway.mjs, one per `relay`)
 * against one PostgreSQL target, probed interleaved by a raw client in this process that
 * timestamps each step of the login (the target leg in plaintext, so that the target's own TLS
 * does not blur the comparison):
 *
 *   tcp     connect() until the TCP connection is up
 *   S       SSLRequest sent until the gateway's 'S'
 *   secure  'S' until the TLS handshake is done (the client's own TLS work is in it)
 *   ask     StartupMessage sent until the password is asked for
 *   ok      password sent until AuthenticationOk (sign-in, decision, the target's connect and
 *           login, the live record)
 *   ready   AuthenticationOk until ReadyForQuery
 *   close   Terminate and the client's end sent until its socket closed (not in the total)
 *
 *   npm run build && node bench/postgres/connect-steps.mjs [--rounds 4] [--connects 40] [--timings] [--gap MS]
 *
 * Prints the median of each step per data path over every round but the first ten connects.
 * `--timings`: both gateways log at debug level, and the medians of their own `login timings`
 * (protocols/postgres/session.ts: from accept to the greeting) are printed under the client's,
 * so that what the client waits for outside the gateway's steps shows (e.g. before accept).
 * `--gap MS`: a pause after each connect (default none: the next connect starts once the last
 * one's socket has closed, while the gateway may still be recording that session's end).
 */
import { randomBytes } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect as tlsConnect } from 'node:tls';
import { parseArgs } from 'node:util';
import { eachMessage } from '../lib/pg-messages.mjs';
import { startGateway, startTarget } from '../lib/pg-relays.mjs';

const { passwordMessage, sslRequest, startupMessage, terminate } = await import(new URL('../../dist/protocols/postgres/codec.js', import.meta.url).href);

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '4' }, connects: { type: 'string', default: '40' }, timings: { type: 'boolean', default: false }, gap: { type: 'string', default: '0' } } });
const STEPS = [['tcp', 't0', 'tcp'], ['S', 'tcp', 'S'], ['secure', 'S', 'secure'], ['ask', 'secure', 'ask'], ['ok', 'ask', 'ok'], ['ready', 'ok', 'ready'], ['close', 'ready', 'closed']];

/** One login, timed step by step; closed with a Terminate once ReadyForQuery came. */
function login(port, password, database) {
  return new Promise((resolve, reject) => {
    const t = { t0: performance.now() };
    const raw = netConnect({ host: '127.0.0.1', port });
    raw.setNoDelay(true);
    raw.once('error', reject);
    raw.once('connect', () => {
      t.tcp = performance.now();
      raw.write(sslRequest());
    });
    raw.once('data', (answer) => {
      t.S = performance.now();
      if (answer[0] !== 0x53) return reject(new Error(`SSLRequest answered ${answer[0]}`));
      const tls = tlsConnect({ socket: raw, rejectUnauthorized: false });
      tls.once('error', reject);
      tls.once('secureConnect', () => {
        t.secure = performance.now();
        tls.write(startupMessage(new Map([['user', 'bench:bench-pg'], ['database', database]])));
      });
      eachMessage(tls, (type, body) => {
        const code = body.length >= 4 ? body.readInt32BE(0) : -1;
        if (type === 0x52 && code === 3) {
          t.ask = performance.now();
          tls.write(passwordMessage(password));
        } else if (type === 0x52 && code === 0) t.ok = performance.now();
        else if (type === 0x45) reject(new Error('the gateway refused the login'));
        else if (type === 0x5a) {
          t.ready = performance.now();
          tls.once('close', () => {
            t.closed = performance.now();
            resolve(t);
          });
          tls.end(terminate());
        }
      });
    });
  });
}

const { target, dir, cleanups } = startTarget('gh-bench-steps-');
try {
  const password = randomBytes(12).toString('base64url');
  const relays = ['native', 'node'];
  const gateways = {};
  const logged = Object.fromEntries(relays.map((r) => [r, []]));
  for (const relay of relays) {
    const onLog = (line) => {
      if (line.includes('"login timings"') && line.includes('"listener":"plain"')) logged[relay].push(JSON.parse(line).ms);
    };
    gateways[relay] = await startGateway({ target, certDir: join(dir, `certs-${relay}`), gatewayPassword: password, cleanups, relay, ...(values.timings ? { logLevel: 'debug', onLog } : {}) });
  }
  const times = Object.fromEntries(relays.map((r) => [r, []]));
  for (let round = 0; round < Number(values.rounds); round++) {
    // The order rotates, so that neither path always follows the other.
    for (const relay of round % 2 ? [...relays].reverse() : relays) {
      for (let i = 0; i < Number(values.connects); i++) {
        times[relay].push(await login(gateways[relay].plainPort, password, target.database));
        if (Number(values.gap) > 0) await new Promise((r) => setTimeout(r, Number(values.gap)));
      }
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`${values.rounds} rounds × ${values.connects} connects per data path${Number(values.gap) > 0 ? `, ${values.gap} ms apart` : ''}, target leg in plaintext, median ms (the first 10 connects left out); ${target.version}; node ${process.version}`);
  console.log(`| data path | ${STEPS.map(([name]) => name).join(' | ')} | total |`);
  console.log(`|---|${STEPS.map(() => '---:').join('|')}|---:|`);
  for (const relay of relays) {
    const ts = times[relay].slice(10);
    const cells = STEPS.map(([, from, to]) => median(ts.map((t) => t[to] - t[from])).toFixed(2));
    console.log(`| ${relay} | ${cells.join(' | ')} | ${median(ts.map((t) => t.ready - t.t0)).toFixed(2)} |`);
  }
  for (const relay of relays) {
    const gs = logged[relay].slice(10);
    if (!gs.length) continue;
    const from = (keys) => median(gs.map((g) => keys.reduce((a, k) => a + g[k], 0))).toFixed(2);
    console.log(`${relay}, the gateway's own steps: ${Object.keys(gs[0]).map((k) => `${k} ${median(gs.map((g) => g[k])).toFixed(2)}`).join(', ')}; signIn to the greeting ${from(['signIn', 'decision', 'target', 'live'])} (the client's \`ok\` less this: the password's and the greeting's way through the gateway)`);
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
