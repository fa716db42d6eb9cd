#!/usr/bin/env node
/**
 * A Gatehouse browser gateway in its own process, as `gatehouse serve` runs it, for the HTTP
 * benchmark (bench/http/run.mjs): SystemClock, in-memory SQLite, user `bench` on the access
 * list of one app `page` (type browser, protocol http, no workflow) at the given HTTPS
 * webapp, with basic credentials injected; the HttpAdapter (`apps.localhost`) on a free
 * loopback port, the app's certificate verified against its CA (`upstreamCa: { '*': ca }`).
 *
 *   node [--cpu-prof --cpu-prof-dir DIR] bench/http/gateway.mjs '{"host","port","user","password","ca","certDir"}'
 *
 * Prints one JSON line: { port, pid, caCertPem, ticket } (a single-use launch ticket for
 * bench/page, valid 60 s); runs until SIGTERM, then closes and exits 0 (so --cpu-prof writes
 * its profile).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dist = (p) => import(join(root, 'dist', p));
const [{ ensurePki }, { HttpAdapter }, { benchGateway, silentLogger }] = await Promise.all([
  dist('src/pki/pki.js'), dist('protocols/http/index.js'), import('../lib/gateway.mjs'),
]);

const t = JSON.parse(process.argv[2]);
const { engine, broker, stop } = await benchGateway({
  resource: {
    name: 'page', type: 'browser', protocol: 'http', host: t.host, port: t.port,
    credentials: { login: t.user, password: t.password },
    options: { httpAuth: { kind: 'basic' } },
  },
});
const pki = await ensurePki(t.certDir);
const listener = await new HttpAdapter({ upstreamCa: { '*': readFileSync(t.ca, 'utf8') } }).listen({
  host: '127.0.0.1', port: 0, broker, log: silentLogger, tls: { cert: pki.certPem, key: pki.keyPem, ca: pki.caCertPem },
  http: { appsDomain: 'apps.localhost' },
});
const { ticket } = await engine.mfa.issueTicket('bench', 'page', false);
process.on('SIGTERM', () => {
  void listener.close().then(() => stop()).finally(() => process.exit(0));
});
console.log(JSON.stringify({ port: listener.address.port, pid: process.pid, caCertPem: pki.caCertPem, ticket }));
