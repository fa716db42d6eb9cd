/**
 * Smoke test for test/targets: each real server starts, and the stock clients (ssh, psql,
 * mariadb) reach it DIRECTLY with the credentials the start script reported. Protocol
 * tests build on these targets, so a broken target should fail here, plainly.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import { Client } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  startMariadb,
  startPostgres,
  startSshd,
  type MariadbTarget,
  type PostgresTarget,
  type SshdTarget,
} from '../targets/index.js';

const exec = promisify(execFile);
const CLIENT_TIMEOUT_MS = 20_000;

function sshArgs(t: SshdTarget, command: string): string[] {
  return [
    '-F', '/dev/null',
    '-i', t.clientKey,
    '-p', String(t.port),
    '-o', 'StrictHostKeyChecking=yes',
    '-o', `UserKnownHostsFile=${t.knownHosts}`,
    '-o', 'BatchMode=yes',
    '-o', 'IdentitiesOnly=yes',
    `${t.user}@${t.host}`,
    command,
  ];
}

function psql(t: PostgresTarget, conninfo: string, password: string, sql: string) {
  return exec('psql', ['-X', '-A', '-t', conninfo, '-c', sql], {
    env: { ...process.env, PGPASSWORD: password },
    timeout: CLIENT_TIMEOUT_MS,
  });
}

function mariadb(t: MariadbTarget, user: string, password: string, sql: string, extra: string[] = []) {
  return exec(
    'mariadb',
    ['--no-defaults', '-h', t.host, '-P', String(t.port), '-u', user, `-p${password}`, ...extra, '-N', '-B',
      t.database, '-e', sql],
    { timeout: CLIENT_TIMEOUT_MS },
  );
}

function execWithInput(cmd: string, args: string[], input: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: CLIENT_TIMEOUT_MS }, (err, stdout) => {
      if (err) reject(err);
      else resolve(stdout);
    });
    child.stdin?.end(input);
  });
}

function sshPasswordExec(t: SshdTarget, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    let out = '';
    client
      .on('ready', () => {
        client.exec(command, (err, stream) => {
          if (err) return reject(err);
          stream.on('data', (d: Buffer) => (out += d.toString()));
          stream.on('close', () => {
            client.end();
            resolve(out);
          });
        });
      })
      .on('error', reject)
      .connect({ host: t.host, port: t.port, username: t.user, password: t.password, readyTimeout: CLIENT_TIMEOUT_MS });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('test targets', () => {
  let sshd: SshdTarget;
  let pg: PostgresTarget;
  let maria: MariadbTarget;

  beforeAll(async () => {
    [sshd, pg, maria] = await Promise.all([startSshd(), startPostgres(), startMariadb()]);
  });

  afterAll(async () => {
    await Promise.all([sshd?.stop(), pg?.stop(), maria?.stop()]);
  });

  describe('sshd', () => {
    it('runs a command for the test user with the generated key, host key pinned', async () => {
      const { stdout } = await exec('ssh', sshArgs(sshd, 'uname -a; id -un'), { timeout: CLIENT_TIMEOUT_MS });
      expect(stdout).toMatch(/^Linux /);
      expect(stdout.trim().split('\n').at(-1)).toBe(sshd.user);
      expect(readFileSync(sshd.knownHosts, 'utf8')).toContain(sshd.hostKey);
    });

    it('accepts the reported password', async () => {
      expect((await sshPasswordExec(sshd, 'id -un')).trim()).toBe(sshd.user);
    });

    it('serves the sftp subsystem', async () => {
      const args = ['-F', '/dev/null', '-i', sshd.clientKey, '-P', String(sshd.port),
        '-o', `UserKnownHostsFile=${sshd.knownHosts}`, '-o', 'BatchMode=yes', '-b', '-', `${sshd.user}@${sshd.host}`];
      const stdout = await execWithInput('sftp', args, 'pwd\n');
      expect(stdout).toMatch(new RegExp(`Remote working directory: /home/${sshd.user}`));
    });

    it('runs side by side with a second instance, and stop removes only that one', async () => {
      const other = await startSshd({ port: await freePort() });
      try {
        expect(other.port).not.toBe(sshd.port);
        expect(other.dir).not.toBe(sshd.dir);
        expect(other.hostKeyFingerprint).not.toBe(sshd.hostKeyFingerprint);
        const { stdout } = await exec('ssh', sshArgs(other, 'echo second'), { timeout: CLIENT_TIMEOUT_MS });
        expect(stdout.trim()).toBe('second');
      } finally {
        await other.stop();
      }
      expect(existsSync(other.dir)).toBe(false);
      expect(await accepts(other.port)).toBe(false);
      expect(await accepts(sshd.port)).toBe(true);
      await other.stop(); // idempotent
    });
  });

  describe('postgres', () => {
    it('lets app_user into appdb with SCRAM', async () => {
      const conninfo = `host=${pg.host} port=${pg.port} user=${pg.user} dbname=${pg.database} sslmode=disable`;
      const { stdout } = await psql(pg, conninfo, pg.password, 'select current_user');
      expect(stdout.trim()).toBe('app_user');
    });

    it('verifies TLS against the reported ca', async () => {
      const conninfo =
        `host=${pg.host} port=${pg.port} user=${pg.user} dbname=${pg.database} ` +
        `sslmode=verify-full sslrootcert=${pg.ca}`;
      const { stdout } = await psql(pg, conninfo, pg.password, 'select ssl from pg_stat_ssl where pid = pg_backend_pid()');
      expect(stdout.trim()).toBe('t');
    });

    it('authenticates app_md5 with the md5 method', async () => {
      const conninfo = `host=${pg.host} port=${pg.port} user=${pg.md5User} dbname=${pg.database} sslmode=disable`;
      const { stdout } = await psql(pg, conninfo, pg.md5Password, 'select current_user');
      expect(stdout.trim()).toBe('app_md5');
      expect(readFileSync(pg.log, 'utf8')).toMatch(/identity="app_md5" method=md5/);
    });

    it('refuses a wrong password', async () => {
      const conninfo = `host=${pg.host} port=${pg.port} user=${pg.user} dbname=${pg.database} sslmode=disable`;
      await expect(psql(pg, conninfo, 'wrong', 'select 1')).rejects.toThrow(/password authentication failed/);
    });
  });

  describe('mariadb', () => {
    it('lets app_user into appdb with mysql_native_password', async () => {
      const { stdout } = await mariadb(maria, maria.user, maria.password, 'select current_user()');
      expect(stdout.trim()).toBe('app_user@127.0.0.1');
    });

    it('verifies TLS against the reported ca', async () => {
      const { stdout } = await mariadb(maria, maria.user, maria.password, "show status like 'Ssl_version'", [
        `--ssl-ca=${maria.ca}`,
        '--ssl-verify-server-cert',
      ]);
      expect(stdout).toMatch(/^Ssl_version\tTLSv1\.[23]/);
    });

    it('has the ed25519 user, large packets and local infile on', async () => {
      const { stdout } = await mariadb(
        maria,
        maria.ed25519User,
        maria.ed25519Password,
        'select current_user(), @@max_allowed_packet, @@local_infile',
      );
      expect(stdout.trim()).toBe('app_ed25519@127.0.0.1\t67108864\t1');
      expect(maria.sha2User).toBeNull();
    });

    it('refuses a wrong password', async () => {
      await expect(mariadb(maria, maria.user, 'wrong', 'select 1')).rejects.toThrow(/Access denied/);
    });
  });
});
