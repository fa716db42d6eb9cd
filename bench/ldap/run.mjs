#!/usr/bin/env node
/**
 * LDAP: base-object searches at 1 and 32 connections, and connect-plus-bind latency, three
 * ways in one run against the same OpenLDAP slapd (test/targets/slapd.sh, 2000 people):
 *
 *   direct     client -> slapd over LDAPS, bound as the service account;
 *   Gatehouse  client -> the gateway's LDAPS listener (LdapsAdapter), bound as
 *              alice:corp-ldap with her gateway password; gateway -> slapd with StartTLS,
 *              slapd's certificate verified against its CA (`upstreamCa`; `--upstream pin`
 *              pins it on first use instead), bound with the vaulted service DN/password;
 *   back-ldap  client -> a second slapd running back-ldap (OpenLDAP's own LDAP proxy,
 *              `slapd.sh proxy`) over LDAPS, bound as the service account (passed through);
 *              back-ldap -> slapd with StartTLS, verified against slapd's CA.
 *
 *   npm run build && node bench/ldap/run.mjs [--rounds 3] [--seconds 5] [--conns 1,32] [--connects 200] [--workers 1]
 *
 * Throughput: N connections, each bound once, then a closed loop of base-object searches of
 * uid=userNNNN (three attributes) for S seconds, from ldapts 8.2 in `--workers` separate
 * load processes (bench/ldap/load.mjs; the connections are split between them and start
 * together). Each conns value runs every path `rounds` times, interleaved with the order
 * rotated (A B C, B C A, C A B, ...) so the noise of a shared machine spreads over all paths.
 * Connect-plus-bind: a new connection, TLS, a simple bind (timed until the bind succeeds),
 * then an unbind, `connects` times per path, split over the rounds, the paths taking turns
 * connect by connect within one load process; a fourth path binds to Gatehouse with a
 * single-use launch ticket each time (what a person starting a session sees; the password
 * path hits the 60 s verified-password cache after the first bind, as a pool does).
 *
 * The gateway runs in this process (SystemClock, in-memory SQLite, user alice with a gateway
 * password on the access list of corp-ldap, no workflow); the load runs in child processes.
 * Runs as root (slapd drops to the openldap OS user).
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const USAGE = `usage: node bench/ldap/run.mjs [options]   (after npm run build; as root)

  --rounds N      interleaved rounds per workload (default 3)
  --seconds S     length of one search loop (default 5)
  --conns LIST    connection counts for the search loop (default 1,32)
  --connects N    connect-plus-bind samples per path over all rounds (default 200)
  --workers W     load processes for the search loop, connections split (default 1)
  --upstream M    Gatehouse's target leg: ca (StartTLS, slapd's CA configured; default) or
                  pin (StartTLS, certificate pinned on first use)
  --help          this text`;

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' }, seconds: { type: 'string', default: '5' }, conns: { type: 'string', default: '1,32' },
    connects: { type: 'string', default: '200' }, workers: { type: 'string', default: '1' }, upstream: { type: 'string', default: 'ca' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const CONNS = values.conns.split(',').map(Number);
const CONNECTS = Number(values.connects);
const WORKERS = Number(values.workers);
if (![ROUNDS, SECONDS, CONNECTS, WORKERS, ...CONNS].every((n) => Number.isFinite(n) && n > 0) || !['ca', 'pin'].includes(values.upstream)) {
  console.error(USAGE);
  process.exit(2);
}

const root = fileURLToPath(new URL('../..', import.meta.url));
const dist = (p) => import(join(root, 'dist', p));
const [{ ensurePki }, { LdapsAdapter }, { benchGateway, silentLogger }] = await Promise.all([
  dist('src/pki/pki.js'), dist('protocols/ldap/index.js'), import('../lib/gateway.mjs'),
]);

const cleanups = [];
const dir = mkdtempSync(join(tmpdir(), 'gh-bench-ldap-'));
cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
const script = join(root, 'test/targets/slapd.sh');
/** Runs slapd.sh; its last stdout line is the target's JSON. */
function slapd(args, env = {}) {
  const t = JSON.parse(execFileSync('bash', [script, ...args], { encoding: 'utf8', env: { ...process.env, ...env } }).trim().split('\n').at(-1));
  cleanups.unshift(() => execFileSync('bash', [script, 'stop', t.dir], { stdio: 'ignore' }));
  return t;
}

