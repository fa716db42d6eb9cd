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

export type TargetKind =
  | 'sshd'
  | 'postgres'
  | 'mariadb'
  | 'slapd'
  | 'webapp'
  | 'nginx'
  | 'adminer'
  | 'rdp'
  | 'redis';

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

const webappSchema = z.object({
  ...base,
  kind: z.literal('webapp'),
  /** The app's bearer token (`/bearer`) and X-Api-Key (`/header`); `user`/`password` serve `/login` and `/basic`. */
  token: z.string(),
  scheme: z.enum(['http', 'https']),
  /** CA of the app's certificate when `scheme` is https; null for plain http. */
  ca: z.string().nullable(),
  /** `scheme://127.0.0.1:port`, no trailing slash. */
  url: z.string(),
});

const nginxSchema = z.object({
  ...base,
  ...tls,
  kind: z.literal('nginx'),
  /** `https://127.0.0.1:port`; `tcp://127.0.0.1:port` for a stream relay (no TLS: `ca`, `cert`, `key` and `accessLog` are ''). */
  url: z.string(),
  accessLog: z.string(),
  config: z.string(),
  /** The upstream URL of a reverse proxy (startNginxProxy), HOST:PORT of a stream relay (startNginxStream); null for the basic-auth site. */
  proxyOf: z.string().nullable(),
});

const adminerSchema = z.object({
  ...base,
  kind: z.literal('adminer'),
  /** `http://127.0.0.1:port/`: the login form. */
  url: z.string(),
  /** The login form's `auth[driver]` for MySQL/MariaDB. */
  driver: z.literal('server'),
  /** The login form's `auth[server]`: `dbHost:dbPort`. */
  server: z.string(),
  dbHost: z.string(),
  dbPort: z.number().int().positive(),
  /** The login form's `auth[db]` ('' when not given: Adminer then lists the databases). */
  database: z.string(),
  errorLog: z.string(),
});

const rdpSchema = z.object({
  ...base,
  kind: z.literal('rdp'),
  /** Always '' (the SAM entry has no domain, which matches any domain the client sends). */
  domain: z.string(),
  /** Always `nla`: the server offers NLA only, so every login is checked before a session exists. */
  security: z.literal('nla'),
  /** The SAM file (`USER:DOMAIN:LMHASH:NTHASH:::`), read again for every login. */
  sam: z.string(),
  /** The Xvfb display the shadow server shares, e.g. `:3`; with `xauthority`, an X display for xfreerdp. */
  display: z.string().regex(/^:\d+$/),
  xauthority: z.string(),
  xvfbPid: z.number().int().positive(),
  /** The shadow server's self-signed certificate (CN = the machine's host name, no SAN). */
  cert: z.string(),
  /** `sha256:aa:bb:…`: `/cert:fingerprint:${certFingerprint}` pins it in xfreerdp. */
  certFingerprint: z.string().regex(/^sha256:([0-9a-f]{2}:){31}[0-9a-f]{2}$/),
  /** Logged once per login that passed NLA. */
  acceptLine: z.string().min(1),
  /** Logged once per login refused by NLA (wrong user or password). */
  refuseLine: z.string().min(1),
  xvfbLog: z.string(),
});

const redisSchema = z.object({
  ...base,
  kind: z.literal('redis'),
  /** Always `default`: requirepass is the default user's password (`AUTH password` or `AUTH default password`). */
  user: z.literal('default'),
  config: z.string(),
});

interface Stoppable {
  /** Kills the server (and, for sshd, its live sessions; for rdp, its Xvfb) and removes its dir. Idempotent. */
  stop(): Promise<void>;
}

export type SshdTarget = z.infer<typeof sshdSchema> & Stoppable;
export type PostgresTarget = z.infer<typeof postgresSchema> & Stoppable;
export type MariadbTarget = z.infer<typeof mariadbSchema> & Stoppable;
export type SlapdTarget = z.infer<typeof slapdSchema> & Stoppable;
export type WebappTarget = z.infer<typeof webappSchema> & Stoppable;
export type NginxTarget = z.infer<typeof nginxSchema> & Stoppable;
export type AdminerTarget = z.infer<typeof adminerSchema> & Stoppable;
export type RdpTarget = z.infer<typeof rdpSchema> & Stoppable;
export type RedisTarget = z.infer<typeof redisSchema> & Stoppable;
export type Target =
  | SshdTarget
  | PostgresTarget
  | MariadbTarget
  | SlapdTarget
  | WebappTarget
  | NginxTarget
  | AdminerTarget
  | RdpTarget
  | RedisTarget;

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

export interface WebappStartOptions extends StartOptions {
  /** HTTPS with a throwaway CA (`ca`); default plain http. */
  tls?: boolean;
  /** Default `webuser`. */
  user?: string;
  /** Default: random. */
  password?: string;
  /** Bearer token and X-Api-Key; default: random. */
  token?: string;
}

export interface NginxStartOptions extends StartOptions {
  /** nginx `worker_processes`; default `auto` (one per core). */
  workers?: number;
}

