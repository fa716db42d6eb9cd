/**
 * Smoke test for test/targets: each real server starts, and the stock clients (ssh, psql,
 * mariadb, ldapsearch, curl, node's http/https and ws, xfreerdp, redis-cli) reach it DIRECTLY with the credentials
 * the start script reported. Protocol
 * tests build on these targets, so a broken target should fail here, plainly.
 */
import { execFile, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import { Client } from 'ssh2';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  startAdminer,
  startMariadb,
  startNginx,
  startNginxProxy,
  startNginxStream,
  startPostgres,
  startRdp,
  startRedis,
  startSlapd,
  startSlapdProxy,
  startSshd,
  startWebapp,
  type AdminerTarget,
  type MariadbTarget,
  type NginxTarget,
  type PostgresTarget,
  type RdpTarget,
  type RedisTarget,
  type SlapdTarget,
  type SshdTarget,
  type WebappTarget,
} from '../targets/index.js';
import { feed } from './child-input.js';

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
    feed(child.stdin, input);
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

interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP(S) request with node's own client; `ca` is the only trust anchor for https. */
function request(
  url: string,
  opts: { ca?: string | null; method?: string; headers?: http.OutgoingHttpHeaders; body?: string } = {},
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const options: https.RequestOptions = { method: opts.method ?? 'GET', headers: opts.headers ?? {}, agent: false };
    if (u.protocol === 'https:') options.ca = opts.ca ? readFileSync(opts.ca) : [];
    const req = (u.protocol === 'https:' ? https : http).request(u, options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    });
    req.setTimeout(CLIENT_TIMEOUT_MS, () => req.destroy(new Error(`timeout: ${url}`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** `name=value` pairs of a response's Set-Cookie headers, for the next request's Cookie header. */
function cookiesOf(res: HttpResult): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of res.headers['set-cookie'] ?? []) {
    const [pair = ''] = line.split(';');
    const i = pair.indexOf('=');
    out.set(pair.slice(0, i).trim(), pair.slice(i + 1).trim());
  }
  return out;
}

/** Reads the first `count` server-sent events of `url`, then hangs up. */
function sseEvents(url: string, count: number, ca?: string | null): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const options: https.RequestOptions = { agent: false };
    if (u.protocol === 'https:') options.ca = ca ? readFileSync(ca) : [];
    const req = (u.protocol === 'https:' ? https : http).get(u, options, (res) => {
      if (!String(res.headers['content-type']).startsWith('text/event-stream')) {
        reject(new Error(`not an event stream: ${res.statusCode} ${res.headers['content-type']}`));
        return;
      }
      let buf = '';
      const events: string[] = [];
      res.on('data', (c: Buffer) => {
        buf += c.toString();
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0 && events.length < count) {
          const data = buf.slice(0, end).split('\n').find((l) => l.startsWith('data: '));
          if (data) events.push(data.slice(6));
          buf = buf.slice(end + 2);
        }
        if (events.length >= count) {
          req.destroy();
          resolve(events);
        }
      });
    });
    req.setTimeout(CLIENT_TIMEOUT_MS, () => req.destroy(new Error(`timeout: ${url}`)));
    req.on('error', reject);
  });
}

/** Polls the web app's /stats until `check` holds, or `withinMs` has passed; returns the last stats. */
async function webappStatsUntil(t: WebappTarget, check: (s: any) => boolean, withinMs = 2000): Promise<any> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const s = JSON.parse((await request(`${t.url}/stats`, { ca: t.ca })).body);
    if (check(s) || Date.now() > deadline) return s;
    await sleep(20);
  }
}

