/**
 * The upstream caching_sha2_password full authentication, end to end. No MySQL 8 server
 * exists on this machine (Debian 12 ships none; MariaDB has no caching_sha2 server plugin),
 * so the target here is a second Gatehouse listener, whose server side speaks
 * caching_sha2_password exactly as the stock clients and mysql2 accept it (see mysql.test.ts
 * and mysql-mysql2.test.ts) and which itself ends at the real MariaDB:
 *
 *   mysql2 → gateway A (alice:via-gw) → gateway B (alice:open-mysql, caching_sha2) → MariaDB
 *
 * Over TLS, A sends the password in clear after "perform full authentication"; without TLS
 * (B's SSL flag masked by a one-bit rewriting relay, as a downgraded network path would) it
 * fetches B's RSA key, pins it, and sends the password encrypted. The fast path (0x03) needs a real
 * caching server with a warm cache and is covered only by the token tests in
 * mysql-scramble.test.ts.
 */
import { readFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import type { Listener } from '../../src/broker/adapter.js';
import { Cap } from '../../protocols/mysql/codec.js';
import { addMyResource, GATEWAY_PASSWORD, myDoor, startMyGateway, type MyDoor, type MyGateway } from './mysql-harness.js';

let g: MyGateway;
let a: Listener;
let a2: MyDoor;
let relay: Server;

/** Forwards bytes both ways, clearing CLIENT_SSL in the server's HandshakeV10. */
function sslStrippingRelay(targetPort: number): Promise<Server> {
  const server = createServer((client) => {
    const up = connect(targetPort, '127.0.0.1');
    let first = true;
    up.on('data', (d: Buffer) => {
      if (first) {
        first = false;
        // header(4) protocol(1) version NUL, then connection id(4), nonce(8), filler(1): the low capability word.
        const capsAt = d.indexOf(0, 5) + 1 + 4 + 8 + 1;
        d.writeUInt16LE(d.readUInt16LE(capsAt) & ~Cap.SSL, capsAt);
      }
      client.write(d);
    });
    client.on('data', (d) => up.write(d));
    const end = () => {
      client.destroy();
      up.destroy();
    };
    client.on('close', end).on('error', end);
    up.on('close', end).on('error', end);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

beforeAll(async () => {
  g = await startMyGateway({ allowPlaintext: true }); // gateway B
  await addMyResource(g, {}, 'open-mysql');
  relay = await sslStrippingRelay(g.port);
  const relayPort = (relay.address() as { port: number }).port;
  for (const [name, port] of [['via-gw', g.port], ['via-gw-plain', relayPort]] as const) {
    await g.gw.addResource({ name, type: 'database', protocol: 'mysql', host: '127.0.0.1', port, credentials: { login: 'alice:open-mysql', password: GATEWAY_PASSWORD } });
  }
  // TLS to targets is required by default: the SSL-stripped leg is a plaintext target on purpose.
  a2 = await myDoor({ upstreamCa: { 'via-gw': g.gw.pki.caCertPem }, upstreamTls: 'disable' });
  a = await a2.listen({ host: '127.0.0.1', port: 0, broker: g.gw.broker, log: silentLogger, tls: { cert: g.gw.pki.certPem, key: g.gw.pki.keyPem, ca: g.gw.pki.caCertPem } });
});

afterAll(async () => {
  await a?.close();
  await new Promise((r) => relay?.close(r));
  await g?.close();
});

async function through(resource: string): Promise<unknown> {
  const c = await mysql.createConnection({ ...g.my2(`alice:${resource}`, GATEWAY_PASSWORD), port: a.address.port });
  try {
    const [rows] = await c.execute('select current_user() as u, ? as echo', ['sha2']);
    return rows;
  } finally {
    await c.end();
  }
}

describe('upstream caching_sha2_password full authentication', () => {
  it('over TLS: the vaulted password goes in clear inside TLS after "perform full authentication"', async () => {
    expect(await through('via-gw')).toEqual([{ u: `${g.target.user}@127.0.0.1`, echo: 'sha2' }]);
  });

  it('the TLS leg to the target is verified: the wrong CA is refused before any password is sent', async () => {
    const wrong = await (await myDoor({ upstreamCa: { 'via-gw': readFileSync(g.target.ca, 'utf8') } })).listen({
      host: '127.0.0.1', port: 0, broker: g.gw.broker, log: silentLogger, tls: { cert: g.gw.pki.certPem, key: g.gw.pki.keyPem, ca: g.gw.pki.caCertPem },
    });
    try {
      await expect(mysql.createConnection({ ...g.my2('alice:via-gw', GATEWAY_PASSWORD), port: wrong.address.port })).rejects.toMatchObject({
        errno: 1429, message: expect.stringMatching(/^Gatehouse: could not open via-gw: its TLS certificate does not verify against the configured CA \([A-Z_]+\) \(target_identity\) To fix: check the CA configured for via-gw/),
      });
    } finally {
      await wrong.close();
    }
  });

  it("without TLS: the password is RSA-encrypted with the target's public key, pinned on first use", async () => {
    expect(await through('via-gw-plain')).toEqual([{ u: `${g.target.user}@127.0.0.1`, echo: 'sha2' }]);
    const r = (await g.gw.store.getResource('via-gw-plain'))!;
    expect(r.hostKeyPin).toMatch(/^rsa-sha256:[0-9a-f]{64}$/);
    expect(await through('via-gw-plain')).toEqual([{ u: `${g.target.user}@127.0.0.1`, echo: 'sha2' }]);

    // Another key (a machine in the middle, say) is refused before the password is encrypted to it.
    await g.gw.store.putResource({ ...r, hostKeyPin: `rsa-sha256:${'0'.repeat(64)}` });
    await expect(through('via-gw-plain')).rejects.toMatchObject({ errno: 1429, message: expect.stringContaining(`Gatehouse: could not open via-gw-plain: its RSA public key changed (now ${r.hostKeyPin}, pinned rsa-sha256:${'0'.repeat(64)}); refusing to connect (target_identity)`) });
    await g.gw.store.putResource(r);
  });

  it('a wrong vaulted password is a clean ERR naming the target refusal', async () => {
    const r = (await g.gw.store.getResource('via-gw'))!;
    await g.gw.addResource({ name: 'via-gw-bad', type: 'database', protocol: 'mysql', host: '127.0.0.1', port: r.port, credentials: { login: 'alice:open-mysql', password: 'wrong' } });
    const c = mysql.createConnection({ ...g.my2('alice:via-gw-bad', GATEWAY_PASSWORD), port: a.address.port });
    await expect(c).rejects.toMatchObject({
      errno: 1429,
      message: expect.stringContaining("Gatehouse: could not open via-gw-bad: the target refused the vaulted login: Gatehouse: access denied for alice:open-mysql: "),
    });
  });
});
