/**
 * A MySQL client that hangs up while the gateway logs in to the target: the session goes live
 * with its client already gone. On every data path it must end at once as `client_closed` (on
 * Node's streams it stayed live until the target's wait_timeout: the relay listened for the
 * client's close only after that close had happened), and the target must see what it would
 * see from that client directly, a FIN and no bytes (the addon sent a MySQL target PostgreSQL's
 * Terminate). A relay in front of the real MariaDB (a test tool for this timing) holds the
 * target's login OK back until the client has gone.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import mysql from 'mysql2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import { eventually } from './contract-driver.js';
import { GATEWAY_PASSWORD, myDoor, startMyGateway, until, type MyGateway } from './mysql-harness.js';

const CONNECTS = 3;
/** How long the OK waits after the client's socket closed: the gateway's time to read the FIN. */
const NOTICE_MS = 300;

/** Passes the login through; holds the target's login OK until `release` is called; records what the gateway sends after it. */
class HoldingRelay {
  readonly server: Server = createServer((c) => this.accept(c));
  /** The bytes the gateway sent the target after its login's OK, one entry per connection. */
  readonly after: Buffer[] = [];
  /** Called when the gateway connects to the target, with a function that sends the held OK on. */
  onTarget: ((release: () => void) => void) | undefined;

  constructor(private readonly targetPort: number) {}

  private accept(gateway: Socket): void {
    const up = connect(this.targetPort, '127.0.0.1');
    const idx = this.after.push(Buffer.alloc(0)) - 1;
    let greeted = false;
    let okSeen = false;
    let pending = Buffer.alloc(0);
    const end = (): void => {
      gateway.destroy();
      up.destroy();
    };
    gateway.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
    gateway.on('data', (d: Buffer) => {
      if (okSeen) this.after[idx] = Buffer.concat([this.after[idx]!, d]);
      up.write(d);
    });
    let held: Buffer | undefined;
    let released = false;
    this.onTarget?.(() => {
      released = true;
      if (held) gateway.write(held);
    });
    up.on('data', (d: Buffer) => {
      if (okSeen) return void gateway.write(d);
      pending = Buffer.concat([pending, d]);
      while (pending.length >= 4) {
        const len = pending.readUIntLE(0, 3);
        if (pending.length < 4 + len) return;
        const packet = pending.subarray(0, 4 + len);
        pending = pending.subarray(4 + len);
        if (!greeted || packet[4] !== 0x00) {
          greeted = true;
          gateway.write(packet);
          continue;
        }
        okSeen = true;
        held = Buffer.concat([packet, pending]);
        if (released) gateway.write(held);
        return;
      }
    });
  }
}

let g: MyGateway;
let relay: HoldingRelay;
let listener: Listener;

beforeAll(async () => {
  g = await startMyGateway();
  relay = new HoldingRelay(g.target.port);
  await new Promise<void>((r) => relay.server.listen(0, '127.0.0.1', () => r()));
  await g.gw.addResource({
    name: 'holding-mysql', type: 'database', protocol: 'mysql', host: '127.0.0.1', port: (relay.server.address() as { port: number }).port,
    database: g.target.database, credentials: { login: g.target.user, password: g.target.password }, settings: {}, options: { allowPlaintextUpstream: true },
  });
  const door = await myDoor({ upstreamTls: 'disable' });
  listener = await door.listen({ host: '127.0.0.1', port: 0, broker: g.gw.broker, log: silentLogger, tls: { cert: g.gw.pki.certPem, key: g.gw.pki.keyPem, ca: g.gw.pki.caCertPem } });
});

afterAll(async () => {
  await listener?.close();
  await new Promise((r) => relay?.server.close(r));
  await g?.close();
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
