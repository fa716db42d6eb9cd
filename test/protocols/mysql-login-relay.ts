/**
 * A test tool for hostile timings around a MySQL login: a relay in front of the real MariaDB,
 * and a gateway whose MySQL door (client TLS, plaintext target leg) reaches that MariaDB
 * through it.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import { myDoor, startMyGateway, type MyGateway } from './mysql-harness.js';

/**
 * Passes a gateway's connection through to the target; the target's side goes packet by packet
 * up to the login's OK (the first OK after the greeting), which it hands, with whatever came
 * behind it in the same read, to the function `connection` returned for that connection.
 */
export abstract class LoginRelay {
  readonly server: Server = createServer((c) => this.accept(c));

  constructor(private readonly targetPort: number) {}

  /** Sets up one connection's sockets before any byte; returns what to do at the target's OK. */
  protected abstract connection(gateway: Socket, target: Socket): (ok: Buffer, rest: Buffer) => void;

  private accept(gateway: Socket): void {
    const target = connect(this.targetPort, '127.0.0.1');
    const atOk = this.connection(gateway, target);
    let greeted = false;
    let pending = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
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
        target.off('data', onData);
        return atOk(packet, pending);
      }
    };
    target.on('data', onData);
  }
}

export interface BehindRelay<R extends LoginRelay> {
  g: MyGateway;
  relay: R;
  /** The door's listener: its clients reach the target through `relay`. */
  listener: Listener;
  close(): Promise<void>;
}

/** A gateway and its MySQL door whose resource `name` is MariaDB behind the relay `makeRelay` builds. */
export async function startBehindRelay<R extends LoginRelay>(name: string, makeRelay: (targetPort: number) => R): Promise<BehindRelay<R>> {
  const g = await startMyGateway();
  const relay = makeRelay(g.target.port);
  let listener: Listener | undefined;
  const close = async (): Promise<void> => {
    await listener?.close();
    await new Promise((r) => relay.server.close(r));
    await g.close();
  };
  try {
    await new Promise<void>((r) => relay.server.listen(0, '127.0.0.1', () => r()));
    await g.gw.addResource({
      name, type: 'database', protocol: 'mysql', host: '127.0.0.1', port: (relay.server.address() as { port: number }).port,
      database: g.target.database, credentials: { login: g.target.user, password: g.target.password }, settings: {}, options: { allowPlaintextUpstream: true },
    });
    const door = await myDoor({ upstreamTls: 'disable' });
    listener = await door.listen({ host: '127.0.0.1', port: 0, broker: g.gw.broker, log: silentLogger, tls: { cert: g.gw.pki.certPem, key: g.gw.pki.keyPem, ca: g.gw.pki.caCertPem } });
    return { g, relay, listener, close };
  } catch (e) {
    await close();
    throw e;
  }
}
