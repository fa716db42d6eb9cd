#!/usr/bin/env node
/**
 * The floor for any HTTPS reverse proxy written in Node, for bench/http/run.mjs --bare: an
 * `https` server whose handler forwards every request with `https.request` on a keep-alive
 * agent (the upstream's certificate verified against its CA) and pipes the answer back. No
 * http-proxy-3, no header rebuild, no assertion, no session: what is left is Node's HTTP
 * parsing and TLS on both legs.
 *
 *   node bench/http/bare-proxy.mjs '{"host","port","ca","certDir"}'
 *
 * Prints one JSON line: { port, pid, caCertPem }; runs until SIGTERM.
 */
import { readFileSync } from 'node:fs';
import { Agent, createServer, request } from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const { ensurePki } = await import(join(root, 'dist/src/pki/pki.js'));

const t = JSON.parse(process.argv[2]);
const pki = await ensurePki(t.certDir);
// The same pool limits as the gateway's app agent (protocols/http/upstream.ts).
const agent = new Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, timeout: 60_000, ca: readFileSync(t.ca, 'utf8') });
const upstreamHost = `${t.host}:${t.port}`;
const server = createServer({ cert: pki.certPem, key: pki.keyPem }, (req, res) => {
  const up = request({ host: t.host, port: t.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstreamHost }, agent }, (r) => {
    const { connection: _connection, 'keep-alive': _keepAlive, ...headers } = r.headers;
    res.writeHead(r.statusCode, headers);
    r.pipe(res);
  });
  up.on('error', () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
  req.pipe(up);
});
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port, pid: process.pid, caCertPem: pki.caCertPem }));
});
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  agent.destroy();
  process.exit(0);
});
