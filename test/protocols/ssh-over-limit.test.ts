/**
 * A listener at maxConnections: the next OpenSSH client is refused on the SSH wire with the
 * gateway's own reason (a banner and a TOO_MANY_CONNECTIONS disconnect at its first
 * authentication attempt) and the refusal is audited; past the listener's headroom of refusals
 * under way, a connection is closed without a byte; once the place is free, logins work again.
 */
import { connect, type Socket } from 'node:net';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import { SshAdapter } from '../../protocols/ssh/index.js';
import { BUSY_HEADROOM } from '../../protocols/shared/listener.js';
import { eventually } from './contract-driver.js';
import { until } from './gateway-harness.js';
import { run, startSshFixture, type SshFixture, type SshRun } from './ssh-fixture.js';

const { Client } = ssh2;

const BUSY = 'the gateway has too many connections; try again shortly.';

let fx: SshFixture;
let listener: Listener;
beforeAll(async () => {
  fx = await startSshFixture();
  await fx.addSshResource('open-web');
  listener = await new SshAdapter({ maxConnections: 1 }).listen({
    host: '127.0.0.1', port: 0, broker: fx.gw.broker, log: silentLogger,
    tls: { cert: fx.gw.pki.certPem, key: fx.gw.pki.keyPem, ca: fx.gw.pki.caCertPem }, sshHostKey: fx.gw.pki.sshHostKeyPem,
  });
});
afterAll(async () => {
  await listener?.close();
  await fx?.close();
});

/** A raw TCP connection that says nothing; `received` counts what the gateway sent it. */
interface Silent {
  socket: Socket;
  received(): Buffer;
  closed: Promise<void>;
  isClosed(): boolean;
}

function silent(port: number): Silent {
  const socket = connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  let isClosed = false;
  socket.on('data', (b: Buffer) => chunks.push(b));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => ((isClosed = true), resolve())));
  return { socket, received: () => Buffer.concat(chunks), closed, isClosed: () => isClosed };
}

/** Holds a place on the limited listener: the gateway took it in (it sent its version line). */
async function hold(): Promise<Silent> {
  const h = silent(listener.address.port);
  await until(() => h.received().toString('latin1').startsWith('SSH-2.0-Gatehouse'), 10_000, 'the gateway version line');
  return h;
}

/** Leaves the place: our FIN, then the gateway's (it closed its side, releasing the place). */
async function leave(h: Silent): Promise<void> {
  h.socket.end();
  await h.closed;
}

/**
 * Holds the one place with an SSH client that has made its first authentication attempt
 * (`none`), was answered as a login in progress (so it is not a connection over the limit,
 * which that attempt would have refused), and then waits. Undefined: it was over the limit
 * (the place not yet released by the gateway), and is gone.
 */
function tryHoldAuthenticating(): Promise<{ leave(): Promise<void> } | undefined> {
  return new Promise((resolve) => {
    const c = new Client();
    const closed = new Promise<void>((r) => c.once('close', () => r()));
    let attempts = 0;
    c.on('error', () => {});
    c.once('close', () => resolve(undefined));
    c.connect({
      host: '127.0.0.1', port: listener.address.port, username: 'alice:open-web', readyTimeout: 10_000,
      authHandler: (_methods, _partial, next) => {
        if (attempts++ === 0) return next({ type: 'none', username: 'alice:open-web' });
        // Rejected as a normal login: the place is ours. Never answer, so it stays taken.
        resolve({ leave: async () => (c.end(), await closed) });
      },
    });
  });
}

function sshTo(port: number, args: string[]): Promise<SshRun> {
  const opts = fx.sshOpts('alice');
  opts[opts.indexOf('-p') + 1] = String(port);
  return run('ssh', [...opts, '-o', 'BatchMode=yes', 'alice:open-web@127.0.0.1', ...args]).exited;
}

async function busyRefusals(): Promise<Array<Record<string, unknown>>> {
  const rows = await fx.gw.store.listAudit({ action: 'door.refuse' });
  return rows.filter((e) => e.data.door === 'ssh' && e.data.code === 'too_many_connections').map((e) => e.data);
}