/** Posts Adminer's login form with curl and a cookie jar, then follows its redirect; the final page. */
async function adminerLogin(t: AdminerTarget, jar: string, password: string): Promise<{ post: string; page: string }> {
  const curl = (args: string[]) =>
    exec('curl', ['-sS', '-c', jar, '-b', jar, '--max-time', '20', ...args], { timeout: CLIENT_TIMEOUT_MS });
  await curl(['-o', '/dev/null', t.url]);
  const form = ['auth[driver]=' + t.driver, `auth[server]=${t.server}`, `auth[username]=${t.user}`,
    `auth[password]=${password}`, 'auth[db]='].flatMap((f) => ['--data-urlencode', f]);
  const post = await curl(['-D', '-', '-o', '/dev/null', ...form, t.url]);
  const location = /^Location: (.*?)\r?$/im.exec(post.stdout)?.[1] ?? '';
  const page = await curl(['-w', '\nHTTP %{http_code}', new URL(location, t.url).toString()]);
  return { post: post.stdout, page: page.stdout };
}

interface ClientRun {
  /** The exit code (null: killed by a signal). */
  code: number | null;
  output: string;
}

/**
 * xfreerdp against the RDP target, `input` on its standard input, resolving with its exit code
 * rather than rejecting on a non-zero one. It needs an X display even for +auth-only ("failed to
 * open display" otherwise): the target's own Xvfb (`display` + `xauthority`), or with `xvfbRun` a
 * fresh one from `xvfb-run -a`. HOME is the target's dir, so nothing is written to ~/.config/freerdp.
 */
function xfreerdp(
  t: RdpTarget,
  args: string[],
  opts: { input?: string; xvfbRun?: boolean; onSpawn?: (kill: () => void) => void } = {},
): Promise<ClientRun> {
  return new Promise((resolve, reject) => {
    const argv = [`/v:${t.host}:${t.port}`, ...args];
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: `${t.dir}/client` };
    if (!opts.xvfbRun) Object.assign(env, { DISPLAY: t.display, XAUTHORITY: t.xauthority });
    const child = opts.xvfbRun ? spawn('xvfb-run', ['-a', 'xfreerdp', ...argv], { env }) : spawn('xfreerdp', argv, { env });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), CLIENT_TIMEOUT_MS);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
    feed(child.stdin, opts.input ?? '');
    opts.onSpawn?.(() => child.kill('SIGTERM'));
  });
}

function countInFile(file: string, needle: string): number {
  return occurrences(readFileSync(file, 'utf8'), needle);
}

/** Polls a log until `needle` occurs `count` times, or `withinMs` has passed. */
async function fileReaches(file: string, needle: string, count: number, withinMs: number): Promise<number> {
  const deadline = Date.now() + withinMs;
  let seen = countInFile(file, needle);
  while (seen < count && Date.now() < deadline) {
    await sleep(20);
    seen = countInFile(file, needle);
  }
  return seen;
}

/** redis-cli -e (exit 1 on an error reply); the password, if any, in REDISCLI_AUTH rather than argv. */
function redisCli(t: RedisTarget, password: string | undefined, args: string[]) {
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (password === undefined) delete env.REDISCLI_AUTH;
  else env.REDISCLI_AUTH = password;
  return exec('redis-cli', ['-e', '-h', t.host, '-p', String(t.port), ...args], { env, timeout: CLIENT_TIMEOUT_MS });
}

