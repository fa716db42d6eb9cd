#!/usr/bin/env node
/**
 * The connect-time target of the tunnel benchmark (bench/tunnel/run.mjs), in its own
 * process: a TCP server on a free loopback port that writes one byte (`G`) as soon as it
 * accepts a connection and then reads until the client closes. The time from a client's
 * `connect()` to that byte is a connection through a path, end to end.
 *
 *   node bench/tunnel/first-byte-server.mjs
 *
 * Prints one JSON line: { port, pid }; runs until SIGTERM.
 */
import { createServer } from 'node:net';

const server = createServer({ noDelay: true }, (c) => {
  c.on('error', () => {});
  c.write('G');
  c.resume();
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port, pid: process.pid })));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
