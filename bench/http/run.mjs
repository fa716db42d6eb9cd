#!/usr/bin/env node
/**
 * HTTP benchmark (issue 15): requests per second and latency (p50, p99) for a small page
 * (`GET /page`, 1000-byte body, test/targets/webapp.mjs over HTTPS) at C keep-alive
 * connections, measured by wrk in its own process, three paths:
 *
 *   direct     wrk -> the webapp over HTTPS;
 *   Gatehouse  wrk -> the gateway's HTTP door over HTTPS (`Host: page.apps.localhost:PORT`
 *              and the `__Host-gatehouse` session cookie from `/.gatehouse/enter`); gateway ->
 *              the webapp over HTTPS on its keep-alive agent, the app's certificate verified
 *              against its CA (`upstreamCa`); headers rebuilt, an ES256 assertion signed per
 *              request, basic credentials injected;
 *   nginx      wrk -> nginx as a TLS reverse proxy (`test/targets/nginx.sh proxy`, upstream
 *              keep-alive 64, `proxy_ssl_verify on` against the webapp's CA) -> the webapp
 *              over HTTPS;
 *   bare Node  (with --bare) wrk -> bench/http/bare-proxy.mjs, an `https` server forwarding
 *              with `https.request` on a keep-alive agent (verified) -> the webapp: the floor
 *              of any Node proxy with TLS on both legs.
 *
 *   npm run build && node bench/http/run.mjs [--rounds 3] [--seconds 5] [--conns 64] [--threads 2] [--warmup 1] [--bare] [--cpu-prof DIR]
 *
 * Every path runs `rounds` times per connection count, interleaved with the order rotated
 * (A B C, B C A, C A B) so a shared machine's noise spreads over all of them; each measured
 * run is preceded by a `--warmup`-second wrk run on the same path (JIT, upstream
 * connections). The gateway, the bare proxy, nginx and the webapp each run in their own
 * process. Runs as root (nginx's workers drop to www-data).
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const USAGE = `usage: node bench/http/run.mjs [options]   (after npm run build; as root)

  --rounds N      interleaved rounds per connection count (default 3)
  --seconds S     length of one measured wrk run (default 5)
  --conns LIST    keep-alive connections (wrk -c), comma-separated (default 64)
  --threads T     wrk threads (wrk -t; default 2, at most the connections)
  --warmup W      seconds of wrk on the same path before each measured run (default 1; 0: none)
  --bare          a fourth path: a bare Node HTTPS proxy (bench/http/bare-proxy.mjs)
  --cpu-prof DIR  run the gateway under node --cpu-prof, the profile written to DIR at the end
                  (summarise it with node bench/http/profile-top.mjs DIR/*.cpuprofile)
  --help          this text`;

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' }, seconds: { type: 'string', default: '5' }, conns: { type: 'string', default: '64' },
    threads: { type: 'string', default: '2' }, warmup: { type: 'string', default: '1' }, bare: { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' }, help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const CONNS = values.conns.split(',').map(Number);
const THREADS = Number(values.threads);
const WARMUP = Number(values.warmup);
if (![ROUNDS, SECONDS, THREADS, ...CONNS].every((n) => Number.isInteger(n) && n > 0) || !(Number.isInteger(WARMUP) && WARMUP >= 0)) {
  console.error(USAGE);
  process.exit(2);
}

const root = fileURLToPath(new URL('../..', import.meta.url));
const cleanups = [];
const dir = mkdtempSync(join(tmpdir(), 'gh-bench-http-'));
cleanups.push(() => rmSync(dir, { recursive: true, force: true }));

/** Runs a target script (test/targets/NAME.sh); its last stdout line is the target's JSON. */
function target(name, args, env = {}) {
  const script = join(root, `test/targets/${name}.sh`);
  const t = JSON.parse(execFileSync('bash', [script, ...args], { encoding: 'utf8', env: { ...process.env, ...env } }).trim().split('\n').at(-1));
  cleanups.unshift(() => execFileSync('bash', [script, 'stop', t.dir], { stdio: 'ignore' }));
  return t;
}

