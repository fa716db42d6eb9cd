/**
 * The production install, done as an operator does it: `npm pack` (whose prepack builds
 * dist/ and the web vault) in a copy of this checkout, then the tarball installed with
 * `npm install --omit=dev` into an empty directory holding only deploy/install/package.json
 * (which allows the native modules' install scripts), then that directory's `gatehouse`
 * started with SQLite, with a real PostgreSQL store, and with the container config
 * (deploy/cluster.yaml) as two nodes sharing keys and certificates through files.
 *
 * Two shortcuts keep it to about a minute, most of it the build. npm takes packages from its cache when it
 * has them (--prefer-offline; the registry otherwise). better-sqlite3's install script looks
 * for a prebuilt binary before compiling one (about 70 s here); the test hands it the binary
 * this checkout's own `npm ci` built, named as a downloaded prebuild would be, which is the
 * path an operator's install takes when it can fetch one. When the installed version differs
 * from this checkout's, the script compiles and the test just takes longer.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { ListenerNames, type ListenerName } from '../../src/core/config.js';
import { freePort, onFreePorts, startPostgres, type PostgresTarget } from '../targets/index.js';

const ROOT = resolve(import.meta.dirname, '../..');
const BIG = 64 * 1024 * 1024;
const execFileAsync = promisify(execFile);

/** execFile whose failure carries the command's output (tsc and npm say what went wrong there). */
async function run(file: string, args: string[], options: Parameters<typeof execFileAsync>[2] = {}): Promise<{ stdout: string; stderr: string }> {
  try {
    const r = await execFileAsync(file, args, { maxBuffer: BIG, ...options, encoding: 'utf8' });
    return { stdout: String(r.stdout), stderr: String(r.stderr) };
  } catch (e) {
    const { stdout = '', stderr = '' } = e as { stdout?: string; stderr?: string };
    const tail = (t: string): string => t.split('\n').slice(-40).join('\n');
    throw Object.assign(new Error(`${(e as Error).message.split('\n')[0]}\n--- stdout\n${tail(stdout)}\n--- stderr\n${tail(stderr)}`), e as object);
  }
}

/** The environment of a fresh shell: no npm run-script variables, no Gatehouse keys. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(npm_|GATEHOUSE_|INIT_CWD$)/i.test(k)) env[k] = v;
  }
  return { ...env, ...extra };
}

/** The checkout as a publisher has it (tracked and new files, nothing ignored), without dist/. */
async function copyCheckout(to: string): Promise<void> {
  const { stdout } = await run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, maxBuffer: BIG });
  for (const file of stdout.split('\0').filter(Boolean)) {
    if (!existsSync(join(ROOT, file))) continue; // deleted in the work tree, not yet in the index
    mkdirSync(dirname(join(to, file)), { recursive: true });
    copyFileSync(join(ROOT, file), join(to, file));
  }
  symlinkSync(join(ROOT, 'node_modules'), join(to, 'node_modules'));
}

