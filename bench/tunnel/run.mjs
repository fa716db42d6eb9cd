#!/usr/bin/env node
/**
 * Tunnel benchmark (issue 16): bulk throughput (iperf3) and connect time through
 * `gatehouse tunnel`, against direct and against an OpenSSH `ssh -L` tunnel, in one run.
 *
 *   direct            iperf3 client -> iperf3 server (and the first-byte server for connects);
 *   Gatehouse         the client -> the real `gatehouse tunnel RES --port 0` CLI process ->
 *                     one data WebSocket per connection to a real `gatehouse serve` (its own
 *                     process, API on 127.0.0.1: plain ws://, as on loopback) -> the target;
 *   Gatehouse wss     (with --tls) the same against a second `gatehouse serve` whose API
 *                     listens on this machine's first non-loopback IPv4 address, so it is
 *                     HTTPS/wss:// (the gateway's TLS rule: TLS off loopback), the CLI trusting
 *                     the gateway CA; the packets still go through the kernel's loopback;
 *   ssh -L            `ssh -N -L PORT:127.0.0.1:TARGET` through a private sshd
 *                     (test/targets/sshd.sh), OpenSSH's default cipher negotiation;
 *   ssh -L aes128-gcm the same with `-c aes128-gcm@openssh.com`.
 *
 *   npm run build && node bench/tunnel/run.mjs [--rounds 3] [--seconds 5] [--connects 200] [--starts 10]
 *       [--directions up,down] [--tls] [--ssh-tty] [--root DIR] [--cpu-prof DIR]
 *
 * Throughput: `iperf3 -c 127.0.0.1 -p PORT -t S -J`, upload (client -> target) and download
 * (`-R`), every path `rounds` times, interleaved with the order rotated each round. Connect:
 * open a TCP connection through a path to bench/tunnel/first-byte-server.mjs (its own process)
 * and wait for the byte it writes on accept; `connects` samples per path, interleaved, the
 * tunnels already up (as a user's client meets them). Start: spawn a new tunnel (`gatehouse
 * tunnel` or `ssh -N -L`), wait for its ready line, then the first byte of one connection
 * through it. The gateway(s), the CLI tunnels, ssh, sshd, iperf3 and the first-byte server
 * each run in their own process; this process only measures. Gateways and tunnels are
 * set up the way a user does it: `gatehouse serve` on a fresh data dir with
 * `--admin-password-file`, `gatehouse login`, `gatehouse resource add NAME --type machine
 * --protocol tcp`, `gatehouse tunnel NAME --port 0`. The header says how ws masks in the
 * Gatehouse processes: with its optional native `bufferutil` when they can load it (e.g.
 * through NODE_PATH), else in JavaScript.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect as netConnect, createServer } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { clearTimeout, setTimeout } from 'node:timers';
import { parseArgs } from 'node:util';

const USAGE = `usage: node bench/tunnel/run.mjs [options]   (after npm run build; as root, for sshd)

  --rounds N        interleaved iperf3 rounds per path and direction (default 3)
  --seconds S       length of one iperf3 run (iperf3 -t; default 5)
  --connects N      connect-time samples per path, interleaved (default 200; 0: none)
  --starts N        tunnel start samples per tunnel kind (default 10; 0: none)
  --directions L    up (client -> target), down (-R, target -> client) or up,down (default)
  --ssh-tty         run the ssh -L tunnels with a remote terminal (-tt ... sleep) instead of -N:
                    OpenSSH sets TCP_NODELAY on its connection only for interactive sessions
  --tls             a Gatehouse path with the API on TLS (wss://): a second gateway on this
                    machine's first non-loopback IPv4 address (it listens there for the run)
  --root DIR        the Gatehouse checkout whose bin/gatehouse.js and dist/ are measured
                    (default: the one this script is in)
  --cpu-prof DIR    run the gateways and their iperf3 tunnel CLIs under node --cpu-prof,
                    profiles written to DIR when they stop, named by process id (the run
                    prints which is which; summarise one with
                    node bench/tunnel/profile-top.mjs DIR/FILE.cpuprofile)
  --help            this text`;

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' }, seconds: { type: 'string', default: '5' }, connects: { type: 'string', default: '200' },
    starts: { type: 'string', default: '10' }, directions: { type: 'string', default: 'up,down' }, tls: { type: 'boolean', default: false },
    'ssh-tty': { type: 'boolean', default: false },
    root: { type: 'string' }, 'cpu-prof': { type: 'string' }, help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const CONNECTS = Number(values.connects);
const STARTS = Number(values.starts);
const DIRECTIONS = values.directions.split(',');
if (![ROUNDS, SECONDS].every((n) => Number.isInteger(n) && n > 0) || ![CONNECTS, STARTS].every((n) => Number.isInteger(n) && n >= 0)
  || !DIRECTIONS.length || !DIRECTIONS.every((d) => d === 'up' || d === 'down')) {
  console.error(USAGE);
  process.exit(2);
}

const here = fileURLToPath(new URL('.', import.meta.url));
const root = resolve(values.root ?? join(here, '../..'));
const gatehouseBin = join(root, 'bin/gatehouse.js');
const profDir = values['cpu-prof'] ? resolve(values['cpu-prof']) : undefined;
const SSH_AES = 'aes128-gcm@openssh.com';

const cleanups = [];
const dir = mkdtempSync(join(tmpdir(), 'gh-bench-tunnel-'));
cleanups.push(() => rmSync(dir, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------
// Processes, CPU accounting

const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
const statOf = (pid) => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
/** CPU seconds (user + system) of processes, from /proc; gone ones count 0. */
const cpuOf = (pids) => pids.reduce((a, pid) => { try { const f = statOf(pid); return a + (Number(f[11]) + Number(f[12])) / TICK; } catch { return a; } }, 0);
/** A process and all its descendants (sshd: the listener, the session's privileged and user processes). */
function family(pid) {
  const kids = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const ppid = Number(statOf(d)[1]);
      kids.set(ppid, [...(kids.get(ppid) ?? []), Number(d)]);
    } catch {
      // gone
    }
  }
  const out = [];
  const walk = (p) => { out.push(p); for (const k of kids.get(p) ?? []) walk(k); };
  walk(pid);
  return out;
}
/** [idle, total] jiffies of the whole machine. */
function machine() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return [f[3] + f[4], f.reduce((a, b) => a + b, 0)];
}
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

