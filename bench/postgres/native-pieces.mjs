#!/usr/bin/env node
/**
 * What the native data path's two legs cost apart, per endpoint (issue 18, item 5): this
 * process holds N addon endpoints of each kind, peers in a child process (Node TLS), and reads
 * glibc's malloc counters and RSS before and after each kind, and after malloc_trim.
 *
 *   npm run build && node --expose-gc bench/postgres/native-pieces.mjs [N] [--pg]    (default 1000)
 *
 * - client leg: a server-side TLS endpoint (`acceptTls`, the door's certificate), with Node's
 *   placeholder socket and its JavaScript objects;
 * - target leg: a client-side TLS endpoint (`connectTls`, chain and name checked against the CA).
 *
 * `--pg`: then N more target legs against a real PostgreSQL (test/targets/postgres.sh, its
 * max_connections raised), TLS up and nothing sent after it, as the gateway's leg is before its
 * login: what the same endpoint costs against PostgreSQL's TLS rather than Node's.
 */
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { loadAddon } from '../lib/native-addon.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dist = (p) => import(join(root, 'dist', p));
const N = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 1000);
const AGAINST_PG = process.argv.includes('--pg');
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]);
const [{ ensurePki }] = await Promise.all([dist('src/pki/pki.js')]);
const pki = await ensurePki(join(root, '.gatehouse', 'bench-native-pieces'));

/** SSLRequest on `raw`, and its one-byte answer. */
async function sslRequest(raw) {
  await new Promise((res) => raw.once('connect', res));
  raw.write(SSL_REQUEST);
  await new Promise((res) => raw.once('data', res));
}

if (process.argv[3] === 'peer') {
  // The child: N Node TLS clients to the parent's door, and a TLS server for its target legs.
  const ctx = tls.createSecureContext({ cert: pki.certPem, key: pki.keyPem });
  const keep = [];
  const server = createServer((s) => s.once('data', () => {
    s.write('S');
    const t = new tls.TLSSocket(s, { isServer: true, secureContext: ctx });
    t.on('error', () => {});
    keep.push(t);
  }));
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  process.send({ target: server.address().port });
  process.once('message', async ({ door }) => {
    for (let i = 0; i < N; i++) {
      const raw = connect(door, '127.0.0.1');
      await sslRequest(raw);
      const t = tls.connect({ socket: raw, rejectUnauthorized: false });
      t.on('error', () => {});
      keep.push(t);
      await new Promise((res) => t.once('secureConnect', res));
    }
    process.send({ clients: N });
  });
} else {
  const [{ nativeLoop }, { SERVER_TLS12_CIPHERS, SERVER_TLS13_SUITES }] = await Promise.all([dist('protocols/postgres/native.js'), dist('protocols/shared/server-tls.js')]);
  const mallinfo = loadAddon('mallinfo');
  const r = nativeLoop();
  if (!('loop' in r)) throw new Error(`the native data path does not load: ${r.reason}`);
  const { loop } = r;
  const ctx = loop.serverContext({ certPem: pki.certPem, keyPem: pki.keyPem, tls13: SERVER_TLS13_SUITES, tls12: SERVER_TLS12_CIPHERS });
  const keep = [];
  const until = async (ok) => { while (!ok()) await new Promise((res) => setTimeout(res, 50)); };
  const snap = () => { globalThis.gc?.(); const m = mallinfo.info(); return { inUse: m.inUse, free: m.free, rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed }; };
  const per = (a, b) => `malloc in use ${((b.inUse - a.inUse) / 1024 / N).toFixed(1)} KiB, free kept ${((b.free - a.free) / 1024 / N).toFixed(1)}, RSS ${((b.rss - a.rss) / 1024 / N).toFixed(1)}, JS heap ${((b.heap - a.heap) / 1024 / N).toFixed(1)}`;
  let ready = 0;
  const door = createServer((s) => s.once('data', () => {
    const ep = loop.acceptTls(s, ctx);
    ep.on('error', () => {});
    keep.push(ep);
    ep.ready.then(() => ready++);
  }));
  await new Promise((res) => door.listen(0, '127.0.0.1', res));
  const peer = fork(fileURLToPath(import.meta.url), [String(N), 'peer']);
  const { target } = await new Promise((res) => peer.once('message', res));
  const s0 = snap();
  peer.send({ door: door.address().port });
  await new Promise((res) => peer.once('message', res));
  await until(() => ready === N);
  const s1 = snap();
  /** N target legs: TCP, SSLRequest and TLS up to `host:port`, chain and `name` checked against `ca`. */
  const targetLegs = async (port, host, name, ca) => {
    let up = 0;
    for (let i = 0; i < N; i++) {
      const raw = connect(port, host);
      await sslRequest(raw);
      const ep = loop.connectTls(raw, name, ca);
      ep.on('error', () => {});
      keep.push(ep);
      ep.ready.then(() => up++);
    }
    await until(() => up === N);
  };
  await targetLegs(target, '127.0.0.1', 'localhost', pki.caCertPem);
  const s2 = snap();
  mallinfo.trim();
  const s3 = snap();
  console.log(`${N} endpoints of each kind, ${loop.endpoints} held; Node ${process.version}, OpenSSL ${process.versions.openssl}`);
  console.log(`client leg (server-side TLS, with its placeholder socket): ${per(s0, s1)}`);
  console.log(`target leg (client-side TLS, verified):                   ${per(s1, s2)}`);
  console.log(`both, after malloc_trim, per pair:                        ${per(s0, s3)}`);
  peer.kill();
  if (AGAINST_PG) {
    const { startTarget, restartTarget } = await import('../lib/pg-relays.mjs');
    const { target: pg, cleanups } = startTarget('gh-native-pieces-');
    try {
      restartTarget(pg, { maxConnections: N + 50 });
      const ca = readFileSync(pg.ca, 'utf8');
      const p0 = snap();
      await targetLegs(pg.port, pg.host, pg.host, ca);
      const p1 = snap();
      mallinfo.trim();
      const p2 = snap();
      console.log(`target leg against PostgreSQL ${pg.version ?? ''}:                ${per(p0, p1)}`);
      console.log(`  the same after malloc_trim:                             ${per(p0, p2)}`);
    } finally {
      for (const c of cleanups) c();
    }
  }
  process.exit(0);
}
