/**
 * What the built CLI loads at start-up. `gatehouse --version` took 0.6 s because the CLI
 * imported the whole gateway; each command's code now loads only when it runs
 * (src/cli/commands/* register the command line, src/cli/actions/* do the work), and the
 * server side (the gateway, the store, the doors, the API, pino) only for `serve`.
 *
 * Runs bin/gatehouse.js on dist/ like the e2e tests (`npm test` builds first), with an ESM
 * resolve hook that writes down every module URL Node resolves.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../../..');
const BIN = join(ROOT, 'bin', 'gatehouse.js');
const DIST = pathToFileURL(join(ROOT, 'dist')).href;
const NODE_MODULES = pathToFileURL(join(ROOT, 'node_modules')).href;
const work = mkdtempSync(join(tmpdir(), 'gh-cli-startup-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Registered with --import: records each resolved URL in the file named by GATEHOUSE_IMPORT_LOG. */
const RECORDER = join(work, 'record-imports.mjs');
writeFileSync(
  RECORDER,
  `import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(\`
import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(process.env.GATEHOUSE_IMPORT_LOG, result.url + '\\\\n');
  return result;
}\`));
`,
);

interface Loaded {
  status: number | null;
  stdout: string;
  stderr: string;
  /** Modules of this project under dist/, e.g. `src/cli/main.js`. */
  modules: string[];
  /** Packages from node_modules, by name. */
  packages: string[];
}

let runs = 0;
function gatehouse(...args: string[]): Loaded {
  const log = join(work, `imports-${++runs}.txt`);
  writeFileSync(log, '');
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: work, GATEHOUSE_HOME: join(work, 'home'), GATEHOUSE_IMPORT_LOG: log };
  const r = spawnSync(process.execPath, ['--import', pathToFileURL(RECORDER).href, BIN, ...args], { encoding: 'utf8', env, timeout: 30_000 });
  const urls = [...new Set(readFileSync(log, 'utf8').split('\n').filter(Boolean))];
  const modules = urls.filter((u) => u.startsWith(`${DIST}/`)).map((u) => u.slice(DIST.length + 1));
  const packages = [...new Set(urls.filter((u) => u.startsWith(`${NODE_MODULES}/`)).map((u) => {
    const parts = u.slice(NODE_MODULES.length + 1).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }))].sort();
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, modules, packages };
}

/** The server side: none of it belongs in a command that is not `serve`. */
const SERVER_MODULES = [
  /^src\/gateway\.js$/, /^src\/adapters\.js$/, /^src\/(store|api|broker|audit|events|notify|pki|secrets|web|workflow)\//,
  /^protocols\/(?!registry\.js$)/, /^src\/cli\/actions\/serve\.js$/,
];
const SERVER_PACKAGES = ['better-sqlite3', 'pg', 'pino', 'pino-pretty', 'prom-client', 'ssh2', 'ws', 'zod', 'yaml', 'node-forge', 'otplib', 'qrcode', 're2js'];

function serverSide(l: Loaded): string[] {
  return [...l.modules.filter((m) => SERVER_MODULES.some((re) => re.test(m))), ...l.packages.filter((p) => SERVER_PACKAGES.includes(p))];
}

describe('what the CLI loads to start', () => {
  it('gatehouse --version loads no server module, no command code and no package but commander and luxon', () => {
    const r = gatehouse('--version');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
    expect(r.modules).toContain('src/cli/main.js');
    expect(serverSide(r)).toEqual([]);
    expect(r.modules.filter((m) => m.startsWith('src/cli/actions/'))).toEqual([]);
    expect(r.packages.filter((p) => p !== 'commander' && p !== 'luxon')).toEqual([]);
  });

  it('gatehouse --help lists every command from the same light start', () => {
    const r = gatehouse('--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^ {2}serve \[options\] /m);
    expect(r.stdout).toMatch(/^ {2}resources \[options\] /m);
    expect(serverSide(r)).toEqual([]);
    expect(r.modules.filter((m) => m.startsWith('src/cli/actions/'))).toEqual([]);
  });

  it('gatehouse resources loads its own code and the API client, and no other command', () => {
    const r = gatehouse('resources', '--json', '--server', 'http://127.0.0.1:1');
    // Nothing listens on port 1: the command ran as far as the network, then said so.
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^gatehouse: cannot reach the gateway at http:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/);
    expect(r.modules.filter((m) => m.startsWith('src/cli/actions/'))).toEqual(['src/cli/actions/resources.js']);
    expect(r.modules).toContain('src/cli/client.js');
    expect(serverSide(r)).toEqual([]);
  });

  it('gatehouse serve --help describes serve without loading the gateway', () => {
    const r = gatehouse('serve', '--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('--log-format <format>');
    expect(serverSide(r)).toEqual([]);
  });

  it('the recorder sees the server side when serve does load it', () => {
    // A bad flag value fails inside the serve action, after the gateway's modules are loaded:
    // proof that the checks above would notice them.
    const r = gatehouse('serve', '--listen', 'nowhere=1.2.3.4:5');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^gatehouse: --listen nowhere=1\.2\.3\.4:5: use NAME=HOST:PORT/);
    expect(r.modules).toContain('src/gateway.js');
    expect(r.packages).toContain('pino');
  });
});
