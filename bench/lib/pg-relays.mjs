/**
 * The PostgreSQL relays the benchmarks race, each in its own process against one target
 * (test/targets/postgres.sh): PgBouncer in session mode with client TLS, Gatehouse
 * (bench/postgres/gateway.mjs) on either of its door's data paths (RELAYS) and a bare Node TLS
 * pipe (bare-tls-pipe.mjs). Each start function pushes its stop onto `cleanups` and returns the
 * port(s), the pid and `cpu()`, the process's utime + stime in µs (every thread: the native
 * data path's own thread included). Shared by bench/postgres/run.mjs, accounting.mjs,
 * workers.mjs, sessions.mjs and connect-ab.mjs.
 */
import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { procCpuMicros } from './proc.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));

/**
 * A real PostgreSQL from test/targets/postgres.sh and a scratch directory readable by the
 * postgres user; `cleanups` (run them in order) stops the one and removes the other.
 */
export function startTarget(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  const script = join(root, 'test/targets/postgres.sh');
  const target = JSON.parse(execFileSync('bash', [script, 'start'], { encoding: 'utf8' }).trim().split('\n').at(-1));
  const cleanups = [() => execFileSync('bash', [script, 'stop', target.dir], { stdio: 'ignore' }), () => rmSync(dir, { recursive: true, force: true })];
  return { target, dir, cleanups };
}

/**
 * postgres.sh takes no settings: `maxConnections` is appended to the target's postgresql.conf
 * and the server restarted.
 */
export function restartTarget(target, { maxConnections }) {
  const bin = execFileSync('bash', ['-c', 'printf "%s\\n" /usr/lib/postgresql/*/bin | sort -V | tail -n 1'], { encoding: 'utf8' }).trim();
  const data = join(target.dir, 'data');
  appendFileSync(join(data, 'postgresql.conf'), `\n# bench\nmax_connections = ${maxConnections}\n`);
  execFileSync('runuser', ['-u', 'postgres', '--', join(bin, 'pg_ctl'), '-D', data, '-l', join(target.dir, 'postgres.log'), '-w', '-t', '60', '-s', '-m', 'fast', 'restart'], { cwd: target.dir, stdio: 'ignore' });
  // stop (in the cleanups) signals the pid in target.pid.
  writeFileSync(join(target.dir, 'target.pid'), readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0] + '\n');
}

/** The time of day (UTC, HH:MM:SS), for a bench's per-sample lines: which samples shared the machine with what. */
export const timeOfDay = () => new Date().toISOString().slice(11, 19);

