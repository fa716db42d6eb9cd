/**
 * Ephemeral entries and elevation on a real slapd (issue 17): the LDAP door's provisioner
 * against the directory, checked with the stock OpenLDAP clients (ldapwhoami, ldapsearch)
 * bound as the temporary entry itself or as the rootdn, never through the provisioner's own
 * code. The sample tree (test/targets/slapd.sh) has ou=gatehouse for temporary entries,
 * cn=readers (handed out) and cn=operators (elevation), both writable by the service
 * account, and ou=reports, readable by members of either group only.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { JitError, type AccountSpec, type JitTarget, type Provisioner } from '../../src/broker/provisioner.js';
import { silentLogger } from '../../src/core/log.js';
import type { JitSettings, TargetCredentials } from '../../src/core/model.js';
import { LdapAdapter, LdapsAdapter } from '../../protocols/ldap/index.js';
import { startSlapd, type SlapdTarget } from '../targets/index.js';
import { eventually, within } from './contract-driver.js';
import { BERLIN_DAYTIME, GATEWAY_PASSWORD, makeGateway, type GatewayHarness } from './gateway-harness.js';
import { watchedLdapsClient } from './ldap-client.js';
import { feed } from './child-input.js';

let target: SlapdTarget;
beforeAll(async () => {
  target = await startSlapd();
});
afterAll(async () => {
  await target?.stop();
});

let gw: GatewayHarness;
let provisioner: Provisioner;
beforeEach(async () => {
  gw = await makeGateway();
  provisioner = new LdapAdapter({ upstreamTls: 'require' }).provisioner(gw.broker.portFor({ protocol: 'ldap', loginExample: '' }));
});
afterEach(async () => {
  await gw?.cleanup();
});

const ou = (): string => `ou=gatehouse,${target.baseDn}`;
const readers = (): string => `cn=readers,ou=groups,${target.baseDn}`;
const operators = (): string => `cn=operators,ou=groups,${target.baseDn}`;
const reports = (): string => `ou=reports,${target.baseDn}`;
const unique = (prefix: string): string => `${prefix}_${randomBytes(5).toString('hex')}`;
const svc = (): TargetCredentials => ({ login: target.user, password: target.password });

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** An OpenLDAP client against slapd directly, StartTLS verified against its CA; never throws. */
function ldap(tool: 'ldapwhoami' | 'ldapsearch' | 'ldapadd' | 'ldapmodify', args: string[], stdin = ''): Promise<Run> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, LDAPCONF: '/dev/null', LDAPRC: 'gatehouse-test-no-ldaprc', LDAPTLS_CACERT: target.ca, LDAPTLS_REQCERT: 'demand' };
    const child = execFile(tool, ['-x', '-ZZ', '-H', `ldap://127.0.0.1:${target.port}`, ...args], { env, timeout: 20_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') return reject(err);
      resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
    });
    feed(child.stdin, stdin);
  });
}

/** As the rootdn (no ACL applies): what is really in the directory. */
const asRoot = (tool: 'ldapsearch' | 'ldapadd' | 'ldapmodify', args: string[], stdin?: string): Promise<Run> =>
  ldap(tool, ['-D', target.superuser, '-w', target.superuserPassword, ...args], stdin);

/** The DNs of the groupOfNames entries that list `dn` as a member, anywhere in the tree. */
async function groupsOf(dn: string): Promise<string[]> {
  const r = await asRoot('ldapsearch', ['-LLL', '-o', 'ldif_wrap=no', '-b', target.baseDn, `(&(objectClass=groupOfNames)(member=${dn}))`, '1.1']);
  expect(r.code, r.stderr).toBe(0);
  return [...r.stdout.matchAll(/^dn: (.*)$/gm)].map((m) => m[1]!);
}

/** The entry's attributes as rootdn sees them ('' when there is none: exit 32). */
async function entry(dn: string, ...attrs: string[]): Promise<{ code: number; ldif: string }> {
  const r = await asRoot('ldapsearch', ['-LLL', '-o', 'ldif_wrap=no', '-b', dn, '-s', 'base', '(objectClass=*)', ...attrs]);
  return { code: r.code, ldif: r.stdout };
}