/** A free loopback port (for the servers that cannot pick their own). */
function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/**
 * A long-running child process of this bench: spawned, its output watched for a line, and
 * stopped (SIGTERM, then waited for) at the end. `ready` resolves with the first match of
 * `until` in stdout or stderr.
 */
function daemon(cmd, args, { until, env = {}, label = cmd, timeoutMs = 30_000, stopMs = 10_000 } = {}) {
  const t0 = performance.now();
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  let matched = false;
  const exited = new Promise((res) => child.on('exit', (code, signal) => res({ code, signal })));
  const ready = new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${label}: not ready after ${timeoutMs} ms:\n${out}`)), timeoutMs);
    const onData = (d) => {
      if (out.length < 65536) out += d;
      if (matched || !until) return;
      const m = until.exec(out);
      if (m) {
        matched = true;
        clearTimeout(timer);
        res({ match: m, ms: performance.now() - t0, out });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    exited.then((r) => { clearTimeout(timer); if (!matched) rej(new Error(`${label} exited ${r.code ?? r.signal} before it was ready:\n${out}`)); });
  });
  if (!until) ready.catch(() => {});
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const r = await Promise.race([exited, new Promise((res) => setTimeout(() => res(undefined), stopMs))]);
    if (!r) {
      console.error(`${label}: still running ${stopMs / 1000} s after SIGTERM; killed`);
      child.kill('SIGKILL');
      await exited;
    }
  };
  return { child, pid: child.pid, ready, stop, exited, output: () => out };
}

/** Runs a command to completion; resolves with stdout. */
function run(cmd, args, { env = {}, input } = {}) {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', rej);
    child.on('exit', (code) => (code === 0 ? res(out) : rej(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}${out}`))));
    child.stdin.end(input ?? '');
  });
}

