/**
 * The PostgreSQL gateway with the real psql and pg driver against a real PostgreSQL:
 * addressing, the decision, credential injection, tickets, wrong passwords.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DOORS } from '../../protocols/registry.js';
import { hashSecretToken } from '../../src/workflow/mfa.js';
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

/** What the pg driver reports when the gateway refuses a connection (undefined if it connected). */
async function refusalOf(user: string, password: string): Promise<pg.DatabaseError | undefined> {
  const c = new pg.Client(g.pgConfig(user, password));
  const err = await c.connect().then(() => undefined, (e: unknown) => e as pg.DatabaseError);
  if (!err) await c.end();
  return err;
}

/** Whether the launch ticket is still unused in the store (a refusal must not spend it). */
async function unused(ticket: string): Promise<boolean> {
  const t = await g.gw.store.getTicket(hashSecretToken(ticket));
  return t !== undefined && t.usedAt === undefined;
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

  it('a wrong password is refused without any connection to the target', async () => {
    const connects = g.adapter.stats.upstreamConnects;
    const logged = g.targetConnections();
    const r = await psql(g.conninfo('alice:open-pg'), 'not the password', ['-c', 'select 1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("FATAL:  Gatehouse: access denied for alice:open-pg: the password is neither alice's gateway password nor a valid launch ticket.");
    expect(r.stderr).toContain('DETAIL:  Refused at sign-in (bad_password).');
    expect(r.stderr).toContain('HINT:  use your Gatehouse password, or a launch ticket from: gatehouse launch open-pg');
    expect(await refusalOf('alice:open-pg', 'still not it')).toMatchObject({ code: '28P01', severity: 'FATAL' });
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
    expect(second.stderr).toContain('FATAL:  Gatehouse: the launch ticket is not valid for open-pg (unknown, already used or expired).');
    expect(second.stderr).toContain('DETAIL:  Refused at sign-in (bad_ticket).');
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

  it("a ticket issued to someone else is refused as someone else's, and stays valid for its owner", async () => {
    const { ticket } = await g.gw.engine.mfa.issueTicket('carol', 'open-pg', false);
    const connects = g.adapter.stats.upstreamConnects;
    const err = await refusalOf('alice:open-pg', ticket);
    expect(err).toMatchObject({
      code: '28P01', severity: 'FATAL', message: 'Gatehouse: that launch ticket was not issued to alice; it stays valid for its owner.',
      detail: 'Refused at sign-in (ticket_other_user).', hint: 'gatehouse launch open-pg',
    });
    expect(g.adapter.stats.upstreamConnects).toBe(connects);
    expect(await unused(ticket)).toBe(true);
    const owner = await psql(g.conninfo('carol:open-pg'), ticket, ['-c', 'select current_user']);
    expect(owner.stdout.trim()).toBe(g.target.user);
    expect(await unused(ticket)).toBe(false);
  });

  it('a ticket for an SSH or MySQL resource is refused as the wrong protocol, not used up, and no decision is made', async () => {
    await g.gw.addResource({ name: 'web-ssh', type: 'machine', protocol: 'ssh', host: '127.0.0.1', port: 22, credentials: { login: 'deploy', password: 'x' } });
    await g.gw.addResource({ name: 'app-mysql', type: 'database', protocol: 'mysql', host: '127.0.0.1', port: 3306, credentials: { login: 'app', password: 'x' } });
    for (const [resource, protocol] of [['web-ssh', 'ssh'], ['app-mysql', 'mysql']] as const) {
      const { ticket } = await g.gw.engine.mfa.issueTicket('alice', resource, false);
      const connects = g.adapter.stats.upstreamConnects;
      const err = await refusalOf(`alice:${resource}`, ticket);
      expect(err).toMatchObject({
        code: '3D000', severity: 'FATAL',
        message: `Gatehouse: ${resource} is a ${protocol} resource and cannot be reached through the postgres gateway.`,
        detail: 'Denied by the access workflow (wrong_protocol).',
        hint: `gatehouse connect ${resource}`,
      });
      expect(g.adapter.stats.upstreamConnects).toBe(connects);
      expect(await unused(ticket)).toBe(true);
      const audit = await g.gw.store.listAudit({ subject: resource });
      expect(audit.filter((e) => e.action === 'login.refuse').at(-1)?.data).toMatchObject({ door: 'postgres', code: 'wrong_protocol' });
      expect(audit.map((e) => e.action)).not.toContain('ticket.redeem');
      expect(audit.map((e) => e.action).filter((a) => a.startsWith('decision.'))).toEqual([]);
    }
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
    expect(g.statements.map((s) => [s.kind, s.sql, s.user, s.resource])).toEqual([
      ['query', 'select 42 as audited', 'alice', 'open-pg'],
      ['parse', 'select $1::int + 1 as n', 'alice', 'open-pg'],
    ]);
  });
});
