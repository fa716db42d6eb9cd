#!/usr/bin/env node
/**
 * A probe of the native data path's lean record layer (native/pg-relay.c) on whichever Node
 * runs it, without the gateway around it: the addon alone, a Node TLS client, and a TLS echo
 * server as the target. Both legs are handed to a relay, go lean (the addon's own count), and
 * carry PostgreSQL-framed messages of 1 byte to 1 MiB each way, each echoed and compared; then
 * a teardown's goodbye and close_notify reach the client, and both legs are freed; once with
 * the client on each TLS 1.3 suite the door offers. For a Node whose OpenSSL differs
 * from the one the tests run on (the record counting and the keylog lines are OpenSSL's):
 *
 *   cc -O2 -shared -fPIC -pthread -I$NODE/include/node -DNODE_GYP_MODULE_NAME=pg_relay -o /tmp/pg-relay.node native/pg-relay.c
 *   $NODE/bin/node bench/native/lean-probe.mjs /tmp/pg-relay.node
 *
 * Without an argument it loads native/build/pg-relay.node (`npm run build`). Needs dist/ (the
 * gateway's PKI makes the certificates). Prints one line and exits 0 when every check held.
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, createServer as tlsServer } from 'node:tls';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const addon = createRequire(import.meta.url)(process.argv[2] ?? join(root, 'native/build/pg-relay.node'));
const { ensurePki } = await import(join(root, 'dist/src/pki/pki.js'));
const { SERVER_TLS13_SUITES, SERVER_TLS12_CIPHERS } = await import(join(root, 'dist/protocols/shared/server-tls.js'));

const EV = { ready: 1, data: 2, closed: 3, end: 8 };
const ROLE = { server: 1, client: 2 };
const events = [];
let wake = () => undefined;
addon.init((batch) => {
  events.push(...batch);
  wake();
});
async function event(kind, id, ms = 5_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const i = events.findIndex((e) => e[0] === kind && e[1] === id);
    if (i >= 0) return events.splice(i, 1)[0];
    if (Date.now() > deadline) throw new Error(`no event ${kind} for endpoint ${id}; have ${JSON.stringify(events.map((e) => [e[0], e[1], e[6]]))}`);
    await new Promise((r) => {
      wake = r;
      setTimeout(r, 20);
    });
  }
}
const fd = (socket) => socket._handle.fd;
const check = (ok, what) => {
  if (!ok) throw new Error(`probe failed: ${what}`);
};

const dir = mkdtempSync(join(tmpdir(), 'gh-lean-probe-'));
const held = [];
try {
  const pki = await ensurePki(dir);
  // The target: TLS, echoing every byte.
  const target = tlsServer({ cert: pki.certPem, key: pki.keyPem, minVersion: 'TLSv1.3' }, (s) => s.pipe(s));
  target.listen(0, '127.0.0.1');
  await once(target, 'listening');
  // The door: each client's socket goes to the addon with its 'S'.
  const accepted = [];
  const door = createServer({ pauseOnConnect: true }, (s) => accepted.push(s));
  door.listen(0, '127.0.0.1');
  await once(door, 'listening');

  const serverCtx = addon.serverContext(pki.certPem, pki.keyPem, SERVER_TLS13_SUITES, SERVER_TLS12_CIPHERS);
  const clientCtx = addon.clientContext(pki.caCertPem);
  const lines = [];
  for (const suite of SERVER_TLS13_SUITES.split(':')) lines.push(await probe(suite, door, accepted, target, serverCtx, clientCtx, pki));
  console.log(`lean probe: ok on node ${process.version}, OpenSSL ${process.versions.openssl}: ${lines.join('; ')}`);
  target.close();
  door.close();
} finally {
  for (const s of held) s.destroy();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);

/** One session with the client's TLS on `suite` (the target leg on the target's choice). */
async function probe(suite, door, accepted, target, serverCtx, clientCtx, pki) {
  accepted.length = 0;
  events.length = 0;
  const raw = netConnect(door.address().port, '127.0.0.1');
  await once(raw, 'connect');
  while (!accepted.length) await new Promise((r) => setTimeout(r, 5));
  const doorSide = accepted[0];
  held.push(doorSide, raw);
  const clientId = addon.open(fd(doorSide), ROLE.server, serverCtx, '', Buffer.from('S'));
  const [s] = await once(raw, 'data');
  check(s.toString() === 'S', "the 'S'");
  const tls = tlsConnect({ socket: raw, ca: pki.caCertPem, servername: 'localhost', ciphers: suite });
  await once(tls, 'secureConnect');
  await event(EV.ready, clientId);

  // Paused before it connects: Node's socket must not read the target's handshake from the fd.
  const up = netConnect(target.address().port, '127.0.0.1').pause();
  await once(up, 'connect');
  held.push(up);
  const targetId = addon.open(fd(up), ROLE.client, clientCtx, 'localhost', null);
  const ready = await event(EV.ready, targetId);
  check(ready[2] === 1, `the target's certificate verified (${ready[6]})`);
  up.destroy();

  addon.splice(clientId, targetId, Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0), 64, false, true);
  for (let i = 0; i < 100 && addon.stats().lean < 2; i++) await new Promise((r) => setTimeout(r, 10));
  check(addon.stats().lean === 2, `both legs lean (${addon.stats().lean})`);

  // PostgreSQL-framed messages ('Q', length, body), echoed by the target through the relay.
  let got = Buffer.alloc(0);
  tls.on('data', (d) => (got = Buffer.concat([got, d])));
  const sizes = [1, 100, 16_379, 16_380, 16_500, 40_000, 1 << 20];
  let sent = Buffer.alloc(0);
  for (const n of sizes) {
    const body = Buffer.alloc(n, n % 251);
    const m = Buffer.alloc(5);
    m[0] = 0x51;
    m.writeInt32BE(n + 4, 1);
    const msg = Buffer.concat([m, body]);
    sent = Buffer.concat([sent, msg]);
    tls.write(msg);
  }
  for (let i = 0; i < 500 && got.length < sent.length; i++) await new Promise((r) => setTimeout(r, 10));
  check(got.equals(sent), `${sent.length} bytes echoed unchanged (got ${got.length})`);

  // The goodbye, sealed by the addon, then its close_notify: Node reads the goodbye and an end.
  const goodbye = Buffer.from([0x45, 0, 0, 0, 4]);
  got = Buffer.alloc(0);
  const ended = once(tls, 'end');
  addon.teardown(clientId, goodbye, false);
  await ended;
  check(got.equals(goodbye), 'the goodbye before the end');
  check(tls.getCipher().standardName === suite, `the suite ${suite} (got ${tls.getCipher().standardName})`);
  for (let i = 0; i < 100 && addon.stats().endpoints > 0; i++) await new Promise((r) => setTimeout(r, 10));
  check(addon.stats().endpoints === 0 && addon.stats().lean === 0, 'both legs freed');
  return `${suite} ${sent.length} bytes each way, goodbye and close_notify`;
}
