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
import { encode, MSG, protocolOf, sendRaw } from '../../protocols/ssh/codec.js';
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
        sendRaw(protocolOf(client), Buffer.concat([Buffer.from([MSG.CHANNEL_OPEN]), encode('gatehouse-fuzz@example.com', 7, 1 << 20, 32768)]));
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
      expect(slow.stderr).toContain('Gatehouse: access refused (handshake_timeout).');
      expect(slow.stderr).toContain('the handshake took too long.');
      const refused = await fx.gw.store.listAudit({ action: 'door.refuse' });
      expect(refused.filter((e) => e.data.door === 'ssh' && e.data.code === 'handshake_timeout').length).toBeGreaterThanOrEqual(2);
    } finally {
      await listener.close();
    }
    await stillServes();
  });

  it('hangs up after too many failed passwords, and a locked user then reads why', async () => {
    const listener = await new SshAdapter({ maxAuthAttempts: 3 }).listen({
      host: '127.0.0.1', port: 0, broker: fx.gw.broker, log: silentLogger,
      tls: { cert: fx.gw.pki.certPem, key: fx.gw.pki.keyPem, ca: fx.gw.pki.caCertPem }, sshHostKey: fx.gw.pki.sshHostKeyPem,
    });
    const guess = (port: number) => {
      const opts = fx.sshOpts('alice');
      opts[opts.indexOf('-p') + 1] = String(port);
      return run('ssh', [...opts, '-o', 'BatchMode=no', '-o', 'PreferredAuthentications=password', '-o', 'NumberOfPasswordPrompts=20', 'alice:open-web@127.0.0.1', 'true'], {
        env: fx.askpassEnv('not the password'),
      }).exited;
    };
    try {
      // The door's own limit (sshd's MaxAuthTries): 3 wrong passwords, then the last reason.
      const r = await guess(listener.address.port);
      expect(r.code).toBe(255);
      expect(r.stderr).toContain('Gatehouse: access refused (bad_password).');
      expect(r.stderr).toContain('Too many failed authentication attempts.');
      expect(r.stderr).toContain("access denied for alice:open-web: the password is neither alice's gateway password nor a valid launch ticket.");
      // The broker's lockout (5 failures, shared with the API) comes next: refused with its reason.
      const locked = await guess(fx.port);
      expect(locked.code).toBe(255);
      expect(locked.stderr).toContain('Gatehouse: access refused (locked).');
      expect(locked.stderr).toContain('too many failed sign-ins; try again in 15 min.');
      const refusedLogins = await fx.gw.store.listAudit({ action: 'login.refuse' });
      expect(refusedLogins.filter((e) => e.actor === 'alice' && e.data.door === 'ssh' && e.data.code === 'bad_password')).toHaveLength(5);
      expect(refusedLogins.some((e) => e.actor === 'alice' && e.data.code === 'locked')).toBe(true);
    } finally {
      await listener.close();
    }
    fx.gw.clock.advance(15 * 60_000);
    await stillServes();
  });
});