// ---------------------------------------------------------------------------------------
// Gatehouse: `gatehouse serve`, login, resources, tunnels, as a user would run them

const DOORS_OFF = ['ssh', 'postgres', 'mysql', 'ldap', 'ldaps', 'http'].flatMap((d) => ['--listen', `${d}=off`]);

/** A gateway in its own process with its API on `host`; signed in as admin under its own GATEHOUSE_HOME. */
async function gateway(name, host, nodeArgs = []) {
  const d = join(dir, name);
  mkdirSync(join(d, 'policies'), { recursive: true });
  writeFileSync(join(d, 'admin-password'), `bench-${Math.random().toString(36).slice(2)}-${Date.now()}\n`, { mode: 0o600 });
  const serve = daemon(process.execPath, [...nodeArgs, gatehouseBin, 'serve', '--data', join(d, 'data'), '--policies', join(d, 'policies'),
    '--admin-password-file', join(d, 'admin-password'), '--listen', `api=${host}:0`, ...DOORS_OFF, '--log-format', 'json'], {
    until: /listening api (\S+)[\s\S]*gateway CA: (\S+)\n/, label: `gatehouse serve (${name})`,
    // A carried connection whose target closed while its data socket was paused lingers until
    // ws's 30 s close timeout, and the gateway waits for it before it exits (and writes --cpu-prof).
    stopMs: 40_000,
  });
  cleanups.unshift(serve.stop);
  const { match } = await serve.ready;
  const [, url, ca] = match;
  const env = { GATEHOUSE_HOME: join(d, 'home'), GATEHOUSE_SERVER: url, ...(url.startsWith('https:') ? { GATEHOUSE_CA: ca } : {}) };
  const cli = (...args) => run(process.execPath, [gatehouseBin, ...args], { env });
  await run(process.execPath, [gatehouseBin, 'login', '--user', 'admin', '--password-stdin'], { env, input: readFileSync(join(d, 'admin-password'), 'utf8') });
  return { name, url, ca, env, cli, pid: serve.pid, serve };
}

/** `gatehouse tunnel RES --port 0` in its own process; resolves when it prints its port. */
async function gatehouseTunnel(gw, resource, nodeArgs = [], { keep = true } = {}) {
  const t = daemon(process.execPath, [...nodeArgs, gatehouseBin, 'tunnel', resource, '--port', '0'], {
    env: gw.env, until: /listening on 127\.0\.0\.1:(\d+)\./, label: `gatehouse tunnel ${resource} (${gw.name})`,
  });
  if (keep) cleanups.unshift(t.stop);
  const { match, ms } = await t.ready;
  return { port: Number(match[1]), pid: t.pid, ms, stop: t.stop };
}

// ---------------------------------------------------------------------------------------
// OpenSSH: a private sshd and `ssh -N -L`

const sshdScript = join(root, 'test/targets/sshd.sh');
let sshd;

