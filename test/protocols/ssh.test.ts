/**
 * OpenSSH through the gateway to a real sshd: the decision at login (refusal with reason and
 * hint), commands, scp, -L tunnels, single-user and MFA resources.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERLIN_DAYTIME, GATEWAY_PASSWORD } from './gateway-harness.js';
import { freePort } from '../targets/index.js';
import { run, startSshFixture, type SshFixture } from './ssh-fixture.js';

const APPROVAL = { approvers: [{ team: 'dba' }], approvals: 1, requireReason: false, requireTicket: false, startOn: 'approval' as const };

const { Client } = ssh2;

let fx: SshFixture;
beforeAll(async () => {
  fx = await startSshFixture();
  await fx.addSshResource('prod-web', { settings: { limitAccessTime: BERLIN_DAYTIME, requireApproval: APPROVAL } });
});
afterAll(async () => {
  await fx?.close();
});

/** Reads the first line a TCP server sends (an SSH version banner). */
function readBanner(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let buf = '';
    s.on('data', (b) => {
      buf += b.toString('latin1');
      const i = buf.indexOf('\n');
      if (i >= 0) {
        s.destroy();
        resolve(buf.slice(0, i).trim());
      }
    });
    s.on('error', reject);
    s.on('close', () => resolve(buf.trim()));
  });
}

