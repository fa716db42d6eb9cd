/**
 * The one list of doors. Listener names and defaults (`gatehouse serve`), the protocols a
 * resource may use, the client command `gatehouse launch` prints, and the adapter `serve`
 * starts are all derived from here: a new door is its folder, one entry below, and its
 * target script (see README.md beside this file).
 *
 * Data and lazy loaders only: importing this file loads no protocol code, so the CLI and
 * the config loader stay light.
 */
import type { ProtocolAdapter } from '../src/broker/adapter.js';
import type { Protocol, Resource } from '../src/core/model.js';

/** How to start the stock client for a resource: program, arguments, and the environment carrying the ticket. */
export interface ClientInvocation {
  program: string;
  args: string[];
  env: Record<string, string>;
  /** Written to the client's standard input (the ticket, for clients that read no password variable). */
  stdin?: string;
}

/** Where the door listens and where the gateway's CA certificate is, for the printed command. */
export interface LaunchContext {
  host: string;
  port: number;
  caPath?: string;
  /** The browser door's apps domain: apps are at `<resource>.<appsDomain>`. */
  appsDomain?: string;
}

export interface DoorEntry {
  /** The listener name (`--listen NAME=HOST:PORT`). */
  readonly name: string;
  /** Resources of this protocol are reached through this door. */
  readonly protocol: Protocol;
  readonly defaultPort: number;
  /** How a user logs in, shown when a login name is malformed. */
  readonly loginExample: string;
  /**
   * The stock client with the one-time ticket. The ticket travels in the environment, never
   * on the command line (`ps` shows arguments to every user of the machine).
   */
  client(at: LaunchContext, user: string, resource: Resource, ticket: string): ClientInvocation;
  /** The door's adapter, with its options (each door's `...AdapterOptions`; none: the defaults). */
  load(options?: object): Promise<ProtocolAdapter>;
  /**
   * The door can serve from data-path workers (src/dataplane): it keeps no state one
   * connection needs from another beyond what its `dataPath` messages carry.
   */
  readonly workers?: boolean;
}

/** OpenLDAP's clients find the CA to verify the gateway with in LDAPTLS_CACERT. */
const caEnv = (at: LaunchContext): Record<string, string> => (at.caPath ? { LDAPTLS_CACERT: at.caPath } : {});

/**
 * A host in an LDAP URL. OpenLDAP's clients check the certificate against the URL's host as
 * given (the gateway certificate carries 127.0.0.1), so it is not swapped for localhost.
 */
const urlHost = (host: string): string => (host.includes(':') ? `[${host}]` : host);

/**
 * ldapsearch on the StartTLS (`-ZZ`) or LDAPS listener. OpenLDAP's clients read no password
 * variable: the ticket goes to standard input (-y /dev/stdin), the gateway's CA to LDAPTLS_CACERT.
 */
function ldapsearch(scheme: 'ldap' | 'ldaps', at: LaunchContext, user: string, r: Resource, ticket: string): ClientInvocation {
  return {
    program: 'ldapsearch',
    args: ['-x', ...(scheme === 'ldap' ? ['-ZZ'] : []), '-H', `${scheme}://${urlHost(at.host)}:${at.port}`, '-D', `${user}:${r.name}`, '-y', '/dev/stdin',
      ...(scheme === 'ldap' && r.options?.baseDn ? ['-b', r.options.baseDn] : [])],
    env: caEnv(at),
    stdin: ticket,
  };
}

/** verify-full checks the certificate's name, and the gateway certificate names localhost. */
const tlsHost = (host: string): string => (host === '127.0.0.1' ? 'localhost' : host);

