import { doorFor, type ClientInvocation } from '../../protocols/registry.js';
import type { LaunchResponse } from '../api/wire.js';
import type { Protocol, Resource } from '../core/model.js';
import { CliError } from './cli-error.js';

/**
 * What `gatehouse connect` starts, decided on this side. The gateway's answer names a
 * program, its arguments and an environment, and the CLI runs them with the user's rights:
 * taken as given, a hostile or compromised gateway runs anything (`sh -c`, `LD_PRELOAD`, a
 * psql `\!`, an ssh `ProxyCommand`, a mysql `--plugin-dir`). So the program comes from the
 * protocol and this allow-list, the arguments are accepted only when they are exactly what
 * the door registry builds from plain facts (host, port, login, database, CA file) checked
 * here, and the environment gets only the ticket variable that door uses.
 */

/**
 * The stock clients by protocol (the gateway may pick among them, nothing else) and the one
 * variable that carries the ticket to each (ssh reads none: keys or the password prompt).
 */
interface StockClientRule {
  programs: readonly string[];
  ticketVar?: string;
  /** The client reads the ticket from standard input (OpenLDAP's -y /dev/stdin). */
  ticketOnStdin?: boolean;
  /** The variable naming the gateway's CA file (checked like a CA argument). */
  caVar?: string;
}
const CLIENTS: ReadonlyMap<string, StockClientRule> = new Map<Protocol, StockClientRule>([
  ['postgres', { programs: ['psql'], ticketVar: 'PGPASSWORD' }],
  ['mysql', { programs: ['mysql', 'mariadb'], ticketVar: 'MYSQL_PWD' }],
  ['ssh', { programs: ['ssh'] }],
  ['ldap', { programs: ['ldapsearch'], ticketOnStdin: true, caVar: 'LDAPTLS_CACERT' }],
  // A browser resource: the enter link (with its one-time ticket) handed to the desktop's opener.
  ['http', { programs: ['xdg-open'] }],
]);

/** What an invocation is built from; each part is checked against what it may look like. */
interface Facts {
  host: string;
  port: number;
  user: string;
  resource: string;
  database?: string;
  caPath?: string;
  baseDn?: string;
  appsDomain?: string;
}

const HOST_RE = /^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$/;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const DATABASE_RE = /^[A-Za-z0-9_][A-Za-z0-9_.$-]*$/;
const PATH_RE = /^[A-Za-z0-9_./][A-Za-z0-9_./+@-]*$/;
/** A DN as ldapsearch's -b takes it: no option-like start, no control characters. */
// eslint-disable-next-line no-control-regex
const DN_RE = /^[A-Za-z0-9][^\u0000-\u001f\u007f]*$/;

/** The arguments as each door's registry entry lays them out, read back into facts. */
const PARSERS: Record<string, (args: readonly string[]) => Facts | undefined> = {
  ssh: (args) => {
    const [flag, port, dest, ...rest] = args;
    const m = /^([^@]*)@([^@]*)$/.exec(dest ?? '');
    if (flag !== '-p' || rest.length > 0 || !m) return undefined;
    return login(m[1]!, { host: m[2]!, port: Number(port) });
  },
  postgres: (args) => {
    if (args.length !== 1) return undefined;
    const kv = new Map<string, string>();
    for (const pair of args[0]!.split(' ')) {
      const eq = pair.indexOf('=');
      if (eq <= 0 || kv.has(pair.slice(0, eq))) return undefined;
      kv.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
    const f = login(kv.get('user') ?? '', { host: kv.get('host') ?? '', port: Number(kv.get('port')) });
    if (!f) return undefined;
    f.database = kv.get('dbname') ?? '';
    if (kv.has('sslrootcert')) f.caPath = kv.get('sslrootcert')!;
    return f;
  },
  mysql: (args) => {
    const [h, host, p, port, u, user, ...rest] = args;
    if (h !== '-h' || p !== '-P' || u !== '-u') return undefined;
    const f = login(user ?? '', { host: host ?? '', port: Number(port) });
    if (!f) return undefined;
    if (rest[0]?.startsWith('--ssl-ca=')) f.caPath = rest.shift()!.slice('--ssl-ca='.length);
    if (rest.length === 1) f.database = rest[0]!;
    return rest.length <= 1 ? f : undefined;
  },
  http: (args) => {
    if (args.length !== 1) return undefined;
    let url: URL;
    try {
      url = new URL(args[0]!);
    } catch {
      return undefined;
    }
    const dot = url.hostname.indexOf('.');
    if (url.protocol !== 'https:' || url.pathname !== '/.gatehouse/enter' || dot <= 0 || url.username || url.password || url.hash) return undefined;
    const user = url.searchParams.get('user') ?? '';
    return { host: url.hostname, port: Number(url.port || 443), user, resource: url.hostname.slice(0, dot), appsDomain: url.hostname.slice(dot + 1) };
  },
  ldap: (args) => {
    const [x, zz, h, uri, d, user, y, file, ...rest] = args;
    const m = /^ldap:\/\/\[?([^\]]*)\]?:([0-9]+)$/.exec(uri ?? '');
    if (x !== '-x' || zz !== '-ZZ' || h !== '-H' || d !== '-D' || y !== '-y' || file !== '/dev/stdin' || !m) return undefined;
    const f = login(user ?? '', { host: m[1]!, port: Number(m[2]) });
    if (!f) return undefined;
    if (rest.length === 2 && rest[0] === '-b') f.baseDn = rest[1]!;
    else if (rest.length > 0) return undefined;
    return f;
  },
};

