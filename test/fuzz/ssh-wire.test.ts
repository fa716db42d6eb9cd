/**
 * Random bytes at the SSH gateway, before and after a valid version line: every such
 * connection is closed (by a protocol error or the handshake timeout) and the gateway keeps
 * serving real logins.
 */
import fc from 'fast-check';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSshFixture, type SshFixture } from '../protocols/ssh-fixture.js';

let fx: SshFixture;
beforeAll(async () => {
  fx = await startSshFixture({ handshakeTimeoutMs: 1500 });
  await fx.addSshResource('fuzz-web');
});
afterAll(async () => {
  await fx?.close();
});

function closes(bytes: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(fx.port, '127.0.0.1');
    const timer = setTimeout(() => (s.destroy(), resolve(false)), 8000);
    s.on('error', () => {});
    s.on('data', () => {}); // read, so the gateway's FIN is seen
    s.on('connect', () => s.write(bytes));
    s.on('close', () => (clearTimeout(timer), resolve(true)));
  });
}

describe('ssh gateway under random input', () => {
  it('closes connections that send random bytes, and keeps serving', async () => {
    const ident = Buffer.from('SSH-2.0-OpenSSH_9.2 fuzz\r\n');
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.uint8Array({ minLength: 1, maxLength: 4096 }), async (withIdent, bytes) => {
        const payload = withIdent ? Buffer.concat([ident, Buffer.from(bytes)]) : Buffer.from(bytes);
        expect(await closes(payload)).toBe(true);
      }),
      { numRuns: 24 },
    );
    const r = await fx.ssh('alice', 'fuzz-web', ['echo', 'alive']);
    expect(r.stdout.trim()).toBe('alive');
  }, 120_000);
});