/** Runs a command to completion; resolves with stdout + stderr, rejects on a non-zero exit. */
export function run(cmd, args, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env } });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${out}`))));
  });
}

export async function waitPort(port, ms = 5_000) {
  for (let i = 0; i < ms / 50; i++) {
    const ok = await new Promise((r) => netConnect(port, '127.0.0.1').on('connect', function () { this.destroy(); r(true); }).on('error', () => r(false)));
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

export { commandCpuNs, procCpuMicros, procCpuSplit, threadsCpuNs } from './proc.mjs';

/**
 * Installs a Debian package when its command is missing, through the target scripts' install
 * lock (test/targets/lib.sh, ensure_pkg), so a bench never races a test run's apt-get.
 */
export function ensureTool(bin, pkg) {
  execFileSync('bash', ['-c', 'TARGET_KIND=bench; source "$0"; ensure_pkg "$1" "$2"', join(root, 'test/targets/lib.sh'), bin, pkg], { stdio: ['ignore', 'inherit', 'inherit'] });
}

const uid = (u) => Number(execFileSync('id', ['-u', u], { encoding: 'utf8' }).trim());
const gid = (u) => Number(execFileSync('id', ['-g', u], { encoding: 'utf8' }).trim());

/** Passes a child's stderr (piped) on to ours line by line, each line first shown to `onLine`. */
export function passStderr(child, onLine) {
  createInterface({ input: child.stderr, crlfDelay: Infinity }).on('line', (line) => {
    onLine(line);
    process.stderr.write(`${line}\n`);
  });
}

/**
 * The data path a gateway log line names, if it is the line a PostgreSQL listener logs when it
 * listens (protocols/postgres/native.ts: `"relay":"native"` or `"node"`, JSON format).
 */
export const relayLogged = (line) => /"relay":"(\w+)"/.exec(line)?.[1];

/**
 * A Node script in its own process that prints one JSON line when it listens. Its stderr (and
 * that of any process it forks) is passed on line by line (passStderr).
 */
async function nodeProcess(script, arg, cleanups, { nodeArgs = [], env = {}, onLine = () => undefined } = {}) {
  const child = spawn(process.execPath, [...nodeArgs, script, JSON.stringify(arg)], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  cleanups.unshift(() => child.kill('SIGTERM'));
  passStderr(child, onLine);
  const line = await new Promise((resolve, reject) => {
    child.stdout.once('data', (d) => resolve(String(d)));
    child.once('exit', (code) => reject(new Error(`${script} exited ${code}`)));
  });
  const g = JSON.parse(line.trim());
  return { ...g, cpu: () => procCpuMicros(g.pid) };
}

/**
 * The data paths of the gateway's PostgreSQL door, as the benchmarks name them: `native` (its
 * live sessions' TLS records on the addon's lean record layer), `native-openssl` (the same
 * data path with OpenSSL keeping them) and `node` (relay.ts). relayOptions() gives each as the
 * adapter's options.
 */
export const RELAYS = { native: 'Gatehouse (native data path)', 'native-openssl': 'Gatehouse (native, OpenSSL records)', node: 'Gatehouse (node relay)' };

/** A RELAYS name as the door's options `relay` and `tlsRecords` (protocols/postgres/native.ts). */
export function relayOptions(name) {
  if (name === 'native-openssl') return { relay: 'native', tlsRecords: 'openssl' };
  return name === 'native' ? { relay: 'native', tlsRecords: 'lean' } : { relay: name };
}

/** A `--relays` value (e.g. `native,node`), checked, in its order. */
export function relayList(value) {
  const list = value.split(',').filter(Boolean);
  for (const r of list) if (!Object.hasOwn(RELAYS, r)) throw new Error(`--relays: ${r} is not one of ${Object.keys(RELAYS).join(', ')}`);
  if (!list.length) throw new Error('--relays: none given');
  return list;
}

/**
 * The gateway in its own process, as `gatehouse serve` runs it: { plainPort, tlsPort, plainUser, tlsUser, pid,
 * workers (their pids), relays, cpu }. `from` is the checkout to run it from (its bench/ and
 * dist/; this one by default), e.g. a copy of an earlier build for a before/after race in one
 * run. `relay` (a RELAYS name) is the door's data path, given as its adapter option and as
 * GATEHOUSE_POSTGRES_RELAY (which an earlier build's gateway.mjs may read instead), with the
 * record layer as GATEHOUSE_POSTGRES_TLS_RECORDS (an earlier build ignores it); `workers`
 * (≥ 1) serves the door from that many data-path workers. Every process that serves the door
 * logs its data path when it listens (protocols/postgres/native.ts), on the stderr passed on
 * here: `relays` collects them, and with `relay` given, anything but that relay on every
 * listener of every process (2 × max(1, workers) lines) is an error. `native` cannot fall
 * back anyway: the door refuses to listen where the addon cannot load. `logLevel` is the
 * gateway's (gateway.mjs); `onLog` sees every stderr line it writes.
 */
export async function startGateway({ target, certDir, gatewayPassword, cleanups, from = root, relay: name, workers, env = {}, logLevel, onLog = () => undefined, ...opts }) {
  const { relay, tlsRecords } = name ? relayOptions(name) : {};
  const cfg = {
    host: target.host, port: target.port, user: target.user, password: target.password, database: target.database, gatewayPassword, certDir,
    ...(relay ? { relay } : {}), ...(workers ? { workers } : {}), ...(logLevel ? { logLevel } : {}),
  };
  if (tlsRecords) env = { ...env, GATEHOUSE_POSTGRES_TLS_RECORDS: tlsRecords };
  const relays = [];
  const onLine = (line) => {
    const r = relayLogged(line);
    if (r) relays.push(r);
    onLog(line);
  };
  const g = await nodeProcess(join(from, 'bench/postgres/gateway.mjs'), cfg, cleanups, { ...opts, env: { ...env, ...(relay ? { GATEHOUSE_POSTGRES_RELAY: relay } : {}) }, onLine });
  if (relay) {
    const expected = 2 * Math.max(1, workers ?? 0);
    for (let i = 0; i < 100 && relays.length < expected; i++) await new Promise((r) => setTimeout(r, 50));
    if (relays.length < expected || relays.some((r) => r !== relay)) throw new Error(`gateway ${g.pid} asked for relay ${relay}, its listeners logged [${relays.join(', ')}] (expected ${expected})`);
  }
  return { ...g, relays };
}

/** The bare Node TLS pipe in its own process: { port, pid, cpu }. */
export function startBarePipe({ target, certDir, cleanups, ...opts }) {
  return nodeProcess(join(root, 'bench/lib/bare-tls-pipe.mjs'), { host: target.host, port: target.port, certDir }, cleanups, opts);
}

/**
 * PgBouncer 1.x in session mode, client TLS with the gateway's certificate, run as `postgres`:
 * { port, pid, cpu }. Its client leg gets the cipher order of Gatehouse's database doors
 * (protocols/shared/server-tls.ts), so the relays race with the same suite: TLS 1.2 ciphers
 * through `client_tls_ciphers`; TLS 1.3 suites, for which PgBouncer 1.18 has no setting (and
 * which it picks in its own order, OpenSSL's default, AES-256-GCM first), through OpenSSL's
 * system-default configuration (OPENSSL_CONF, `Ciphersuites`), which applies to every SSL_CTX
 * the process creates. Its pool holds a server connection for every client it admits (200), so no
 * session waits for one: with 64, a run of 96 clients left 32 waiting until PgBouncer's
 * query_wait_timeout. `wrap` goes before the command (e.g. valgrind and its options), with
 * `waitMs` to wait for its port.
 */
export async function startPgbouncer({ target, dir, pki, cleanups, wrap = [], waitMs }) {
  ensureTool('pgbouncer', 'pgbouncer');
  const { SERVER_TLS13_SUITES, SERVER_TLS12_CIPHERS } = await import(join(root, 'dist/protocols/shared/server-tls.js'));
  const pb = join(dir, 'pgbouncer');
  execFileSync('mkdir', ['-p', pb]);
  const free = await new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  writeFileSync(join(pb, 'cert.pem'), pki.certPem);
  writeFileSync(join(pb, 'key.pem'), pki.keyPem, { mode: 0o600 });
  writeFileSync(join(pb, 'userlist.txt'), `"${target.user}" "${target.password}"\n`, { mode: 0o600 });
  writeFileSync(join(pb, 'pgbouncer.ini'), `[databases]
