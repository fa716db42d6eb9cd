#!/usr/bin/env node
/**
 * The client-leg TLS handshake alone, as the database doors run it: a Node TLS client (as
 * mysql2 and pg use, verifying the gateway's certificate against its CA) connects to a
 * loopback server that hands each accepted socket either to Node (`new TLSSocket(socket,
 * { isServer })` with the doors' secure context) or to the native data path's addon
 * (`NativeLoop.acceptTlsAfter`, as the MySQL door does after an SSLRequest), both in this
 * process, connects interleaved one at a time. Prints the median and p90 per side of the
 * client's wait (connect() to 'secureConnect') and the server's (accept to the handshake done).
 *
 *   npm run build && node bench/native/handshake.mjs [--connects 300] [--rounds 3] [--cpu]
 *
 * `--resume`: each side's client offers the TLS session of its last handshake with that side,
 * as mysql2 and pg do on a reconnect, so every handshake after the first is a resumed one; the
 * line counts them, and the session tickets the resumed ones brought (each client ends its
 * connection and waits for the server's close, so a ticket sent after the handshake is seen).
 *
 * `--cpu`: instead, each round runs `--connects` handshakes on one side and then on the other
 * (the order alternating by round), and prints per handshake this process's CPU (user and
 * system: client and server together, the addon's thread included), its voluntary context
 * switches (a thread going to sleep) and minor page faults, beside the server's p50.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect as tlsConnect, createSecureContext, TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dist = (p) => import(join(root, 'dist', p));
const { values } = parseArgs({ options: { connects: { type: 'string', default: '300' }, rounds: { type: 'string', default: '3' }, cpu: { type: 'boolean', default: false }, resume: { type: 'boolean', default: false } } });
const [{ ensurePki }, { nativeLoop }, { serverTlsOptions, SERVER_TLS12_CIPHERS, SERVER_TLS13_SUITES }] = await Promise.all([
  dist('src/pki/pki.js'), dist('protocols/shared/native.js'), dist('protocols/shared/server-tls.js'),
]);

const dir = mkdtempSync(join(tmpdir(), 'gh-handshake-'));
const pki = await ensurePki(join(dir, 'certs'));
const loaded = nativeLoop();
if (!('loop' in loaded)) throw new Error(`the addon does not load: ${loaded.reason}`);
const { loop } = loaded;
const nodeContext = createSecureContext(serverTlsOptions({ cert: pki.certPem, key: pki.keyPem }));
// One ticket per full handshake, as the MySQL door's context.
const addonContext = loop.serverContext({ certPem: pki.certPem, keyPem: pki.keyPem, tls13: SERVER_TLS13_SUITES, tls12: SERVER_TLS12_CIPHERS, tickets: 1 });

/** The server side of the next connection: resolves with ms from accept to handshake done. */
let onServer;
const server = createServer({ noDelay: true }, (socket) => {
  const t0 = performance.now();
  const done = onServer;
  if (done.side === 'node') {
    const tls = new TLSSocket(socket, { isServer: true, secureContext: nodeContext });
    tls.on('error', () => {});
    tls.once('secure', () => done.resolve(performance.now() - t0));
    /* Closed once the client goes, so that its ticket (after the handshake) reaches it. */
    tls.on('end', () => tls.destroy()).resume();
  } else {
    const ep = loop.acceptTlsAfter(socket, addonContext, Buffer.alloc(0));
    ep.on('error', () => {});
    ep.ready.then(() => done.resolve(performance.now() - t0), () => done.resolve(NaN));
    ep.on('end', () => ep.destroy()).resume();
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = server.address().port;

/** `--resume`: the session each side last gave its client. */
const sessions = { node: undefined, addon: undefined };

async function once(side) {
  let resolve;
  const serverMs = new Promise((r) => (resolve = r));
  onServer = { side, resolve };
  const t0 = performance.now();
  const client = tlsConnect({ host: '127.0.0.1', port, ca: pki.caCertPem, servername: 'localhost', checkServerIdentity: () => undefined, session: values.resume ? sessions[side] : undefined });
  client.on('error', () => {});
  /* TLS 1.3 tickets come after the handshake; a resumed one may bring none, and the client
   * keeps the session it has. */
  let tickets = 0;
  client.on('session', (session) => {
    tickets++;
    sessions[side] = session;
  });
  const closed = new Promise((r) => client.once('close', r));
  await new Promise((r) => client.once('secureConnect', r));
  const clientMs = performance.now() - t0;
  const reused = client.isSessionReused();
  const s = await serverMs;
  if (values.resume) {
    /* The server closes once the client ends: every ticket it sent came before. */
    client.end();
    await closed;
  } else client.destroy();
  return { clientMs, serverMs: s, reused, tickets };
}

const q = (xs, p) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * p)];
console.log(`TLS handshakes${values.resume ? ' (resumed)' : ''}, Node client verifying the gateway's CA; node ${process.version}, OpenSSL ${process.versions.openssl}`);
/** `--cpu`: one side's handshakes in a row, with what they cost this process per handshake. */
async function block(side, n) {
  const serverMs = [];
  const cpu0 = process.cpuUsage();
  const use0 = process.resourceUsage();
  for (let i = 0; i < n; i++) serverMs.push((await once(side)).serverMs);
  const cpu = process.cpuUsage(cpu0);
  const use = process.resourceUsage();
  const per = (x) => x / n;
  return `${side}: CPU ${per((cpu.user + cpu.system) / 1000).toFixed(3)} ms (user ${per(cpu.user / 1000).toFixed(3)}, system ${per(cpu.system / 1000).toFixed(3)}), sleeps ${per(use.voluntaryContextSwitches - use0.voluntaryContextSwitches).toFixed(1)}, minor faults ${per(use.minorPageFault - use0.minorPageFault).toFixed(1)}, server p50 ${q(serverMs, 0.5).toFixed(2)} ms`;
}

try {
  for (let round = 1; values.cpu && round <= Number(values.rounds); round++) {
    const lines = [];
    for (const side of round % 2 ? ['node', 'addon'] : ['addon', 'node']) lines.push(await block(side, Number(values.connects)));
    console.log(`round ${round}, per handshake: ${lines.join(' | ')}`);
  }
  for (let round = 1; !values.cpu && round <= Number(values.rounds); round++) {
    const got = { node: { c: [], s: [], reused: 0, tickets: 0 }, addon: { c: [], s: [], reused: 0, tickets: 0 } };
    for (let i = 0; i < Number(values.connects); i++) {
      for (const side of i % 2 ? ['node', 'addon'] : ['addon', 'node']) {
        const r = await once(side);
        got[side].c.push(r.clientMs);
        got[side].s.push(r.serverMs);
        got[side].reused += r.reused ? 1 : 0;
        got[side].tickets += r.reused ? r.tickets : 0;
      }
    }
    const line = (side) => `${side} client p50 ${q(got[side].c, 0.5).toFixed(2)} p90 ${q(got[side].c, 0.9).toFixed(2)}, server p50 ${q(got[side].s, 0.5).toFixed(2)} p90 ${q(got[side].s, 0.9).toFixed(2)} ms${values.resume ? `, ${got[side].reused} resumed (${got[side].tickets} tickets after them)` : ''}`;
    console.log(`round ${round}: ${line('node')} | ${line('addon')}`);
  }
} finally {
  server.close();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