describe('test targets', () => {
  let sshd: SshdTarget;
  let pg: PostgresTarget;
  let maria: MariadbTarget;
  let slapd: SlapdTarget;
  let webapp: WebappTarget;
  let nginx: NginxTarget;
  let adminer: AdminerTarget;
  let rdp: RdpTarget;
  let redis: RedisTarget;

  beforeAll(async () => {
    // Adminer only reports the database it is to log in to, so it starts right after MariaDB.
    const mariaAndAdminer = startMariadb().then(async (m) => {
      maria = m;
      return startAdminer({ db: { host: m.host, port: m.port, user: m.user, password: m.password } });
    });
    [sshd, pg, slapd, webapp, nginx, adminer, rdp, redis] = await Promise.all([
      startSshd(),
      startPostgres(),
      startSlapd(),
      startWebapp(),
      startNginx(),
      mariaAndAdminer,
      startRdp(),
      startRedis(),
    ]);
  });

  afterAll(async () => {
    await Promise.all([sshd?.stop(), pg?.stop(), maria?.stop(), slapd?.stop(), webapp?.stop(), nginx?.stop(),
      adminer?.stop(), rdp?.stop(), redis?.stop()]);
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

    it('is reached through an nginx stream relay, one worker, which goes with its stop', async () => {
      const relay = await startNginxStream(`127.0.0.1:${maria.port}`);
      try {
        expect(relay).toMatchObject({ kind: 'nginx', proxyOf: `127.0.0.1:${maria.port}`, url: `tcp://127.0.0.1:${relay.port}`, ca: '' });
        expect(readFileSync(relay.config, 'utf8')).toMatch(/^load_module .*ngx_stream_module\.so;\nuser \S+;\nworker_processes 1;/);
        const { stdout } = await mariadb({ ...maria, port: relay.port }, maria.user, maria.password, 'select current_user(), @@port');
        expect(stdout.trim()).toBe(`app_user@127.0.0.1\t${maria.port}`);
      } finally {
        await relay.stop();
      }
      expect(existsSync(relay.dir)).toBe(false);
      expect(await accepts(relay.port)).toBe(false);
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

  describe('webapp', () => {
    it('logs in through the CSRF-checked form and serves the welcome page to the session cookie', async () => {
      expect(webapp).toMatchObject({ kind: 'webapp', scheme: 'http', ca: null, url: `http://127.0.0.1:${webapp.port}` });
      const anonymous = await request(`${webapp.url}/`);
      expect(anonymous.status).toBe(302);
      expect(anonymous.headers.location).toBe('/login');

      const form = await request(`${webapp.url}/login`);
      expect(form.status).toBe(200);
      expect(form.body).toMatch(/<form method="post" action="\/login">/);
      expect(form.body).toMatch(/<input name="username"/);
      expect(form.body).toMatch(/<input type="password" name="password"/);
      const csrf = cookiesOf(form).get('csrf') ?? '';
      expect(form.body).toContain(`<input type="hidden" name="csrf" value="${csrf}">`);
      expect(form.headers['set-cookie']?.[0]).toMatch(/^csrf=[0-9a-f]{32}; Path=\/; HttpOnly/);

      const post = (fields: Record<string, string>, cookie: string) =>
        request(`${webapp.url}/login`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/x-www-form-urlencoded', Cookie: cookie },
          body: new URLSearchParams(fields).toString(),
        });
      const good = { csrf, username: webapp.user, password: webapp.password };
      // The token must be in the form AND the cookie, and they must agree.
      expect((await post(good, '')).status).toBe(403);
      expect((await post({ ...good, csrf: 'forged' }, `csrf=${csrf}`)).status).toBe(403);
      expect((await post({ ...good, password: 'wrong' }, `csrf=${csrf}`)).status).toBe(401);

      const ok = await post(good, `csrf=${csrf}`);
      expect(ok.status).toBe(302);
      expect(ok.headers.location).toBe('/');
      expect(ok.headers['set-cookie']?.[0]).toMatch(/^app_session=[0-9a-f]{32}; Path=\/; HttpOnly$/);
      const session = cookiesOf(ok).get('app_session');
      const home = await request(`${webapp.url}/`, { headers: { Cookie: `app_session=${session}` } });
      expect(home.status).toBe(200);
      expect(home.body).toContain(`Welcome ${webapp.user}`);
      expect((await request(`${webapp.url}/`, { headers: { Cookie: 'app_session=forged' } })).status).toBe(302);
    });

    it('echoes the method, url and headers exactly as received', async () => {
      const res = await request(`${webapp.url}/echo?x=1`, { headers: { 'X-Trace': ['a', 'b'], Cookie: 'k=v' } });
      expect(res.status).toBe(200);
      const echo = JSON.parse(res.body);
      expect(echo).toMatchObject({ method: 'GET', url: '/echo?x=1', headers: { 'x-trace': 'a, b', cookie: 'k=v' } });
      // rawHeaders keeps the sender's spelling and every repetition.
      expect(echo.rawHeaders).toEqual(expect.arrayContaining(['X-Trace', 'a', 'X-Trace', 'b']));
    });

    it('checks basic auth, a bearer token and an X-Api-Key header', async () => {
      const basic = (user: string, pw: string) => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`;
      const refused = await request(`${webapp.url}/basic`);
      expect(refused.status).toBe(401);
      expect(refused.headers['www-authenticate']).toMatch(/^Basic realm="webapp"/);
      expect((await request(`${webapp.url}/basic`, { headers: { Authorization: basic(webapp.user, 'wrong') } })).status)
        .toBe(401);
      const basicOk = await request(`${webapp.url}/basic`, { headers: { Authorization: basic(webapp.user, webapp.password) } });
      expect(JSON.parse(basicOk.body)).toEqual({ ok: true, auth: 'basic', user: webapp.user });

      const noBearer = await request(`${webapp.url}/bearer`, { headers: { Authorization: 'Bearer wrong' } });
      expect(noBearer.status).toBe(401);
      expect(noBearer.headers['www-authenticate']).toMatch(/^Bearer /);
      expect((await request(`${webapp.url}/bearer`, { headers: { Authorization: `Bearer ${webapp.token}` } })).status)
        .toBe(200);

      expect((await request(`${webapp.url}/header`, { headers: { 'X-Api-Key': 'wrong' } })).status).toBe(401);
      expect((await request(`${webapp.url}/header`, { headers: { 'X-Api-Key': webapp.token } })).status).toBe(200);
    });

    it('ticks and echoes over a WebSocket, and counts it closed when the client goes', async () => {
      const ws = new WebSocket(`ws://127.0.0.1:${webapp.port}/ws`);
      const messages: string[] = [];
      ws.on('message', (d) => messages.push(d.toString()));
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      ws.send('hello');
      while (messages.filter((m) => m.startsWith('tick ')).length < 3) await sleep(20);
      expect(messages.filter((m) => m.startsWith('tick ')).slice(0, 3)).toEqual(['tick 0', 'tick 1', 'tick 2']);
      expect(messages).toContain('hello');
      expect((await webappStatsUntil(webapp, (s) => s.ws.open === 1)).ws.open).toBe(1);
      ws.close();
      expect((await webappStatsUntil(webapp, (s) => s.ws.open === 0)).ws.open).toBe(0);
    });

    it('streams server-sent events until the client hangs up', async () => {
      expect(await sseEvents(`${webapp.url}/sse`, 3)).toEqual(['tick 0', 'tick 1', 'tick 2']);
      const stats = await webappStatsUntil(webapp, (s) => s.sse.open === 0 && s.sse.closed >= 1);
      expect(stats.sse).toMatchObject({ open: 0 });
      expect(stats.sse.closed).toBeGreaterThanOrEqual(1);
    });

    it('sets domain cookies and redirects to its own absolute URL and elsewhere', async () => {
      const cookies = await request(`${webapp.url}/set-domain-cookie`);
      expect(cookies.headers['set-cookie']).toEqual(expect.arrayContaining([
        'wide=1; Domain=apps.localhost; Path=/',
        'wider=1; Domain=localhost; Path=/',
      ]));
      expect((await request(`${webapp.url}/redirect-absolute`)).headers.location).toBe(`${webapp.url}/echo`);
      expect((await request(`${webapp.url}/redirect-elsewhere`)).headers.location).toBe('https://evil.example/');
      const page = await request(`${webapp.url}/page`);
      expect(page.body.length).toBeGreaterThan(900);
      expect(page.body.length).toBeLessThan(1200);
    });

    it('serves HTTPS with its own CA when asked, behind an nginx proxy that verifies it', async () => {
      const tls = await startWebapp({ tls: true });
      try {
        expect(tls).toMatchObject({ scheme: 'https', url: `https://127.0.0.1:${tls.port}` });
        expect(JSON.parse((await request(`${tls.url}/echo`, { ca: tls.ca })).body).scheme).toBe('https');
        // Another CA: the handshake fails.
        await expect(request(`${tls.url}/echo`, { ca: nginx.ca })).rejects.toThrow(/certificate/);
        const proxy = await startNginxProxy(tls.url, { upstreamCa: tls.ca ?? undefined });
        try {
          const res = await request(`${proxy.url}/echo`, { ca: proxy.ca });
          expect(res.status).toBe(200);
          expect(JSON.parse(res.body)).toMatchObject({ scheme: 'https', headers: { 'x-forwarded-proto': 'https' } });
        } finally {
          await proxy.stop();
        }
      } finally {
        await tls.stop();
      }
      expect(existsSync(tls.dir)).toBe(false);
    });
  });

  describe('nginx', () => {
    it('serves the static page over TLS and /private/ only with basic auth', async () => {
      const home = await request(`${nginx.url}/`, { ca: nginx.ca });
      expect(home.status).toBe(200);
      expect(home.body).toContain('nginx target');
      const refused = await request(`${nginx.url}/private/`, { ca: nginx.ca });
      expect(refused.status).toBe(401);
      expect(refused.headers['www-authenticate']).toBe('Basic realm="gatehouse nginx target"');
      const auth = (pw: string) => ({ Authorization: `Basic ${Buffer.from(`${nginx.user}:${pw}`).toString('base64')}` });
      expect((await request(`${nginx.url}/private/`, { ca: nginx.ca, headers: auth('wrong') })).status).toBe(401);
      const ok = await request(`${nginx.url}/private/`, { ca: nginx.ca, headers: auth(nginx.password) });
      expect(ok.status).toBe(200);
      expect(ok.body).toContain('Private area');
      expect(nginx).toMatchObject({ kind: 'nginx', proxyOf: null });
      expect(nginx.version).toMatch(/^nginx\/1\./);
    });

    it('proxies to the web app with keep-alive upstream connections and WebSockets', async () => {
      const proxy = await startNginxProxy(webapp.url, { workers: 1 });
      try {
        expect(proxy).toMatchObject({ kind: 'nginx', proxyOf: webapp.url, user: '' });
        const direct = await request(`${webapp.url}/page`);
        for (let i = 0; i < 3; i++) {
          const via = await request(`${proxy.url}/page`, { ca: proxy.ca });
          expect(via.status).toBe(200);
          expect(via.body).toBe(direct.body);
        }
        expect(readFileSync(proxy.config, 'utf8')).toMatch(/keepalive 64;[\s\S]*proxy_http_version 1\.1;/);
        const ws = new WebSocket(`wss://127.0.0.1:${proxy.port}/ws`, { ca: readFileSync(proxy.ca) });
        const first = await new Promise<string>((resolve, reject) => {
          ws.once('message', (d) => resolve(d.toString()));
          ws.once('error', reject);
        });
        expect(first).toBe('tick 0');
        ws.close();
        expect(await sseEvents(`${proxy.url}/sse`, 2, proxy.ca)).toEqual(['tick 0', 'tick 1']);
      } finally {
        await proxy.stop();
      }
      expect(existsSync(proxy.dir)).toBe(false);
      expect(await accepts(proxy.port)).toBe(false);
    });
  });

  describe('adminer', () => {
    it('logs in to the MariaDB target through its own form and lists the databases', async () => {
      expect(adminer).toMatchObject({ kind: 'adminer', driver: 'server', server: `127.0.0.1:${maria.port}`, user: maria.user });
      const { post, page } = await adminerLogin(adminer, `${adminer.dir}/jar-ok`, adminer.password);
      // The POST never checks the password: it stores it in the session and redirects.
      expect(post).toMatch(/^HTTP\/1\.1 302/);
      expect(post).toMatch(new RegExp(`^Location: \\?server=127\\.0\\.0\\.1%3A${maria.port}&username=${maria.user}\\r?$`, 'm'));
      expect(post).toMatch(/^Set-Cookie: adminer_sid=/m);
      expect(page).toContain('<h2>Select database</h2>');
      expect(page).toContain("id='Db-appdb'>appdb</a>");
      expect(page).toMatch(/HTTP 200$/);
    });

    it('refuses a wrong password on the page the login redirects to', async () => {
      const { post, page } = await adminerLogin(adminer, `${adminer.dir}/jar-bad`, 'wrong');
      expect(post).toMatch(/^HTTP\/1\.1 302/);
      expect(page).toContain('Access denied for user');
      expect(page).not.toContain('Select database');
      expect(page).toMatch(/HTTP 403$/);
    });
  });

  describe('rdp', () => {
    // Exit codes are xfreerdp's own (client/X11/xf_client.h): 0 = XF_EXIT_SUCCESS. A wrong user or
    // password is 147, XF_EXIT_CONNECT_TRANSPORT_FAILED, not 154 (…_WRONG_PASSWORD): the shadow
    // server answers a failed NTLM check by dropping the TCP connection, without a CredSSP error
    // code, so to the client it looks like a broken connection. 133 = XF_EXIT_NEGO_FAILURE.
    const pin = () => `/cert:fingerprint:${rdp.certFingerprint}`;
    const nla = (user: string, password: string) => ['+auth-only', '/sec:nla', `/u:${user}`, `/p:${password}`, pin()];

    it('reports its certificate fingerprint and display', () => {
      expect(rdp).toMatchObject({ kind: 'rdp', host: '127.0.0.1', user: 'rdpuser', domain: '', security: 'nla' });
      expect(rdp.version).toMatch(/^FreeRDP version 2\./);
      const fingerprint = new X509Certificate(readFileSync(rdp.cert)).fingerprint256.toLowerCase();
      expect(rdp.certFingerprint).toBe(`sha256:${fingerprint}`);
      expect(readFileSync(rdp.sam, 'utf8')).toMatch(/^rdpuser:::[0-9a-f]{32}:::$/m);
    });

    it('passes NLA with the right password (+auth-only exits 0) and logs acceptLine once', async () => {
      const accepted = countInFile(rdp.log, rdp.acceptLine);
      const refused = countInFile(rdp.log, rdp.refuseLine);
      const run = await xfreerdp(rdp, nla(rdp.user, rdp.password));
      expect(run.code, run.output).toBe(0);
      expect(run.output).toContain('Authentication only, exit status 0');
      expect(await fileReaches(rdp.log, rdp.acceptLine, accepted + 1, 2000)).toBe(accepted + 1);
      expect(countInFile(rdp.log, rdp.refuseLine)).toBe(refused);
    });

    it('refuses a wrong password and an unknown user in NLA: exit 147, refuseLine logged', async () => {
      const accepted = countInFile(rdp.log, rdp.acceptLine);
      const refused = countInFile(rdp.log, rdp.refuseLine);
      const wrong = await xfreerdp(rdp, nla(rdp.user, 'wrong'));
      expect(wrong.code, wrong.output).toBe(147);
      expect(wrong.output).toContain('ERRCONNECT_CONNECT_TRANSPORT_FAILED');
      expect((await xfreerdp(rdp, nla('someone-else', rdp.password))).code).toBe(147);
      expect(await fileReaches(rdp.log, rdp.refuseLine, refused + 2, 2000)).toBe(refused + 2);
      expect(readFileSync(rdp.log, 'utf8')).toContain('Message Integrity Check (MIC) verification failed!');
      expect(countInFile(rdp.log, rdp.acceptLine)).toBe(accepted);
    });

    it('works as documented with xvfb-run -a and /cert:ignore', async () => {
      const args = (password: string) => ['/u:rdpuser', `/p:${password}`, '/sec:nla', '+auth-only', '/cert:ignore'];
      expect((await xfreerdp(rdp, args(rdp.password), { xvfbRun: true })).code).toBe(0);
      expect((await xfreerdp(rdp, args('wrong'), { xvfbRun: true })).code).toBe(147);
    });

    it('offers NLA only: a client insisting on TLS or RDP security gets no session (exit 133)', async () => {
      for (const sec of ['/sec:tls', '/sec:rdp']) {
        const run = await xfreerdp(rdp, ['+auth-only', sec, `/u:${rdp.user}`, `/p:${rdp.password}`, pin()]);
        expect(run.code, run.output).toBe(133);
      }
    });

    it('takes the password on stdin: /u: plus /from-stdin:force for +auth-only', async () => {
      const args = ['+auth-only', '/sec:nla', `/u:${rdp.user}`, '/from-stdin:force', pin()];
      // Only the password is asked for (the user is given, an unset domain is not prompted).
      const ok = await xfreerdp(rdp, args, { input: `${rdp.password}\n` });
      expect(ok.code, ok.output).toBe(0);
      expect(ok.output).toContain('Password: ');
      expect((await xfreerdp(rdp, args, { input: 'wrong\n' })).code).toBe(147);
      // Without :force, +auth-only checks for a password before connecting and finds none (136,
      // XF_EXIT_PRE_CONNECT_FAILED); plain /from-stdin is for a real session (next test).
      const early = await xfreerdp(rdp, args.map((a) => (a === '/from-stdin:force' ? '/from-stdin' : a)), {
        input: `${rdp.password}\n`,
      });
      expect(early.code).toBe(136);
      expect(early.output).toContain('auth-only, but no password set');
    });

    it('logs a real session in with /u: and /from-stdin, the password read when NLA asks for it', async () => {
      const accepted = countInFile(rdp.log, rdp.acceptLine);
      const refused = countInFile(rdp.log, rdp.refuseLine);
      let kill = (): void => undefined;
      // The session's window opens on the display the server shares (a picture of itself): harmless.
      const session = xfreerdp(rdp, [`/u:${rdp.user}`, '/from-stdin', pin()], {
        input: `${rdp.password}\n`,
        onSpawn: (k) => (kill = k),
      });
      const reached = await fileReaches(rdp.log, rdp.acceptLine, accepted + 1, 10_000);
      kill();
      const run = await session;
      expect(reached).toBe(accepted + 1);
      // Still connected until killed: SIGTERM, which xfreerdp reports as a caught signal.
      expect(run.output).toContain("Caught signal 'Terminated'");
      expect(countInFile(rdp.log, rdp.refuseLine)).toBe(refused);

      const wrong = await xfreerdp(rdp, [`/u:${rdp.user}`, '/from-stdin', pin()], { input: 'wrong\n' });
      expect(wrong.code).toBe(147);
    });
  });

  describe('redis', () => {
    it('answers PING with PONG after AUTH, and keeps nothing on disk', async () => {
      expect(redis).toMatchObject({ kind: 'redis', host: '127.0.0.1', user: 'default' });
      expect(redis.port).not.toBe(6379);
      expect(redis.version).toMatch(/^Redis server v=\d/);
      expect((await redisCli(redis, redis.password, ['PING'])).stdout.trim()).toBe('PONG');
      expect((await redisCli(redis, redis.password, ['SET', 'k', 'v'])).stdout.trim()).toBe('OK');
      expect((await redisCli(redis, redis.password, ['GET', 'k'])).stdout.trim()).toBe('v');
      const config = await redisCli(redis, redis.password, ['CONFIG', 'GET', '*']);
      const lines = config.stdout.split('\n');
      const get = (name: string) => lines[lines.indexOf(name) + 1];
      expect([get('save'), get('appendonly'), get('bind'), get('dir')]).toEqual(['', 'no', '127.0.0.1', redis.dir]);
    });

    it('refuses a client without the password (NOAUTH) and a wrong one (WRONGPASS)', async () => {
      // With -e, redis-cli writes an error reply to stderr and exits 1.
      await expect(redisCli(redis, undefined, ['PING'])).rejects.toMatchObject({
        code: 1,
        stdout: '',
        stderr: 'NOAUTH Authentication required.\n',
      });
      // REDISCLI_AUTH: redis-cli sends AUTH first, reports its refusal, then runs PING unauthenticated.
      await expect(redisCli(redis, 'wrong', ['PING'])).rejects.toMatchObject({
        code: 1,
        stderr: 'AUTH failed: WRONGPASS invalid username-password pair or user is disabled.\n' +
          'NOAUTH Authentication required.\n',
      });
      // AUTH as a command, with the user name: the error reply itself.
      await expect(redisCli(redis, undefined, ['AUTH', 'default', 'wrong'])).rejects.toMatchObject({
        code: 1,
        stderr: expect.stringContaining('WRONGPASS'),
      });
      expect((await redisCli(redis, undefined, ['AUTH', redis.user, redis.password])).stdout.trim()).toBe('OK');
    });
  });
});
