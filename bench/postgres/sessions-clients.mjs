#!/usr/bin/env node
/**
 * The client side of bench/postgres/sessions.mjs, in its own process (forked with IPC) so that
 * its memory and CPU are not the gateway's. Each session is a raw socket that speaks what psql
 * would: SSLRequest, TLS, StartupMessage (`user=bench:bench-pg`), the gateway password, then it
 * waits for ReadyForQuery and stays idle. A pg.Client per session would cost this process far
 * more than the session costs the gateway, and nothing here needs a query.
 *
 * Commands (IPC messages):
 *   { cmd: 'open', n, port, user, password, database, parallel }  → { opened, ms }
 *   { cmd: 'warm', apiPort }      fetch's first use (it loads and compiles undici, ~110 ms of this
 *                                 process's CPU here), on /healthz, before anything is timed
 *   { cmd: 'force', apiPort, resource, token, timeoutMs }         → the teardown, timed (see below)
 *   { cmd: 'watch', timeoutMs }   (another client process's force) waits until every session's
 *                                 socket closed; → when each closed, read its goodbye and its end
 *                                 of stream (hrtime ns as strings), how many read FATAL 57P01
 *   { cmd: 'end' }                                                 → Terminate, then close; → { ended }
 *
 * Times are process.hrtime (CLOCK_MONOTONIC, one clock for every process on the machine).
 *
 * `node sessions-clients.mjs native`: each session's TLS is held by the gateway's own addon
 * (dist/, native/pg-relay.c, as a target leg: `connectTls` after the SSLRequest), on its own
 * thread, with the same login and the same timings taken from its events. A Node TLSSocket
 * spends far more CPU on its close than the gateway spends closing it; on a 2-core machine
 * that client work shares the cores with the gateway and bounds the teardown it measures.
 */
import { connect as netConnect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { clearTimeout, setTimeout } from 'node:timers';
import { connect as tlsConnect } from 'node:tls';
import { eachMessage } from '../lib/pg-messages.mjs';

const sessions = new Set();

// The gateway's own encoders (the build in dist/, as the native mode's addon).
const { passwordMessage, sslRequest, startupMessage, terminate } = await import(new URL('../../dist/protocols/postgres/codec.js', import.meta.url).href);

/** With `native`: the gateway's addon (its loop, from the build in dist/) holds the sessions' TLS. */
const loop = process.argv[2] === 'native' ? await nativeClientLoop() : undefined;

async function nativeClientLoop() {
  const { nativeLoop } = await import(new URL('../../dist/protocols/postgres/native.js', import.meta.url).href);
  const n = nativeLoop();
  if (!('loop' in n)) throw new Error(`the native addon did not load: ${n.reason}`);
  return n.loop;
}

/** After the 'S': TLS over `raw`, by Node or by the addon; calls `secure` once it is up. */
function startTls(raw, secure) {
  if (!loop) {
    const tls = tlsConnect({ socket: raw, rejectUnauthorized: false });
    tls.once('secureConnect', secure);
    return tls;
  }
  // The gateway's certificate is not checked here (an empty CA: no verification), as above.
  const tls = loop.connectTls(raw, 'localhost', '');
  tls.ready.then(secure, () => undefined);
  return tls;
}

/** One idle session: resolves once ReadyForQuery arrived; records how it ends. */
function openSession(o) {
  return new Promise((resolve, reject) => {
    const raw = netConnect({ host: '127.0.0.1', port: o.port });
    raw.setNoDelay(true);
    raw.once('error', reject);
    raw.once('data', (answer) => {
      if (answer[0] !== 0x53) return reject(new Error(`SSLRequest answered ${answer[0]}`));
      const s = { tls: undefined, ready: false, fatal: '', fatalAt: 0n, endAt: 0n, closedAt: 0n };
      const tls = (s.tls = startTls(raw, () => tls.write(startupMessage(new Map([['user', o.user], ['database', o.database]])))));
      tls.on('error', () => {});
      eachMessage(tls, (type, body) => {
        if (type === 0x52 && body.readInt32BE(0) === 3) tls.write(passwordMessage(o.password));
        else if (type === 0x5a && !s.ready) {
          s.ready = true;
          sessions.add(s);
          resolve(s);
        } else if (type === 0x45) {
          const fields = Object.fromEntries(body.toString('utf8').split('\0').filter(Boolean).map((f) => [f[0], f.slice(1)]));
          s.fatal = `${fields.C} ${fields.M}`;
          s.fatalAt = process.hrtime.bigint();
          if (!s.ready) reject(new Error(`refused: ${s.fatal}`));
        }
      });
      tls.once('end', () => (s.endAt = process.hrtime.bigint()));
      tls.once('close', () => {
        s.closedAt = process.hrtime.bigint();
        if (!s.ready) reject(new Error(`closed during login ${s.fatal}`));
      });
    });
    raw.write(sslRequest());
  });
}

async function open(m) {
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < m.n) {
      next++;
      await openSession(m);
    }
  };
  await Promise.all(Array.from({ length: Math.min(m.parallel ?? 16, m.n) }, worker));
  return { opened: sessions.size, ms: performance.now() - t0 };
}