const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
/** CPU seconds (user + system) a process has used, from /proc. */
function cpuOf(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / TICK;
}
const selfCpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
/** [idle, total] jiffies of the whole machine. */
function machine() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return [f[3] + f[4], f.reduce((a, b) => a + b, 0)];
}
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

/** One load process; resolves with its parsed JSON lines as they come (see load.mjs). */
function worker(cfg) {
  const child = spawn(process.execPath, [join(root, 'bench/ldap/load.mjs'), JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters = [];
  const lines = [];
  child.stdout.on('data', (d) => {
    out += d;
    for (let i = out.indexOf('\n'); i >= 0; i = out.indexOf('\n')) {
      const line = out.slice(0, i);
      out = out.slice(i + 1);
      if (line.trim()) lines.push(JSON.parse(line));
      while (waiters.length && lines.length) waiters.shift().resolve(lines.shift());
    }
  });
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise((resolve, reject) => child.on('exit', (code) => {
    const e = new Error(`load exited ${code}:\n${err}`);
    for (const w of waiters.splice(0)) w.reject(e);
    return code === 0 ? resolve() : reject(e);
  }));
  exited.catch(() => {});
  return {
    pid: child.pid,
    next: () => (lines.length ? Promise.resolve(lines.shift()) : new Promise((resolve, reject) => waiters.push({ resolve, reject }))),
    go: () => child.stdin.write('go\n'),
    exited,
  };
}

const slapdTarget = slapd(['start']);
const proxy = slapd(['proxy', `ldap://127.0.0.1:${slapdTarget.port}`], {
  SLAPD_PROXY_UPSTREAM_CA: slapdTarget.ca, SLAPD_PROXY_USER: slapdTarget.user, SLAPD_PROXY_PASSWORD: slapdTarget.password,
});

try {
  const gwPassword = randomBytes(12).toString('base64url');
  const { engine, broker, stop } = await benchGateway({
    user: 'alice',
    password: gwPassword,
    resource: {
      name: 'corp-ldap', type: 'directory', protocol: 'ldap', host: slapdTarget.host, port: slapdTarget.port,
      credentials: { login: slapdTarget.user, password: slapdTarget.password },
    },
  });
  const pki = await ensurePki(join(dir, 'certs'));
  const adapter = new LdapsAdapter(values.upstream === 'ca' ? { upstreamCa: { '*': readFileSync(slapdTarget.ca, 'utf8') } } : {});
  const listener = await adapter.listen({ host: '127.0.0.1', port: 0, broker, log: silentLogger, tls: { cert: pki.certPem, key: pki.keyPem, ca: pki.caCertPem } });
  cleanups.unshift(async () => { await listener.close(); await stop(); });

  const direct = { name: 'direct', url: `ldaps://127.0.0.1:${slapdTarget.ldapsPort}`, ca: readFileSync(slapdTarget.ca, 'utf8'), dn: slapdTarget.user, password: slapdTarget.password };
  const gate = { name: 'Gatehouse', url: `ldaps://127.0.0.1:${listener.address.port}`, ca: pki.caCertPem, dn: 'alice:corp-ldap', password: gwPassword };
  const back = { name: 'back-ldap', url: `ldaps://127.0.0.1:${proxy.ldapsPort}`, ca: readFileSync(proxy.ca, 'utf8'), dn: proxy.user, password: proxy.password };
  const paths = [direct, gate, back];
  /** The relay's CPU for each path: this process for Gatehouse, the back-ldap slapd for back-ldap. */
  const relayCpu = { direct: () => 0, Gatehouse: selfCpu, 'back-ldap': () => cpuOf(proxy.pid) };

  console.log(`LDAP base-object searches, ${ROUNDS} interleaved rounds of ${SECONDS} s per path, conns ${CONNS.join(',')}, ${WORKERS} load process(es); `
    + `${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores; ${slapdTarget.version}; node ${process.version}; Gatehouse upstream: StartTLS, ${values.upstream === 'ca' ? "slapd's CA" : 'pinned on first use'}; load ${loadavg()}`);

  /** One search loop on one path: the workers bind and warm up, start together, and report. */
  async function searchLoop(p, conns) {
    const n = Math.min(WORKERS, conns);
    const ws = Array.from({ length: n }, (_, i) => worker({
      mode: 'search', path: p, conns: Math.floor(conns / n) + (i < conns % n ? 1 : 0), seconds: SECONDS, peopleDn: slapdTarget.peopleDn, entries: slapdTarget.entries,
    }));
    for (const w of ws) await w.next();
    const before = { client: ws.map((w) => cpuOf(w.pid)), relay: relayCpu[p.name](), slapd: cpuOf(slapdTarget.pid), machine: machine() };
    for (const w of ws) w.go();
    const rs = [];
    const after = { client: [] };
    for (const w of ws) {
      rs.push(await w.next());
      after.client.push(cpuOf(w.pid));
    }
    Object.assign(after, { relay: relayCpu[p.name](), slapd: cpuOf(slapdTarget.pid), machine: machine() });
    await Promise.all(ws.map((w) => w.exited));
    const count = rs.reduce((a, r) => a + r.count, 0);
    const us = (s) => (s / count) * 1e6;
    return {
      rate: rs.reduce((a, r) => a + r.rate, 0),
      client: us(after.client.reduce((a, x, i) => a + x - before.client[i], 0)),
      relay: us(after.relay - before.relay),
      slapd: us(after.slapd - before.slapd),
      idle: (after.machine[0] - before.machine[0]) / (after.machine[1] - before.machine[1]),
    };
  }

  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const range = (xs, f) => `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;
  const throughput = {};
  for (const conns of CONNS) {
    const rs = Object.fromEntries(paths.map((p) => [p.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < paths.length; i++) {
        const p = paths[(i + round) % paths.length];
        const r = await searchLoop(p, conns);
        rs[p.name].push(r);
        console.log(`  c=${String(conns).padEnd(3)} round ${round + 1} ${p.name.padEnd(10)} ${r.rate.toFixed(0).padStart(6)} searches/s   CPU/search: client ${r.client.toFixed(1)} µs, `
          + `relay ${r.relay.toFixed(1)} µs, slapd ${r.slapd.toFixed(1)} µs; machine idle ${(r.idle * 100).toFixed(0)}%; load ${loadavg()}`);
      }
    }
    throughput[conns] = rs;
  }

  // Connect-plus-bind: one load process per round, the four paths taking turns connect by connect.
  const perRound = Math.ceil(CONNECTS / ROUNDS);
  const connectPaths = [direct, gate, { ...gate, name: 'Gatehouse (ticket)', password: undefined }, back];
  const times = Object.fromEntries(connectPaths.map((p) => [p.name, []]));
  const roundP50 = Object.fromEntries(connectPaths.map((p) => [p.name, []]));
  const pct = (xs, q) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };
  for (let round = 0; round < ROUNDS; round++) {
    // Tickets live 60 s: issued just before the round that spends them.
    const tickets = [];
    for (let i = 0; i < perRound; i++) tickets.push((await engine.mfa.issueTicket('alice', 'corp-ldap', false)).ticket);
    const ps = connectPaths.map((p) => (p.name === 'Gatehouse (ticket)' ? { ...p, passwords: tickets } : p));
    const w = worker({ mode: 'connect', paths: ps, connects: perRound });
    const r = await w.next();
    await w.exited;
    for (const p of connectPaths) {
      times[p.name].push(...r.times[p.name]);
      roundP50[p.name].push(pct(r.times[p.name], 0.5));
    }
    console.log(`  connect+bind round ${round + 1}: ${connectPaths.map((p) => `${p.name} p50 ${pct(r.times[p.name], 0.5).toFixed(2)} p95 ${pct(r.times[p.name], 0.95).toFixed(2)} ms`).join('; ')}; load ${loadavg()}`);
  }
  console.log(`\nGatehouse upstream connections: ${adapter.stats.upstreamConnects}; load average at the end: ${loadavg()}`);

  // The summary: medians over rounds with the min–max range, ratios per round.
  const f0 = (x) => x.toFixed(0);
  const f1 = (x) => x.toFixed(1);
  const f2 = (x) => x.toFixed(2);
  const signed = (x) => (x < 0 ? '−' : '+') + f2(Math.abs(x));
  const cell = (xs, f) => `${f(median(xs))} (${range(xs, f)})`;
  console.log('\n| measure (median of rounds, min–max) | direct | Gatehouse | back-ldap | Gatehouse / back-ldap | Gatehouse / direct |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const conns of CONNS) {
    const rs = throughput[conns];
    const rate = (n) => rs[n].map((r) => r.rate);
    const ratios = (a, b) => rs[a].map((r, i) => r.rate / rs[b][i].rate);
    const cs = `${conns} conn${conns > 1 ? 's' : ''}`;
    console.log(`| searches/s, ${cs} | ${cell(rate('direct'), f0)} | ${cell(rate('Gatehouse'), f0)} | ${cell(rate('back-ldap'), f0)} | ${cell(ratios('Gatehouse', 'back-ldap'), f2)} | ${cell(ratios('Gatehouse', 'direct'), f2)} |`);
    const cpu = (n, k) => cell(rs[n].map((r) => r[k]), f1);
    console.log(`| CPU µs/search, ${cs}: relay | | ${cpu('Gatehouse', 'relay')} | ${cpu('back-ldap', 'relay')} | | |`);
    console.log(`| CPU µs/search, ${cs}: client + relay + slapd | ${cell(rs.direct.map((r) => r.client + r.slapd), f1)} | ${cell(rs.Gatehouse.map((r) => r.client + r.relay + r.slapd), f1)} | ${cell(rs['back-ldap'].map((r) => r.client + r.relay + r.slapd), f1)} | | |`);
  }
  for (const q of [0.5, 0.95]) {
    const v = (n) => pct(times[n], q);
    const added = (n) => `${signed(v(n) - v('direct'))} ms`;
    console.log(`| connect+bind p${q * 100} (ms, all ${times.direct.length} samples) | ${f2(v('direct'))} | ${f2(v('Gatehouse'))} (${added('Gatehouse')}); ticket ${f2(v('Gatehouse (ticket)'))} (${added('Gatehouse (ticket)')}) | ${f2(v('back-ldap'))} (${added('back-ldap')}) | | |`);
  }
  const addedPerRound = (n) => roundP50[n].map((x, i) => x - roundP50.direct[i]);
  console.log(`| connect+bind p50 per round (ms) | ${range(roundP50.direct, f2)} | ${range(roundP50.Gatehouse, f2)}; ticket ${range(roundP50['Gatehouse (ticket)'], f2)} | ${range(roundP50['back-ldap'], f2)} | | |`);
  console.log(`| added to connect+bind p50 per round (ms) | | ${range(addedPerRound('Gatehouse'), signed)}; ticket ${range(addedPerRound('Gatehouse (ticket)'), signed)} | ${range(addedPerRound('back-ldap'), signed)} | | |`);
} finally {
  for (const c of cleanups) {
    try {
      await c();
    } catch {
      // best effort
    }
  }
}