/** A directory resource with these JIT settings, administered by `admin` (the service account by default). */
async function jitTarget(jit: JitSettings, admin: TargetCredentials = svc(), port = target.port): Promise<JitTarget> {
  const name = unique('dir').replace(/_/g, '-');
  await gw.addResource({ name, type: 'directory', protocol: 'ldap', host: target.host, port, credentials: admin, settings: {} });
  await gw.engine.directory.setJit('admin', name, jit);
  const resource = (await gw.store.getResource(name))!;
  return { resource, admin, jit: resource.jit! };
}

const spec = (name: string): AccountSpec => ({ name, owner: { user: 'alice', accountId: `acc-${name}` }, note: `alice (account acc-${name}, request req-1)` });

const caught = async (p: Promise<unknown>): Promise<JitError> => {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(JitError);
  return e as JitError;
};

describe('LDAP provisioner: temporary entries', () => {
  it('creates an entry the directory binds as (ldapwhoami), in the configured group, with the marker and the owner in its description and a hashed password', async () => {
    const t = await jitTarget({ ephemeral: { grants: [readers()], ou: ou() } });
    const name = unique('gh_alice');
    const creds = await provisioner.create(t, spec(name));
    const dn = `uid=${name},${ou()}`;
    expect(creds.login).toBe(dn);
    expect(creds.password).toMatch(/^[A-Za-z0-9]{32}$/);

    const who = await ldap('ldapwhoami', ['-D', creds.login, '-w', creds.password!]);
    expect(who.code, who.stderr).toBe(0);
    expect(who.stdout.trim()).toBe(`dn:${dn}`);
    expect(await groupsOf(dn)).toEqual([readers()]);
    const { ldif } = await entry(dn, 'description', 'userPassword');
    expect(ldif).toContain(`description: gatehouse-ephemeral: alice (account acc-${name}, request req-1)`);
    // The gateway sent a {SSHA} hash, not the password: slapd stores userPassword as it is given.
    const stored = Buffer.from(/^userPassword:: (.*)$/m.exec(ldif)![1]!, 'base64').toString();
    expect(stored).toMatch(/^\{SSHA\}/);
    expect(stored).not.toContain(creds.password);
    // The group's rights are the entry's: members of readers may read ou=reports.
    const report = await ldap('ldapsearch', ['-LLL', '-D', dn, '-w', creds.password!, '-b', reports(), '(cn=q1-report)', 'cn']);
    expect(report.stdout).toContain(`dn: cn=q1-report,${reports()}`);
    expect(await provisioner.listMarked(t)).toContain(name);
  });

  it('removes the entry and every membership (also one it was given outside the settings); removing it again is done', async () => {
    const t = await jitTarget({ ephemeral: { grants: [readers()], ou: ou() } });
    const name = unique('gh_bob');
    const creds = await provisioner.create(t, spec(name));
    const dn = creds.login;
    // A membership the settings do not name, in a group the vaulted DN may change.
    const extra = await asRoot('ldapmodify', [], `dn: ${operators()}\nchangetype: modify\nadd: member\nmember: ${dn}\n`);
    expect(extra.code, extra.stderr).toBe(0);
    expect((await groupsOf(dn)).sort()).toEqual([operators(), readers()].sort());

    const removed = await provisioner.remove(t, name);
    expect(removed).toEqual({ done: true });
    expect((await entry(dn)).code).toBe(32);
    expect(await groupsOf(dn)).toEqual([]);
    const bind = await ldap('ldapwhoami', ['-D', dn, '-w', creds.password!]);
    expect(bind.code).toBe(49);
    expect(await provisioner.listMarked(t)).not.toContain(name);

    expect(await provisioner.remove(t, name)).toMatchObject({ done: true });
  });

  it('keeps an entry locked (not deleted) while a group the vaulted DN may not change still lists it, and finishes on the retry', async () => {
    const t = await jitTarget({ ephemeral: { grants: [readers()], ou: ou() } });
    const name = unique('gh_stuck');
    const creds = await provisioner.create(t, spec(name));
    const dn = creds.login;
    const developers = `cn=developers,ou=groups,${target.baseDn}`;
    const add = await asRoot('ldapmodify', [], `dn: ${developers}\nchangetype: modify\nadd: member\nmember: ${dn}\n`);
    expect(add.code, add.stderr).toBe(0);

    const first = await provisioner.remove(t, name);
    expect(first.done).toBe(false);
    expect(first.detail).toBe(`${dn} is locked but still a member: the vaulted DN ${target.user} may not change the members of ${developers} on ${t.resource.name} (the directory said insufficientAccessRights)`);
    // Locked: its password is gone, so nobody binds as it; the entry stays so no member DN dangles.
    expect((await ldap('ldapwhoami', ['-D', dn, '-w', creds.password!])).code).toBe(49);
    expect((await entry(dn)).code).toBe(0);
    expect(await groupsOf(dn)).toEqual([developers]);

    const lifted = await asRoot('ldapmodify', [], `dn: ${developers}\nchangetype: modify\ndelete: member\nmember: ${dn}\n`);
    expect(lifted.code, lifted.stderr).toBe(0);
    expect(await provisioner.remove(t, name)).toEqual({ done: true });
    expect((await entry(dn)).code).toBe(32);
  });

  it('leaves an entry without the Gatehouse marker alone, and does not list it', async () => {
    const t = await jitTarget({ ephemeral: { grants: [readers()], ou: ou() } });
    const name = unique('gh_hand');
    const dn = `uid=${name},${ou()}`;
    // Made by hand, with a similar name and a description that is close to the marker but not it.
    const made = await asRoot('ldapadd', [], `dn: ${dn}\nobjectClass: inetOrgPerson\nuid: ${name}\ncn: ${name}\nsn: hand\ndescription: gatehouse-ephemeral-like, made by hand\nuserPassword: hand-secret\n`);
    expect(made.code, made.stderr).toBe(0);
    const member = await asRoot('ldapmodify', [], `dn: ${readers()}\nchangetype: modify\nadd: member\nmember: ${dn}\n`);
    expect(member.code, member.stderr).toBe(0);
    const ours = unique('gh_ours');
    await provisioner.create(t, spec(ours));

    expect(await provisioner.remove(t, name)).toEqual({ done: true, detail: `${dn} carries no Gatehouse marker: left alone` });
    expect((await entry(dn)).code).toBe(0);
    expect(await groupsOf(dn)).toEqual([readers()]);
    expect((await ldap('ldapwhoami', ['-D', dn, '-w', 'hand-secret'])).code).toBe(0);
    const marked = await provisioner.listMarked(t);
    expect(marked).toContain(ours);
    expect(marked).not.toContain(name);
    await provisioner.remove(t, ours);
  });

  it('removes an entry it made that lost its marker during the grant (a directory where entries may write their own description)', async () => {
    const t = await jitTarget({ ephemeral: { grants: [readers()], ou: ou() } });
    const name = unique('gh_tamper');
    const creds = await provisioner.create(t, spec(name));
    const dn = creds.login;
    // What the entry itself could do under an ACL with "by self write": its description is no longer the marker.
    const strip = await asRoot('ldapmodify', [], `dn: ${dn}\nchangetype: modify\nreplace: description\ndescription: just a person\n`);
    expect(strip.code, strip.stderr).toBe(0);

    expect(await provisioner.remove(t, name)).toEqual({ done: true });
    expect((await entry(dn)).code).toBe(32);
    expect(await groupsOf(dn)).toEqual([]);
    expect((await ldap('ldapwhoami', ['-D', dn, '-w', creds.password!])).code).toBe(49);
  });

  it('refuses with missing_right when the vaulted DN may not add entries under the OU, and leaves nothing behind', async () => {
    const roDn = `cn=${unique('ro')},ou=services,${target.baseDn}`;
    const made = await asRoot('ldapadd', [], `dn: ${roDn}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: ${roDn.slice(3, roDn.indexOf(','))}\nuserPassword: ro-secret\n`);
    expect(made.code, made.stderr).toBe(0);
    const t = await jitTarget({ ephemeral: { grants: [readers()], ou: ou() } }, { login: roDn, password: 'ro-secret' });
    const name = unique('gh_ro');

    const e = await caught(provisioner.create(t, spec(name)));
    expect(e.kind).toBe('missing_right');
    expect(e.message).toBe(`the vaulted DN ${roDn} may not add entries under ${ou()} on ${t.resource.name} (the directory said insufficientAccessRights: no write access to parent)`);
    expect((await entry(`uid=${name},${ou()}`)).code).toBe(32);
    expect(await groupsOf(`uid=${name},${ou()}`)).toEqual([]);
  });

  it('undoes the entry when the vaulted DN may not change a configured group (missing_right naming the group)', async () => {
    const admins = `cn=admins,ou=groups,${target.baseDn}`;
    const t = await jitTarget({ ephemeral: { grants: [readers(), admins], ou: ou() } });
    const name = unique('gh_half');
    const dn = `uid=${name},${ou()}`;

    const e = await caught(provisioner.create(t, spec(name)));
    expect(e.kind).toBe('missing_right');
    expect(e.message).toMatch(new RegExp(`^the vaulted DN ${target.user} may not change the members of ${admins} on ${t.resource.name} \\(the directory said insufficientAccessRights`));
    expect((await entry(dn)).code).toBe(32);
    expect(await groupsOf(dn)).toEqual([]);
  });

  it('says the directory is unreachable when nothing listens, and that the bind was refused with a wrong vaulted password', async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as { port: number };
        s.close(() => resolve(port));
      });
    });
    const down = await jitTarget({ ephemeral: { grants: [], ou: ou() } }, svc(), closed);
    const e = await caught(provisioner.create(down, spec(unique('gh_down'))));
    expect(e.kind).toBe('unreachable');
    expect(e.message).toContain(`cannot connect to 127.0.0.1:${closed}`);

    const wrong = await jitTarget({ ephemeral: { grants: [], ou: ou() } }, { login: target.user, password: 'wrong' });
    const w = await caught(provisioner.listMarked(wrong));
    expect(w.kind).toBe('refused');
    expect(w.message).toContain(`the directory refused the vaulted bind as ${target.user} (49`);
  });

  it('checks the settings: an OU is needed, and every group must be a DN', () => {
    expect(provisioner.check({ ephemeral: { grants: [readers()] } })[0]).toMatch(/^ephemeral\.ou: name the OU/);
    expect(provisioner.check({ ephemeral: { grants: [readers()], ou: ou() } })).toEqual([]);
    expect(provisioner.nameLimit).toBe(64);
  });
});

