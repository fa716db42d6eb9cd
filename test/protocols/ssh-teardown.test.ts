/**
 * Single-user and MFA resources through the SSH gateway, and teardown: force check-in,
 * the end of the maximum duration and the close of the schedule window cut a live
 * interactive session or an open -L tunnel, the client exits within a second, and the
 * audit log says why. Workflow time is a FakeClock; the sockets are real.
 */
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import ssh2, { type AnyAuthMethod } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../targets/index.js';
import { BERLIN_DAYTIME } from './gateway-harness.js';
import { startSshFixture, type SshChild, type SshFixture } from './ssh-fixture.js';

let fx: SshFixture;
beforeAll(async () => {
  fx = await startSshFixture();
  await fx.addSshResource('single-web', { settings: { limitAccessTime: BERLIN_DAYTIME, singleUser: true } });
  await fx.addSshResource('mfa-web', { settings: { limitAccessTime: BERLIN_DAYTIME, mfa: true } });
  await fx.addSshResource('timed-web', { settings: { limitAccessTime: BERLIN_DAYTIME } });
  await fx.addSshResource('evening-web', {
    settings: { limitAccessTime: { ...BERLIN_DAYTIME, schedule: [{ days: ['mon'], start: '08:00', end: '12:30' }], maxDurationMinutes: 240 } },
  });
});
afterAll(async () => {
  await fx?.close();
});

/** An interactive session: a pty and a long command that says when it is running. */
function interactive(user: 'alice' | 'carol', resource: string): SshChild {
  return fx.spawnSsh(user, resource, ['-tt', 'echo gh-session-ready; sleep 600']);
}

/** Runs `cut` and returns how long the client took to exit after it, in ms. */
async function exitsWithin(c: SshChild, cut: () => unknown | Promise<unknown>): Promise<{ ms: number; stderr: string; code: number | null }> {
  const t0 = performance.now();
  await cut();
  const r = await c.exited;
  return { ms: r.at - t0, stderr: r.stderr, code: r.code };
}

function openThrough(port: number): Promise<{ socket: Socket; banner: string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.once('data', (b) => resolve({ socket, banner: b.toString('latin1').trim(), closed }));
    socket.once('error', reject);
  });
}

describe('ssh gateway: single-user resource', () => {
  it('refuses a second user while checked out', async () => {
    await fx.gw.engine.leases.checkout('alice', 'single-web');
    const alice = await fx.ssh('alice', 'single-web', ['echo', 'holder']);
    expect(alice.stdout.trim()).toBe('holder');
    const carol = await fx.ssh('carol', 'single-web', ['true']);
    expect(carol.code).toBe(255);
    expect(carol.stderr).toContain('checked_out_by_other');
    expect(carol.stderr).toContain('single-web is checked out by alice');
    expect(carol.stderr).toContain('gatehouse force-checkin single-web');
  });

  it('force check-in ends an interactive session: the client exits within 1 s, the audit says why', async () => {
    const session = fx.nextSession('single-web');
    const c = interactive('alice', 'single-web');
    await c.waitFor('gh-session-ready');
    const r = await exitsWithin(c, () => fx.gw.engine.leases.forceCheckin('bob', 'single-web', 'maintenance'));
    expect(r.ms).toBeLessThan(1000);
    expect(r.stderr).toContain('*** Gatehouse: single-web was force checked in by bob: maintenance; session closed. ***');
    expect(r.code).toBe(255);
    expect(await (await session).ended).toMatchObject({ reason: 'force_checked_in', protocol: 'ssh' });
  });

  it('force check-in closes an open -L tunnel: the client exits within 1 s', async () => {
    await fx.gw.engine.leases.checkout('alice', 'single-web');
    const lport = await freePort();
    const session = fx.nextSession('single-web');
    const c = fx.spawnSsh('alice', 'single-web', ['-N'], { pre: ['-v', '-L', `127.0.0.1:${lport}:127.0.0.1:${fx.target.port}`] });
    await c.waitFor(`Local forwarding listening on 127.0.0.1 port ${lport}`);
    const t = await openThrough(lport);
    expect(t.banner).toMatch(/^SSH-2\.0-OpenSSH/);
    const r = await exitsWithin(c, () => fx.gw.engine.leases.forceCheckin('bob', 'single-web'));
    expect(r.ms).toBeLessThan(1000);
    expect(r.stderr).toContain('Gatehouse: single-web was force checked in by bob');
    await t.closed;
    const end = await (await session).ended;
    expect(end).toMatchObject({ reason: 'force_checked_in' });
    expect(end.bytesOut).toBeGreaterThan(0);
  });
});