describe('ssh gateway: over maxConnections', () => {
  it('refuses the next OpenSSH client with its own reason, audits it, and lets a login in once the place is free', async () => {
    const holder = await hold();
    try {
      const r = await sshTo(listener.address.port, ['echo', 'should-not-run']);
      expect(r.code).toBe(255);
      expect(r.stdout).toBe('');
      // The banner (the full text) and the disconnect line, both in the gateway's words.
      expect(r.stderr).toContain('Gatehouse: access refused (too_many_connections).');
      expect(r.stderr).toContain(`Received disconnect from 127.0.0.1 port ${listener.address.port}:12: Gatehouse: ${BUSY}`);
      expect(await eventually(async () => (await busyRefusals()).length === 1)).toBe(true);
      const [row] = await busyRefusals();
      expect(row).toMatchObject({ door: 'ssh', code: 'too_many_connections', detail: 'over maxConnections' });
      expect(row!.client).toMatch(/^127\.0\.0\.1:\d+$/);
      // The holder is untouched by the refusal.
      expect(holder.isClosed()).toBe(false);
    } finally {
      await leave(holder);
    }
    const ok = await sshTo(listener.address.port, ['echo', 'in-after-release']);
    expect(ok.stderr).not.toContain('too many connections');
    expect(ok.code).toBe(0);
    expect(ok.stdout.trim()).toBe('in-after-release');
  });

  it('refuses while a logged-in session holds the place, and serves again after it ends', async () => {
    const startsBefore = (await fx.gw.store.listAudit({ action: 'session.start' })).length;
    const session = fx.nextSession('open-web');
    const opts = fx.sshOpts('alice');
    opts[opts.indexOf('-p') + 1] = String(listener.address.port);
    // The last test's client may have exited before the gateway read its close, so the place
    // may still be taken for a moment: a holder refused for that is started again. Each such
    // refusal is audited (a few retries stay well inside the broker's burst of 20 rows before
    // refusals from one address are folded).
    const refusedBefore = (await busyRefusals()).length;
    let refusedHolders = 0;
    let live: ReturnType<typeof run> | undefined;
    const holding = await eventually(async () => {
      live = run('ssh', [...opts, '-o', 'BatchMode=yes', 'alice:open-web@127.0.0.1', 'echo holding; exec cat'], { timeoutMs: 60_000 });
      const r = await Promise.race([live.waitFor('holding').then(() => true, () => false), live.exited.then(() => false)]);
      if (!r) {
        expect(live.stderr()).toContain('too_many_connections');
        refusedHolders++;
      }
      return r;
    }, 15_000);
    expect(holding).toBe(true);
    try {
      const r = await sshTo(listener.address.port, ['true']);
      expect(r.code).toBe(255);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain('Gatehouse: access refused (too_many_connections).');
      expect(r.stderr).toContain(`Received disconnect from 127.0.0.1 port ${listener.address.port}:12: Gatehouse: ${BUSY}`);
      // Refused before any sign-in: the holder's is the only session started.
      expect(await fx.gw.store.listAudit({ action: 'session.start' })).toHaveLength(startsBefore + 1);
      // One refusal audited per holder refused above, and one for this client.
      expect(await eventually(async () => (await busyRefusals()).length === refusedBefore + refusedHolders + 1)).toBe(true);
      expect((await busyRefusals())[refusedBefore + refusedHolders]!.client).toMatch(/^127\.0\.0\.1:\d+$/);
    } finally {
      live!.child.stdin!.end();
    }
    expect((await live!.exited).code).toBe(0);
    await (await session).ended;
    // The session has ended; the place is free once the gateway's side of its socket has closed.
    const again = await eventually(async () => (await sshTo(listener.address.port, ['echo', 'again'])).stdout.trim() === 'again', 15_000);
    expect(again).toBe(true);
  });

  it(`takes ${BUSY_HEADROOM} over-limit connections in to refuse them, and closes one more without a byte`, async () => {
    const startsBefore = (await fx.gw.store.listAudit({ action: 'session.start' })).length;
    // The last test's client may have exited before the gateway read its close.
    let holder: { leave(): Promise<void> } | undefined;
    expect(await eventually(async () => (holder = await tryHoldAuthenticating()) !== undefined, 15_000)).toBe(true);
    const over: Silent[] = [];
    try {
      for (let i = 0; i < BUSY_HEADROOM; i++) over.push(silent(listener.address.port));
      // Each was taken in by the door (ssh2 sends its version line first), none signed in.
      await until(() => over.every((o) => o.received().toString('latin1').startsWith('SSH-2.0-Gatehouse')), 10_000, 'the refusals under way');
      const extra = silent(listener.address.port);
      await extra.closed;
      expect(extra.received().length).toBe(0);
      expect(over.every((o) => !o.isClosed())).toBe(true);
    } finally {
      for (const o of over) o.socket.destroy();
      await Promise.all(over.map((o) => o.closed));
      await holder!.leave();
    }
    expect(await fx.gw.store.listAudit({ action: 'session.start' })).toHaveLength(startsBefore);
    const ok = await eventually(async () => (await sshTo(listener.address.port, ['echo', 'after-headroom'])).stdout.trim() === 'after-headroom', 15_000);
    expect(ok).toBe(true);
  });
});