/**
 * POSTs the force check-in and waits until every session's socket has closed. Reports, in ms
 * from just before the request: when the API answered, when the first and the last socket
 * closed, the median close, and how many sessions read the goodbye (FATAL 57P01) first; the
 * last goodbye read and the last end of stream (the gateway's close_notify / FIN) too.
 */
async function force(m) {
  const live = [...sessions];
  const all = Promise.all(live.map((s) => (s.closedAt ? undefined : new Promise((r) => s.tls.once('close', r)))));
  const t0 = process.hrtime.bigint();
  const res = await globalThis.fetch(`http://127.0.0.1:${m.apiPort}/api/v1/resources/${m.resource}/force-checkin`, {
    method: 'POST',
    headers: { authorization: `Bearer ${m.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'bench: mass teardown' }),
  });
  const apiAt = process.hrtime.bigint();
  const status = res.status;
  await res.text();
  let timer;
  await Promise.race([all, new Promise((r) => (timer = setTimeout(r, m.timeoutMs ?? 20_000)))]);
  clearTimeout(timer);
  const ms = (t) => Number(t - t0) / 1e6;
  const closes = live.filter((s) => s.closedAt).map((s) => ms(s.closedAt)).sort((a, b) => a - b);
  const goodbyes = live.filter((s) => s.fatal.startsWith('57P01')).length;
  const last = (k) => Math.max(...live.filter((s) => s[k]).map((s) => ms(s[k])));
  for (const s of live) sessions.delete(s);
  const at = (k) => live.filter((s) => s[k]).map((s) => String(s[k]));
  return {
    closedAt: at('closedAt'), fatalAt: at('fatalAt'), endAt: at('endAt'),
    status, t0: String(t0), apiMs: ms(apiAt), sessions: live.length, closed: closes.length, goodbyes,
    firstMs: closes[0], p50Ms: closes[Math.floor(closes.length / 2)], lastMs: closes.at(-1), lastGoodbyeMs: last('fatalAt'), lastEndMs: last('endAt'),
  };
}

async function watch(m) {
  const live = [...sessions];
  let timer;
  await Promise.race([
    Promise.all(live.map((s) => (s.closedAt ? undefined : new Promise((r) => s.tls.once('close', r))))),
    new Promise((r) => (timer = setTimeout(r, m.timeoutMs ?? 20_000))),
  ]);
  clearTimeout(timer);
  for (const s of live) sessions.delete(s);
  const at = (k) => live.filter((s) => s[k]).map((s) => String(s[k]));
  return { sessions: live.length, goodbyes: live.filter((s) => s.fatal.startsWith('57P01')).length, closedAt: at('closedAt'), fatalAt: at('fatalAt'), endAt: at('endAt') };
}

async function end() {
  const live = [...sessions];
  await Promise.all(live.map((s) => new Promise((r) => {
    if (s.closedAt) return r();
    s.tls.once('close', r);
    s.tls.end(terminate());
  })));
  for (const s of live) sessions.delete(s);
  return { ended: live.length };
}

async function warm(m) {
  await (await globalThis.fetch(`http://127.0.0.1:${m.apiPort}/healthz`)).text();
  return {};
}

process.on('message', (m) => {
  const run = m.cmd === 'open' ? open(m) : m.cmd === 'warm' ? warm(m) : m.cmd === 'force' ? force(m) : m.cmd === 'watch' ? watch(m) : m.cmd === 'end' ? end() : Promise.reject(new Error(`unknown command ${m.cmd}`));
  run.then((r) => process.send({ ok: true, ...r }), (e) => process.send({ ok: false, error: String(e?.stack ?? e) }));
});
process.send({ ok: true, ready: true });
