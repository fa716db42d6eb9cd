#!/usr/bin/env node
/**
 * Connect latency through the PostgreSQL door, A/B: two builds of the gateway (two checkouts,
 * each built with `npx tsc -p tsconfig.build.json`) in their own processes against one
 * PostgreSQL target, probed interleaved with a direct connect in every round.
 *
 *   node bench/postgres/connect-ab.mjs A_ROOT B_ROOT [--rounds 3] [--connects 60]
 *
 * e.g. A = a worktree of an older commit, B = this checkout (`.`). Prints, per round, the p50
 * added to a direct connect by each build, with the target leg in plaintext and with TLS.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = fileURLToPath(new URL('.', import.meta.url));
const { values, positionals } = parseArgs({ allowPositionals: true, options: { rounds: { type: 'string', default: '3' }, connects: { type: 'string', default: '60' } } });
const [rootA, rootB] = positionals.map((p) => resolve(p));
if (!rootA || !rootB) throw new Error('usage: connect-ab.mjs A_ROOT B_ROOT [--rounds N] [--connects N]');
const script = join(here, '../../test/targets/postgres.sh');
const target = JSON.parse(execFileSync('bash', [script, 'start'], { encoding: 'utf8' }).trim().split('\n').at(-1));
const dirs = [];

function run(cmd, args) {
  return new Promise((res, rej) => {
    const c = spawn(cmd, args);
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (out += d));
    c.on('exit', (code) => (code === 0 ? res(out) : rej(new Error(out))));
  });
}

async function gateway(root, password) {
  const dir = mkdtempSync(join(tmpdir(), 'gh-ab-'));
  chmodSync(dir, 0o755);
  dirs.push(dir);
  const cfg = { host: target.host, port: target.port, user: target.user, password: target.password, database: target.database, gatewayPassword: password, certDir: join(dir, 'certs') };
  const child = spawn(process.execPath, [join(root, 'bench/postgres/gateway.mjs'), JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise((r) => child.stdout.once('data', (d) => r(String(d))));
  return { child, ...JSON.parse(line.trim().split('\n').at(-1)) };
}

const probe = async (config) => JSON.parse((await run(process.execPath, [join(here, 'connect-probe.mjs'), JSON.stringify(config), values.connects])).trim().split('\n').at(-1)).p50;

const password = randomBytes(12).toString('base64url');
const a = await gateway(rootA, password);
const b = await gateway(rootB, password);
const via = (port) => ({ host: '127.0.0.1', port, user: 'bench:bench-pg', password, database: target.database, ssl: { rejectUnauthorized: false } });
try {
  for (let r = 1; r <= Number(values.rounds); r++) {
    const direct = await probe({ host: '127.0.0.1', port: target.port, user: target.user, password: target.password, database: target.database, ssl: false });
    const [aPlain, bPlain, bTls, aTls] = [await probe(via(a.plainPort)), await probe(via(b.plainPort)), await probe(via(b.tlsPort)), await probe(via(a.tlsPort))];
    const add = (x) => `+${(x - direct).toFixed(2)}`;
    console.log(`round ${r}: direct p50 ${direct.toFixed(2)} ms | A ${add(aPlain)} (target TLS ${add(aTls)}) | B ${add(bPlain)} (target TLS ${add(bTls)}) ms`);
  }
} finally {
  a.child.kill();
  b.child.kill();
  execFileSync('bash', [script, 'stop', target.dir]);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
