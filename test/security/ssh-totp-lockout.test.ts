/**
 * Finding 1 (high), with the stock OpenSSH client against a real sshd behind the gateway:
 * wrong TOTP codes at the keyboard-interactive prompt never counted towards the lockout, and
 * a user locked elsewhere still logged in with a registered key and a current code.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERLIN_DAYTIME } from '../protocols/gateway-harness.js';
import { startSshFixture, type SshFixture } from '../protocols/ssh-fixture.js';

let fx: SshFixture;
beforeAll(async () => {
  fx = await startSshFixture();
  await fx.addSshResource('mfa-web', { settings: { limitAccessTime: BERLIN_DAYTIME, mfa: true } });
  await fx.addSshResource('plain-web', { settings: {} });
});
afterAll(async () => {
  await fx?.close();
});

describe('TOTP guessing over SSH', () => {
  it('eight wrong codes then the right one: locked, not logged in', async () => {
    const code = await fx.gw.enrolTotp('carol');
    const opts = (answer: string) => ({ batch: false, env: fx.askpassEnv(answer) });
    const seen: string[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await fx.ssh('carol', 'mfa-web', ['true'], opts(String(100000 + i)));
      expect(r.code).toBe(255);
      seen.push(/refused \((\w+)\)/.exec(r.stderr)?.[1] ?? r.stderr);
    }
    expect(seen.slice(0, 5)).toEqual(Array(5).fill('mfa_invalid'));
    expect(seen.slice(5)).toEqual(Array(3).fill('locked'));
    const right = await fx.ssh('carol', 'mfa-web', ['echo', 'in'], opts(code()));
    expect(right.stdout).not.toContain('in');
    expect(right.stderr).toContain('Gatehouse: access refused (locked).');
    expect(right.stderr).toContain('too many failed sign-ins');
  });

  it('a user locked by failed API sign-ins is refused over SSH with a registered key, before the code is asked', async () => {
    const port = fx.gw.broker.portFor({ protocol: 'postgres', loginExample: '' });
    for (let i = 0; i < 5; i++) await port.login({ name: 'dave:plain-web', secret: { kind: 'password', value: 'guess' }, client: '198.51.100.9:1' });
    const r = await fx.ssh('dave', 'plain-web', ['echo', 'in']);
    expect(r.code).toBe(255);
    expect(r.stdout).not.toContain('in');
    expect(r.stderr).toContain('Gatehouse: access refused (locked).');
    const rows = await fx.gw.store.listAudit({ action: 'door.refuse' });
    expect(rows.some((a) => a.data?.door === 'ssh' && a.data?.code === 'locked')).toBe(true);
  });
});
