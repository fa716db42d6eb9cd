/**
 * What the door conformance suite (contract.ts) needs from a door: a gateway with the door
 * listening, a real client that connects, does one round trip and notices when the gateway
 * ends its session, and a count of the target's own successful logins. A driver reads every
 * refusal from what its CLIENT received (a PostgreSQL ErrorResponse, a MySQL ERR packet,
 * OpenSSH's stderr), never from the gateway's internals.
 */
import { AuthService } from '../../src/api/auth.js';
import { REFUSAL_CODES } from '../../src/broker/refusals.js';
import type { Protocol, WorkflowSettings } from '../../src/core/model.js';
import { makeGateway, type GatewayHarness } from './gateway-harness.js';

export type Door = 'postgres' | 'mysql' | 'ssh' | 'ldap' | 'http' | 'tunnel';

/** How a connection attempt ended, as the client saw it. */
export type Connected<C> =
  | { ok: true; conn: C }
  /** `code`: the gateway's refusal code as printed to the client (`(CODE)`), or what the driver could make of it. */
  | { ok: false; code: string; message: string };

/** The gateway ended a live session: what the client saw, and when (performance.now()). */
export interface Closed {
  /** The sentence the client shows. */
  message: string;
  /** The protocol's own terms for it, e.g. `FATAL 57P01`, `ERR 1927`, `exit 255`. */
  wire: string;
  at: number;
}

export interface DoorDriver<C> {
  readonly door: Door;
  /** The gateway: fake-clock engine and a broker whose lockout is shared with `auth` (as in production). */
  readonly gw: GatewayHarness;
  /** The API's sign-in service; its failures and the doors' are one FailureTracker. */
  readonly auth: AuthService;
  /** What the client shows when the gateway ends a live session (`Closed.wire`). */
  readonly teardownWire: string;
  /** A pin that is not the target's identity, in the door's fingerprint format. */
  readonly bogusPin: string;
  /**
   * The code the driver reports for an authentication failure its protocol gives no reason
   * for (OpenSSH prints only "Permission denied"); undefined when the wire carries the code.
   */
  readonly plainAuthFailure?: string;
  /** Adds a resource of this door's protocol for the real target, with vaulted credentials. */
  resource(name: string, settings?: WorkflowSettings | Record<string, unknown>, opts?: { port?: number }): Promise<void>;
  /** Logs in as `user:resource` with a password or ticket; resolves once the session is usable. */
  connect(user: string, resource: string, secret: string): Promise<Connected<C>>;
  /** One round trip through the session. */
  run(conn: C): Promise<void>;
  /** Resolves when the gateway ends the session (set up at connect time: nothing is missed). */
  waitClosed(conn: C): Promise<Closed>;
  /** The client hangs up (harmless on a closed connection). */
  close(conn: C): Promise<void>;
  /** Successful logins of the vaulted account as the target itself recorded them. */
  targetLogins(): Promise<number>;
  /** Closes every connection, the listener and the gateway. */
  stop(): Promise<void>;
}

/** A driver factory: called before every test (a fresh gateway; the target is the test file's). */
export type MakeDriver<C> = () => Promise<DoorDriver<C>>;

export interface ContractGateway {
  gw: GatewayHarness;
  auth: AuthService;
  stop(): Promise<void>;
}

/**
 * makeGateway() with the broker wired as `gatehouse serve` wires it (src/gateway.ts): the
 * API's AuthService failures are the broker's, so a lockout earned anywhere holds everywhere.
 * (The harness's own broker keeps a private FailureTracker; it stays unused.)
 */
export async function startContractGateway(): Promise<ContractGateway> {
  const gw = await makeGateway();
  return { gw, auth: gw.auth, stop: () => gw.cleanup() };
}

const CODES: ReadonlySet<string> = new Set(REFUSAL_CODES);

/** The first `(code)` in a client's text that is a refusal code (or a teardown reason). */
export function refusalCodeIn(text: string): string | undefined {
  for (const m of text.matchAll(/\(([a-z][a-z_]*)\)/g)) if (CODES.has(m[1]!)) return m[1];
  return undefined;
}

/** A protocol other than `door`'s, for the wrong-protocol and cross-door cases. */
export function otherProtocol(door: Door): Protocol {
  return door === 'postgres' ? 'mysql' : 'postgres';
}

/** Polls an async condition (real I/O happening elsewhere); false after `ms`. */
export async function eventually(check: () => Promise<boolean> | boolean, ms = 5_000): Promise<boolean> {
  const start = performance.now();
  for (;;) {
    if (await check()) return true;
    if (performance.now() - start > ms) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Rejects with `what` if `p` has not settled within `ms`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