export const DOORS = [
  {
    name: 'ssh',
    protocol: 'ssh',
    defaultPort: 2222,
    loginExample: 'ssh -p 2222 alice:prod-web@GATEWAY',
    // ssh reads no password from the environment: users log in with their registered key,
    // or type their gateway password or the ticket at the prompt.
    client: (at, user, r) => ({ program: 'ssh', args: ['-p', String(at.port), `${user}:${r.name}@${at.host}`], env: {} }),
    load: async (o?: object) => new (await import('./ssh/index.js')).SshAdapter(o),
  },
  {
    name: 'postgres',
    protocol: 'postgres',
    defaultPort: 15432,
    loginExample: 'psql "host=GATEWAY port=15432 user=alice:prod-pg sslmode=verify-full sslrootcert=ca.pem"',
    client: (at, user, r, ticket) => {
      const tls = at.caPath ? ` sslmode=verify-full sslrootcert=${at.caPath}` : ' sslmode=require';
      return { program: 'psql', args: [`host=${tlsHost(at.host)} port=${at.port} user=${user}:${r.name} dbname=${r.database ?? r.name}${tls}`], env: { PGPASSWORD: ticket } };
    },
    load: async (o?: object) => new (await import('./postgres/index.js')).PostgresAdapter(o),
    workers: true,
  },
  {
    name: 'mysql',
    protocol: 'mysql',
    defaultPort: 13306,
    loginExample: 'mariadb -h GATEWAY -P 13306 -u alice:prod-mysql -p',
    client: (at, user, r, ticket) => ({
      program: 'mysql',
      args: ['-h', at.host, '-P', String(at.port), '-u', `${user}:${r.name}`, ...(at.caPath ? [`--ssl-ca=${at.caPath}`] : []), ...(r.database ? [r.database] : [])],
      env: { MYSQL_PWD: ticket },
    }),
    load: async (o?: object) => new (await import('./mysql/index.js')).MysqlAdapter(o),
    workers: true,
  },
  {
    name: 'ldap',
    protocol: 'ldap',
    defaultPort: 13389,
    loginExample: 'ldapsearch -x -ZZ -H ldap://GATEWAY:13389 -D alice:corp-ldap -W',
    client: (at, user, r, ticket) => ldapsearch('ldap', at, user, r, ticket),
    load: async (o?: object) => new (await import('./ldap/index.js')).LdapAdapter(o),
  },
  {
    // The same door with TLS from the first byte; launch commands use the StartTLS listener above.
    name: 'ldaps',
    protocol: 'ldap',
    defaultPort: 13636,
    loginExample: 'ldapsearch -x -H ldaps://GATEWAY:13636 -D alice:corp-ldap -W',
    client: (at, user, r, ticket) => ldapsearch('ldaps', at, user, r, ticket),
    load: async (o?: object) => new (await import('./ldap/index.js')).LdapsAdapter(o),
  },
  {
    name: 'http',
    protocol: 'http',
    defaultPort: 8443,
    loginExample: 'https://RESOURCE.apps.GATEWAY:8443/ (Launch in the vault)',
    // A browser enters an app through its enter link: the ticket is in the URL (single use,
    // short-lived) because a browser has nowhere else to carry it.
    client: (at, user, r, ticket) => ({
      program: 'xdg-open',
      args: [`https://${r.name}.${at.appsDomain ?? 'apps.localhost'}:${at.port}/.gatehouse/enter?user=${encodeURIComponent(user)}&ticket=${encodeURIComponent(ticket)}`],
      env: {},
    }),
    load: async (o?: object) => new (await import('./http/index.js')).HttpAdapter(o),
  },
] as const satisfies readonly DoorEntry[];

export type DoorName = (typeof DOORS)[number]['name'];

/**
 * Protocols the tunnel door carries: it has no listener of its own (its WebSockets are on the
 * API listener) and no stock client to launch; `gatehouse tunnel RESOURCE` is the client.
 */
export const TUNNELED_PROTOCOLS = ['tcp', 'rdp'] as const satisfies readonly Protocol[];
export type TunneledProtocol = (typeof TUNNELED_PROTOCOLS)[number];

export function isTunneled(p: Protocol): p is TunneledProtocol {
  return (TUNNELED_PROTOCOLS as readonly Protocol[]).includes(p);
}

/** Protocols some door serves; a resource of any other protocol cannot be reached yet. */
export const SERVED_PROTOCOLS: readonly Protocol[] = [...new Set(DOORS.map((d) => d.protocol)), ...TUNNELED_PROTOCOLS];

export function doorFor(protocol: Protocol): DoorEntry | undefined {
  return DOORS.find((d) => d.protocol === protocol);
}