/** The file name better-sqlite3's install script (prebuild-install) looks for, for this checkout's version and this Node. */
function prebuildName(): string {
  const version = JSON.parse(readFileSync(join(ROOT, 'node_modules/better-sqlite3/package.json'), 'utf8')).version as string;
  return `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
}

interface Served {
  child: ChildProcess;
  stop: () => Promise<void>;
  /** What it has printed so far, both streams. */
  output: () => string;
}

/** Starts the installed `gatehouse serve`; resolves once it printed where its CA is (its last start-up line). */
function serve(bin: string, args: string[], cwd: string): Promise<Served> {
  const child = spawn(process.execPath, [bin, 'serve', ...args], { cwd, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  return new Promise((res, rej) => {
    const onExit = (code: number | null): void => rej(new Error(`gatehouse serve exited (${code}):\n${out}`));
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (!out.includes('ca.pem')) return;
      child.off('exit', onExit);
      res({ child, stop, output: () => out });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', onExit);
  });
}

function get(url: string, ca?: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((res, rej) => {
    const u = new URL(url);
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, ca ? { ca } : {}, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (d) => (body += d));
      r.on('end', () => res({ status: r.statusCode ?? 0, type: String(r.headers['content-type'] ?? ''), body }));
    });
    req.on('error', rej);
    req.end();
  });
}

/** A free port for every listener the gateway has (api and each door). */
async function ports(): Promise<Record<ListenerName, number>> {
  const p: Partial<Record<ListenerName, number>> = {};
  // Each free port is released before the next is asked for, so the system may hand the same
  // one out twice (it did: postgres and ldap on one port, and serve refused to start).
  const taken = new Set<number>();
  for (const name of ListenerNames) {
    let port = await freePort();
    while (taken.has(port)) port = await freePort();
    taken.add(port);
    p[name] = port;
  }
  return p as Record<ListenerName, number>;
}

/** `gatehouse serve` with `argsFor(ports)` on a free port per listener (new ones when one was taken first). */
function serveOnFreePorts(bin: string, argsFor: (p: Record<ListenerName, number>) => string[], cwd: string): Promise<{ s: Served; p: Record<ListenerName, number> }> {
  return onFreePorts(async () => {
    const p = await ports();
    return { s: await serve(bin, argsFor(p), cwd), p };
  });
}

describe('the packed tarball, installed with runtime dependencies only', () => {
  let work: string;
  let app: string;
  let installed: string;
  let bin: string;
  let tarball: string[];
  let target: PostgresTarget;
  const running: Served[] = [];

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'gh-pack-'));
    const install = async (): Promise<void> => {
      const src = join(work, 'checkout');
      await copyCheckout(src);
      await run('npm', ['pack', '--pack-destination', work], { cwd: src, env: cleanEnv(), maxBuffer: BIG });
      const tgz = readdirSync(work).find((f) => f.endsWith('.tgz'));
      if (!tgz) throw new Error(`npm pack wrote no tarball into ${work}`);
      tarball = (await run('tar', ['-tzf', join(work, tgz)], { maxBuffer: BIG })).stdout.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));

      app = join(work, 'app');
      mkdirSync(app);
      cpSync(join(ROOT, 'deploy/install/package.json'), join(app, 'package.json'));
      const prebuilds = join(work, 'prebuilds');
      mkdirSync(prebuilds);
      await run('tar', ['-czf', join(prebuilds, prebuildName()), '-C', join(ROOT, 'node_modules/better-sqlite3'), 'build/Release/better_sqlite3.node']);
      await run('npm', ['install', '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund', join(work, tgz)], {
        cwd: app, maxBuffer: BIG, env: cleanEnv({ npm_config_better_sqlite3_local_prebuilds: prebuilds }),
      });
      installed = join(app, 'node_modules/gatehouse');
      bin = join(app, 'node_modules/.bin/gatehouse');
    };
    [target] = await Promise.all([startPostgres(), install()]);
  }, 600_000);

  afterAll(async () => {
    for (const s of running) await s.stop();
    await target?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const storeUrl = (database: string): string =>
    `postgres://${encodeURIComponent(target.superuser)}:${encodeURIComponent(target.superuserPassword)}@${target.host}:${target.port}/${database}`;

  async function createDatabase(name: string): Promise<string> {
    const client = new pg.Client({ connectionString: storeUrl(target.database) });
    await client.connect();
    try {
      await client.query(`create database ${name}`);
    } finally {
      await client.end();
    }
    return storeUrl(name);
  }

  it('holds the built gateway and the built web vault, and no sources, tests or source maps', () => {
    expect(tarball).toEqual(expect.arrayContaining(['package.json', 'bin/gatehouse.js', 'dist/src/cli/main.js', 'dist/src/gateway.js', 'dist/web/index.html']));
    expect(tarball.filter((f) => /^dist\/web\/assets\/app-[\w-]+\.js$/.test(f))).toHaveLength(1);
    expect(tarball.filter((f) => /\.map$|\.test\.js$|\.ts$|^(src|test|bench|protocols|scripts)\//.test(f))).toEqual([]);
    // The PostgreSQL door's native data path, built by npm run build (prepack); no C source.
    expect(tarball).toEqual(expect.arrayContaining(['dist/native/build/pg-relay.node', 'dist/native/build/pg-relay.json']));
    expect(tarball.filter((f) => f.endsWith('.c'))).toEqual([]);
  });

  it('installs its runtime dependencies, none of the development tools, and every package the built code imports', async () => {
    for (const dep of ['pg', 'better-sqlite3', 'ssh2', 'pino']) expect(existsSync(join(app, 'node_modules', dep)), dep).toBe(true);
    for (const dev of ['typescript', 'vitest', 'eslint', 'esbuild', 'playwright-core', 'mysql2']) expect(existsSync(join(app, 'node_modules', dev)), dev).toBe(false);
    // The install scripts ran (allowScripts in deploy/install/package.json): the SQLite binding is there.
    expect(existsSync(join(app, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node'))).toBe(true);
    const { stdout } = await run(process.execPath, [join(ROOT, 'scripts/check-runtime-deps.mjs'), installed]);
    expect(stdout).toContain('runtime packages:');
  });

  it('is accepted by every production package on the first and a late release of each Node line engines names', async () => {
    expect(JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')).engines.node).toBe('^20.19.0 || ^22.12.0 || ^24.0.0');
    const { stdout } = await run(process.execPath, [join(ROOT, 'scripts/check-node-support.mjs'), installed]);
    expect(stdout).toContain('node 20.19.0, 22.12.0, 24.0.0 lines');
  });

  it('serves the web vault and /healthz with the SQLite store', async () => {
    const data = join(work, 'sqlite-data');
    const { s, p } = await serveOnFreePorts(bin, (p) => ['--data', data, ...Object.entries(p).flatMap(([n, port]) => ['--listen', `${n}=127.0.0.1:${port}`])], app);
    running.push(s);
    expect(existsSync(join(data, 'gatehouse.db'))).toBe(true);
    // The JSON log (stderr) may come after the start-up lines (stdout).
    await vi.waitFor(() => expect(s.output()).toContain('postgres data path: native'));
    const base = `http://127.0.0.1:${p.api}`;
    expect((await get(`${base}/healthz`)).status).toBe(200);
    const index = await get(`${base}/`);
    expect(index.status).toBe(200);
    expect(index.type).toContain('text/html');
    expect(index.body).toBe(readFileSync(join(installed, 'dist/web/index.html'), 'utf8'));
    const asset = /\/assets\/app-[\w-]+\.js/.exec(index.body)![0];
    const js = await get(`${base}${asset}`);
    expect(js.status).toBe(200);
    expect(js.type).toContain('javascript');
    expect(js.body).toBe(readFileSync(join(installed, 'dist/web', asset), 'utf8'));
    await s.stop();
  });

  it('keeps its state in PostgreSQL with --store postgres://, and serves the web vault', async () => {
    const url = await createDatabase('gh_pack');
    const data = join(work, 'pg-data');
    const { s, p } = await serveOnFreePorts(bin, (p) => ['--data', data, '--store', url, ...Object.entries(p).flatMap(([n, port]) => ['--listen', `${n}=127.0.0.1:${port}`])], app);
    running.push(s);
    expect(existsSync(join(data, 'gatehouse.db'))).toBe(false);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const tables = await client.query("select count(*)::int as n from information_schema.tables where table_schema = 'public'");
    await client.end();
    expect(tables.rows[0].n).toBeGreaterThan(0);
    const index = await get(`http://127.0.0.1:${p.api}/`);
    expect(index.status).toBe(200);
    expect(index.body).toContain('/assets/app-');
    await s.stop();
  });

  it('runs deploy/cluster.yaml as docker-compose.yml does: two nodes on one store, TLS off loopback, keys and CA shared through files, and the image healthcheck passes', async () => {
    // The compose paths, moved into the test's directory; everything else as in the file.
    const volume = join(work, 'volume');
    const policies = join(work, 'policies');
    mkdirSync(policies);
    copyFileSync(join(ROOT, 'deploy/policies/demo.yaml'), join(policies, 'demo.yaml'));
    copyFileSync(join(ROOT, 'policies/teams.yaml'), join(policies, 'teams.yaml'));
    const url = await createDatabase('gh_cluster');
    const config = (node: string, p: Record<ListenerName, number>): string => {
      const cfg = parseYaml(readFileSync(join(ROOT, 'deploy/cluster.yaml'), 'utf8'));
      const moved = (path: string): string => join(volume, path.replace(/^\/var\/lib\/gatehouse\//, ''));
      Object.assign(cfg, {
        data: moved(cfg.data), certs: moved(cfg.certs), auditKeyFile: moved(cfg.auditKeyFile), policies, store: url, nodeName: node,
        listen: Object.fromEntries(Object.entries(cfg.listen as Record<string, string>).map(([n, a]) => [n, a.replace(/:\d+$/, `:${p[n as keyof typeof p]}`)])),
      });
      const file = join(work, `${node}.yaml`);
      writeFileSync(file, stringifyYaml(cfg));
      return file;
    };
    const healthcheck = (api: number) => run(process.execPath, [join(ROOT, 'deploy/healthcheck.mjs')], {
      env: cleanEnv({ GATEHOUSE_HEALTH_URL: `https://127.0.0.1:${api}/healthz`, GATEHOUSE_HEALTH_CA: join(volume, 'certs/ca.pem') }),
    });

    const { s: a, p: pa } = await serveOnFreePorts(bin, (p) => ['--config', config('gatehouse-a', p)], app);
    running.push(a);
    // HTTPS on 0.0.0.0: the healthcheck speaks TLS to it and verifies the gateway certificate.
    await healthcheck(pa.api);
    const ca = readFileSync(join(volume, 'certs/ca.pem'), 'utf8');
    const masterKey = readFileSync(join(volume, 'data/master.key'), 'utf8');

    const { s: b, p: pb } = await serveOnFreePorts(bin, (p) => ['--config', config('gatehouse-b', p)], app);
    running.push(b);
    await healthcheck(pb.api);
    expect(readFileSync(join(volume, 'certs/ca.pem'), 'utf8')).toBe(ca);
    expect(readFileSync(join(volume, 'data/master.key'), 'utf8')).toBe(masterKey);
    expect(existsSync(join(volume, 'data/audit.key'))).toBe(true);
    const san = new X509Certificate(readFileSync(join(volume, 'certs/gateway.pem'))).subjectAltName ?? '';
    expect(san).toContain('DNS:gatehouse-a');
    expect(san).toContain('DNS:gatehouse-b');
    const index = await get(`https://127.0.0.1:${pb.api}/`, ca);
    expect(index.status).toBe(200);
    expect(index.body).toContain('/assets/app-');
    // The healthcheck trusts this gateway's CA only: another gateway's CA fails it.
    await expect(run(process.execPath, [join(ROOT, 'deploy/healthcheck.mjs')], {
      env: cleanEnv({ GATEHOUSE_HEALTH_URL: `https://127.0.0.1:${pb.api}/healthz`, GATEHOUSE_HEALTH_CA: join(work, 'sqlite-data/certs/ca.pem') }),
    })).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining('healthcheck:') });
    await b.stop();
    await a.stop();
  });
});
