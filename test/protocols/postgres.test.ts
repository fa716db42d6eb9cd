/**
 * The PostgreSQL gateway with the real psql and pg driver against a real PostgreSQL:
 * addressing, the decision, credential injection, tickets, wrong passwords.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DOORS } from '../../protocols/registry.js';
import { BERLIN_DAYTIME, until } from './gateway-harness.js';
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

/** What the pg driver reports when the gateway refuses a connection (undefined if it connected). */
async function refusalOf(user: string, password: string): Promise<pg.DatabaseError | undefined> {
  const c = new pg.Client(g.pgConfig(user, password));
  const err = await c.connect().then(() => undefined, (e: unknown) => e as pg.DatabaseError);
  if (!err) await c.end();
  return err;
}

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

  it('a user off the access list gets 42501 with the owner to ask', async () => {
    const c = new pg.Client({ ...g.pgConfig('mallory:open-pg', GATEWAY_PASSWORD) });
    const err = await c.connect().then(() => undefined, (e: unknown) => e as pg.DatabaseError);
    expect(err).toMatchObject({ code: '42501', severity: 'FATAL', message: 'Gatehouse: mallory is not on the access list of open-pg.' });
    expect(err?.hint).toBe('ask bob to run: gatehouse resource share open-pg --user mallory');
  });

  it('an unknown resource reads like an unknown database; a login without a resource is explained', async () => {
    const r = await psql(g.conninfo('alice:nope'), GATEWAY_PASSWORD, ['-c', 'select 1']);
    expect(r.stderr).toContain("FATAL:  Gatehouse: There is no resource named 'nope'.");
    expect(await refusalOf('alice:nope', GATEWAY_PASSWORD)).toMatchObject({ code: '3D000' });
    const connects = g.adapter.stats.upstreamConnects;
    // pg sends dbname = user when none is given: no resource is named either way.
    expect(await refusalOf('alice', GATEWAY_PASSWORD)).toMatchObject({
      code: '28000', severity: 'FATAL', message: "Gatehouse: 'alice' is not a Gatehouse login; log in as USER:RESOURCE.",
      detail: 'Refused at sign-in (bad_login_name).', hint: DOORS.find((d) => d.protocol === 'postgres')!.loginExample,
    });
    for (const bad of ['alice:', ':open-pg', 'alice:open pg', 'al ice:open-pg']) {
      expect(await refusalOf(bad, GATEWAY_PASSWORD)).toMatchObject({ code: '28000', detail: 'Refused at sign-in (bad_login_name).' });
    }
    expect(g.adapter.stats.upstreamConnects).toBe(connects);
  });

  it('sslmode=disable is refused with the TLS hint', async () => {
    const r = await psql(`host=127.0.0.1 port=${g.port} user=alice:open-pg sslmode=disable`, GATEWAY_PASSWORD, ['-c', 'select 1']);
    expect(r.stderr).toContain('FATAL:  Gatehouse: this gateway accepts only TLS connections.');
    expect(r.stderr).toContain('DETAIL:  Refused by the gateway (tls_required).');
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
    // On the native data path and in data-path workers the audit trails the answer by a moment.
    await until(() => g.statements.length >= 2, 5_000, 'both statements audited');
    expect(g.statements.map((s) => [s.kind, s.sql, s.user, s.resource])).toEqual([
      ['query', 'select 42 as audited', 'alice', 'open-pg'],
      ['parse', 'select $1::int + 1 as n', 'alice', 'open-pg'],
    ]);
  });
});
