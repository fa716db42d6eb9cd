#!/usr/bin/env node
/**
 * What the sockets of one idle gateway session cost on their own, piece by piece, for the
 * breakdown beside bench/postgres/sessions.mjs: in a fresh holder process each time (forked
 * with `--expose-gc`), N connections of one kind are opened and left idle after a small
 * exchange both ways (as a login leaves them), and the holder's RSS after three GCs is compared
 * with before → bytes per connection, split into JS heap, ArrayBuffers and the rest (native);
 * beside it glibc's bytes in use (bench/native/mallinfo.c), which count a block whole whether
 * or not its pages were ever touched.
 * The other end of every connection lives in a separate peer process.
 *
 *   npm run build && node bench/postgres/session-pieces.mjs [--n 1000] [--runs 3]
 *
 * Kinds, each what one leg of a gateway session holds:
 *   tcp-in    an accepted TCP socket (the client leg before TLS)
 *   tls-in    an accepted TCP socket wrapped by a server TLSSocket after the first byte, the way
 *             the PostgreSQL door starts TLS after SSLRequest (the client leg)
 *   tcp-out   an outgoing TCP socket (a plaintext target leg)
 *   tls-out   an outgoing TCP socket wrapped by tls.connect({ socket }) (the TLS target leg)
 */
import { fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TLSSocket, connect as tlsConnect, createSecureContext, createServer as createTlsServer } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadAddon } from '../lib/native-addon.mjs';

const self = fileURLToPath(import.meta.url);
const root = fileURLToPath(new URL('../..', import.meta.url));
const role = process.env.PIECES_ROLE;
// glibc's bytes in use (mallinfo2): what native code holds, touched or not, where RSS counts
// only the pages ever written.
const malloc = role === 'holder' ? loadAddon('mallinfo') : undefined;
const HELLO = Buffer.alloc(300, 0x61);
const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
const once = (emitter, event) => new Promise((r) => emitter.once(event, r));

async function settled() {
  for (let i = 0; i < 3; i++) {
    globalThis.gc();
    await new Promise((r) => setTimeout(r, 50));
  }
  const m = process.memoryUsage();
  return { rss: rss(), heap: m.heapUsed, buffers: m.arrayBuffers, external: m.external, malloc: malloc.info().inUse };
}

