#!/usr/bin/env node
/**
 * The native PostgreSQL relay (bench/native/pg-relay.c) as a process the benchmarks can race:
 * JavaScript accepts each connection and reads its SSLRequest, exactly as the gateway's door
 * does, then hands the descriptor to the addon, which answers 'S' and does the TLS, framing,
 * statement capture and relaying on its own thread. Each captured statement becomes an event
 * object in JavaScript, as the gateway's relay makes one (protocols/postgres/relay.ts).
 *
 *   node bench/lib/native-pg-relay.mjs '{"host","port","certDir"}'
 *
 * Prints one JSON line: { port, pid }; runs until SIGTERM. SIGUSR1 prints { live, closed,
 * statements } on stderr; SIGUSR2 closes every session with a FATAL 57P01 goodbye and prints
 * { closeAllMs }, from the signal until the native thread holds no session, on stderr. The addon
 * is compiled on first use (native-addon.mjs).
 */
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setInterval, clearInterval } from 'node:timers';
import { fileURLToPath } from 'node:url';
import { loadAddon } from './native-addon.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));

const SSL_REQUEST = 80877103;

const t = JSON.parse(process.argv[2]);
const [{ ensurePki }, { SERVER_TLS13_SUITES, SERVER_TLS12_CIPHERS }, { teardownError }] = await Promise.all([
  import(join(root, 'dist/src/pki/pki.js')),
  import(join(root, 'dist/protocols/shared/server-tls.js')),
  import(join(root, 'dist/protocols/postgres/errors.js')),
]);
const pki = await ensurePki(t.certDir);
const relay = loadAddon('pg-relay');
let statements = 0;
let last;
relay.start({ certPem: pki.certPem, keyPem: pki.keyPem, tls13: SERVER_TLS13_SUITES, tls12: SERVER_TLS12_CIPHERS, targetHost: t.host, targetPort: t.port }, (batch) => {
  for (const sql of batch) {
    last = { kind: 'query', sql, truncated: sql.length >= 1024 };
    statements++;
  }
});
const server = createServer((raw) => {
  raw.setNoDelay(true);
  raw.on('error', () => raw.destroy());
  raw.once('data', (first) => {
    raw.pause();
    try {
      if (first.length === 8 && first.readInt32BE(4) === SSL_REQUEST) relay.adopt(raw._handle.fd);
    } catch (err) {
      // adopt() throws when dup() fails (EMFILE): this connection is refused, the relay lives on.
      console.error(`adopt: ${err.message}`);
    }
    raw.destroy();
  });
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port, pid: process.pid })));
// SIGUSR2: the mass teardown, every session told FATAL 57P01 (the gateway's own goodbye) and
// closed by the native thread.
const goodbye = teardownError('bench: access ended');
process.on('SIGUSR2', () => {
  const t0 = process.hrtime.bigint();
  relay.closeAll(goodbye);
  const poll = setInterval(() => {
    if (relay.stats().live > 0) return;
    clearInterval(poll);
    console.error(JSON.stringify({ closeAllMs: Number(process.hrtime.bigint() - t0) / 1e6 }));
  }, 1);
});
process.on('SIGUSR1', () => console.error(JSON.stringify({ ...relay.stats(), statements, last: last?.sql })));
process.on('SIGTERM', () => process.exit(0));