const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
const statOf = (pid) => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
/** CPU seconds (user + system) a process has used, from /proc. */
const cpuOf = (pid) => { const f = statOf(pid); return (Number(f[11]) + Number(f[12])) / TICK; };
/** CPU seconds of this process's waited-for children (wrk, once it has exited). */
const childrenCpu = () => { const f = statOf('self'); return (Number(f[13]) + Number(f[14])) / TICK; };
/** A process and its children (nginx's master and workers). */
function family(pid) {
  const kids = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (Number(statOf(d)[1]) === pid) kids.push(Number(d));
    } catch {
      // gone
    }
  }
  return [pid, ...kids];
}
/** [idle, total] jiffies of the whole machine. */
function machine() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return [f[3] + f[4], f.reduce((a, b) => a + b, 0)];
}
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

/** One HTTPS GET, the server's certificate verified (servername `localhost`). */
function get(port, path, ca, headers = {}) {
  return new Promise((res, rej) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, servername: 'localhost', ca, headers, agent: false }, (r) => {
      const chunks = [];
      r.on('data', (d) => chunks.push(d));
      r.on('end', () => res({ status: r.statusCode, headers: r.headers, body: Buffer.concat(chunks), tls: `${r.socket.getProtocol?.()} ${r.socket.getCipher?.()?.name}` }));
    });
    req.on('error', rej);
    req.end();
  });
}

/** wrk's `--latency` output: requests/s, p50/p99 (ms), errors. */
function parseWrk(out) {
  const time = (v, u) => Number(v) * { us: 1e-3, ms: 1, s: 1e3, m: 6e4, h: 3.6e6 }[u];
  const pct = (q) => {
    const m = new RegExp(`^\\s+${q}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, 'm').exec(out);
    if (!m) throw new Error(`no ${q}% latency in wrk's output:\n${out}`);
    return time(m[1], m[2]);
  };
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(out);
  const total = /^\s+(\d+) requests in/m.exec(out);
  if (!rps || !total) throw new Error(`unexpected wrk output:\n${out}`);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = sock ? sock.slice(1).reduce((a, x) => a + Number(x), 0) : 0;
  return { rps: Number(rps[1]), requests: Number(total[1]), p50: pct(50), p75: pct(75), p90: pct(90), p99: pct(99), non2xx, socketErrors, sock: sock?.[0] };
}

/** Runs wrk to completion; resolves with its stdout. */
function wrk(args) {
  return new Promise((res, rej) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', rej);
    child.on('exit', (code) => (code === 0 ? res(out) : rej(new Error(`wrk exited ${code}: ${err}${out}`))));
  });
}

// ---------------------------------------------------------------------------------------
// The targets, the gateway and the runs

