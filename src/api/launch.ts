import type { Resource } from '../core/model.js';
import { doorFor, isTunneled, type ClientInvocation } from '../../protocols/registry.js';
import type { ApiDeps } from './deps.js';

export type { ClientInvocation } from '../../protocols/registry.js';

/**
 * How to start the stock client for a resource through the gateway (from the door registry):
 * the program, its arguments, and the environment that carries the one-time ticket (never an
 * argument, so it does not show in `ps`). Absent when no door serves the resource's protocol.
 */
export function clientInvocation(d: Pick<ApiDeps, 'listeners' | 'caPath' | 'appsDomain'>, user: string, r: Resource, ticket: string): ClientInvocation | undefined {
  const door = doorFor(r.protocol);
  if (!door) return undefined;
  const at = d.listeners[door.name as keyof ApiDeps['listeners']] ?? { host: '127.0.0.1', port: door.defaultPort };
  return door.client({ host: at.host, port: at.port, ...(d.caPath ? { caPath: d.caPath } : {}), ...(d.appsDomain ? { appsDomain: d.appsDomain } : {}) }, user, r, ticket);
}

const shellQuote = (s: string): string => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** The same invocation as one line a person can paste into a shell. */
export function clientCommand(d: Pick<ApiDeps, 'listeners' | 'caPath' | 'appsDomain'>, user: string, r: Resource, ticket: string): string {
  // A tunneled resource is reached through `gatehouse tunnel`, which launches for itself.
  if (isTunneled(r.protocol)) return `gatehouse tunnel ${r.name} --port 0`;
  const inv = clientInvocation(d, user, r, ticket);
  if (!inv) return '';
  // A web app's "command" is its enter link, which the vault shows as a link to open.
  if (r.protocol === 'http') return inv.args[0] ?? '';
  const env = Object.entries(inv.env).map(([k, v]) => `${k}=${shellQuote(v)} `).join('');
  // A client that reads the ticket from standard input gets it from printf (a shell builtin: not in `ps`).
  const stdin = inv.stdin !== undefined ? `printf %s ${shellQuote(inv.stdin)} | ` : '';
  return stdin + env + [inv.program, ...inv.args].map(shellQuote).join(' ');
}
