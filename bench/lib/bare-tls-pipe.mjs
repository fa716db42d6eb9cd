#!/usr/bin/env node
/**
 * The floor for a TLS-terminating PostgreSQL relay in Node, for the benchmarks: answer the
 * client's SSLRequest with 'S', wrap the socket in a server `TLSSocket` with the gateway's
 * certificate, connect to the target in plaintext and `pipe()` both ways. No framing, no
 * login, no session, no audit: what is left is Node's TLS and stream machinery. Both sockets
 * get TCP_NODELAY, as the gateway's do (protocols/postgres/session.ts, upstream.ts).
 *
 *   node bench/lib/bare-tls-pipe.mjs '{"host","port","certDir"}'
 *
 * Prints one JSON line: { port, pid }; runs until SIGTERM.
 */
import { createServer, connect } from 'node:net';
import { join } from 'node:path';
import { TLSSocket, createSecureContext } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { together } from './tls-tap.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const [{ ensurePki }, { serverTlsOptions }] = await Promise.all([import(join(root, 'dist/src/pki/pki.js')), import(join(root, 'dist/protocols/shared/server-tls.js'))]);

const SSL_REQUEST = 80877103;
const t = JSON.parse(process.argv[2]);
const pki = await ensurePki(t.certDir);
// The same context options as the gateway's database doors (protocols/shared/server-tls.ts:
// TLS 1.2 or later, the server's cipher order, AES-128-GCM first).
const secureContext = createSecureContext(serverTlsOptions({ cert: pki.certPem, key: pki.keyPem }));

const server = createServer((raw) => {
  raw.setNoDelay(true);
  raw.on('error', () => raw.destroy());
  raw.once('data', (first) => {
    if (first.length !== 8 || first.readInt32BE(4) !== SSL_REQUEST) return raw.destroy();
    raw.pause();
    raw.write('S');
    const client = new TLSSocket(raw, { isServer: true, secureContext });
    const up = connect(t.port, t.host);
    up.setNoDelay(true);
    together(client, up);
    client.pipe(up);
    up.pipe(client);
  });
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port, pid: process.pid })));
process.on('SIGTERM', () => process.exit(0));
