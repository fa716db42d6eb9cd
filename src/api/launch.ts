import type { Resource } from '../core/model.js';
import type { ApiDeps } from './deps.js';

/**
 * How to start the stock client for a resource through the gateway: the program, its
 * arguments, and the environment that carries the one-time ticket (never an argument, so it
 * does not show in `ps`). Absent for resources reached through a browser or a tunnel.
 */
export interface ClientInvocation {
  program: string;
  args: string[];
  env: Record<string, string>;
}

export function clientInvocation(d: Pick<ApiDeps, 'listeners' | 'caPath'>, user: string, r: Resource, ticket: string): ClientInvocation | undefined {
  const id = `${user}:${r.name}`;
  const l = d.listeners;
  switch (r.protocol) {
    case 'ssh':
      // ssh reads no password from the environment: users log in with their registered key,
      // or type their gateway password or the ticket at the prompt.
      return { program: 'ssh', args: ['-p', String(l.ssh?.port ?? 2222), `${id}@${l.ssh?.host ?? '127.0.0.1'}`], env: {} };
    case 'postgres': {
      // verify-full checks the certificate's name: the gateway certificate names localhost.
      const host = l.postgres?.host === '127.0.0.1' ? 'localhost' : (l.postgres?.host ?? 'localhost');
      const tls = d.caPath ? ` sslmode=verify-full sslrootcert=${d.caPath}` : ' sslmode=require';
      return { program: 'psql', args: [`host=${host} port=${l.postgres?.port ?? 15432} user=${id} dbname=${r.database ?? r.name}${tls}`], env: { PGPASSWORD: ticket } };
    }
    case 'mysql':
      return {
        program: 'mysql',
        args: ['-h', l.mysql?.host ?? '127.0.0.1', '-P', String(l.mysql?.port ?? 13306), '-u', id, ...(d.caPath ? [`--ssl-ca=${d.caPath}`] : []), ...(r.database ? [r.database] : [])],
        env: { MYSQL_PWD: ticket },
      };
    case 'ldap':
      return { program: 'ldapsearch', args: ['-H', `ldap://${l.ldap?.host ?? '127.0.0.1'}:${l.ldap?.port ?? 13389}`, '-D', id, '-w', ticket], env: {} };
    case 'http':
    case 'rdp':
    case 'tcp':
      return undefined;
    default: {
      const never: never = r.protocol;
      return never;
    }
  }
}

const shellQuote = (s: string): string => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** The same invocation as one line a person can paste into a shell. */
export function clientCommand(d: Pick<ApiDeps, 'listeners' | 'caPath'>, user: string, r: Resource, ticket: string): string {
  const inv = clientInvocation(d, user, r, ticket);
  if (!inv) {
    if (r.protocol === 'http') return `https://${d.listeners.http?.host ?? '127.0.0.1'}:${d.listeners.http?.port ?? 8443}/r/${r.name}/`;
    return `gatehouse tunnel ${r.name} --port ${r.port}`;
  }
  const env = Object.entries(inv.env).map(([k, v]) => `${k}=${shellQuote(v)} `).join('');
  return env + [inv.program, ...inv.args].map(shellQuote).join(' ');
}
