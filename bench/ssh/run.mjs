#!/usr/bin/env node
/**
 * SSH throughput and connection start: direct to sshd, through OpenSSH's ProxyJump (the
 * same sshd as jump host), and through Gatehouse, side by side in one run.
 *
 *   npm run build && node bench/ssh/run.mjs [--mib 256] [--rounds 3] [--starts 20]
 *
 * The gateway runs in this process (SystemClock, in-memory SQLite, one open resource);
 * the clients are stock `ssh` processes fed by `head -c N /dev/zero` so that no byte of the
 * client side passes through Node.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dist = (p) => import(join(root, 'dist', p));

const { values } = parseArgs({ options: { mib: { type: 'string', default: '256' }, rounds: { type: 'string', default: '3' }, starts: { type: 'string', default: '20' } } });
const MIB = Number(values.mib);
const ROUNDS = Number(values.rounds);
const STARTS = Number(values.starts);
const CIPHER = 'aes128-gcm@openssh.com';

const [{ ensurePki }, { SshAdapter }, { benchGateway, silentLogger }] = await Promise.all([
  dist('src/pki/pki.js'), dist('protocols/ssh/index.js'), import('../lib/gateway.mjs'),
]);

const dir = mkdtempSync(join(tmpdir(), 'gh-bench-ssh-'));
const sshdScript = join(root, 'test/targets/sshd.sh');
const target = JSON.parse(execFileSync('bash', [sshdScript, 'start'], { encoding: 'utf8' }).trim().split('\n').at(-1));

async function gateway() {
  const key = join(dir, 'bench_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  const { engine, broker, store } = await benchGateway({
    sshKeys: [readFileSync(`${key}.pub`, 'utf8').trim()],
    resource: {
      name: 'bench-target', type: 'machine', protocol: 'ssh', host: target.host, port: target.port,
      credentials: { login: target.user, privateKey: readFileSync(target.clientKey, 'utf8') },
    },
  });
  const pki = await ensurePki(join(dir, 'certs'));
  const listener = await new SshAdapter().listen({
    host: '127.0.0.1', port: 0, broker, log: silentLogger, tls: { cert: pki.certPem, key: pki.keyPem, ca: pki.caCertPem }, sshHostKey: pki.sshHostKeyPem,
  });
  return { listener, key, broker, engine, store };
}

const gw = await gateway();
const common = ['IdentitiesOnly yes', 'StrictHostKeyChecking no', 'UserKnownHostsFile /dev/null', 'LogLevel ERROR', `Ciphers ${CIPHER}`, 'Compression no', 'BatchMode yes'];
const host = (name, lines) => [`Host ${name}`, ...[...lines, ...common].map((l) => `  ${l}`)].join('\n');
const cfg = join(dir, 'ssh_config');
writeFileSync(cfg, [
  host('direct', ['HostName 127.0.0.1', `Port ${target.port}`, `User ${target.user}`, `IdentityFile ${target.clientKey}`]),
  // ssh2 has no sntrup761x25519 (OpenSSH 9's default key exchange, ~60 ms of CPU per login
  // here): the client-to-gateway leg uses curve25519, so this is the like-for-like baseline.
  host('direct-x25519', ['HostName 127.0.0.1', `Port ${target.port}`, `User ${target.user}`, `IdentityFile ${target.clientKey}`, 'KexAlgorithms curve25519-sha256']),
  host('jump', ['HostName 127.0.0.1', `Port ${target.port}`, `User ${target.user}`, `IdentityFile ${target.clientKey}`]),
  host('viajump', ['HostName 127.0.0.1', `Port ${target.port}`, `User ${target.user}`, `IdentityFile ${target.clientKey}`, 'ProxyJump jump']),
  host('gatehouse', ['HostName 127.0.0.1', `Port ${gw.listener.address.port}`, 'User bench:bench-target', `IdentityFile ${gw.key}`]),
].join('\n') + '\n');

function sh(cmd) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn('bash', ['-c', cmd], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (b) => (err += b));
    p.on('close', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${cmd}: exit ${code}: ${err}`))));
  });
}

const transfer = (h) => sh(`head -c ${MIB * 1024 * 1024} /dev/zero | ssh -F ${cfg} ${h} 'cat > /dev/null'`);
const start = (h) => sh(`ssh -F ${cfg} ${h} true`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ways = ['direct', 'viajump', 'gatehouse'];

try {
  for (const h of ways) await start(h); // warm up (and pin the target's host key)
  const ms = Object.fromEntries(ways.map((h) => [h, []]));
  for (let r = 0; r < ROUNDS; r++) for (const h of ways) ms[h].push(await transfer(h));
  const mbps = Object.fromEntries(ways.map((h) => [h, (MIB * 1.048576) / (median(ms[h]) / 1000)]));

  const starters = ['direct', 'direct-x25519', 'gatehouse'];
  const starts = Object.fromEntries(starters.map((h) => [h, []]));
  for (let i = 0; i < STARTS; i++) for (const h of starters) starts[h].push(await start(h));
  const p50 = Object.fromEntries(starters.map((h) => [h, median(starts[h])]));

  const f = (n) => n.toFixed(0);
  console.log(`SSH bench: ${MIB} MiB 'cat > /dev/null', cipher ${CIPHER}, median of ${ROUNDS} rounds; ${STARTS} starts each`);
  console.log(`  ${target.version}; node ${process.version}; ${(await import('node:os')).cpus().length} cores`);
  console.log(`  direct        ${f(mbps.direct)} MB/s`);
  console.log(`  ProxyJump     ${f(mbps.viajump)} MB/s  (${(mbps.viajump / mbps.direct).toFixed(2)}x direct)`);
  console.log(`  Gatehouse     ${f(mbps.gatehouse)} MB/s  (${(mbps.gatehouse / mbps.direct).toFixed(2)}x direct, ${(mbps.gatehouse / mbps.viajump).toFixed(2)}x ProxyJump)`);
  const ms1 = (n) => `${n.toFixed(1)} ms`;
  console.log(`  start p50     direct ${ms1(p50.direct)} (default kex), direct ${ms1(p50['direct-x25519'])} (curve25519), Gatehouse ${ms1(p50.gatehouse)}`);
  console.log(`  added at start p50: ${ms1(p50.gatehouse - p50.direct)} vs default direct, ${ms1(p50.gatehouse - p50['direct-x25519'])} vs curve25519 direct`);
  console.log(`  raw ms: ${JSON.stringify({ transfer: ms, starts })}`);
} finally {
  await gw.broker.shutdown();
  await gw.listener.close();
  gw.engine.stop();
  await gw.store.close();
  execFileSync('bash', [sshdScript, 'stop', target.dir]);
  rmSync(dir, { recursive: true, force: true });
}