${target.database} = host=${target.host} port=${target.port} dbname=${target.database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${free}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = ${join(pb, 'userlist.txt')}
pool_mode = session
max_client_conn = 200
default_pool_size = 200
client_tls_sslmode = require
client_tls_cert_file = ${join(pb, 'cert.pem')}
client_tls_key_file = ${join(pb, 'key.pem')}
client_tls_ciphers = ${SERVER_TLS12_CIPHERS}
logfile = ${join(pb, 'pgbouncer.log')}
pidfile = ${join(pb, 'pgbouncer.pid')}
`);
  writeFileSync(join(pb, 'openssl.cnf'), `openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Ciphersuites = ${SERVER_TLS13_SUITES}
`);
  for (const f of ['', 'cert.pem', 'key.pem', 'userlist.txt', 'pgbouncer.ini', 'openssl.cnf']) chownSync(join(pb, f), uid('postgres'), gid('postgres'));
  const child = spawn('runuser', ['-u', 'postgres', '--', ...wrap, 'pgbouncer', join(pb, 'pgbouncer.ini')], { stdio: 'ignore', env: { ...process.env, OPENSSL_CONF: join(pb, 'openssl.cnf') } });
  cleanups.unshift(() => child.kill('SIGTERM'));
  await waitPort(free, waitMs);
  // Written once it listens; under a slow wrapper, a moment after the port opens.
  for (let i = 0; i < 100 && !existsSync(join(pb, 'pgbouncer.pid')); i++) await new Promise((r) => setTimeout(r, 50));
  const pid = Number(readFileSync(join(pb, 'pgbouncer.pid'), 'utf8').trim());
  return { port: free, pid, cpu: () => procCpuMicros(pid) };
}
