/**
 * The PostgreSQL gateway with the real psql and pg driver against a real PostgreSQL:
 * addressing, the decision, credential injection, tickets, wrong passwords.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERLIN_DAYTIME } from './gateway-harness.js';
import { addPgResource, GATEWAY_PASSWORD, psql, startPgGateway, type PgGateway } from './postgres-harness.js';

let g: PgGateway;

beforeAll(async () => {
  g = await startPgGateway();
  await addPgResource(g);
  await addPgResource(g, {}, 'open-pg');
});

afterAll(async () => {
  await g?.close();
});

describe('psql through the gateway', () => {
  it('before approval, psql shows the reason and the fix; after approval it runs as the vaulted role', async () => {
    const before = await psql(g.conninfo('alice:prod-pg'), GATEWAY_PASSWORD, ['-c', 'select current_user']);
    expect(before.code).not.toBe(0);
    expect(before.stderr).toContain('FATAL:  Gatehouse: prod-pg requires an approved access request.');
    expect(before.stderr).toContain('HINT:  gatehouse request prod-pg --reason "..."');

    await g.gw.approve('alice', 'prod-pg');
    const after = await psql(g.conninfo('alice:prod-pg'), GATEWAY_PASSWORD, ['-c', 'select current_user, current_database()']);
    expect(after.stderr).toBe('');
    expect(after.stdout.trim()).toBe(`${g.target.user}|${g.target.database}`);
    expect(after.stdout).not.toContain('alice');
  });

  it('accepts user + dbname=resource, and forwards application_name', async () => {
    const r = await psql(g.conninfo('alice', 'dbname=open-pg application_name=nightly-report'), GATEWAY_PASSWORD, ['-c', 'select current_user, current_setting($$application_name$$)']);
    expect(r.stdout.trim()).toBe(`${g.target.user}|nightly-report`);
  });

  it('a wrong password is refused without any connection to the target', async () => {
    const connects = g.adapter.stats.upstreamConnects;
    const logged = g.targetConnections();
    const r = await psql(g.conninfo('alice:open-pg'), 'not the password', ['-c', 'select 1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('FATAL:  Gatehouse: password authentication failed for user "alice"');
    expect(g.adapter.stats.upstreamConnects).toBe(connects);
    expect(g.targetConnections()).toBe(logged);
  });

  it('a launch ticket works once; used twice it is refused', async () => {
    const { ticket } = await g.gw.engine.mfa.issueTicket('alice', 'open-pg', false);
    const first = await psql(g.conninfo('alice:open-pg'), ticket, ['-c', 'select current_user']);
    expect(first.stdout.trim()).toBe(g.target.user);
    const connects = g.adapter.stats.upstreamConnects;
    const second = await psql(g.conninfo('alice:open-pg'), ticket, ['-c', 'select current_user']);
    expect(second.code).not.toBe(0);
    expect(second.stderr).toContain('FATAL:  Gatehouse: the launch ticket is not valid');
    expect(second.stderr).toContain('HINT:  get a fresh one: gatehouse launch open-pg');
    expect(g.adapter.stats.upstreamConnects).toBe(connects);
  });

  it('an MFA resource needs a launch ticket issued after TOTP; the gateway password alone is refused', async () => {
    await addPgResource(g, { limitAccessTime: BERLIN_DAYTIME, mfa: true }, 'mfa-pg');
    await g.gw.enrolTotp('carol');
    const pw = await psql(g.conninfo('carol:mfa-pg'), GATEWAY_PASSWORD, ['-c', 'select 1']);
    expect(pw.stderr).toContain('FATAL:  Gatehouse: mfa-pg requires a fresh TOTP code for every connection.');
    expect(pw.stderr).toContain('HINT:  gatehouse launch mfa-pg --totp CODE');
    const { ticket } = await g.gw.engine.mfa.issueTicket('carol', 'mfa-pg', true);
    const ok = await psql(g.conninfo('carol:mfa-pg'), ticket, ['-c', 'select current_user']);
    expect(ok.stdout.trim()).toBe(g.target.user);
  });

  it('a ticket issued to someone else is refused', async () => {
    const { ticket } = await g.gw.engine.mfa.issueTicket('carol', 'open-pg', false);
    const r = await psql(g.conninfo('alice:open-pg'), ticket, ['-c', 'select 1']);
    expect(r.stderr).toContain('the launch ticket is not valid');
  });

  it('a user off the access list gets 42501 with the owner to ask', async () => {
    const c = new pg.Client({ ...g.pgConfig('mallory:open-pg', GATEWAY_PASSWORD) });
    const err = await c.connect().then(() => undefined, (e: unknown) => e as pg.DatabaseError);
    expect(err).toMatchObject({ code: '42501', severity: 'FATAL', message: 'Gatehouse: mallory is not on the access list of open-pg.' });
    expect(err?.hint).toBe('ask bob to run: gatehouse resource share open-pg --user mallory');
  });

  it('an unknown resource reads like an unknown database; no resource at all is explained', async () => {
    const r = await psql(g.conninfo('alice:nope'), GATEWAY_PASSWORD, ['-c', 'select 1']);
    expect(r.stderr).toContain("FATAL:  Gatehouse: There is no resource named 'nope'.");
    const c = new pg.Client({ ...g.pgConfig('alice', GATEWAY_PASSWORD) });
    const err = await c.connect().then(() => undefined, (e: unknown) => e as pg.DatabaseError);
    expect(err).toMatchObject({ code: '28000', message: 'Gatehouse: no resource named in the connection' });
  });

  it('sslmode=disable is refused with the TLS hint', async () => {
    const r = await psql(`host=127.0.0.1 port=${g.port} user=alice:open-pg sslmode=disable`, GATEWAY_PASSWORD, ['-c', 'select 1']);
    expect(r.stderr).toContain('FATAL:  Gatehouse: this gateway accepts only TLS connections');
    expect(r.stderr).toContain('HINT:  connect with sslmode=verify-full');
  });

  it('verify-full fails against a CA that did not sign the gateway certificate', async () => {
    const r = await psql(`host=localhost port=${g.port} user=alice:open-pg sslmode=verify-full sslrootcert=${g.target.ca}`, GATEWAY_PASSWORD, ['-c', 'select 1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/certificate verify failed/);
  });

  it('audits Query and Parse text', async () => {
    g.statements.length = 0;
    await psql(g.conninfo('alice:open-pg'), GATEWAY_PASSWORD, ['-c', 'select 42 as audited']);
    const c = new pg.Client(g.pgConfig('alice:open-pg', GATEWAY_PASSWORD));
    await c.connect();
    await c.query({ name: 'byid', text: 'select $1::int + 1 as n', values: [1] });
    await c.end();
    expect(g.statements.map((s) => [s.kind, s.sql, s.user, s.resource])).toEqual([
      ['query', 'select 42 as audited', 'alice', 'open-pg'],
      ['parse', 'select $1::int + 1 as n', 'alice', 'open-pg'],
    ]);
  });
});