function sshArgs(forwards, cipher) {
  return [values['ssh-tty'] ? '-tt' : '-N', '-v', '-o', 'ExitOnForwardFailure=yes', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${sshd.knownHosts}`,
    '-o', 'StrictHostKeyChecking=yes', '-o', 'Compression=no', '-i', sshd.clientKey, '-p', String(sshd.port),
    ...(cipher ? ['-c', cipher] : []), ...forwards.flatMap(([local, port]) => ['-L', `127.0.0.1:${local}:127.0.0.1:${port}`]), `${sshd.user}@127.0.0.1`,
    ...(values['ssh-tty'] ? ['sleep', '86400'] : [])];
}

/**
 * `ssh -N -L` with the given forwards ([[localPort, targetPort], ...]); resolves once every
 * forward listens. ssh logs "Local forwarding listening on" before it creates the socket;
 * "Entering interactive session" comes after every local forward is set up.
 */
async function sshTunnel(forwards, cipher, { keep = true } = {}) {
  const t = daemon('ssh', sshArgs(forwards, cipher), { until: /debug1: Entering interactive session\./, label: `ssh -L${cipher ? ` -c ${cipher}` : ''}` });
  if (keep) cleanups.unshift(t.stop);
  const { ms, out } = await t.ready;
  const c2s = /kex: client->server cipher: (\S+)/.exec(out)?.[1];
  const s2c = /kex: server->client cipher: (\S+)/.exec(out)?.[1];
  const kex = /kex: algorithm: (\S+)/.exec(out)?.[1];
  return { pid: t.pid, ms, cipher: c2s === s2c ? c2s : `${c2s} / ${s2c}`, kex, stop: t.stop };
}

// ---------------------------------------------------------------------------------------
// Measures

/**
 * One iperf3 run through `port`: bits per second as sent and as received, and retransmits.
 * iperf3's server takes one test at a time and may still be finishing the previous one
 * (a tunnel still delivering what it had queued when the client stopped): "busy" is retried.
 */
async function iperf(port, reverse, length = ['-t', String(SECONDS)]) {
  for (let attempt = 0; ; attempt++) {
    const out = await run('iperf3', ['-c', '127.0.0.1', '-p', String(port), ...length, '-J', ...(reverse ? ['-R'] : [])]).catch((e) => e.message);
    let j;
    try {
      j = JSON.parse(out.slice(out.indexOf('{')));
    } catch {
      throw new Error(`iperf3: ${out}`);
    }
    if (j.error && /busy/.test(j.error) && attempt < 50) {
      await new Promise((r) => setTimeout(r, 200));
      continue;
    }
    if (j.error) throw new Error(`iperf3: ${j.error}`);
    return { sent: j.end.sum_sent.bits_per_second, received: j.end.sum_received.bits_per_second, bytes: j.end.sum_received.bytes, retransmits: j.end.sum_sent.retransmits ?? 0, busy: attempt };
  }
}

/** Connects to `port` and resolves with the milliseconds until the first byte arrives. */
function firstByte(port) {
  return new Promise((res, rej) => {
    const t0 = performance.now();
    const s = netConnect({ host: '127.0.0.1', port, noDelay: true });
    const timer = setTimeout(() => { s.destroy(); rej(new Error(`no first byte through port ${port} within 10 s`)); }, 10_000);
    s.once('data', (d) => {
      const ms = performance.now() - t0;
      clearTimeout(timer);
      s.destroy();
      if (d[0] !== 0x47) rej(new Error(`unexpected first byte ${d[0]} through port ${port}`));
      else res(ms);
    });
    s.once('error', (e) => { clearTimeout(timer); rej(e); });
  });
}

/** The TLS the CLI's wss:// leg negotiates (a probe to the API listener, verified against the gateway CA). */
function tlsOf(url, ca) {
  const u = new URL(url);
  return new Promise((res, rej) => {
    const s = tlsConnect({ host: u.hostname, port: Number(u.port), ca: readFileSync(ca, 'utf8'), ALPNProtocols: ['http/1.1'] }, () => {
      const r = `${s.getProtocol()} ${s.getCipher().name}`;
      s.end();
      res(r);
    });
    s.once('error', rej);
  });
}

/** ws's version and how it masks: its optional native `bufferutil` if the Gatehouse processes can load it, else JavaScript. */
const wsRequire = () => createRequire(join(root, 'node_modules/ws/lib/buffer-util.js'));
const wsVersion = () => wsRequire()('../package.json').version;
function wsMasking() {
  if (process.env.WS_NO_BUFFER_UTIL) return 'JavaScript (WS_NO_BUFFER_UTIL set)';
  try {
    return `native bufferutil (${wsRequire().resolve('bufferutil')}${process.env.NODE_PATH ? `, through NODE_PATH=${process.env.NODE_PATH}` : ''})`;
  } catch {
    return 'JavaScript (bufferutil is not installed)';
  }
}

/** The commit the measured checkout is at (git), or what a COMMIT file in it says (an exported tree), or 'unknown'. */
function commitOf(dirPath) {
  try {
    return execFileSync('git', ['-C', dirPath, 'rev-parse', '--short=12', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    try {
      return `COMMIT file: ${readFileSync(join(dirPath, 'COMMIT'), 'utf8').trim().slice(0, 12)}`;
    } catch {
      return 'commit unknown';
    }
  }
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const quantile = (xs, q) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]; };

// ---------------------------------------------------------------------------------------
// The run

try {
  // Targets: an iperf3 server, the first-byte server, a private sshd.
  const iperfPort = await freePort();
  const iperfd = daemon('iperf3', ['-s', '--forceflush', '-p', String(iperfPort)], { until: /Server listening on/, label: 'iperf3 -s' });
  cleanups.unshift(iperfd.stop);
  await iperfd.ready;
  const fb = daemon(process.execPath, [join(here, 'first-byte-server.mjs')], { until: /^\{.*\}$/m, label: 'first-byte server' });
  cleanups.unshift(fb.stop);
  const hello = JSON.parse((await fb.ready).match[0]);
  sshd = JSON.parse(execFileSync('bash', [sshdScript, 'start'], { encoding: 'utf8' }).trim().split('\n').at(-1));
  cleanups.unshift(() => execFileSync('bash', [sshdScript, 'stop', sshd.dir], { stdio: 'ignore' }));

  // Gateways: the API on loopback (ws://) and, with --tls, on a non-loopback address (wss://).
  const prof = profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [];
  const gws = [await gateway('loopback', '127.0.0.1', prof)];
  if (values.tls) {
    const addr = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
    if (!addr) throw new Error('--tls: this machine has no non-loopback IPv4 address for a TLS API listener');
    gws.push(await gateway('tls', addr, prof));
  }
  for (const gw of gws) {
    await gw.cli('resource', 'add', 'iperf', '--type', 'machine', '--protocol', 'tcp', '--host', '127.0.0.1', '--port', String(iperfPort));
    await gw.cli('resource', 'add', 'hello', '--type', 'machine', '--protocol', 'tcp', '--host', '127.0.0.1', '--port', String(hello.port));
  }

  // The paths: each with its iperf3 port, first-byte port and the processes whose CPU it costs.
  const profiled = [];
  const paths = [{ name: 'direct', iperf: iperfPort, hello: hello.port, pids: () => [] }];
  const legs = { direct: 'none (loopback TCP)' };
  for (const gw of gws) {
    const name = gw.name === 'tls' ? 'Gatehouse wss' : 'Gatehouse';
    const ti = await gatehouseTunnel(gw, 'iperf', prof);
    const th = await gatehouseTunnel(gw, 'hello');
    paths.push({ name, iperf: ti.port, hello: th.port, pids: () => [gw.pid, ti.pid, th.pid] });
    if (profDir) profiled.push(`${name}: gateway pid ${gw.pid}, iperf3 tunnel CLI pid ${ti.pid}`);
    legs[name] = gw.url.startsWith('https:') ? `CLI -> gateway ${gw.url} wss:// (${await tlsOf(gw.url, gw.ca)}); gateway -> target plain TCP` : `CLI -> gateway ${gw.url} ws:// (no encryption; loopback); gateway -> target plain TCP`;
  }
  for (const cipher of [undefined, SSH_AES]) {
    const name = cipher ? 'ssh -L aes128-gcm' : 'ssh -L';
    const [li, lh] = [await freePort(), await freePort()];
    const t = await sshTunnel([[li, iperfPort], [lh, hello.port]], cipher);
    paths.push({ name, iperf: li, hello: lh, pids: () => [t.pid, ...family(sshd.pid)] });
    legs[name] = `ssh -> sshd ${t.cipher} (kex ${t.kex}); sshd -> target plain TCP`;
  }
  const names = paths.map((p) => p.name);
  const gatehouses = names.filter((n) => n.startsWith('Gatehouse'));

  // Every path reaches both targets.
  for (const p of paths) {
    await firstByte(p.hello);
    await iperf(p.iperf, false, ['-n', '64M']).catch((e) => { throw new Error(`${p.name}: ${e.message}`); });
  }

  const nproc = execFileSync('nproc', { encoding: 'utf8' }).trim();
  const iperfVersion = execFileSync('iperf3', ['--version'], { encoding: 'utf8' }).split('\n')[0].trim();
  console.log(`Tunnel bench: iperf3 -t ${SECONDS}, ${ROUNDS} interleaved rounds per path and direction (${DIRECTIONS.join(', ')}); ${CONNECTS} connects and ${STARTS} tunnel starts per path; `
    + `${nproc} cores; node ${process.version}; ${iperfVersion}; ${sshd.version}; Gatehouse from ${root} (${commitOf(root)}); load ${loadavg()}`);
  for (const p of paths) console.log(`  ${p.name.padEnd(17)} encryption: ${legs[p.name]}`);
  if (profDir) console.log(`  CPU profiles in ${profDir} (CPU.*.PID.*.cpuprofile, written when the processes stop): ${profiled.join('; ')}`);
  console.log(`  WebSocket masking in the Gatehouse processes (ws ${wsVersion()}): ${wsMasking()}`);
  console.log(`  commands: iperf3 -c 127.0.0.1 -p PORT -t ${SECONDS} -J [-R];  gatehouse tunnel iperf --port 0;  ssh ${sshArgs([['LOCAL', 'IPERFPORT']], undefined).join(' ')}`);

  // Throughput, interleaved.
  const tput = Object.fromEntries(DIRECTIONS.map((d) => [d, Object.fromEntries(names.map((n) => [n, []]))]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const d of DIRECTIONS) {
      for (let i = 0; i < paths.length; i++) {
        const p = paths[(i + round) % paths.length];
        const pids = p.pids();
        const before = { cpu: cpuOf(pids), m: machine() };
        const r = await iperf(p.iperf, d === 'down');
        const after = { cpu: cpuOf(pids), m: machine() };
        const gib = r.bytes / 2 ** 30;
        r.cpuPerGiB = (after.cpu - before.cpu) / gib;
        r.idle = (after.m[0] - before.m[0]) / (after.m[1] - before.m[1]);
        tput[d][p.name].push(r);
        console.log(`  round ${round + 1} ${d.padEnd(4)} ${p.name.padEnd(17)} ${(r.received / 1e9).toFixed(2).padStart(6)} Gbit/s received (${(r.sent / 1e9).toFixed(2)} sent, ${r.retransmits} retr)`
          + `  tunnel CPU ${r.cpuPerGiB.toFixed(2)} s/GiB; machine idle ${(r.idle * 100).toFixed(0)}%; load ${loadavg()}`);
      }
    }
  }

  // Connect time, interleaved (the order rotated each sample); a few unmeasured first.
  const conn = Object.fromEntries(names.map((n) => [n, []]));
  if (CONNECTS) {
    for (const p of paths) for (let i = 0; i < 5; i++) await firstByte(p.hello);
    for (let i = 0; i < CONNECTS; i++) {
      for (let j = 0; j < paths.length; j++) {
        const p = paths[(i + j) % paths.length];
        conn[p.name].push(await firstByte(p.hello));
      }
    }
    console.log(`  connects done; load ${loadavg()}`);
  }

  // Tunnel start: a new tunnel until its first byte through it, interleaved.
  const startKinds = [
    ...gws.map((gw) => ({ name: gw.name === 'tls' ? 'Gatehouse wss' : 'Gatehouse', start: async () => gatehouseTunnel(gw, 'hello', [], { keep: false }) })),
    { name: 'ssh -L', start: async () => { const port = await freePort(); return { ...(await sshTunnel([[port, hello.port]], undefined, { keep: false })), port }; } },
  ];
  const starts = Object.fromEntries(startKinds.map((k) => [k.name, []]));
  for (let i = 0; i < STARTS; i++) {
    for (let j = 0; j < startKinds.length; j++) {
      const k = startKinds[(i + j) % startKinds.length];
      const t0 = performance.now();
      const t = await k.start();
      try {
        const ready = performance.now() - t0;
        await firstByte(t.port).catch((e) => { throw new Error(`${k.name} start ${i + 1}: ${e.message}`); });
        starts[k.name].push({ ready, first: performance.now() - t0 });
      } finally {
        await t.stop();
      }
    }
  }
  console.log(`\nload average at the end: ${loadavg()}`);

  // ---- Summary tables
  const range = (xs, f) => `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;
  const cell = (xs, f) => `${f(median(xs))} (${range(xs, f)})`;
  const f2 = (x) => x.toFixed(2);
  const f1 = (x) => x.toFixed(1);
  const f0 = (x) => x.toFixed(0);
  const signed = (x, f = f2) => (x < 0 ? '−' : '+') + f(Math.abs(x));
  const others = names.slice(1);
  const ratioCols = [...gatehouses.map((g) => [g, 'ssh -L']), ...others.map((n) => [n, 'direct'])];
  console.log(`\n| measure (median of rounds, min–max) | ${names.join(' | ')} | ${ratioCols.map(([a, b]) => `${a} / ${b}`).join(' | ')} |`);
  console.log(`|---|${'---:|'.repeat(names.length + ratioCols.length)}`);
  const goals = [];
  const label = { up: 'upload (client → target)', down: 'download (-R, target → client)' };
  for (const d of DIRECTIONS) {
    const rs = tput[d];
    const per = (a, b) => rs[a].map((r, i) => r.received / rs[b][i].received);
    console.log(`| ${label[d]}, Gbit/s received | ${names.map((n) => cell(rs[n].map((r) => r.received / 1e9), f2)).join(' | ')} | ${ratioCols.map(([a, b]) => cell(per(a, b), f2)).join(' | ')} |`);
    console.log(`| ${label[d]}, tunnel CPU s/GiB | | ${others.map((n) => cell(rs[n].map((r) => r.cpuPerGiB), f2)).join(' | ')} |${' |'.repeat(ratioCols.length)}`);
    console.log(`| ${label[d]}, machine idle % | ${names.map((n) => cell(rs[n].map((r) => r.idle * 100), f0)).join(' | ')} |${' |'.repeat(ratioCols.length)}`);
    for (const g of gatehouses) {
      const x = per(g, 'ssh -L');
      goals.push(`${g}, ${d}: throughput ≥ ssh -L's: ${median(x) >= 1 ? 'met' : 'NOT met'} (median ${f2(median(x))}x, rounds ${range(x, f2)})`);
    }
  }
  if (CONNECTS) {
    for (const [q, qn] of [[0.5, 'p50'], [0.95, 'p95']]) {
      const v = Object.fromEntries(names.map((n) => [n, quantile(conn[n], q)]));
      console.log(`| connect to first byte ${qn} (ms), ${CONNECTS} samples | ${names.map((n) => f2(v[n])).join(' | ')} |${' |'.repeat(ratioCols.length)}`);
      console.log(`| added to ${qn} vs direct (ms) | | ${others.map((n) => signed(v[n] - v.direct)).join(' | ')} |${' |'.repeat(ratioCols.length)}`);
    }
    for (const g of gatehouses) {
      const added = quantile(conn[g], 0.5) - quantile(conn.direct, 0.5);
      goals.push(`${g}: ≤ 15 ms added to connect at p50: ${added <= 15 ? 'met' : 'NOT met'} (${signed(added)} ms)`);
    }
  }
  if (STARTS) {
    const sk = startKinds.map((k) => k.name);
    console.log(`\n| tunnel start, ${STARTS} each (median, min–max, ms) | ${sk.join(' | ')} |`);
    console.log(`|---|${'---:|'.repeat(sk.length)}`);
    console.log(`| spawn → ready line | ${sk.map((n) => cell(starts[n].map((s) => s.ready), f1)).join(' | ')} |`);
    console.log(`| spawn → first byte through it | ${sk.map((n) => cell(starts[n].map((s) => s.first), f1)).join(' | ')} |`);
  }
  console.log(`\nGoals (issue 16):\n  ${goals.join('\n  ')}`);
  console.log(`\nraw: ${JSON.stringify({ throughput: Object.fromEntries(DIRECTIONS.map((d) => [d, Object.fromEntries(names.map((n) => [n, tput[d][n].map((r) => Math.round(r.received / 1e6))]))])), units: 'Mbit/s received' })}`);
} finally {
  for (const c of cleanups) {
    try {
      await c();
    } catch (e) {
      console.error(`cleanup: ${e.message}`);
    }
  }
}
