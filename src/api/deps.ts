import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ListenerName } from '../core/config.js';
import type { Logger } from '../core/log.js';
import type { Engine } from '../workflow/engine.js';
import type { AuthService } from './auth.js';

/** Where a protocol listener can be reached, for the client commands `launch` prints. */
export interface ListenerAddress {
  host: string;
  port: number;
}

/** Live-session control; the connection broker provides it (sessions listed from the store otherwise). */
export interface SessionControl {
  /** Ends a live session at once; false if no such live session on this node or any other. */
  kill(id: string, by: string): Promise<boolean>;
}

export interface ApiDeps {
  engine: Engine;
  auth: AuthService;
  log: Logger;
  listeners: Partial<Record<ListenerName, ListenerAddress>>;
  /** Path of the gateway CA certificate, for `sslrootcert=` in printed commands. */
  caPath?: string;
  /** The browser door's apps domain, for the enter links of browser resources. */
  appsDomain?: string;
  /** The tunnel door, served on the API listener's WebSocket upgrades. */
  tunnels?: { handles(path: string): boolean; upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> };
  sessions: SessionControl;
  /** Default and longest lifetime of an API token (config `apiTokenTtlDays`; 90 days when absent). */
  apiTokenTtlMs?: number;
}
