/**
 * The LDAP door with the stock OpenLDAP clients (ldapsearch, ldapmodify, ldapwhoami from
 * ldap-utils) and ldapts, against a real slapd: the acceptance scenarios of the LDAP door.
 * What is asserted is what the client printed and its exit status (the LDAP result code).
 */
import { execFile, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import type { ResourceOptions } from '../../src/core/model.js';
import { LdapAdapter, LdapsAdapter } from '../../protocols/ldap/index.js';
import { startSlapd, type SlapdTarget } from '../targets/index.js';
import { eventually, within } from './contract-driver.js';
import { BERLIN_DAYTIME, GATEWAY_PASSWORD, makeGateway, type GatewayHarness } from './gateway-harness.js';
import { Control } from 'ldapts';
import { watchedLdapsClient } from './ldap-client.js';
import { feed } from './child-input.js';

let target: SlapdTarget;
beforeAll(async () => {
  target = await startSlapd();
});
afterAll(async () => {
  await target?.stop();
});

const APPROVAL = { limitAccessTime: BERLIN_DAYTIME, requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, startOn: 'approval' } };
const SINGLE_USER = { limitAccessTime: BERLIN_DAYTIME, singleUser: true };

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let gw: GatewayHarness;
let ldap: Listener;
let ldaps: Listener;
let caFile: string;

beforeEach(async () => {
  gw = await makeGateway();
  const tls = { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem };
  ldap = await new LdapAdapter({ upstreamTls: 'require' }).listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls });
  ldaps = await new LdapsAdapter({ upstreamTls: 'require' }).listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls });
  caFile = join(gw.dir, 'gateway-ca.pem');
  writeFileSync(caFile, gw.pki.caCertPem);
});
afterEach(async () => {
  await ldap?.close();
  await ldaps?.close();
  await gw?.cleanup();
});

async function directory(name: string, settings: object, options: ResourceOptions = {}): Promise<void> {
  await gw.addResource({
    name, type: 'directory', protocol: 'ldap', host: target.host, port: target.port,
    credentials: { login: target.user, password: target.password }, settings, options,
  });
}

/** Runs an OpenLDAP client against the gateway's StartTLS listener, trusting the gateway's CA only. */
function client(tool: 'ldapsearch' | 'ldapmodify' | 'ldapwhoami' | 'ldappasswd', args: string[], stdin?: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const env = clientEnv();
    const child = execFile(tool, args, { env, timeout: 20_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') return reject(err);
      resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
    });
    feed(child.stdin, stdin ?? '');
  });
}

/**
 * The OpenLDAP clients' settings: only the gateway's CA, and no ldap.conf or ~/.ldaprc of the
 * machine (LDAPNOINIT would also drop the LDAPTLS_* variables, so it is not used).
 */
const clientEnv = (): NodeJS.ProcessEnv => ({ ...process.env, LDAPCONF: '/dev/null', LDAPRC: 'gatehouse-test-no-ldaprc', HOME: gw.dir, LDAPTLS_CACERT: caFile, LDAPTLS_REQCERT: 'demand' });

const url = (): string => `ldap://127.0.0.1:${ldap.address.port}`;
/** `-x -ZZ -H URL -D alice:RES -w SECRET`: a simple bind after StartTLS. */
const bindArgs = (login: string, secret = GATEWAY_PASSWORD): string[] => ['-x', '-ZZ', '-H', url(), '-D', login, '-w', secret];
const dnCount = (ldif: string): number => (ldif.match(/^dn: /gm) ?? []).length;
const targetBinds = (): number => readFileSync(target.log, 'utf8').split(target.bindLine).length - 1;