describe('LDAP provisioner: elevation', () => {
  it('adds the vaulted DN to the group for the grant and takes it out again; the group ACL follows at once', async () => {
    const t = await jitTarget({ elevate: { grants: [operators()] } });
    const svcReads = async (): Promise<number> => (await ldap('ldapsearch', ['-LLL', '-D', target.user, '-w', target.password, '-b', reports(), '(cn=q1-report)', 'cn'])).code;
    expect(await groupsOf(target.user)).toEqual([]);
    expect(await svcReads()).toBe(32);

    await provisioner.elevate(t, { user: 'alice', accountId: 'acc-elevate' });
    expect(await groupsOf(target.user)).toEqual([operators()]);
    expect(await svcReads()).toBe(0);
    // Idempotent: a second grant's elevation finds the membership there.
    await provisioner.elevate(t, { user: 'carol', accountId: 'acc-elevate-2' });
    expect(await groupsOf(target.user)).toEqual([operators()]);

    expect(await provisioner.unelevate(t)).toEqual({ done: true });
    expect(await groupsOf(target.user)).toEqual([]);
    expect(await svcReads()).toBe(32);
    expect(await provisioner.unelevate(t)).toEqual({ done: true });
  });
});

/**
 * Through the gateway: sessions of a grant bind upstream as its temporary entry. The door
 * answers WhoAmI itself (`u:alice`, the Gatehouse user), so what proves the directory's view
 * is what it lets the session read: ou=reports (members of cn=readers only; the service
 * account may not) and the entry itself (`by self read`), plus slapd's own BIND log line.
 */
