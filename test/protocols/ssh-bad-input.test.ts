/**
 * Hostile or broken clients: garbage before the version line, an 8 MiB version line, a
 * huge packet length, unknown channel types, idle pre-auth connections, password guessing.
 * Each closes that one connection; the gateway keeps serving (a real ssh login after each).
 */
import { connect } from 'node:net';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import { SshAdapter } from '../../protocols/ssh/index.js';
import { encode, protocolOf, sendRaw } from '../../protocols/ssh/codec.js';
import { GATEWAY_PASSWORD } from './gateway-harness.js';
import { run, startSshFixture, type SshFixture } from './ssh-fixture.js';

const { Client } = ssh2;

let fx: SshFixture;
beforeAll(async () => {
  fx = await startSshFixture();
  await fx.addSshResource('open-web');
});
afterAll(async () => {
  await fx?.close();
});

async function stillServes(): Promise<void> {
  const r = await fx.ssh('alice', 'open-web', ['echo', 'still-serving']);
  expect(r.stdout.trim()).toBe('still-serving');
}

/** Sends raw bytes; resolves with what came back once the gateway closed the socket. */
function sendAndWaitClose(port: number, chunks: Buffer[], timeoutMs = 10_000): Promise<{ received: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let received = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ received, closed: false });
    }, timeoutMs);
    s.on('data', (b) => (received += b.toString('latin1')));
    s.on('error', () => {});
    s.on('connect', () => {
      for (const c of chunks) if (!s.destroyed) s.write(c);
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ received, closed: true });
    });
  });
}

describe('ssh gateway: bad input', () => {
  it('closes a connection that sends garbage before the SSH version line', async () => {
    const r = await sendAndWaitClose(fx.port, [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]);
    expect(r.closed).toBe(true);
    expect(r.received.startsWith('SSH-2.0-Gatehouse')).toBe(true);
    await stillServes();
  });

  it('closes a connection whose version line is 8 MiB long', async () => {
    const r = await sendAndWaitClose(fx.port, [Buffer.from('SSH-2.0-'), Buffer.alloc(8 * 1024 * 1024, 0x41)]);
    expect(r.closed).toBe(true);
    await stillServes();
  });

  it('closes a connection that announces a huge packet', async () => {
    const huge = Buffer.alloc(16);
    huge.writeUInt32BE(0x7ffffff0, 0);
    const r = await sendAndWaitClose(fx.port, [Buffer.from('SSH-2.0-OpenSSH_9.2 fuzz\r\n'), huge]);
    expect(r.closed).toBe(true);
    await stillServes();
  });

  it('refuses an unknown channel type and hangs up with a protocol error', async () => {
    const session = fx.nextSession('open-web');
    const client = new Client();
    const outcome = await new Promise<{ error?: string; openFailure?: string }>((resolve) => {
      const seen: { error?: string; openFailure?: string } = {};
      client.on('error', (e) => (seen.error = e.message));
      client.on('close', () => resolve(seen));
      client.on('ready', () => {
        // CHANNEL_OPEN "gatehouse-fuzz@example.com", sender 7, window 1 MiB, packet 32 KiB.
        sendRaw(protocolOf(client), Buffer.concat([Buffer.from([90]), encode('gatehouse-fuzz@example.com', 7, 1 << 20, 32768)]));
      });
      client.connect({ host: '127.0.0.1', port: fx.port, username: 'alice:open-web', password: GATEWAY_PASSWORD, readyTimeout: 10_000 });
    });
    expect(outcome.error).toContain('Gatehouse: unknown channel type "gatehouse-fuzz@example.com"');
    expect(await (await session).ended).toMatchObject({ resource: 'open-web', reason: 'error' });
    await stillServes();
  });

  it('drops connections that stay idle before login or take too long to log in', async () => {
    const listener = await new SshAdapter({ handshakeTimeoutMs: 300, loginGraceMs: 500 }).listen({
      host: '127.0.0.1', port: 0, broker: fx.gw.broker, log: silentLogger,
      tls: { cert: fx.gw.pki.certPem, key: fx.gw.pki.keyPem, ca: fx.gw.pki.caCertPem }, sshHostKey: fx.gw.pki.sshHostKeyPem,
    });
    try {
      const t0 = performance.now();
      const idle = await sendAndWaitClose(listener.address.port, [Buffer.from('SSH-2.0-OpenSSH_9.2 idle\r\n')], 5000);
      expect(idle.closed).toBe(true);
      expect(performance.now() - t0).toBeLessThan(3000);

      const opts = fx.sshOpts('alice');
      opts[opts.indexOf('-p') + 1] = String(listener.address.port);
      const slow = await run('ssh', [...opts, '-o', 'BatchMode=no', '-o', 'PreferredAuthentications=password', 'alice:open-web@127.0.0.1', 'true'], {
        env: fx.askpassEnv(GATEWAY_PASSWORD, 2),
      }).exited;
      expect(slow.code).toBe(255);
      expect(slow.stderr).toContain('Authentication took too long.');
    } finally {
      await listener.close();
    }
    await stillServes();
  });

  it('hangs up after too many failed passwords', async () => {
    const r = await fx.ssh('alice', 'open-web', ['true'], {
      batch: false,
      pre: ['-o', 'PreferredAuthentications=password', '-o', 'NumberOfPasswordPrompts=20'],
      env: fx.askpassEnv('not the password'),
    });
    expect(r.code).toBe(255);
    expect(r.stderr).toContain('Too many failed authentication attempts.');
    await stillServes();
  });
});
