/**
 * The MySQL gateway with the stock `mariadb` and `mysql` clients against a real MariaDB:
 * addressing, the decision, credential injection, tickets, MFA, TLS on both legs, the auth
 * plugins, and a 20 MB LOAD DATA LOCAL INFILE and result through it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/log.js';
import { MysqlAdapter } from '../../protocols/mysql/index.js';
import { BERLIN_DAYTIME } from './gateway-harness.js';
import { addMyResource, GATEWAY_PASSWORD, mariadb, runClient, startMyGateway, until, type MyGateway } from './mysql-harness.js';

let g: MyGateway;
let tmp: string;

beforeAll(async () => {
  g = await startMyGateway();
  await addMyResource(g);
  await addMyResource(g, {}, 'open-mysql');
  await addMyResource(g, { limitAccessTime: BERLIN_DAYTIME, mfa: true }, 'mfa-mysql');
  // A PostgreSQL resource: its tickets and names are for the PostgreSQL door, not this one.
  await g.gw.addResource({ name: 'prod-pg', type: 'database', protocol: 'postgres', host: '127.0.0.1', port: 5432, credentials: { login: 'app', password: 'x' }, settings: {} });
  tmp = mkdtempSync(join(tmpdir(), 'gh-mysql-'));
});

afterAll(async () => {
  await g?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const sql = (user: string, password: string, query: string, extra: string[] = []) => mariadb([...g.cli(user, password, ['-N', '-B', ...extra]), '-e', query]);

/**
 * Audit entries of `action` written after `since` (an audit length taken before the attempt);
 * waits briefly for the first, since door refusals are audited without holding up the client.
 */
async function auditSince(action: string, since: number) {
  let rows = (await g.gw.store.listAudit({ action })).slice(since);
  for (let i = 0; rows.length === 0 && i < 100; i++) {
    await new Promise((r) => setTimeout(r, 10));
    rows = (await g.gw.store.listAudit({ action })).slice(since);
  }
  return rows;
}
const auditCount = async (action: string) => (await g.gw.store.listAudit({ action })).length;