export interface NginxProxyOptions extends NginxStartOptions {
  /** CA of an https:// upstream, which is verified against it (required for https). */
  upstreamCa?: string;
}

export interface AdminerStartOptions extends StartOptions {
  /**
   * The database Adminer is to log in to (a startMariadb() target fits), only reported back as
   * `server`, `user`, `password`, `database`: the login form names the server, not the config.
   */
  db?: { host: string; port: number; user?: string; password?: string; database?: string };
  /** PHP_CLI_SERVER_WORKERS; default 4. */
  workers?: number;
}

export interface RdpStartOptions extends StartOptions {
  /** Default `rdpuser`. */
  user?: string;
  /** Default: random. */
  password?: string;
  /** Xvfb's `-screen 0` geometry; default `1024x768x24`. */
  screen?: string;
}

export interface RedisStartOptions extends StartOptions {
  /** requirepass; default: random. */
  password?: string;
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

/**
 * Runs `start`, which listens on ports it asks freePort() for (or a target script picks). A port
 * free when asked for can be taken by another listener before the listen (portTaken): `start`
 * runs again, on new ports, up to `attempts` times in all.
 */
export async function onFreePorts<T>(start: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (e) {
      if (attempt >= attempts || !portTaken(e)) throw e;
    }
  }
}

/**
 * Whether a start failed on a port taken meanwhile: Node says EADDRINUSE, a target script's own
 * check "is already in use", a server's log (the script prints it when the server exits early,
 * and TargetStartError's message carries it) "Address already in use".
 */
export function portTaken(err: unknown): boolean {
  return err instanceof Error && /EADDRINUSE|Address already in use|is already in use/.test(err.message);
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

/** The project's own web app (webapp.mjs): login form, basic/bearer/header auth, echo, WebSocket, SSE. */
export function startWebapp(opts: WebappStartOptions = {}): Promise<WebappTarget> {
  return start('webapp', webappSchema, opts, {
    env: {
      WEBAPP_TLS: opts.tls ? '1' : undefined,
      WEBAPP_USER: opts.user,
      WEBAPP_PASSWORD: opts.password,
      WEBAPP_TOKEN: opts.token,
    },
  });
}

/** A private nginx over TLS: a static page and /private/ behind auth_basic (`user`/`password`). */
export function startNginx(opts: NginxStartOptions = {}): Promise<NginxTarget> {
  return start('nginx', nginxSchema, opts, { env: { NGINX_WORKERS: opts.workers?.toString() } });
}

/** nginx as a TLS reverse proxy to `upstreamUrl` (http[s]://host:port) with upstream keep-alive. */
export function startNginxProxy(upstreamUrl: string, opts: NginxProxyOptions = {}): Promise<NginxTarget> {
  return start('nginx', nginxSchema, opts, {
    command: ['proxy', upstreamUrl],
    env: { NGINX_WORKERS: opts.workers?.toString(), NGINX_PROXY_UPSTREAM_CA: opts.upstreamCa },
  });
}

/** nginx's stream module as a plaintext TCP relay to `upstream` (HOST:PORT): a relay written in C, for benchmarks. */
export function startNginxStream(upstream: string, opts: NginxStartOptions = {}): Promise<NginxTarget> {
  return start('nginx', nginxSchema, opts, { command: ['stream', upstream], env: { NGINX_WORKERS: opts.workers?.toString() } });
}

/** Adminer (PHP's built-in server) whose login form is to be posted to `db`, e.g. a startMariadb() target. */
export function startAdminer(opts: AdminerStartOptions = {}): Promise<AdminerTarget> {
  return start('adminer', adminerSchema, opts, {
    env: {
      ADMINER_DB_HOST: opts.db?.host,
      ADMINER_DB_PORT: opts.db?.port.toString(),
      ADMINER_DB_USER: opts.db?.user,
      ADMINER_DB_PASSWORD: opts.db?.password,
      ADMINER_DB_NAME: opts.db?.database,
      ADMINER_WORKERS: opts.workers?.toString(),
    },
  });
}

/**
 * FreeRDP's shadow server on its own Xvfb: an RDP server that checks the password (NLA against a
 * SAM file) and refuses a wrong one before any session exists. See README.md for xfreerdp.
 */
export function startRdp(opts: RdpStartOptions = {}): Promise<RdpTarget> {
  return start('rdp', rdpSchema, opts, {
    env: { RDP_USER: opts.user, RDP_PASSWORD: opts.password, RDP_SCREEN: opts.screen },
  });
}

/** A private redis-server with requirepass and no persistence (never Debian's own on 6379). */
export function startRedis(opts: RedisStartOptions = {}): Promise<RedisTarget> {
  return start('redis', redisSchema, opts, { env: { REDIS_PASSWORD: opts.password } });
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

  // A port the script picked may be lost before the server binds it; one asked for is never moved.
  const { stdout, stderr } = options.port === undefined ? await onFreePorts(() => run(kind, args, env), PORT_ATTEMPTS) : await run(kind, args, env);
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

/** How many times in all a target start runs on a port its script picked (onFreePorts). */
const PORT_ATTEMPTS = 3;

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
