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

export type TargetKind = 'sshd' | 'postgres' | 'mariadb' | 'slapd';

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

const slapdSchema = z.object({
  ...base,
  ...tls,
  kind: z.literal('slapd'),
  /** ldaps:// port; `port` is plain ldap:// (and StartTLS). */
  ldapsPort: z.number().int().positive(),
  baseDn: z.string(),
  peopleDn: z.string(),
  restrictedDn: z.string(),
  referralDn: z.string(),
  /** uid entries under peopleDn (0 for a proxy). */
  entries: z.number().int().nonnegative(),
  /** The rootdn and its password ('' for a proxy). */
  superuser: z.string(),
  superuserPassword: z.string(),
  /** Logged once per successful simple bind of `user`, never for a failed one. */
  bindLine: z.string().min(1),
  config: z.string(),
  /** The upstream URI of a back-ldap proxy (startSlapdProxy); null for a directory. */
  proxyOf: z.string().nullable(),
});

interface Stoppable {
  /** Kills the server (and, for sshd, its live sessions) and removes its dir. Idempotent. */
  stop(): Promise<void>;
}

export type SshdTarget = z.infer<typeof sshdSchema> & Stoppable;
export type PostgresTarget = z.infer<typeof postgresSchema> & Stoppable;
export type MariadbTarget = z.infer<typeof mariadbSchema> & Stoppable;
export type SlapdTarget = z.infer<typeof slapdSchema> & Stoppable;
export type Target = SshdTarget | PostgresTarget | MariadbTarget | SlapdTarget;

export interface SlapdStartOptions extends StartOptions {
  /** Fixed ldaps:// port; default: a free loopback port. */
  ldapsPort?: number;
}

export interface SlapdProxyOptions extends SlapdStartOptions {
  /** Reported back as `user`/`password` (the proxy passes binds through; it has no accounts). */
  user?: string;
  password?: string;
  /** CA of the upstream: the proxy then talks StartTLS (ldaps for an ldaps:// URI) to it, verified. */
  upstreamCa?: string;
}

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

/** A private OpenLDAP slapd with the sample tree (see README.md). */
export function startSlapd(options: SlapdStartOptions = {}): Promise<SlapdTarget> {
  return start('slapd', slapdSchema, options, { env: { TARGET_LDAPS_PORT: options.ldapsPort?.toString() } });
}

/** OpenLDAP's own LDAP proxy (back-ldap) in front of `upstreamUri`, e.g. a startSlapd() target. */
export function startSlapdProxy(upstreamUri: string, opts: SlapdProxyOptions = {}): Promise<SlapdTarget> {
  return start('slapd', slapdSchema, opts, {
    command: ['proxy', upstreamUri],
    env: {
      TARGET_LDAPS_PORT: opts.ldapsPort?.toString(),
      SLAPD_PROXY_USER: opts.user,
      SLAPD_PROXY_PASSWORD: opts.password,
      SLAPD_PROXY_UPSTREAM_CA: opts.upstreamCa,
    },
  });
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

/**
 * How a start script is called beyond `start [DIR]`: another command before DIR (slapd.sh
 * `proxy URI`), and script-specific environment variables; an undefined one is removed from
 * the inherited environment, so a value exported by the caller's shell never leaks in.
 */
interface ScriptCall {
  command?: string[];
  env?: Record<string, string | undefined>;
}

async function start<S extends z.ZodType<{ kind: TargetKind; dir: string }>>(
  kind: TargetKind,
  schema: S,
  options: StartOptions,
  call: ScriptCall = {},
): Promise<z.infer<S> & Stoppable> {
  const args = [scriptPath(kind), ...(call.command ?? ['start'])];
  if (options.dir !== undefined) args.push(options.dir);
  const env = { ...process.env };
  for (const [name, value] of Object.entries({ ...call.env, TARGET_PORT: options.port?.toString() })) {
    if (value !== undefined) env[name] = value;
    else delete env[name];
  }

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