describe('ssh gateway: approval resource', () => {
  it('refuses without approval, with the reason and the command that fixes it', async () => {
    const r = await fx.ssh('alice', 'prod-web', ['uname', '-a']);
    expect(r.code).toBe(255);
    expect(r.stderr).toContain('approval_required');
    expect(r.stderr).toContain('prod-web requires an approved access request.');
    expect(r.stderr).toContain('gatehouse request prod-web');
    expect(r.stdout).toBe('');
  });

  it('runs a command on the target after approval, with the host key pinned on first use', async () => {
    await fx.gw.approve('alice', 'prod-web');
    const r = await fx.ssh('alice', 'prod-web', ['uname', '-a', '&&', 'whoami']);
    expect(r.stderr).not.toContain('refused');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Linux /);
    expect(r.stdout).toContain(fx.target.user);
    const res = await fx.gw.store.getResource('prod-web');
    expect(res?.hostKeyPin).toBe(fx.target.hostKeyFingerprint);
  });

  it('forwards stdin EOF, stderr and the exit status of the remote command', async () => {
    const r = await fx.ssh('alice', 'prod-web', ['cat; echo done; echo oops >&2; exit 7'], { input: 'hello\n' });
    expect(r.code).toBe(7);
    expect(r.stdout).toBe('hello\ndone\n');
    expect(r.stderr).toContain('oops');
  });

  it('gives a shell a pty and passes window changes on', async () => {
    const client = new Client();
    const out = await new Promise<string>((resolve, reject) => {
      client.on('error', reject);
      client.on('ready', () => {
        client.shell({ rows: 24, cols: 80, term: 'xterm' }, (err, stream) => {
          if (err) return reject(err);
          let buf = '';
          let resized = false;
          stream.on('data', (b: Buffer) => {
            buf += b.toString();
            if (buf.includes('size=40 132')) {
              stream.end('exit\n');
            } else if (buf.includes('size=24 80') && !resized) {
              resized = true;
              stream.setWindow(40, 132, 0, 0);
              stream.write('echo size=$(stty size)\n');
            }
          });
          stream.on('close', () => resolve(buf));
          stream.write('echo size=$(stty size) tty=$(tty)\n');
        });
      });
      client.connect({ host: '127.0.0.1', port: fx.port, username: 'alice:prod-web', privateKey: readFileSync(fx.key('alice')), readyTimeout: 10_000 });
    });
    client.end();
    expect(out).toMatch(/size=24 80 tty=\/dev\/pts\/\d+/);
    expect(out).toContain('size=40 132');
  });

  it('copies a 10 MiB file with scp (sftp mode) both ways, byte-identical', async () => {
    const src = join(fx.dir, 'ten-mib.bin');
    const back = join(fx.dir, 'ten-mib.back');
    const data = randomBytes(10 * 1024 * 1024);
    writeFileSync(src, data);
    // Relative: the target user's home directory, which does not depend on /tmp being world-writable.
    const remote = `gh-scp-${randomBytes(6).toString('hex')}`;
    const scp = (from: string, to: string) =>
      run('scp', [...fx.sshOpts('alice').map((a) => (a === '-p' ? '-P' : a)), '-o', 'BatchMode=yes', '-o', 'User=alice:prod-web', from, to], { timeoutMs: 60_000 }).exited;
    const upSession = fx.nextSession('prod-web');
    const up = await scp(src, `127.0.0.1:${remote}`);
    expect(up.stderr).not.toContain('refused');
    expect(up.code).toBe(0);
    const uploaded = await (await upSession).ended;
    expect(uploaded).toMatchObject({ reason: 'client_closed', protocol: 'ssh' });
    expect(uploaded.bytesIn).toBeGreaterThan(data.length);
    const downSession = fx.nextSession('prod-web');
    const down = await scp(`127.0.0.1:${remote}`, back);
    expect(down.code).toBe(0);
    expect(readFileSync(back).equals(data)).toBe(true);
    expect((await (await downSession).ended).bytesOut).toBeGreaterThan(data.length);
    await fx.ssh('alice', 'prod-web', ['rm', '-f', remote]);
  });

  it('tunnels -L to the target port, and refuses another host or port with the reason', async () => {
    const [ok, otherHost, otherPort] = [await freePort(), await freePort(), await freePort()];
    const tunnel = fx.spawnSsh('alice', 'prod-web', ['-N'], {
      pre: ['-v', '-L', `127.0.0.1:${ok}:127.0.0.1:${fx.target.port}`, '-L', `127.0.0.1:${otherHost}:10.255.255.1:22`, '-L', `127.0.0.1:${otherPort}:127.0.0.1:${fx.target.port + 1}`],
    });
    try {
      await tunnel.waitFor(`Local forwarding listening on 127.0.0.1 port ${otherPort}`);
      expect(await readBanner(ok)).toMatch(/^SSH-2\.0-OpenSSH/);
      expect(await readBanner(otherHost)).toBe('');
      await tunnel.waitFor("tunnels from prod-web may only reach prod-web's own host, not 10.255.255.1:22");
      expect(await readBanner(otherPort)).toBe('');
      await tunnel.waitFor(`port ${fx.target.port + 1} is not an allowed tunnel port of prod-web (allowed: ${fx.target.port})`);
      expect(tunnel.stderr()).toContain('administratively prohibited');
    } finally {
      tunnel.child.kill();
      await tunnel.exited;
    }
  });

  it('accepts the gateway password and a one-time launch ticket instead of a key; a used ticket is refused with its reason', async () => {
    const pw = await fx.ssh('alice', 'prod-web', ['echo', 'via-password'], {
      batch: false, pre: ['-o', 'PreferredAuthentications=password'], env: fx.askpassEnv(GATEWAY_PASSWORD),
    });
    expect(pw.stdout.trim()).toBe('via-password');
    const { ticket } = await fx.gw.engine.mfa.issueTicket('alice', 'prod-web', false);
    const opts = { batch: false, pre: ['-o', 'PreferredAuthentications=password'], env: fx.askpassEnv(ticket) };
    const t1 = await fx.ssh('alice', 'prod-web', ['echo', 'via-ticket'], opts);
    expect(t1.stdout.trim()).toBe('via-ticket');
    // A ticket is used once; then the user reads why it no longer works.
    const t2 = await fx.ssh('alice', 'prod-web', ['echo', 'again'], opts);
    expect(t2.code).toBe(255);
    expect(t2.stdout).toBe('');
    expect(t2.stderr).toContain('Gatehouse: access refused (bad_ticket).');
    expect(t2.stderr).toContain('the launch ticket is not valid for prod-web (unknown, already used or expired).');
    expect(t2.stderr).toContain('To fix: get a fresh one: gatehouse launch prod-web');
    // A wrong password is SSH's ordinary "try again".
    const wrong = await fx.ssh('alice', 'prod-web', ['true'], {
      batch: false, pre: ['-o', 'PreferredAuthentications=password', '-o', 'NumberOfPasswordPrompts=1'], env: fx.askpassEnv('not the password'),
    });
    expect(wrong.code).toBe(255);
    expect(wrong.stderr).toContain('Permission denied');
    expect(wrong.stderr).not.toContain('Gatehouse: access refused');
  });

  it('refuses a login that is not USER:RESOURCE, an unregistered key, and a user not on the access list', async () => {
    const bad = await run('ssh', [...fx.sshOpts('alice'), '-o', 'BatchMode=no', '-o', 'PreferredAuthentications=password', 'alice@127.0.0.1', 'true'], {
      env: fx.askpassEnv(GATEWAY_PASSWORD),
    }).exited;
    expect(bad.code).toBe(255);
    expect(bad.stderr).toContain('Gatehouse: access refused (bad_login_name).');
    expect(bad.stderr).toContain("'alice' is not a Gatehouse login; log in as USER:RESOURCE.");
    expect(bad.stderr).toContain('To fix: ssh -p 2222 alice:prod-web@GATEWAY');
    // A client that only offers keys hears the same reason at its first key probe.
    const badKeyOnly = await run('ssh', [...fx.sshOpts('alice'), '-o', 'BatchMode=yes', 'alice@127.0.0.1', 'true']).exited;
    expect(badKeyOnly.code).toBe(255);
    expect(badKeyOnly.stderr).toContain('Gatehouse: access refused (bad_login_name).');
    expect(badKeyOnly.stderr).toContain('To fix: ssh -p 2222 alice:prod-web@GATEWAY');
    const wrongKey = await run('ssh', [...fx.sshOpts('carol'), '-o', 'BatchMode=yes', 'alice:prod-web@127.0.0.1', 'true']).exited;
    expect(wrongKey.code).toBe(255);
    expect(wrongKey.stderr).toContain('Permission denied (publickey,password)');
    const mallory = await fx.ssh('mallory', 'prod-web', ['true']);
    expect(mallory.stderr).toContain('not_on_access_list');
    expect(mallory.stderr).toContain('gatehouse resource share prod-web --user mallory');
  });
});