try {
  const webapp = target('webapp', ['start'], { WEBAPP_TLS: '1' });
  const webappCa = readFileSync(webapp.ca, 'utf8');
  const nginx = target('nginx', ['proxy', webapp.url], { NGINX_PROXY_UPSTREAM_CA: webapp.ca });

  /** A Node server of this bench in its own process (gateway.mjs, bare-proxy.mjs); resolves with its JSON line. */
  async function server(script, cfg, nodeArgs = []) {
    const child = spawn(process.execPath, [...nodeArgs, join(root, 'bench/http', script), JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise((res) => child.on('exit', (code, signal) => res({ code, signal })));
    cleanups.unshift(async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      const r = await exited;
      if (r.code !== 0) console.error(`${script} exited ${r.code ?? r.signal}`);
    });
    return new Promise((res, rej) => {
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
        const i = out.indexOf('\n');
        if (i >= 0) res(JSON.parse(out.slice(0, i)));
      });
      exited.then((r) => rej(new Error(`${script} exited ${r.code ?? r.signal} before listening`)));
    });
  }

  const upstream = { host: webapp.host, port: webapp.port, ca: webapp.ca };
  const gw = await server('gateway.mjs', { ...upstream, user: webapp.user, password: webapp.password, certDir: join(dir, 'gw-certs') },
    values['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', resolve(values['cpu-prof'])] : []);
  const bare = values.bare ? await server('bare-proxy.mjs', { ...upstream, certDir: join(dir, 'bare-certs') }) : undefined;

  const appHost = `page.apps.localhost:${gw.port}`;
  const entered = await get(gw.port, `/.gatehouse/enter?user=bench&ticket=${encodeURIComponent(gw.ticket)}&next=%2Fpage`, gw.caCertPem, { host: appHost });
  const setCookie = String(entered.headers['set-cookie']?.[0] ?? '');
  if (entered.status !== 302 || !setCookie.startsWith('__Host-gatehouse=')) throw new Error(`enter: ${entered.status}\n${entered.body}`);
  const cookie = setCookie.split(';', 1)[0];

  const paths = [
    { name: 'direct', port: webapp.port, ca: webappCa, headers: {}, cpu: () => 0 },
    { name: 'Gatehouse', port: gw.port, ca: gw.caCertPem, headers: { host: appHost, cookie }, cpu: () => cpuOf(gw.pid) },
    { name: 'nginx', port: nginx.port, ca: readFileSync(nginx.ca, 'utf8'), headers: {}, cpu: () => family(nginx.pid).reduce((a, p) => { try { return a + cpuOf(p); } catch { return a; } }, 0) },
    ...(bare ? [{ name: 'bare Node', port: bare.port, ca: bare.caCertPem, headers: {}, cpu: () => cpuOf(bare.pid) }] : []),
  ];

  // Every path serves the same bytes, over a verified client leg.
  const bodies = [];
  for (const p of paths) {
    const r = await get(p.port, '/page', p.ca, p.headers);
    if (r.status !== 200) throw new Error(`${p.name}: GET /page answered ${r.status}\n${r.body}`);
    bodies.push(r.body);
    p.tls = r.tls;
  }
  if (!bodies.every((b) => b.equals(bodies[0]))) throw new Error('the paths serve different pages');

  const nproc = execFileSync('nproc', { encoding: 'utf8' }).trim();
  const wrkVersion = execFileSync('sh', ['-c', 'wrk -v 2>&1 | head -1'], { encoding: 'utf8' }).trim().split(' ').slice(0, 2).join(' ');
  const nginxWorkers = family(nginx.pid).length - 1;
  console.log(`HTTP GET /page (${bodies[0].length} B body), conns ${CONNS.join(',')}, wrk -t${THREADS}, ${ROUNDS} interleaved rounds of ${SECONDS} s per path`
    + `${WARMUP ? ` (+${WARMUP} s warm-up each)` : ''}; ${nproc} cores; node ${process.version}; ${nginx.version} (${nginxWorkers} workers); ${wrkVersion}; load ${loadavg()}`);
  console.log(`  client leg (as Node's https client sees it): ${paths.map((p) => `${p.name} ${p.tls}`).join(', ')}`);

  const wrkArgs = (p, conns, seconds) => {
    const a = [`-t${Math.min(THREADS, conns)}`, `-c${conns}`, `-d${seconds}s`, '--latency'];
    if (p.headers.host) a.push('-H', `Host: ${p.headers.host}`);
    if (p.headers.cookie) a.push('-H', `Cookie: ${p.headers.cookie}`);
    return [...a, `https://127.0.0.1:${p.port}/page`];
  };
  const shell = (args) => ['wrk', ...args].map((x) => (/[^\w./:=%-]/.test(x) ? `'${x}'` : x)).join(' ');
  console.log(`  commands: ${paths.map((p) => shell(wrkArgs(p, CONNS[0], SECONDS))).join('\n            ')}`);

  /** One measured run: warm-up, then wrk with CPU accounting around it. */
  async function measure(p, conns) {
    if (WARMUP) parseWrk(await wrk(wrkArgs(p, conns, WARMUP)));
    const before = { wrk: childrenCpu(), proxy: p.cpu(), app: cpuOf(webapp.pid), machine: machine() };
    const r = parseWrk(await wrk(wrkArgs(p, conns, SECONDS)));
    const after = { wrk: childrenCpu(), proxy: p.cpu(), app: cpuOf(webapp.pid), machine: machine() };
    const us = (k) => ((after[k] - before[k]) / r.requests) * 1e6;
    return { ...r, cpu: { wrk: us('wrk'), proxy: us('proxy'), app: us('app') }, idle: (after.machine[0] - before.machine[0]) / (after.machine[1] - before.machine[1]) };
  }

  const results = {};
  const bad = [];
  for (const conns of CONNS) {
    const rs = Object.fromEntries(paths.map((p) => [p.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < paths.length; i++) {
        const p = paths[(i + round) % paths.length];
        const r = await measure(p, conns);
        rs[p.name].push(r);
        let errs = '';
        if (r.non2xx || r.socketErrors) {
          errs = `; ERRORS: ${r.non2xx} non-2xx, ${r.sock}`;
          bad.push(`${p.name} c=${conns} round ${round + 1}`);
        }
        console.log(`  c=${String(conns).padEnd(3)} round ${round + 1} ${p.name.padEnd(9)} ${r.rps.toFixed(0).padStart(6)} req/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms   `
          + `CPU/request: wrk ${r.cpu.wrk.toFixed(1)} µs, proxy ${r.cpu.proxy.toFixed(1)} µs, webapp ${r.cpu.app.toFixed(1)} µs; machine idle ${(r.idle * 100).toFixed(0)}%; load ${loadavg()}${errs}`);
      }
    }
    results[conns] = rs;
  }
  console.log(`\nload average at the end: ${loadavg()}`);

  // The summary: medians over rounds with the min–max range; ratios and differences round by round.
  const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
  const range = (xs, f) => `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;
  const cell = (xs, f) => `${f(median(xs))} (${range(xs, f)})`;
  const f0 = (x) => x.toFixed(0);
  const f1 = (x) => x.toFixed(1);
  const f2 = (x) => x.toFixed(2);
  const signed = (x) => (x < 0 ? '−' : '+') + f2(Math.abs(x));
  const proxies = paths.slice(1).map((p) => p.name);
  const names = paths.map((p) => p.name);
  const blank = (n) => ' |'.repeat(n);

  // Ratios to nginx: Gatehouse's (the goal) and the bare proxy's (the floor of a Node proxy).
  const vsNginx = proxies.filter((n) => n !== 'nginx');
  const extra = vsNginx.length + proxies.length;
  console.log(`\n| measure (median of rounds, min–max) | ${names.join(' | ')} | ${vsNginx.map((n) => `${n} / nginx`).join(' | ')} | ${proxies.map((n) => `${n} / direct`).join(' | ')} |`);
  console.log(`|---|${'---:|'.repeat(names.length + extra)}`);
  const goals = [];
  for (const conns of CONNS) {
    const rs = results[conns];
    const col = (n, k) => rs[n].map((r) => r[k]);
    const per = (a, b, k, op) => rs[a].map((r, i) => op(r[k], rs[b][i][k]));
    const ratio = (x, y) => x / y;
    const minus = (x, y) => x - y;
    const c = `c=${conns}`;
    console.log(`| requests/s, ${c} | ${names.map((n) => cell(col(n, 'rps'), f0)).join(' | ')} | ${vsNginx.map((n) => cell(per(n, 'nginx', 'rps', ratio), f2)).join(' | ')} | `
      + `${proxies.map((n) => cell(per(n, 'direct', 'rps', ratio), f2)).join(' | ')} |`);
    for (const k of ['p50', 'p99']) {
      console.log(`| latency ${k} (ms), ${c} | ${names.map((n) => cell(col(n, k), f2)).join(' | ')} |${blank(extra)}`);
      console.log(`| added to ${k} vs direct (ms), ${c} | | ${proxies.map((n) => cell(per(n, 'direct', k, minus), signed)).join(' | ')} |${blank(extra)}`);
    }
    const cpu = (n, k) => cell(rs[n].map((r) => r.cpu[k]), f1);
    console.log(`| CPU µs/request: proxy, ${c} | | ${proxies.map((n) => cpu(n, 'proxy')).join(' | ')} |${blank(extra)}`);
    console.log(`| CPU µs/request: webapp, ${c} | ${names.map((n) => cpu(n, 'app')).join(' | ')} |${blank(extra)}`);
    console.log(`| CPU µs/request: wrk, ${c} | ${names.map((n) => cpu(n, 'wrk')).join(' | ')} |${blank(extra)}`);
    console.log(`| machine idle (%), ${c} | ${names.map((n) => cell(rs[n].map((r) => r.idle * 100), f0)).join(' | ')} |${blank(extra)}`);
    const ratios = per('Gatehouse', 'nginx', 'rps', ratio);
    const added = per('Gatehouse', 'direct', 'p50', minus);
    goals.push(`${c}: throughput ≥ 0.6 of nginx's: ${median(ratios) >= 0.6 ? 'met' : 'NOT met'} (median ${f2(median(ratios))}, rounds ${range(ratios, f2)}); `
      + `≤ 2 ms added at p50: ${median(added) <= 2 ? 'met' : 'NOT met'} (median ${signed(median(added))} ms, rounds ${range(added, signed)})`);
  }
  console.log(`\nGoals (issue 15, set for c=64):\n  ${goals.join('\n  ')}`);
  if (bad.length) console.log(`WARNING: runs with non-2xx responses or socket errors: ${bad.join(', ')} (see the rounds above)`);
} finally {
  for (const c of cleanups) {
    try {
      await c();
    } catch {
      // best effort
    }
  }
}
