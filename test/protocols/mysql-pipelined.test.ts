import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cap, Cmd, decodeErr, encodePacket, Reply } from '../../protocols/mysql/codec.js';
import { encodeHandshakeResponse } from '../../protocols/mysql/handshake.js';
import { addMyResource, GATEWAY_PASSWORD, rawTlsStart, startMyGateway, type MyGateway } from './mysql-harness.js';

let g: MyGateway;
beforeAll(async () => {
  g = await startMyGateway();
  await addMyResource(g, {}, 'open-mysql');
});
afterAll(async () => g?.close());

/**
 * A raw client over TLS that logs in with the gateway password and sends its first COM_QUERY
 * either in the same write as its login packet or right after the OK; returns the query's reply
 * packets. Guards the door's hand-over from the login to the relay: bytes that arrive while the
 * login is still being decided must reach the target, in order, once the relay starts.
 */
async function pipelined(mode: 'same-write' | 'after-ok'): Promise<Buffer[]> {
  const caps = Cap.LONG_PASSWORD | Cap.PROTOCOL_41 | Cap.SECURE_CONNECTION | Cap.PLUGIN_AUTH | Cap.PLUGIN_AUTH_LENENC_CLIENT_DATA | Cap.SSL | Cap.TRANSACTIONS | Cap.DEPRECATE_EOF;
  const { secure, reader, seq } = await rawTlsStart(g, caps);
  const login = encodePacket(seq + 1, encodeHandshakeResponse({ capabilities: caps, maxPacket: 1 << 24, charset: 45, user: 'alice:open-mysql', authResponse: Buffer.from(`${GATEWAY_PASSWORD}\0`), authPlugin: 'mysql_clear_password' }));
  const query = encodePacket(0, Buffer.concat([Buffer.from([Cmd.Query]), Buffer.from("select 'pipelined' as p")]));
  if (mode === 'same-write') secure.write(Buffer.concat([login, query]));
  else secure.write(login);
  const ok = (await reader.read()).payload;
  if (ok[0] !== Reply.Ok) throw new Error(`login refused: ${decodeErr(ok).message}`);
  if (mode === 'after-ok') secure.write(query);
  const got: Buffer[] = [];
  for (;;) {
    const p = (await reader.read()).payload;
    got.push(p);
    if (p[0] === 0xfe || p[0] === 0xff) break;
  }
  secure.end();
  return got;
}

describe('a query that follows the login at once', () => {
  it('sent in the same write as the login packet, it is answered by the target after the OK', async () => {
    const got = await pipelined('same-write');
    expect(got.at(-1)![0]).toBe(0xfe);
    expect(Buffer.concat(got).toString('latin1')).toContain('pipelined');
  }, 15_000);
  it('sent the moment the OK arrives, it is answered by the target', async () => {
    const got = await pipelined('after-ok');
    expect(got.at(-1)![0]).toBe(0xfe);
    expect(Buffer.concat(got).toString('latin1')).toContain('pipelined');
  }, 15_000);
});
