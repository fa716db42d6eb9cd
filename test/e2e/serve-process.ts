/**
 * `gatehouse serve` as a child process on a PostgreSQL store, the way an operator runs a
 * cluster node: the built binary (bin/gatehouse.js → dist/), its own data directory, the
 * cluster's shared keys in the environment. It can be killed with SIGKILL and started again
 * on the same data directory.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ListenerNames } from '../../src/core/config.js';
import { freePort, onFreePorts } from '../targets/index.js';
import { AUDIT_KEY, MASTER_KEY } from './cluster-harness.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BIN = join(ROOT, 'bin/gatehouse.js');

/** The environment for a `gatehouse` process: this one's without GATEHOUSE_* (each test sets its own), in UTC. */
export function cliEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GATEHOUSE_')) env[k] = v;
  return { ...env, TZ: 'UTC', ...extra };
}
const BUILT = join(ROOT, 'dist/src/cli/main.js');

/** Builds dist/ when it is missing or older than any source file (npm test builds first anyway). */
export function ensureBuilt(): void {
  const newest = (dir: string): number => {
    let t = 0;
    if (!existsSync(dir)) return t;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      t = Math.max(t, e.isDirectory() ? newest(p) : e.name.endsWith('.ts') ? statSync(p).mtimeMs : 0);
    }
    return t;
  };
  if (existsSync(BUILT) && statSync(BUILT).mtimeMs >= Math.max(newest(join(ROOT, 'src')), newest(join(ROOT, 'protocols')))) return;
  spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, stdio: 'ignore' });
  if (!existsSync(BUILT)) throw new Error('npm run build did not produce dist/src/cli/main.js');
}

export interface ServeOptions {
  name: string;
  storeUrl: string;
  dataDir: string;
  adminPasswordFile: string;
}

export class ServeProcess {
  private child: ChildProcess | undefined;
  private output = '';
  apiPort = 0;
  postgresPort = 0;

  constructor(private readonly opts: ServeOptions) {}

  get api(): string {
    return `http://127.0.0.1:${this.apiPort}`;
  }

  get caPath(): string {
    return join(this.opts.dataDir, 'certs', 'ca.pem');
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * Starts the node and resolves once /healthz answers. Its ports stay fixed, so a restarted
   * node is found where it was; on the first start they are new, and one taken by another test
   * between the check and the listen (EADDRINUSE) makes it start again on others, up to five times.
   */
  async start(): Promise<void> {
    if (this.apiPort) return this.launch();
    return onFreePorts(async () => {
      this.apiPort = await freePort();
      do this.postgresPort = await freePort();
      while (this.postgresPort === this.apiPort);
      return this.launch();
    });
  }

  private async launch(): Promise<void> {
    mkdirSync(this.opts.dataDir, { recursive: true });
    const listen = ListenerNames.map((n) => `${n}=127.0.0.1:${n === 'api' ? this.apiPort : n === 'postgres' ? this.postgresPort : 0}`);
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GATEHOUSE_')) env[k] = v;
    Object.assign(env, { GATEHOUSE_MASTER_KEY: MASTER_KEY, GATEHOUSE_AUDIT_KEY: AUDIT_KEY, GATEHOUSE_LOG_FORMAT: 'json', TZ: 'UTC' });
    const args = [BIN, 'serve', '--data', this.opts.dataDir, '--store', this.opts.storeUrl, '--admin-password-file', this.opts.adminPasswordFile, ...listen.flatMap((l) => ['--listen', l])];
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.output = '';
    const keep = (d: Buffer): void => {
      this.output = (this.output + d.toString()).slice(-20_000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    let gone = false;
    const exited = new Promise<never>((_, reject) => child.once('exit', (code, signal) => {
      gone = true;
      reject(new Error(`node ${this.opts.name} exited (${code ?? signal}) while starting:\n${this.output}`));
    }));
    await Promise.race([this.healthy(() => gone), exited]);
  }

  /** SIGKILL: no shutdown path runs, whatever the node was doing. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGKILL');
    await gone;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    await gone;
  }

  log(): string {
    return this.output;
  }

  /** Polls /healthz (a starting process has nothing else to wait on) for up to 60 s, or until the process is gone. */
  private async healthy(gone: () => boolean): Promise<void> {
    const until = performance.now() + 60_000;
    while (performance.now() < until) {
      if (gone()) return;
      try {
        const r = await fetch(`${this.api}/healthz`);
        if (r.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`node ${this.opts.name} did not become healthy:\n${this.output}`);
  }
}