describe('LDAP door with ephemeral entries', () => {
  const SINGLE_USER = { limitAccessTime: BERLIN_DAYTIME, singleUser: true };
  const APPROVAL = { limitAccessTime: BERLIN_DAYTIME, requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, startOn: 'approval' } };
  let ldapDoor: Listener;
  let ldapsDoor: Listener;
  let caFile: string;

  beforeEach(async () => {
    const tls = { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem };
    const adapter = new LdapAdapter({ upstreamTls: 'require' });
    await gw.useDoor(adapter);
    ldapDoor = await adapter.listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls });
    ldapsDoor = await new LdapsAdapter({ upstreamTls: 'require' }).listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls });
    caFile = join(gw.dir, 'gateway-ca.pem');
    writeFileSync(caFile, gw.pki.caCertPem);
  });
  afterEach(async () => {
    await ldapDoor?.close();
    await ldapsDoor?.close();
  });

  /** ldapsearch/ldapwhoami through the gateway's StartTLS listener as alice with her gateway password. */
  function door(tool: 'ldapsearch' | 'ldapwhoami', resource: string, args: string[] = []): Promise<Run> {
    return new Promise((resolve, reject) => {
      const env = { ...process.env, LDAPCONF: '/dev/null', LDAPRC: 'gatehouse-test-no-ldaprc', HOME: gw.dir, LDAPTLS_CACERT: caFile, LDAPTLS_REQCERT: 'demand' };
      const all = ['-x', '-ZZ', '-H', `ldap://127.0.0.1:${ldapDoor.address.port}`, '-D', `alice:${resource}`, '-w', GATEWAY_PASSWORD, ...args];
      execFile(tool, all, { env, timeout: 20_000 }, (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(err);
        resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
      });
    });
  }

  async function jitDirectory(settings: object, jit: JitSettings, admin: TargetCredentials = svc()): Promise<string> {
    const name = unique('dir').replace(/_/g, '-');
    await gw.addResource({ name, type: 'directory', protocol: 'ldap', host: target.host, port: target.port, credentials: admin, settings });
    await gw.engine.directory.setJit('admin', name, jit);
    return name;
  }

  /** What a session through the door can see that only the temporary entry may: the report, and its own entry. */
  async function provesTemporaryEntry(resource: string, dn: string): Promise<void> {
    const report = await door('ldapsearch', resource, ['-LLL', '-b', reports(), '(cn=q1-report)', 'cn']);
    expect(report.code, report.stderr).toBe(0);
    expect(report.stdout).toContain(`dn: cn=q1-report,${reports()}`);
    const own = await door('ldapsearch', resource, ['-LLL', '-o', 'ldif_wrap=no', '-b', dn, '-s', 'base', 'description']);
    expect(own.code, own.stderr).toBe(0);
    expect(own.stdout).toMatch(/^description: gatehouse-ephemeral: gatehouse: alice lease:/m);
    // The directory's own record of who bound.
    expect(readFileSync(target.log, 'utf8')).toContain(`BIND dn="${dn}" mech=SIMPLE`);
  }

  it('binds every session of a check-out as one temporary entry; check-in removes it within 2 s and ends the live session', async () => {
    const res = await jitDirectory(SINGLE_USER, { ephemeral: { grants: [readers()], ou: ou() } });
    // The vaulted service account itself may not read the reports.
    expect((await ldap('ldapsearch', ['-LLL', '-D', target.user, '-w', target.password, '-b', reports(), 'cn'])).code).toBe(32);
    await gw.engine.leases.checkout('alice', res);

    const idle = watchedLdapsClient(ldapsDoor.address.port, gw.pki.caCertPem);
    await idle.client.bind(`alice:${res}`, GATEWAY_PASSWORD);
    const first = gw.broker.live()[0]!;
    const name = first.account!;
    expect(name).toMatch(/^gh_alice_[a-z0-9]{8}$/);
    const dn = `uid=${name},${ou()}`;
    expect(await groupsOf(dn)).toEqual([readers()]);

    // WhoAmI is the gateway's own answer (the Gatehouse user), not the directory's.
    const who = await door('ldapwhoami', res);
    expect(who.stdout.trim()).toBe('u:alice');
    await provesTemporaryEntry(res, dn);
    // Every connection of the grant used the same entry: one under the OU for this check-out.
    const sessions = await gw.store.listSessions({ resource: res });
    expect(new Set(sessions.map((s) => s.account))).toEqual(new Set([name]));
    expect(sessions.length).toBeGreaterThanOrEqual(4);

    const t0 = performance.now();
    await gw.engine.leases.checkin('alice', res);
    const notice = await within(idle.notice, 2_000, 'the notice to the bound ldapts client');
    expect(notice?.code).toBe(52);
    expect(await eventually(async () => (await entry(dn)).code === 32, 2_000)).toBe(true);
    const gone = performance.now() - t0;
    expect(gone).toBeLessThan(2_000);
    expect(await groupsOf(dn)).toEqual([]);
    expect(gw.broker.live()).toHaveLength(0);
    const [record] = await gw.store.listJitAccounts({ resource: res });
    expect(record).toMatchObject({ account: name, state: 'gone', kind: 'ephemeral', user: 'alice' });
  });

  it('removes the entry of an approval when the grant expires (fake clock), ending the live session', async () => {
    const res = await jitDirectory(APPROVAL, { ephemeral: { grants: [readers()], ou: ou() } });
    const requestId = await gw.approve('alice', res);
    const idle = watchedLdapsClient(ldapsDoor.address.port, gw.pki.caCertPem);
    await idle.client.bind(`alice:${res}`, GATEWAY_PASSWORD);
    const name = gw.broker.live()[0]!.account!;
    const dn = `uid=${name},${ou()}`;
    const found = await idle.client.search(reports(), { filter: '(cn=q1-report)' });
    expect(found.searchEntries.map((e) => e.dn)).toEqual([`cn=q1-report,${reports()}`]);
    const [record] = await gw.store.listJitAccounts({ resource: res });
    expect(record).toMatchObject({ requestId, grant: `request:${requestId}`, state: 'active' });

    const t0 = performance.now();
    gw.clock.advance(121 * 60_000);
    await gw.engine.sweep();
    const notice = await within(idle.notice, 2_000, 'the notice to the bound ldapts client');
    expect(notice?.code).toBe(52);
    expect(await eventually(async () => (await entry(dn)).code === 32, 2_000)).toBe(true);
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(await groupsOf(dn)).toEqual([]);
  });

  it('refuses the connection with the missing right when the vaulted DN may not make entries, shows the failure on the session, leaves nothing behind', async () => {
    const roDn = `cn=${unique('ro')},ou=services,${target.baseDn}`;
    const made = await asRoot('ldapadd', [], `dn: ${roDn}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: ${roDn.slice(3, roDn.indexOf(','))}\nuserPassword: ro-secret\n`);
    expect(made.code, made.stderr).toBe(0);
    const res = await jitDirectory(SINGLE_USER, { ephemeral: { grants: [readers()], ou: ou() } }, { login: roDn, password: 'ro-secret' });
    await gw.engine.leases.checkout('alice', res);

    const r = await door('ldapsearch', res, ['-LLL', '-b', reports(), 'cn']);
    expect(r.code, r.stderr).toBe(52);
    expect(r.stderr).toContain(`the vaulted DN ${roDn} may not add entries under ${ou()}`);
    expect(r.stderr).toContain('insufficientAccessRights');
    expect(r.stderr).toContain('(target_provisioning)');
    const [session] = await gw.store.listSessions({ resource: res });
    expect(session).toMatchObject({ state: 'ended', endReason: 'error' });
    expect(session!.endMessage).toContain(`may not add entries under ${ou()}`);
    const [record] = await gw.store.listJitAccounts({ resource: res });
    expect(record).toMatchObject({ state: 'failed' });
    expect((await entry(`uid=${record!.account},${ou()}`)).code).toBe(32);
  });

  it('elevates the vaulted DN into the group for a check-out and takes it out at check-in', async () => {
    const res = await jitDirectory(SINGLE_USER, { elevate: { grants: [operators()] } });
    await gw.engine.leases.checkout('alice', res);
    expect(await groupsOf(target.user)).toEqual([]);
    const report = await door('ldapsearch', res, ['-LLL', '-b', reports(), '(cn=q1-report)', 'cn']);
    expect(report.code, report.stderr).toBe(0);
    expect(report.stdout).toContain(`dn: cn=q1-report,${reports()}`);
    expect(await groupsOf(target.user)).toEqual([operators()]);

    await gw.engine.leases.checkin('alice', res);
    expect(await eventually(async () => (await groupsOf(target.user)).length === 0, 2_000)).toBe(true);
  });
});
