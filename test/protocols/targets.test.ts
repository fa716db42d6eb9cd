/**
 * Smoke test for test/targets: each real server starts, and the stock clients (ssh, psql,
 * mariadb, ldapsearch) reach it DIRECTLY with the credentials the start script reported. Protocol
 * tests build on these targets, so a broken target should fail here, plainly.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import { Client } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  startMariadb,
  startPostgres,
  startSlapd,
  startSlapdProxy,
  startSshd,
  type MariadbTarget,
  type PostgresTarget,
  type SlapdTarget,
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

/**
 * An OpenLDAP client (ldapsearch, ldapwhoami, ldapmodify) with a simple bind. `ca` is the
 * only trust anchor for StartTLS/ldaps (it overrides Debian's /etc/ldap/ldap.conf), and
 * certificate checking is demanded outright rather than left to the default.
 */
function ldap(cmd: string, args: string[], ca?: string) {
  const env: NodeJS.ProcessEnv = { ...process.env, LDAPTLS_REQCERT: 'demand' };
  if (ca !== undefined) env.LDAPTLS_CACERT = ca;
  return exec(cmd, ['-x', ...args], { env, timeout: CLIENT_TIMEOUT_MS });
}

function ldapBind(t: SlapdTarget, password = t.password): string[] {
  return ['-D', t.user, '-w', password];
}

function ldapUrl(t: SlapdTarget): string {
  return `ldap://${t.host}:${t.port}`;
}

function ldapsUrl(t: SlapdTarget): string {
  return `ldaps://${t.host}:${t.ldapsPort}`;
}

function occurrences(haystack: string, needle: string): number {
  return haystack.split(needle).length - 1;
}

function countInLog(t: SlapdTarget, needle: string): number {
  return occurrences(readFileSync(t.log, 'utf8'), needle);
}