describe('LDAP door with the OpenLDAP clients', () => {
  it('refuses before approval with the reason and the fix; after approval whoami and search work as the vaulted account', async () => {
    await directory('corp-ldap', APPROVAL, { baseDn: target.peopleDn });
    const before = targetBinds();
    const denied = await client('ldapsearch', [...bindArgs('alice:corp-ldap'), '-b', target.peopleDn, '(uid=user0001)']);
    expect(denied.code, denied.stderr).toBe(50);
    expect(denied.stderr).toContain('Insufficient access (50)');
    expect(denied.stderr).toContain('(approval_required)');
    expect(denied.stderr).toContain('To fix: gatehouse request corp-ldap');
    expect(targetBinds()).toBe(before);

    await gw.approve('alice', 'corp-ldap');
    const who = await client('ldapwhoami', bindArgs('alice:corp-ldap'));
    expect(who.code, who.stderr).toBe(0);
    expect(who.stdout.trim()).toBe('u:alice');

    const found = await client('ldapsearch', [...bindArgs('alice:corp-ldap'), '-LLL', '-b', target.peopleDn, '(uid=user0001)', 'uid', 'mail']);
    expect(found.code, found.stderr).toBe(0);
    expect(found.stdout).toContain(`dn: uid=user0001,${target.peopleDn}`);
    expect(found.stdout).toContain('mail: ');
    // The directory saw the service account bind (anonymous reads nothing under ou=people).
    expect(targetBinds()).toBe(before + 2);
  });

  it('lets ldapmodify change an entry on a read-write resource and refuses it on a read-only one', async () => {
    await directory('corp-rw', {}, { directoryAccess: 'read-write', baseDn: target.peopleDn });
    await directory('corp-ro', {}, { baseDn: target.peopleDn });
    const ldif = `dn: uid=user0002,${target.peopleDn}\nchangetype: modify\nreplace: description\ndescription: changed through Gatehouse\n`;

    const ok = await client('ldapmodify', bindArgs('alice:corp-rw'), ldif);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`modifying entry "uid=user0002,${target.peopleDn}"`);
    const read = await client('ldapsearch', [...bindArgs('alice:corp-ro'), '-LLL', '-b', `uid=user0002,${target.peopleDn}`, '-s', 'base', 'description']);
    expect(read.stdout).toContain('description: changed through Gatehouse');

    const refused = await client('ldapmodify', bindArgs('alice:corp-ro'), ldif.replace('changed through', 'refused by'));
    expect(refused.code, refused.stderr).toBe(50);
    expect(refused.stderr).toContain('corp-ro is read-only through the gateway');
    const after = await client('ldapsearch', [...bindArgs('alice:corp-ro'), '-LLL', '-b', `uid=user0002,${target.peopleDn}`, '-s', 'base', 'description']);
    expect(after.stdout).toContain('description: changed through Gatehouse');
  });

  it('returns all 2000 entries of a paged search, and refuses a search outside the base DN', async () => {
    await directory('people', {}, { baseDn: target.peopleDn });
    const paged = await client('ldapsearch', [...bindArgs('alice:people'), '-LLL', '-E', 'pr=100/noprompt', '-b', target.peopleDn, '(uid=user*)', 'uid']);
    expect(paged.code, paged.stderr).toBe(0);
    expect(dnCount(paged.stdout)).toBe(target.entries);

    const outside = await client('ldapsearch', [...bindArgs('alice:people'), '-o', 'ldif_wrap=no', '-b', target.restrictedDn, '(objectClass=*)']);
    expect(outside.code, outside.stderr).toBe(50);
    expect(outside.stdout + outside.stderr).toContain(`is outside '${target.peopleDn}'`);
    // A parent of the base would reach beyond it with a subtree scope: refused too.
    const parent = await client('ldapsearch', [...bindArgs('alice:people'), '-b', target.baseDn, '(uid=user0001)']);
    expect(parent.code, parent.stderr).toBe(50);
  });

  it('never hands out referrals: search references are dropped and the referral object is not chased', async () => {
    await directory('whole', {});
    // The directory itself does answer with a search reference to the other host (so the checks below can fail).
    const direct = await new Promise<string>((resolve) => execFile('ldapsearch', ['-x', '-H', `ldap://127.0.0.1:${target.port}`, '-D', target.user, '-w', target.password, '-b', target.baseDn, '-s', 'one', '(objectClass=*)'],
      { env: { ...process.env, LDAPCONF: '/dev/null' } }, (_e, out) => resolve(out)));
    expect(direct).toContain('elsewhere.invalid');
    const r = await client('ldapsearch', [...bindArgs('alice:whole'), '-b', target.baseDn, '-s', 'one', '(objectClass=*)']);
    // The directory answers a subtree walk with a search reference for ou=elsewhere; the client never sees a URL.
    expect(r.stdout).not.toContain('elsewhere.invalid');
    expect(r.stdout).toContain(`dn: ${target.peopleDn}`);
    const ref = await client('ldapsearch', [...bindArgs('alice:whole'), '-b', target.referralDn, '-s', 'base']);
    expect(ref.stdout + ref.stderr).not.toContain('elsewhere.invalid');
  });

  it('refuses alias dereferencing below a base DN, unknown critical controls and the Cancel operation; drops an unknown non-critical control', async () => {
    await directory('people', {}, { baseDn: target.peopleDn });
    const deref = await client('ldapsearch', [...bindArgs('alice:people'), '-a', 'always', '-o', 'ldif_wrap=no', '-b', target.peopleDn, '(uid=user0001)']);
    expect(deref.code, deref.stdout + deref.stderr).toBe(50);
    expect(deref.stdout + deref.stderr).toContain('alias dereferencing could leave');

    const w = watchedLdapsClient(ldaps.address.port, gw.pki.caCertPem);
    await w.client.bind('alice:people', GATEWAY_PASSWORD);
    const one = `uid=user0001,${target.peopleDn}`;
    await expect(w.client.search(one, { scope: 'base' }, new Control('1.2.3.4.5.6', { critical: true }))).rejects.toMatchObject({ code: 12 });
    expect((await w.client.search(one, { scope: 'base' }, new Control('1.2.3.4.5.6', { critical: false }))).searchEntries).toHaveLength(1);
    await expect(w.client.exop('1.3.6.1.1.8')).rejects.toMatchObject({ code: 53 });
    await w.client.unbind();
  });

  describe('refusals', () => {
    beforeEach(async () => {
      await directory('open', {});
    });

    it('refuses an empty password (an unauthenticated bind) with unwillingToPerform (53)', async () => {
      const before = targetBinds();
      const r = await client('ldapsearch', [...bindArgs('alice:open', ''), '-b', target.peopleDn]);
      expect(r.code, r.stderr).toBe(53);
      expect(r.stderr).toContain('(no_secret)');
      expect(targetBinds()).toBe(before);
    });

    it('refuses a SASL bind with authMethodNotSupported (7), telling ldapsearch users to pass -x', async () => {
      const r = await client('ldapsearch', ['-ZZ', '-H', url(), '-Y', 'PLAIN', '-U', 'alice:open', '-w', GATEWAY_PASSWORD, '-b', target.peopleDn]);
      expect(r.code, r.stderr).toBe(7);
      expect(r.stderr).toContain('(unsupported_auth)');
      expect(r.stderr).toContain('-x');
    });

    it('refuses a password bind before TLS with confidentialityRequired (13)', async () => {
      const r = await client('ldapsearch', ['-x', '-H', url(), '-D', 'alice:open', '-w', GATEWAY_PASSWORD, '-b', target.peopleDn]);
      expect(r.code, r.stderr).toBe(13);
      expect(r.stderr).toContain('(tls_required)');
    });

    it('refuses a ProxyAuthz control with authorizationDenied (123)', async () => {
      const r = await client('ldapsearch', [...bindArgs('alice:open'), '-e', '!authzid=dn:cn=admin,dc=example,dc=com', '-b', target.peopleDn, '(uid=user0001)']);
      expect(r.code, r.stderr).toBe(123);
      expect(r.stdout + r.stderr).toContain('ProxyAuthz');
    });

    it('refuses the ManageDsaIT control with unwillingToPerform (53)', async () => {
      const r = await client('ldapsearch', [...bindArgs('alice:open'), '-M', '-b', target.peopleDn, '(uid=user0001)']);
      expect(r.code, r.stderr).toBe(53);
      expect(r.stdout + r.stderr).toContain('ManageDsaIT');
    });

    it('refuses the password modify operation: the vaulted credentials are not the user to change', async () => {
      const r = await client('ldappasswd', [...bindArgs('alice:open'), '-s', 'new-secret']);
      // ldappasswd exits 1 whatever the result code, and prints it.
      expect(r.code).toBe(1);
      expect(r.stdout + r.stderr).toContain('Insufficient access (50)');
      expect(r.stdout + r.stderr).toContain("not the user's to change");
    });
  });

  it('audits each operation on the session record (op, DN, scope, filter), never a value or a password', async () => {
    await directory('audited', {}, { directoryAccess: 'read-write', baseDn: target.peopleDn });
    const ldif = `dn: uid=user0003,${target.peopleDn}\nchangetype: modify\nreplace: description\ndescription: value-never-audited\n`;
    expect((await client('ldapmodify', bindArgs('alice:audited'), ldif)).code).toBe(0);
    const search = await client('ldapsearch', [...bindArgs('alice:audited'), '-b', target.peopleDn, '(|(uid=user0003)(userPassword=hunter2))', 'uid']);
    expect(search.code, search.stderr).toBe(0);
    const refused = await client('ldapsearch', [...bindArgs('alice:audited'), '-b', target.restrictedDn, '(uid=*)']);
    expect(refused.code).toBe(50);

    const all = async () => gw.store.listAudit({ action: 'session.operations' });
    expect(await eventually(async () => (await all()).length >= 3)).toBe(true);
    const ops = (await all()).flatMap((e) => e.data.operations as Array<Record<string, unknown>>);
    expect(ops).toContainEqual({ op: 'modify', dn: `uid=user0003,${target.peopleDn}`, attributes: 'description' });
    expect(ops).toContainEqual({ op: 'search', dn: target.peopleDn, scope: 'sub', filter: '(|(uid=user0003)(userPassword=***))' });
    expect(ops).toContainEqual(expect.objectContaining({ op: 'search', dn: target.restrictedDn, refused: 50 }));
    const everything = JSON.stringify(await gw.store.listAudit({}));
    for (const secret of ['value-never-audited', 'hunter2', GATEWAY_PASSWORD, target.password]) expect(everything).not.toContain(secret);
  });

  it('re-runs the decision on a rebind: a refused rebind leaves the connection unauthenticated', async () => {
    await directory('open', {});
    await directory('jit', APPROVAL);
    const w = watchedLdapsClient(ldaps.address.port, gw.pki.caCertPem);
    await w.client.bind('alice:open', GATEWAY_PASSWORD);
    const first = gw.broker.live()[0]!;
    expect((await w.client.search(`uid=user0001,${target.peopleDn}`, { scope: 'base' })).searchEntries).toHaveLength(1);

    await expect(w.client.bind('alice:jit', GATEWAY_PASSWORD)).rejects.toThrow(/approval_required/);
    // The first session ended with the rebind; nothing is bound now.
    expect(await eventually(async () => (await gw.store.getSession(first.id))?.state === 'ended')).toBe(true);
    expect(gw.broker.live()).toHaveLength(0);
    await expect(w.client.search(`uid=user0001,${target.peopleDn}`, { scope: 'base' })).rejects.toThrow(/bind first/);

    await gw.approve('alice', 'jit');
    await w.client.bind('alice:jit', GATEWAY_PASSWORD);
    expect(gw.broker.live().map((s) => s.resource.name)).toEqual(['jit']);
    expect((await w.client.search(`uid=user0001,${target.peopleDn}`, { scope: 'base' })).searchEntries).toHaveLength(1);
    await w.client.unbind();
  });

  describe('teardown', () => {
    it('ends an ldapsearch in flight and an idle ldapts client within 1 s of a force check-in, with the notice', async () => {
      await directory('single', SINGLE_USER);
      await gw.engine.leases.checkout('alice', 'single');

      // ldapts, bound and idle, over LDAPS.
      const idle = watchedLdapsClient(ldaps.address.port, gw.pki.caCertPem);
      await idle.client.bind('alice:single', GATEWAY_PASSWORD);

      // ldapsearch between pages of a paged search: it waits for Enter with the session open.
      const search = spawn('ldapsearch', [...bindArgs('alice:single'), '-E', 'pr=10/prompt', '-b', target.peopleDn, '(uid=user*)', 'uid'], { env: clientEnv() });
      let out = '';
      let err = '';
      search.stdout.on('data', (d: Buffer) => (out += d.toString()));
      search.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const exited = new Promise<{ code: number | null; at: number }>((r) => search.once('exit', (code) => r({ code, at: performance.now() })));
      expect(await eventually(() => out.includes('uid: user0010'), 10_000), out + err).toBe(true);
      expect(await eventually(() => gw.broker.live().length === 2)).toBe(true);

      const pending = idle.client.search(`uid=user0001,${target.peopleDn}`, { scope: 'base' });
      await pending; // the idle client works until the event
      const t0 = performance.now();
      await gw.engine.leases.forceCheckin('bob', 'single', 'incident 7');
      const notice = await within(idle.notice, 5_000, 'the notice to ldapts');
      expect(notice?.code).toBe(52);
      expect(notice?.message).toContain('single was force checked in by bob: incident 7');
      expect(notice!.at - t0).toBeLessThan(1_000);
      const afterEnd = idle.client.search(`uid=user0001,${target.peopleDn}`, { scope: 'base' });
      await expect(afterEnd).rejects.toThrow();

      // ldapsearch reads the notice as soon as it asks for the next page.
      search.stdin.write('\n');
      const { code, at } = await within(exited, 5_000, 'ldapsearch to exit');
      expect(code, out + err).toBe(52);
      expect(out + err).toContain('single was force checked in by bob: incident 7');
      expect(at - t0).toBeLessThan(1_000);
      expect(gw.broker.live()).toHaveLength(0);
    });
  });
});
