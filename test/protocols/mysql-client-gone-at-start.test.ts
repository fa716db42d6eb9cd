/**
 * A MySQL client that hangs up while the gateway logs in to the target: the session goes live
 * with its client already gone. On every data path it must end at once as `client_closed` (on
 * Node's streams it stayed live until the target's wait_timeout: the relay listened for the
 * client's close only after that close had happened), and the target must see what it would
 * see from that client directly, a FIN and no bytes (the addon sent a MySQL target PostgreSQL's
 * Terminate). A relay in front of the real MariaDB (a test tool for this timing) holds the
 * target's login OK back until the client has gone.
 */
import type { Socket } from 'node:net';
import mysql from 'mysql2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { eventually } from './contract-driver.js';
import { GATEWAY_PASSWORD, until, type MyGateway } from './mysql-harness.js';
import { LoginRelay, startBehindRelay } from './mysql-login-relay.js';

const CONNECTS = 3;
/** How long the OK waits after the client's socket closed: the gateway's time to read the FIN. */
const NOTICE_MS = 300;

/** Holds the target's login OK until the test releases it; records what the gateway sends after it. */
class HoldingRelay extends LoginRelay {
  /** The bytes the gateway sent the target after its login's OK, one entry per connection. */
  readonly after: Buffer[] = [];
  /** Called when the gateway connects to the target, with a function that sends the held OK on. */
  onTarget: ((release: () => void) => void) | undefined;

  protected connection(gateway: Socket, target: Socket): (ok: Buffer, rest: Buffer) => void {
    const idx = this.after.push(Buffer.alloc(0)) - 1;
    let okSeen = false;
    let held: Buffer | undefined;
    let released = false;
    const end = (): void => {
      gateway.destroy();
      target.destroy();
    };
    gateway.on('error', end).on('close', end);
    target.on('error', end).on('close', end);
    gateway.on('data', (d: Buffer) => {
      if (okSeen) this.after[idx] = Buffer.concat([this.after[idx]!, d]);
      target.write(d);
    });
    this.onTarget?.(() => {
      released = true;
      if (held) gateway.write(held);
    });
    return (ok, rest) => {
      okSeen = true;
      held = Buffer.concat([ok, rest]);
      target.on('data', (d: Buffer) => gateway.write(d));
      if (released) gateway.write(held);
    };
  }
}

let g: MyGateway;
let relay: HoldingRelay;
let listener: Listener;
let close: (() => Promise<void>) | undefined;

beforeAll(async () => {
  ({ g, relay, listener, close } = await startBehindRelay('holding-mysql', (port) => new HoldingRelay(port)));
});

afterAll(async () => {
  await close?.();
});

describe('a MySQL client that leaves while the gateway logs in to the target', () => {
  it('ends the session as client_closed at once, and the target gets its FIN and no bytes', async () => {
    const audits = async (action: string): Promise<number> => (await g.gw.store.listAudit({ action })).length;
    const [startsBefore, endsBefore] = [await audits('session.start'), await audits('session.end')];
    for (let i = 0; i < CONNECTS; i++) {
      const client = mysql.createConnection({ ...g.my2('alice:holding-mysql', GATEWAY_PASSWORD), port: listener.address.port });
      client.on('error', () => {});
      // The gateway reaches the target once the client's password has passed: the client leaves then.
      await new Promise<void>((resolve) => {
        relay.onTarget = (release) => {
          relay.onTarget = undefined;
          const socket = (client as unknown as { stream: Socket }).stream;
          socket.once('close', () => setTimeout(() => {
            release();
            resolve();
          }, NOTICE_MS));
          client.destroy();
        };
      });
      // The session goes live once the target's OK is in, its client gone by then; it must end.
      expect(await eventually(async () => (await audits('session.start')) - startsBefore === i + 1)).toBe(true);
      await until(() => g.gw.broker.live().length === 0, 10_000, 'the session to end');
    }
    expect(await eventually(async () => (await audits('session.end')) - endsBefore === CONNECTS)).toBe(true);
    const ends = (await g.gw.store.listAudit({ action: 'session.end' })).slice(endsBefore);
    expect(ends.map((a) => a.data.reason)).toEqual(Array(CONNECTS).fill('client_closed'));
    // Nothing after the OK: no PostgreSQL Terminate ('X' 00 00 00 04), no COM_QUIT either, as from the client itself.
    expect(await eventually(async () => relay.after.length === CONNECTS)).toBe(true);
    expect(relay.after.map((b) => b.toString('hex'))).toEqual(Array(CONNECTS).fill(''));
  });
});