/** Holder: opens `n` connections of `kind` (to / from the peer) and reports its memory before and after. */
async function holder({ kind, n, peerPort, tls }) {
  const held = [];
  const ctx = createSecureContext({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' });
  let accepted;
  const server = createServer({ noDelay: true }, (socket) => accepted(socket));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  process.send({ port: server.address().port });
  const inbound = () => new Promise((resolve) => (accepted = resolve));

  const one = async () => {
    if (kind === 'tcp-in' || kind === 'tls-in') {
      const next = inbound();
      process.send({ connect: kind });
      const socket = await next;
      await once(socket, 'data');
      if (kind === 'tcp-in') {
        socket.write(HELLO);
        held.push(socket);
        return;
      }
      socket.pause();
      socket.write(Buffer.from('S'));
      const t = new TLSSocket(socket, { isServer: true, secureContext: ctx });
      await once(t, 'secure');
      await once(t, 'data');
      t.write(HELLO);
      held.push(t);
      return;
    }
    const raw = netConnect({ host: '127.0.0.1', port: kind === 'tcp-out' ? peerPort.tcp : peerPort.tls });
    await once(raw, 'connect');
    if (kind === 'tcp-out') {
      raw.write(HELLO);
      await once(raw, 'data');
      held.push(raw);
      return;
    }
    const t = tlsConnect({ socket: raw, rejectUnauthorized: false });
    await once(t, 'secureConnect');
    t.write(HELLO);
    await once(t, 'data');
    held.push(t);
  };
  for (let i = 0; i < 20; i++) await one();
  for (const s of held.splice(0)) s.destroy();
  const before = await settled();
  for (let i = 0; i < n; i++) await one();
  const after = await settled();
  return { before, after, held: held.length };
}

/** Peer: the other end of every connection. */
async function peer({ tls }) {
  const keep = [];
  const tcp = createServer((s) => {
    keep.push(s);
    s.on('data', () => s.write(HELLO));
  });
  const tlsServer = createTlsServer({ cert: tls.cert, key: tls.key }, (s) => {
    keep.push(s);
    s.on('data', () => s.write(HELLO));
  });
  await Promise.all([new Promise((r) => tcp.listen(0, '127.0.0.1', r)), new Promise((r) => tlsServer.listen(0, '127.0.0.1', r))]);
  process.on('message', async (m) => {
    const raw = netConnect({ host: '127.0.0.1', port: m.port });
    keep.push(raw);
    raw.write(Buffer.from('hi'));
    if (m.kind === 'tls-in') {
      await once(raw, 'data');
      const t = tlsConnect({ socket: raw, rejectUnauthorized: false });
      keep.push(t);
      await once(t, 'secureConnect');
      t.write(Buffer.from('hi'));
      t.on('data', () => undefined);
    } else raw.on('data', () => undefined);
  });
  process.send({ tcp: tcp.address().port, tls: tlsServer.address().port });
}

if (role === 'holder') {
  const m = await once(process, 'message');
  process.send(await holder(m));
  process.exit(0);
} else if (role === 'peer') {
  await peer(await once(process, 'message'));
} else {
  const { values } = parseArgs({ options: { n: { type: 'string', default: '1000' }, runs: { type: 'string', default: '3' } } });
  const N = Number(values.n);
  const { ensurePki } = await import(join(root, 'dist/src/pki/pki.js'));
  const dir = mkdtempSync(join(tmpdir(), 'gh-pieces-'));
  const pki = await ensurePki(dir);
  const tls = { cert: pki.certPem, key: pki.keyPem };
  const kinds = ['tcp-in', 'tls-in', 'tcp-out', 'tls-out'];
  const results = Object.fromEntries(kinds.map((k) => [k, []]));
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  try {
    for (let run = 0; run < Number(values.runs); run++) {
      for (let i = 0; i < kinds.length; i++) {
        const kind = kinds[(i + run) % kinds.length];
        const p = fork(self, [], { env: { ...process.env, PIECES_ROLE: 'peer' } });
        p.send({ tls });
        const peerPort = await once(p, 'message');
        const h = fork(self, [], { env: { ...process.env, PIECES_ROLE: 'holder' }, execArgv: ['--expose-gc'] });
        h.on('message', (m) => {
          if (m.port) h.holderPort = m.port;
          if (m.connect) p.send({ port: h.holderPort, kind: m.connect });
          if (m.before) h.emit('result', m);
        });
        h.send({ kind, n: N, peerPort, tls });
        const r = await once(h, 'result');
        p.kill();
        const per = (k) => (r.after[k] - r.before[k]) / N / 1024;
        results[kind].push({ rss: per('rss'), heap: per('heap'), buffers: per('buffers'), native: per('rss') - per('heap') - per('buffers'), malloc: per('malloc') });
      }
    }
    console.log(`${N} idle connections per kind, ${values.runs} runs; node ${process.version}, OpenSSL ${process.versions.openssl}`);
    console.log('| piece | KiB RSS each | JS heap | ArrayBuffers | native (OpenSSL, libuv, malloc) | malloc in use (touched or not) |');
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const k of kinds) {
      const rs = results[k];
      const f = (key) => `${median(rs.map((x) => x[key])).toFixed(1)}`;
      const range = `${Math.min(...rs.map((x) => x.rss)).toFixed(1)}–${Math.max(...rs.map((x) => x.rss)).toFixed(1)}`;
      console.log(`| ${k} | ${f('rss')} (${range}) | ${f('heap')} | ${f('buffers')} | ${f('native')} | ${f('malloc')} |`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