/** Polls slapd's log until `needle` occurs `count` times, or `withinMs` has passed. */
async function logReaches(t: SlapdTarget, needle: string, count: number, withinMs: number): Promise<number> {
  const deadline = Date.now() + withinMs;
  let seen = countInLog(t, needle);
  while (seen < count && Date.now() < deadline) {
    await sleep(5);
    seen = countInLog(t, needle);
  }
  return seen;
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
  let slapd: SlapdTarget;

  beforeAll(async () => {
    [sshd, pg, maria, slapd] = await Promise.all([startSshd(), startPostgres(), startMariadb(), startSlapd()]);
  });

  afterAll(async () => {
    await Promise.all([sshd?.stop(), pg?.stop(), maria?.stop(), slapd?.stop()]);
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

  describe('slapd', () => {
    const user1 = () => `uid=user0001,${slapd.peopleDn}`;

    it('binds the service account over StartTLS, verified against the reported ca, and reads an entry', async () => {
      const who = await ldap('ldapwhoami', ['-ZZ', '-H', ldapUrl(slapd), ...ldapBind(slapd)], slapd.ca);
      expect(who.stdout.trim()).toBe(`dn:${slapd.user}`);
      const { stdout } = await ldap(
        'ldapsearch',
        ['-ZZ', '-LLL', '-H', ldapUrl(slapd), ...ldapBind(slapd), '-b', user1(), '-s', 'base', 'uid', 'mail'],
        slapd.ca,
      );
      expect(stdout).toContain(`dn: ${user1()}`);
      expect(stdout).toContain('uid: user0001');
      expect(stdout).toContain('mail: user0001@example.com');
    });

    it('serves ldaps on the second port, and only a client trusting its ca gets in', async () => {
      const { stdout } = await ldap(
        'ldapsearch',
        ['-LLL', '-H', ldapsUrl(slapd), ...ldapBind(slapd), '-b', `uid=user2000,${slapd.peopleDn}`, '-s', 'base', 'cn'],
        slapd.ca,
      );
      expect(stdout).toContain('cn: User 2000');
      // Another CA (the PostgreSQL target's, same names in its cert): the TLS handshake fails.
      await expect(
        ldap('ldapwhoami', ['-H', ldapsUrl(slapd), ...ldapBind(slapd)], pg.ca),
      ).rejects.toMatchObject({ code: 255 });
      expect(slapd.version).toMatch(/^OpenLDAP: slapd \d/);
    });

    it('returns every person to a paged search, 100 per page', async () => {
      const { stdout } = await ldap('ldapsearch', [
        '-LLL', '-H', ldapUrl(slapd), ...ldapBind(slapd), '-E', 'pr=100/noprompt',
        '-b', slapd.peopleDn, '(uid=*)', 'dn',
      ]);
      expect(slapd.entries).toBe(2000);
      expect(stdout.match(/^dn: uid=user\d{4},/gm)).toHaveLength(slapd.entries);
      // More than slapd's default sizelimit (500): the account's own limit is unlimited, in pages.
      expect(countInLog(slapd, `SRCH base="${slapd.peopleDn}"`)).toBeGreaterThanOrEqual(20);
    });

    it('refuses a wrong password with invalidCredentials (49)', async () => {
      await expect(
        ldap('ldapwhoami', ['-H', ldapUrl(slapd), ...ldapBind(slapd, 'wrong')]),
      ).rejects.toMatchObject({ code: 49 });
    });

    it('logs bindLine once per successful bind of the service account, promptly, and never for a failed one', async () => {
      const before = countInLog(slapd, slapd.bindLine);
      await ldap('ldapwhoami', ['-H', ldapUrl(slapd), ...ldapBind(slapd)]);
      // slapd -d writes its stats lines unbuffered: the line is there within 100 ms.
      expect(await logReaches(slapd, slapd.bindLine, before + 1, 100)).toBe(before + 1);

      const refusals = countInLog(slapd, 'RESULT tag=97 err=49');
      await expect(ldap('ldapwhoami', ['-H', ldapUrl(slapd), ...ldapBind(slapd, 'wrong')])).rejects.toMatchObject({
        code: 49,
      });
      // The refusal itself is logged, so the missing bindLine is not just a slow log.
      expect(await logReaches(slapd, 'RESULT tag=97 err=49', refusals + 1, 1000)).toBe(refusals + 1);
      expect(countInLog(slapd, slapd.bindLine)).toBe(before + 1);
    });

    it('lets anonymous read the rootDSE but no entry', async () => {
      const root = await ldap('ldapsearch', ['-LLL', '-H', ldapUrl(slapd), '-b', '', '-s', 'base', 'namingContexts']);
      expect(root.stdout).toContain(`namingContexts: ${slapd.baseDn}`);
      // Not even the entries' existence is disclosed: noSuchObject (32), for one and for all.
      const searches: [base: string, scope: string][] = [[user1(), 'base'], [slapd.peopleDn, 'sub'], [slapd.baseDn, 'sub']];
      for (const [base, scope] of searches) {
        await expect(
          ldap('ldapsearch', ['-LLL', '-H', ldapUrl(slapd), '-b', base, '-s', scope, '(objectClass=*)', 'dn']),
        ).rejects.toMatchObject({ code: 32, stdout: '' });
      }
    });

    it('lets the service account write under people only, and hides passwords from it', async () => {
      const bind = ['-H', ldapUrl(slapd), ...ldapBind(slapd)];
      await execWithInput('ldapmodify', ['-x', ...bind],
        `dn: uid=user0003,${slapd.peopleDn}\nchangetype: modify\nreplace: mail\nmail: changed@example.com\n-\n` +
        'replace: userPassword\nuserPassword: user3-secret\n');
      // The person can bind with the password just set and read their own entry, password included.
      const self = await ldap('ldapsearch', ['-LLL', '-H', ldapUrl(slapd), '-D', `uid=user0003,${slapd.peopleDn}`,
        '-w', 'user3-secret', '-b', `uid=user0003,${slapd.peopleDn}`, '-s', 'base', 'mail', 'userPassword']);
      expect(self.stdout).toContain('mail: changed@example.com');
      expect(self.stdout).toMatch(/^userPassword/m);
      // The service account may set passwords but not read them.
      const svc = await ldap('ldapsearch', ['-LLL', ...bind, '-b', `uid=user0003,${slapd.peopleDn}`, '-s', 'base', '*']);
      expect(svc.stdout).toContain('mail: changed@example.com');
      expect(svc.stdout).not.toMatch(/^userPassword/m);
      await expect(
        execWithInput('ldapmodify', ['-x', ...bind],
          `dn: uid=secret1,${slapd.restrictedDn}\nchangetype: modify\nreplace: mail\nmail: x@example.com\n`),
      ).rejects.toMatchObject({ code: 50 });
    });

    it('has the restricted subtree and returns the referral object as a search reference', async () => {
      const bind = ['-LLL', '-H', ldapUrl(slapd), ...ldapBind(slapd)];
      const restricted = await ldap('ldapsearch', [...bind, '-b', slapd.restrictedDn, '(uid=*)', 'dn']);
      expect(restricted.stdout).toContain(`dn: uid=secret1,${slapd.restrictedDn}`);
      const top = await ldap('ldapsearch', [...bind, '-b', slapd.baseDn, '-s', 'one', '(objectClass=*)', 'dn']);
      expect(top.stdout).toContain(`# refldap://elsewhere.invalid/${slapd.referralDn}`);
      // A base search at the referral object itself is answered with a referral (10).
      await expect(
        ldap('ldapsearch', [...bind, '-b', slapd.referralDn, '-s', 'base']),
      ).rejects.toMatchObject({ code: 10 });
    });

    it('runs a back-ldap proxy in front of it that answers over ldaps, StartTLS upstream', async () => {
      const upstream = ldapUrl(slapd);
      const startTlsBefore = countInLog(slapd, ' STARTTLS');
      const proxy = await startSlapdProxy(upstream, { user: slapd.user, password: slapd.password, upstreamCa: slapd.ca });
      try {
        expect(proxy).toMatchObject({ kind: 'slapd', proxyOf: upstream, user: slapd.user, entries: 0 });
        expect(proxy.port).not.toBe(slapd.port);
        const { stdout } = await ldap(
          'ldapsearch',
          ['-LLL', '-H', ldapsUrl(proxy), ...ldapBind(proxy), '-b', user1(), '-s', 'base', 'uid'],
          proxy.ca,
        );
        expect(stdout).toContain('uid: user0001');
        expect(countInLog(proxy, proxy.bindLine)).toBe(1);
        // The proxy's own leg to the directory went through StartTLS (verified with upstreamCa).
        expect(countInLog(slapd, ' STARTTLS')).toBeGreaterThan(startTlsBefore);
      } finally {
        await proxy.stop();
      }
      expect(existsSync(proxy.dir)).toBe(false);
      expect(await accepts(proxy.ldapsPort)).toBe(false);
      expect(await accepts(slapd.port)).toBe(true);
    });
  });
});