describe('the mariadb client through the gateway', () => {
  it('before approval, mariadb prints the reason and the fix; after approval it runs as the vaulted user', async () => {
    const before = await sql('alice:prod-mysql', GATEWAY_PASSWORD, 'select current_user()');
    expect(before.code).toBe(1);
    expect(before.stderr.trim()).toBe(
      'ERROR 1045 (28000): Gatehouse: access to prod-mysql refused (approval_required): prod-mysql requires an approved access request. To fix: gatehouse request prod-mysql --reason "..."',
    );

    await g.gw.approve('alice', 'prod-mysql');
    const after = await sql('alice:prod-mysql', GATEWAY_PASSWORD, 'select current_user(), database()');
    expect(after.stderr).toBe('');
    expect(after.stdout.trim()).toBe(`${g.target.user}@127.0.0.1\t${g.target.database}`);
    expect(after.stdout).not.toContain('alice');
  });

  it('speaks TLS on both legs: verified gateway certificate towards the client, the target CA upstream', async () => {
    const r = await sql('alice:open-mysql', GATEWAY_PASSWORD, "show session status like 'Ssl_version'");
    expect(r.stdout).toMatch(/^Ssl_version\tTLSv1\.[23]$/m);
    // A later login resumes the CA-verified TLS session instead of a full handshake.
    const resumed = g.adapter.stats.upstreamTlsResumed;
    expect((await sql('alice:open-mysql', GATEWAY_PASSWORD, 'select 7')).stdout.trim()).toBe('7');
    expect(g.adapter.stats.upstreamTlsResumed).toBe(resumed + 1);
    // The client leg: `status` reports the cipher the gateway negotiated with the client.
    const st = await mariadb([...g.cli('alice:open-mysql', GATEWAY_PASSWORD), '-e', 'status']);
    expect(st.stdout).toMatch(/SSL:\s+Cipher in use is \S+/);
  });

  it("Debian's mysql command (MariaDB's client) needs nothing more", async () => {
    const r = await runClient('mysql', [...g.cli('alice:open-mysql', GATEWAY_PASSWORD, ['-N', '-B']), '-e', 'select current_user()']);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(`${g.target.user}@127.0.0.1`);
  });

  it('a wrong password is refused without any connection to the target, and the refusal is audited once with the door', async () => {
    const connects = g.adapter.stats.upstreamConnects;
    const audited = await auditCount('login.refuse');
    const r = await sql('alice:open-mysql', 'not the password', 'select 1');
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(
      "ERROR 1045 (28000): Gatehouse: access denied for alice:open-mysql: the password is neither alice's gateway password nor a valid launch ticket. (bad_password) To fix: use your Gatehouse password, or a launch ticket from: gatehouse launch open-mysql",
    );
    expect(g.adapter.stats.upstreamConnects).toBe(connects);
    const rows = await auditSince('login.refuse', audited);
    expect(rows.map((e) => e.data)).toEqual([expect.objectContaining({ door: 'mysql', code: 'bad_password', method: 'password' })]);
  });

  it('an empty password is refused by the login path (no_secret) with the usual access-denied error', async () => {
    const connects = g.adapter.stats.upstreamConnects;
    const r = await sql('alice:open-mysql', '', 'select 1');
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(
      'ERROR 1045 (28000): Gatehouse: a password is required: your gateway password or a launch ticket (an empty password never signs in). (no_secret) To fix: gatehouse launch open-mysql',
    );
    expect(g.adapter.stats.upstreamConnects).toBe(connects);
  });

  it('a login without a resource is refused with the expected form', async () => {
    const r = await sql('alice', GATEWAY_PASSWORD, 'select 1');
    expect(r.stderr.trim()).toBe(
      "ERROR 1045 (28000): Gatehouse: 'alice' is not a Gatehouse login; log in as USER:RESOURCE. (bad_login_name) To fix: mariadb -h GATEWAY -P 13306 -u alice:prod-mysql -p",
    );
  });

  it('someone not on the access list is told so', async () => {
    const r = await sql('mallory:open-mysql', GATEWAY_PASSWORD, 'select 1');
    expect(r.stderr).toContain('ERROR 1045 (28000): Gatehouse: access to open-mysql refused (not_on_access_list): mallory is not on the access list of open-mysql.');
  });

  it('a PostgreSQL resource\'s ticket is refused here (wrong_protocol) without being used up', async () => {
    const { ticket } = await g.gw.engine.mfa.issueTicket('alice', 'prod-pg', false);
    const connects = g.adapter.stats.upstreamConnects;
    const audited = await auditCount('login.refuse');
    const r = await sql('alice:prod-pg', ticket, 'select 1');
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('ERROR 1045 (28000): Gatehouse: prod-pg is a postgres resource and cannot be reached through the mysql gateway. (wrong_protocol) To fix: gatehouse connect prod-pg');
    expect(g.adapter.stats.upstreamConnects).toBe(connects);
    expect((await auditSince('login.refuse', audited)).map((e) => e.data)).toEqual([expect.objectContaining({ door: 'mysql', code: 'wrong_protocol' })]);
    // Not consumed: the PostgreSQL door can still redeem it.
    expect((await g.gw.engine.mfa.peekTicket(ticket))?.usedAt).toBeUndefined();
    expect(await g.gw.engine.mfa.redeemTicketFor(ticket, 'alice', 'prod-pg')).toMatchObject({ ok: true });
  });

  it('an MFA resource refuses the bare password and takes a ticket issued after TOTP', async () => {
    await g.gw.enrolTotp('carol');
    const bare = await sql('carol:mfa-mysql', GATEWAY_PASSWORD, 'select 1');
    expect(bare.stderr).toContain('ERROR 1045 (28000): Gatehouse: access to mfa-mysql refused (mfa_required): mfa-mysql requires a fresh TOTP code for every connection. To fix: gatehouse launch mfa-mysql --totp CODE');
    const { ticket } = await g.gw.engine.mfa.issueTicket('carol', 'mfa-mysql', true);
    const r = await sql('carol:mfa-mysql', ticket, 'select current_user()');
    expect(r.stdout.trim()).toBe(`${g.target.user}@127.0.0.1`);
  });

  it('--default-auth=mysql_clear_password sends the password at once and works too', async () => {
    const r = await sql('alice:open-mysql', GATEWAY_PASSWORD, 'select current_user()', ['--default-auth=mysql_clear_password']);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(`${g.target.user}@127.0.0.1`);
  });

  it('refuses a client without TLS on a listener that is not plaintext-enabled, and audits the door refusal', async () => {
    const connects = g.adapter.stats.upstreamConnects;
    const audited = await auditCount('door.refuse');
    const r = await mariadb(['--no-defaults', '-h', '127.0.0.1', '-P', String(g.port), '-u', 'alice:open-mysql', `--password=${GATEWAY_PASSWORD}`, '--skip-ssl', '-e', 'select 1']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(
      'ERROR 3159 (HY000): Gatehouse: this gateway accepts only TLS connections. (tls_required) To fix: drop --skip-ssl / set ssl in the driver (mariadb: --ssl-ca=ca.pem --ssl-verify-server-cert)',
    );
    expect(g.adapter.stats.upstreamConnects).toBe(connects);
    const rows = await auditSince('door.refuse', audited);
    expect(rows.map((e) => e.data)).toEqual([expect.objectContaining({ door: 'mysql', code: 'tls_required', client: expect.stringMatching(/^127\.0\.0\.1:\d+$/) })]);
  });

  it("uses the client's database when it names one, the resource's otherwise; the target's refusal is relayed", async () => {
    const own = await sql('alice:open-mysql', GATEWAY_PASSWORD, 'select database()', ['-D', 'information_schema']);
    expect(own.stdout.trim()).toBe('information_schema');
    const denied = await sql('alice:open-mysql', GATEWAY_PASSWORD, 'select 1', ['-D', 'mysql']);
    expect(denied.code).toBe(1);
    expect(denied.stderr.trim()).toBe(
      "ERROR 1044 (42000): Gatehouse: could not open open-mysql: Access denied for user 'app_user'@'127.0.0.1' to database 'mysql' (target_login_failed) To fix: name a database open-mysql may use, or ask the owner of open-mysql",
    );
  });

  it('hands COM_QUERY text to the audit hook with the session, user and resource', async () => {
    await sql('alice:open-mysql', GATEWAY_PASSWORD, "select 'audited-marker-42'");
    // In data-path workers the audit trails the answer by a moment.
    await until(() => g.statements.some((s) => s.sql.includes('audited-marker-42')), 5_000, 'the statement audited');
    const e = g.statements.find((s) => s.sql.includes('audited-marker-42'));
    expect(e).toMatchObject({ user: 'alice', resource: 'open-mysql', kind: 'query', sql: "select 'audited-marker-42'", truncated: false });
    expect(e?.sessionId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('a 20 MB LOAD DATA LOCAL INFILE goes in intact, and the 20 MB result comes back byte for byte', async () => {
    const lines: string[] = [];
    let size = 0;
    for (let id = 1; size < 20 * 1024 * 1024; id++) {
      const line = `${id}\t${randomBytes(750).toString('base64')}`;
      lines.push(line);
      size += line.length + 1;
    }
    const content = `${lines.join('\n')}\n`;
    const file = join(tmp, 'rows.tsv');
    writeFileSync(file, content);
    const crcSum = lines.reduce((sum, l) => sum + crc32(l.slice(l.indexOf('\t') + 1)), 0);

    const load = await sql('alice:open-mysql', GATEWAY_PASSWORD,
      `create table bulk (id int primary key, v text) engine=InnoDB; load data local infile '${file}' into table bulk fields terminated by '\\t' (id, v); select count(*), sum(crc32(v)) from bulk`,
      ['--local-infile=1']);
    expect(load.stderr).toBe('');
    expect(load.stdout.trim()).toBe(`${lines.length}\t${crcSum}`);

    const back = await sql('alice:open-mysql', GATEWAY_PASSWORD, 'select id, v from bulk order by id');
    expect(back.stderr).toBe('');
    expect(back.stdout.length).toBe(content.length);
    expect(createHash('sha256').update(back.stdout).digest('hex')).toBe(createHash('sha256').update(content).digest('hex'));
  });
});

describe('the login timings', () => {
  it("logs each login's steps at debug level, the client's parts within its step and the steps within the client's connect, and no secret", async () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'debug' }, { format: 'json', destination: { write: (line: string) => void lines.push(line) } });
    // In this process, on this run's data path (the env of the node relay project says which).
    const door = new MysqlAdapter({ upstreamCa: { '*': readFileSync(g.target.ca, 'utf8') } });
    const l = await door.listen({ host: '127.0.0.1', port: 0, broker: g.gw.broker, log, tls: { cert: g.gw.pki.certPem, key: g.gw.pki.keyPem, ca: g.gw.pki.caCertPem } });
    try {
      const t0 = performance.now();
      const c = await mysql.createConnection({ ...g.my2('alice:open-mysql', GATEWAY_PASSWORD), port: l.address.port });
      const connectMs = performance.now() - t0;
      await c.end();
      const timings = lines.map((line) => JSON.parse(line) as { msg: string; session?: string; ms?: Record<string, number> }).filter((e) => e.msg === 'login timings');
      expect(timings).toHaveLength(1);
      const ms = timings[0]!.ms!;
      expect(Object.keys(ms)).toEqual(['client', 'decision', 'target', 'live', 'sslRequest', 'tls', 'response', 'auth']);
      for (const v of Object.values(ms)) expect(v).toBeGreaterThanOrEqual(0);
      const sum = (keys: string[]): number => keys.reduce((a, k) => a + ms[k]!, 0);
      // Each value is rounded to the microsecond.
      expect(sum(['sslRequest', 'tls', 'response', 'auth'])).toBeLessThanOrEqual(ms.client! + 0.005);
      expect(sum(['client', 'decision', 'target', 'live'])).toBeLessThanOrEqual(connectMs);
      expect(timings[0]!.session).toMatch(/^[0-9a-f-]{36}$/);
      expect(lines.join('\n')).not.toContain(GATEWAY_PASSWORD);
      expect(lines.join('\n')).not.toContain(g.target.password);
    } finally {
      await l.close();
    }
  });
});