describe('ssh gateway: resources of another protocol', () => {
  beforeAll(async () => {
    await fx.gw.addResource({ name: 'prod-pg', type: 'database', protocol: 'postgres', host: '127.0.0.1', port: 5432, database: 'app', credentials: { login: 'app', password: 'secret' } });
  });

  it('refuses an SSH login to a PostgreSQL resource with wrong_protocol, before any target connection', async () => {
    const r = await fx.ssh('alice', 'prod-pg', ['true']);
    expect(r.code).toBe(255);
    expect(r.stderr).toContain('Gatehouse: access to prod-pg refused (wrong_protocol).');
    expect(r.stderr).toContain('prod-pg is a postgres resource and cannot be reached through the ssh gateway.');
    expect(r.stderr).toContain('To fix: gatehouse connect prod-pg');
    expect(await fx.gw.store.listAudit({ action: 'session.discard' })).not.toContainEqual(expect.objectContaining({ data: expect.objectContaining({ resource: 'prod-pg' }) }));
  });

  it('refuses a PostgreSQL launch ticket typed at the SSH password prompt, and leaves it unused', async () => {
    const { ticket } = await fx.gw.engine.mfa.issueTicket('alice', 'prod-pg', false);
    const r = await fx.ssh('alice', 'prod-pg', ['true'], { batch: false, pre: ['-o', 'PreferredAuthentications=password'], env: fx.askpassEnv(ticket) });
    expect(r.code).toBe(255);
    expect(r.stderr).toContain('Gatehouse: access refused (wrong_protocol).');
    expect(r.stderr).toContain('prod-pg is a postgres resource and cannot be reached through the ssh gateway.');
    const stored = await fx.gw.engine.mfa.peekTicket(ticket);
    expect(stored?.usedAt).toBeUndefined();
    const refusal = await fx.gw.store.listAudit({ action: 'login.refuse' });
    expect(refusal).toContainEqual(expect.objectContaining({ subject: 'prod-pg', data: expect.objectContaining({ door: 'ssh', code: 'wrong_protocol' }) }));
  });
});

describe('ssh gateway: target identity and credentials', () => {
  it('refuses when the pinned host key no longer matches', async () => {
    await fx.addSshResource('pinned-web');
    const r = (await fx.gw.store.getResource('pinned-web'))!;
    await fx.gw.store.putResource({ ...r, hostKeyPin: 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' });
    const res = await fx.ssh('alice', 'pinned-web', ['true']);
    expect(res.code).toBe(255);
    expect(res.stderr).toContain('Gatehouse: access to pinned-web refused (target_identity).');
    expect(res.stderr).toContain(`could not open pinned-web: its SSH host key changed (now ${fx.target.hostKeyFingerprint}, pinned SHA256:AAAA`);
    expect(res.stderr).toContain(`To fix: after verifying the new SSH host key with the owner of pinned-web, an administrator re-pins it: set hostKeyPin: ${fx.target.hostKeyFingerprint}`);
    const audit = await fx.gw.store.listAudit({ action: 'session.discard' });
    expect(audit.some((e) => e.data.resource === 'pinned-web' && e.data.code === 'target_identity')).toBe(true);
    expect((await fx.gw.store.getResource('pinned-web'))?.hostKeyPin).toBe('SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
  });

  it('logs in to the target with a vaulted password, and says so when the target is down', async () => {
    await fx.addSshResource('pw-web', { credentials: { login: fx.target.user, password: fx.target.password } });
    const ok = await fx.ssh('alice', 'pw-web', ['whoami']);
    expect(ok.stdout.trim()).toBe(fx.target.user);
    await fx.addSshResource('down-web', { port: await freePort() });
    const down = await fx.ssh('alice', 'down-web', ['true']);
    expect(down.code).toBe(255);
    expect(down.stderr).toContain('Gatehouse: access to down-web refused (target_unreachable).');
    expect(down.stderr).toMatch(/could not open down-web: 127\.0\.0\.1:\d+ refused the connection/);
    const discarded = await fx.gw.store.listAudit({ action: 'session.discard' });
    expect(discarded.some((e) => e.data.resource === 'down-web' && e.data.code === 'target_unreachable')).toBe(true);
  });
});
