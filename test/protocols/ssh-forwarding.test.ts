/**
 * What a session may do beyond shell, exec and sftp: agent forwarding, X11 and remote (-R)
 * forwarding are refused unless the resource's options allow them; allowed ones work end
 * to end through the gateway.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createServer, connect, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../targets/index.js';
import { startSshFixture, type SshFixture } from './ssh-fixture.js';

let fx: SshFixture;
let agent: ChildProcess;
let agentSock: string;
beforeAll(async () => {
  fx = await startSshFixture();
  await fx.addSshResource('plain-web');
  await fx.addSshResource('fwd-web', { options: { allowAgentForwarding: true, allowRemoteForwarding: true } });
  agentSock = join(fx.dir, 'agent.sock');
  agent = spawn('ssh-agent', ['-D', '-a', agentSock], { stdio: 'ignore' });
  await waitForFile(agentSock);
  execFileSync('ssh-add', ['-q', fx.key('alice')], { env: { ...process.env, SSH_AUTH_SOCK: agentSock }, stdio: 'ignore' });
});
afterAll(async () => {
  agent?.kill();
  await fx?.close();
});

async function waitForFile(path: string): Promise<void> {
  const { existsSync } = await import('node:fs');
  for (let i = 0; i < 200 && !existsSync(path); i++) await new Promise((r) => setTimeout(r, 25));
  if (!existsSync(path)) throw new Error(`${path} never appeared`);
}

/** A local TCP service the target should reach back through `-R`. */
async function helloServer(): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => s.end('hello-from-the-client-side\n'));
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  return { server, port };
}

function readAll(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const s = connect(port, '127.0.0.1');
    s.on('data', (b) => (buf += b.toString()));
    s.on('end', () => resolve(buf));
    s.on('error', reject);
  });
}

describe('ssh gateway: forwarding options', () => {
  it('refuses agent forwarding by default, with a note on stderr', async () => {
    const r = await fx.ssh('alice', 'plain-web', ['-A', 'echo "sock=${SSH_AUTH_SOCK:-none}"'], { env: { SSH_AUTH_SOCK: agentSock } });
    expect(r.stdout.trim()).toBe('sock=none');
    expect(r.stderr).toContain('Gatehouse: agent forwarding is not allowed on plain-web');
  });

  it('relays the user agent to the target when the resource allows it', async () => {
    const r = await fx.ssh('alice', 'fwd-web', ['-A', 'ssh-add -l'], { env: { SSH_AUTH_SOCK: agentSock } });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('alice@test (ED25519)');
  });

  it('refuses X11 forwarding', async () => {
    const r = await fx.ssh('alice', 'plain-web', ['-Y', 'echo "display=${DISPLAY:-none}"'], { env: { DISPLAY: '127.0.0.1:93' } });
    expect(r.stdout.trim()).toBe('display=none');
    expect(r.stderr).toContain('X11 forwarding request failed');
  });

  it('refuses remote forwarding by default', async () => {
    const rport = await freePort();
    const r = await fx.ssh('alice', 'plain-web', ['-o', 'ExitOnForwardFailure=yes', '-R', `127.0.0.1:${rport}:127.0.0.1:9`, 'sleep 5']);
    expect(r.code).toBe(255);
    expect(r.stderr).toContain(`remote port forwarding failed for listen port ${rport}`);
  });

  it('forwards -R connections from the target back to the client when allowed', async () => {
    const hello = await helloServer();
    const rport = await freePort();
    const c = fx.spawnSsh('alice', 'fwd-web', ['-N'], { pre: ['-v', '-o', 'ExitOnForwardFailure=yes', '-R', `127.0.0.1:${rport}:127.0.0.1:${hello.port}`] });
    try {
      await c.waitFor(`remote forward success for: listen 127.0.0.1:${rport}`);
      // The target is this machine: its 127.0.0.1:rport is the target sshd's listener.
      expect(await readAll(rport)).toBe('hello-from-the-client-side\n');
    } finally {
      c.child.kill();
      await c.exited;
      hello.server.close();
    }
  });
});