/** `alice:prod-pg` into user and resource. */
function login(text: string, at: { host: string; port: number }): Facts | undefined {
  const colon = text.indexOf(':');
  if (colon < 0) return undefined;
  return { ...at, user: text.slice(0, colon), resource: text.slice(colon + 1) };
}

function factsOk(f: Facts): boolean {
  return (
    HOST_RE.test(f.host) && Number.isInteger(f.port) && f.port >= 1 && f.port <= 65535 &&
    NAME_RE.test(f.user) && NAME_RE.test(f.resource) &&
    (f.database === undefined || DATABASE_RE.test(f.database)) &&
    (f.caPath === undefined || PATH_RE.test(f.caPath)) &&
    (f.baseDn === undefined || DN_RE.test(f.baseDn)) &&
    (f.appsDomain === undefined || HOST_RE.test(f.appsDomain))
  );
}

function refuse(reason: string): CliError {
  return new CliError('UNSAFE_CLIENT', `refusing to start the client the gateway asked for: ${reason}`);
}

const show = (args: unknown): string => {
  const text = JSON.stringify(args);
  return text.length > 160 ? `${text.slice(0, 157)}...` : text;
};

/**
 * The program, arguments and environment additions `connect` starts for a launch answer
 * with an invocation, or a CliError (UNSAFE_CLIENT) saying what in the answer was refused.
 * The caller adds the environment to the user's own.
 */
export function stockClient(res: LaunchResponse): ClientInvocation {
  const inv = res.invocation;
  if (!inv || typeof inv !== 'object') throw refuse('the answer has no client invocation');
  const client = CLIENTS.get(res.protocol);
  const door = client ? doorFor(res.protocol) : undefined;
  const parse = PARSERS[res.protocol];
  if (!client || !door || !parse) throw refuse(`connect starts no client for ${String(res.protocol)} resources`);
  if (typeof inv.program !== 'string' || !client.programs.includes(inv.program)) {
    throw refuse(`${String(inv.program)} is not a client for ${res.protocol} (connect starts ${client.programs.join(' or ')})`);
  }
  if (typeof res.ticket !== 'string' || res.ticket === '') throw refuse('the answer has no ticket');

  // The environment first: it is what LD_PRELOAD, PSQL_PAGER and friends ride in on.
  const env: unknown = inv.env ?? {};
  if (typeof env !== 'object' || env === null || Array.isArray(env)) throw refuse('its environment is not a set of variables');
  const allowed = [client.ticketVar, client.caVar].filter((k): k is string => k !== undefined);
  const extra = Object.keys(env).filter((k) => !allowed.includes(k));
  if (extra.length > 0) throw refuse(`it sets ${extra.join(', ')} in the client's environment (connect sets only ${allowed.join(' and ') || 'the user\'s own'})`);
  if (client.ticketVar && client.ticketVar in env && (env as Record<string, unknown>)[client.ticketVar] !== res.ticket) {
    throw refuse(`its ${client.ticketVar} is not the ticket of the same answer`);
  }

  if (client.ticketOnStdin ? inv.stdin !== res.ticket : inv.stdin !== undefined) throw refuse('its standard input is not the ticket of the same answer');

  const args: unknown = inv.args;
  const facts = Array.isArray(args) && args.every((a) => typeof a === 'string') ? parse(args) : undefined;
  const caFromEnv = client.caVar ? (env as Record<string, unknown>)[client.caVar] : undefined;
  if (facts && caFromEnv !== undefined) {
    if (typeof caFromEnv !== 'string') throw refuse(`its ${client.caVar} is not a file name`);
    facts.caPath = caFromEnv;
  }
  const built =
    facts && factsOk(facts) && facts.resource === res.resource
      ? door.client(
          { host: facts.host, port: facts.port, ...(facts.caPath !== undefined ? { caPath: facts.caPath } : {}), ...(facts.appsDomain !== undefined ? { appsDomain: facts.appsDomain } : {}) },
          facts.user,
          {
            name: facts.resource, protocol: res.protocol, ...(facts.database !== undefined ? { database: facts.database } : {}),
            options: facts.baseDn !== undefined ? { baseDn: facts.baseDn } : {},
          } as Resource,
          res.ticket,
        )
      : undefined;
  if (!built || JSON.stringify(built.args) !== JSON.stringify(args)) {
    throw refuse(`its arguments ${show(args)} are not the ones the ${door.name} door builds from a host, port, login, database and CA file`);
  }
  return {
    program: inv.program,
    args: built.args,
    env: { ...(client.ticketVar ? { [client.ticketVar]: res.ticket } : {}), ...(client.caVar && facts?.caPath !== undefined ? { [client.caVar]: facts.caPath } : {}) },
    ...(client.ticketOnStdin ? { stdin: res.ticket } : {}),
  };
}