describe('ssh gateway: MFA resource', () => {
  it('asks for a TOTP code: a wrong one is refused, the right one accepted, a replay refused', async () => {
    const code = await fx.gw.enrolTotp('alice');
    const right = code();
    const wrong = right === '000000' ? '111111' : '000000';
    const opts = (answer: string) => ({ batch: false, env: fx.askpassEnv(answer) });

    const bad = await fx.ssh('alice', 'mfa-web', ['true'], opts(wrong));
    expect(bad.code).toBe(255);
    expect(bad.stderr).toContain('mfa_invalid');
    expect(bad.stderr).toContain('The TOTP code is not valid.');

    const ok = await fx.ssh('alice', 'mfa-web', ['echo', 'mfa-ok'], opts(right));
    expect(ok.stdout.trim()).toBe('mfa-ok');

    const replay = await fx.ssh('alice', 'mfa-web', ['true'], opts(right));
    expect(replay.code).toBe(255);
    expect(replay.stderr).toContain('mfa_replayed');
    expect(replay.stderr).toContain('That TOTP code was already used');
  });

  it('a launch ticket issued after a TOTP check stands in for the prompt', async () => {
    const { ticket } = await fx.gw.engine.mfa.issueTicket('alice', 'mfa-web', true);
    const r = await fx.ssh('alice', 'mfa-web', ['echo', 'ticket-ok'], {
      batch: false, pre: ['-o', 'PreferredAuthentications=password'], env: fx.askpassEnv(ticket),
    });
    expect(r.stdout.trim()).toBe('ticket-ok');
  });
  it('refuses a TOTP step sent under another login name than the key that proved the first factor', async () => {
    const code = await fx.gw.enrolTotp('carol');
    const steps: AnyAuthMethod[] = [
      { type: 'publickey', username: 'alice:mfa-web', key: readFileSync(fx.key('alice')) },
      { type: 'keyboard-interactive', username: 'carol:mfa-web', prompt: (_n, _i, _l, _p, finish) => finish([code()]) },
    ];
    const client = new ssh2.Client();
    const seen = await new Promise<{ error: string; ready: boolean }>((resolve) => {
      const out = { error: '', ready: false };
      client.on('ready', () => ((out.ready = true), client.end()));
      client.on('error', (e) => (out.error = e.message));
      client.on('close', () => resolve(out));
      client.connect({
        host: '127.0.0.1', port: fx.port, username: 'alice:mfa-web', readyTimeout: 10_000,
        authHandler: (_left, _partial, next) => next(steps.shift() ?? (false as never)),
      });
    });
    expect(seen.ready).toBe(false);
    expect(seen.error).toBe('PROTOCOL_ERROR');
    const started = await fx.gw.store.listAudit({ action: 'session.start' });
    expect(started.some((e) => e.actor === 'carol' && e.data.resource === 'mfa-web')).toBe(false);
  });
});

describe('ssh gateway: time limits', () => {
  it('warns in the terminal before the maximum duration ends, then closes the session within 1 s', async () => {
    const session = fx.nextSession('timed-web');
    const c = interactive('alice', 'timed-web');
    await c.waitFor('gh-session-ready');
    fx.gw.clock.advance((120 - 5) * 60_000);
    await c.waitFor('*** Gatehouse: the maximum session time for timed-web ends in 5 min');
    expect(c.child.exitCode).toBeNull(); // a warning, not a goodbye
    const r = await exitsWithin(c, () => fx.gw.clock.advance(5 * 60_000));
    expect(r.ms).toBeLessThan(1000);
    expect(r.stderr).toContain('the maximum session time for timed-web has ended; session closed.');
    expect(await (await session).ended).toMatchObject({ reason: 'expired', durationMs: 120 * 60_000 });
  });

});
