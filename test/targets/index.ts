/**
 * Typed handles on the real servers started by the scripts beside this file. Protocol tests
 * and benchmarks call these from `beforeAll` and `stop()` them in `afterAll`:
 *
 *   let pg: PostgresTarget;
 *   beforeAll(async () => { pg = await startPostgres(); });
 *   afterAll(async () => { await pg?.stop(); });
 *
 * Each start is an independent instance (own temp dir, own loopback port), so test files
 * running in parallel never share a server.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

const SCRIPTS_DIR = fileURLToPath(new URL('.', import.meta.url));
/**
 * Under vitest the packages are installed by globalSetup (install.sh) before any test; a
 * start outside it may still have to apt-get install the server first, or wait for the
 * install lock while another process does.
 */
const START_TIMEOUT_MS = 300_000;
const STOP_TIMEOUT_MS = 30_000;

export type TargetKind = 'sshd' | 'postgres' | 'mariadb';

export interface StartOptions {
  /** Fixed port; default: a free loopback port picked by the script. */
  port?: number;
  /** Instance directory; default: a fresh `mktemp -d`. Removed by `stop()`. */
  dir?: string;
}

const base = {
  host: z.string(),
  port: z.number().int().positive(),
  pid: z.number().int().positive(),
  dir: z.string(),
  user: z.string(),
  password: z.string(),
  log: z.string(),
  version: z.string(),
};

const sshdSchema = z.object({
  ...base,
  kind: z.literal('sshd'),
  clientKey: z.string(),
  clientPublicKey: z.string(),
  hostKey: z.string(),
  hostKeyFingerprint: z.string().startsWith('SHA256:'),
  knownHosts: z.string(),
  config: z.string(),
});

const tls = { ca: z.string(), cert: z.string(), key: z.string() };

const postgresSchema = z.object({
  ...base,
  ...tls,
  kind: z.literal('postgres'),
  database: z.string(),
  md5User: z.string(),
  md5Password: z.string(),
  superuser: z.string(),
  superuserPassword: z.string(),
  socketDir: z.string(),
});

const mariadbSchema = z.object({
  ...base,
  ...tls,
  kind: z.literal('mariadb'),
  database: z.string(),
  authPlugin: z.string(),
  ed25519User: z.string(),
  ed25519Password: z.string(),
  /** Always null on MariaDB: it has no caching_sha2_password server plugin. */
  sha2User: z.null(),
  sha2Note: z.string(),
  superuser: z.string(),
  superuserPassword: z.string(),
  socket: z.string(),
  config: z.string(),
});

interface Stoppable {
  /** Kills the server (and, for sshd, its live sessions) and removes its dir. Idempotent. */
  stop(): Promise<void>;
}

export type SshdTarget = z.infer<typeof sshdSchema> & Stoppable;
export type PostgresTarget = z.infer<typeof postgresSchema> & Stoppable;
export type MariadbTarget = z.infer<typeof mariadbSchema> & Stoppable;
export type Target = SshdTarget | PostgresTarget | MariadbTarget;

export class TargetStartError extends Error {
  readonly kind: TargetKind;
  readonly stderr: string;
  constructor(kind: TargetKind, message: string, stderr: string, cause?: unknown) {
    super(`${kind} target: ${message}${stderr ? `\n${stderr.trimEnd()}` : ''}`);
    this.name = 'TargetStartError';
    this.kind = kind;
    this.stderr = stderr;
    if (cause !== undefined) this.cause = cause;
  }
}

/** A loopback port nobody listens on right now (the kernel's pick, so parallel callers differ). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not read the bound port'));
      });
    });
  });
}

export function startSshd(options: StartOptions = {}): Promise<SshdTarget> {
  return start('sshd', sshdSchema, options);
}

export function startPostgres(options: StartOptions = {}): Promise<PostgresTarget> {
  return start('postgres', postgresSchema, options);
}

export function startMariadb(options: StartOptions = {}): Promise<MariadbTarget> {
  return start('mariadb', mariadbSchema, options);
}

function scriptPath(kind: TargetKind): string {
  return `${SCRIPTS_DIR}${kind}.sh`;
}

/**
 * Targets still running when the process exits: a test file that crashed before its
 * afterAll must not leave servers behind. execFileSync is one of the few things an
 * 'exit' listener may still do.
 */
const live = new Map<string, TargetKind>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const [dir, kind] of live) {
      try {
        execFileSync('bash', [scriptPath(kind), 'stop', dir], { stdio: 'ignore', timeout: STOP_TIMEOUT_MS });
      } catch {
        // Best effort on the way out; nothing is left to report to.
      }
    }
  });
}

async function start<S extends z.ZodType<{ kind: TargetKind; dir: string }>>(
  kind: TargetKind,
  schema: S,
  options: StartOptions,
): Promise<z.infer<S> & Stoppable> {
  const args = [scriptPath(kind), 'start'];
  if (options.dir !== undefined) args.push(options.dir);
  const env = { ...process.env };
  if (options.port !== undefined) env.TARGET_PORT = String(options.port);
  else delete env.TARGET_PORT;

  const { stdout, stderr } = await run(kind, args, env);
  const line = stdout.trim().split('\n').at(-1) ?? '';
  let parsed: z.infer<S>;
  try {
    parsed = schema.parse(JSON.parse(line));
  } catch (err) {
    throw new TargetStartError(kind, `unexpected script output: ${line}`, stderr, err);
  }

  installExitHook();
  live.set(parsed.dir, kind);
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= run(kind, [scriptPath(kind), 'stop', parsed.dir], process.env, STOP_TIMEOUT_MS).then(() => {
      live.delete(parsed.dir);
    });
    return stopping;
  };
  return { ...parsed, stop };
}

function run(
  kind: TargetKind,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeout = START_TIMEOUT_MS,
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile('bash', args, { env, timeout, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve({ stdout, stderr });
      const how = err.killed ? `timed out after ${timeout} ms` : `exited with ${String(err.code ?? err.signal)}`;
      reject(new TargetStartError(kind, `${args[1] ?? 'start'} ${how}`, stderr, err));
    });
  });
}
