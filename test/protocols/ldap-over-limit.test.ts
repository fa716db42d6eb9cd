/**
 * The LDAP door at maxConnections, with a real slapd behind it: on both the StartTLS (`ldap`)
 * and the LDAPS listener, a connection over the limit has its first request answered `busy`
 * (51) with the gateway's diagnostic, then a Notice of Disconnection; ldapsearch and ldapts
 * show it, the refusal is audited with the client's address, and once the holder of the one
 * place leaves, a bind and a search work through the same listener.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { Client, type Entry } from 'ldapts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import { LdapAdapter, LdapsAdapter } from '../../protocols/ldap/index.js';
import { startSlapd, type SlapdTarget } from '../targets/index.js';
import { eventually, within } from './contract-driver.js';
import { GATEWAY_PASSWORD, makeGateway, type GatewayHarness } from './gateway-harness.js';
import { watchedLdapsClient } from './ldap-client.js';

const RESOURCE = 'corp-ldap';
const LOGIN = `alice:${RESOURCE}`;
const BUSY = 'Gatehouse: the gateway has too many connections; try again shortly. (too_many_connections)';

let target: SlapdTarget;
let gw: GatewayHarness;
/** StartTLS listener, one place. */
let ldap: Listener;
/** LDAPS listener, one place. */
let ldaps: Listener;
let caFile: string;

beforeAll(async () => {
  target = await startSlapd();
  gw = await makeGateway();
  await gw.addResource({
    name: RESOURCE, type: 'directory', protocol: 'ldap', host: target.host, port: target.port,
    credentials: { login: target.user, password: target.password }, options: { baseDn: target.peopleDn },
  });
  const tls = { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem };
  ldap = await new LdapAdapter({ upstreamTls: 'require', maxConnections: 1 }).listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls });
  ldaps = await new LdapsAdapter({ upstreamTls: 'require', maxConnections: 1 }).listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls });
  caFile = join(gw.dir, 'gateway-ca.pem');
  writeFileSync(caFile, gw.pki.caCertPem);
});

afterAll(async () => {
  await ldap?.close();
  await ldaps?.close();
  await gw?.cleanup();
  await target?.stop();
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** ldapsearch trusting the gateway's CA only, without the machine's ldap.conf or ~/.ldaprc. */
function ldapsearch(args: string[]): Promise<Run> {
  const env = { ...process.env, LDAPCONF: '/dev/null', LDAPRC: 'gatehouse-test-no-ldaprc', HOME: gw.dir, LDAPTLS_CACERT: caFile, LDAPTLS_REQCERT: 'demand' };
  return new Promise((resolve, reject) => {
    execFile('ldapsearch', args, { env, timeout: 20_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') return reject(err);
      resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
    });
  });
}

const startTlsSearch = (filter: string): Promise<Run> =>
  ldapsearch(['-x', '-ZZ', '-H', `ldap://127.0.0.1:${ldap.address.port}`, '-D', LOGIN, '-w', GATEWAY_PASSWORD, '-LLL', '-b', target.peopleDn, filter, 'uid']);
const ldapsSearch = (filter: string): Promise<Run> =>
  ldapsearch(['-x', '-H', `ldaps://127.0.0.1:${ldaps.address.port}`, '-D', LOGIN, '-w', GATEWAY_PASSWORD, '-LLL', '-b', target.peopleDn, filter, 'uid']);

async function busyRefusals(): Promise<Array<Record<string, unknown>>> {
  const rows = await gw.store.listAudit({ action: 'door.refuse' });
  return rows.filter((e) => e.data.door === 'ldap' && e.data.code === 'too_many_connections').map((e) => e.data);
}

/** Waits for `n` more busy refusals than `before`; every one names the client's ip:port. */
async function expectRefusalsAudited(before: number, n: number): Promise<void> {
  expect(await eventually(async () => (await busyRefusals()).length === before + n)).toBe(true);
  for (const row of (await busyRefusals()).slice(before)) {
    expect(row).toMatchObject({ door: 'ldap', code: 'too_many_connections', detail: 'over maxConnections' });
    expect(row.client).toMatch(/^127\.0\.0\.1:\d+$/);
  }
}

/** The error an ldapts call rejected with. */
async function rejection(p: Promise<unknown>): Promise<Error & { code?: number }> {
  const err = await within(p.then(() => undefined, (e: unknown) => e as Error & { code?: number }), 15_000, 'the refusal');
  expect(err, 'the call should have been refused').toBeInstanceOf(Error);
  return err!;
}

describe('LDAP door over maxConnections', () => {
  it('StartTLS listener: ldapsearch -ZZ and ldapts read busy (51) with the reason while a bound client holds the place; then bind and search work', async () => {
    const holder = new Client({ url: `ldap://127.0.0.1:${ldap.address.port}`, connectTimeout: 10_000 });
    await holder.startTLS({ ca: gw.pki.caCertPem });
    await holder.bind(LOGIN, GATEWAY_PASSWORD);
    const before = (await busyRefusals()).length;
    try {
      const r = await startTlsSearch('(uid=user0001)');
      // A failed -ZZ StartTLS ends ldapsearch with 1 (tools/common.c), whatever the result code.
      expect(r.code, r.stderr).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain('ldap_start_tls: Server is busy (51)');
      expect(r.stderr).toContain(`additional info: ${BUSY}`);

      const c = new Client({ url: `ldap://127.0.0.1:${ldap.address.port}`, connectTimeout: 10_000 });
      const err = await rejection(c.startTLS({ ca: gw.pki.caCertPem }));
      expect(err.code).toBe(51);
      expect(err.message).toContain(BUSY);
      await c.unbind().catch(() => {});
      await expectRefusalsAudited(before, 2);

      // The holder was not disturbed: it still searches.
      const { searchEntries } = await holder.search(target.peopleDn, { filter: '(uid=user0001)', attributes: ['uid'] });
      expect(searchEntries.map((e: Entry) => e.uid)).toEqual(['user0001']);
    } finally {
      await holder.unbind();
    }
    // The place is released once the gateway has closed its side of the holder's connection.
    let last: Run | undefined;
    const served = await eventually(async () => (last = await startTlsSearch('(uid=user0002)')).code === 0, 15_000);
    expect(served, last?.stderr).toBe(true);
    expect(last!.stdout).toContain(`dn: uid=user0002,${target.peopleDn}`);
  });

  it('LDAPS listener: after TLS, ldapsearch and an ldapts bind read busy (51), then the notice; then bind and search work', async () => {
    // The holder: a TLS connection that finished its handshake (so the listener took it) and says nothing.
    const holder: TLSSocket = tlsConnect({ port: ldaps.address.port, host: '127.0.0.1', ca: gw.pki.caCertPem });
    holder.on('error', () => {});
    const holderClosed = new Promise<void>((resolve) => holder.once('close', () => resolve()));
    await within(new Promise<void>((resolve) => holder.once('secureConnect', () => resolve())), 10_000, 'the holder\'s TLS handshake');
    const before = (await busyRefusals()).length;
    try {
      const r = await ldapsSearch('(uid=user0001)');
      expect(r.code, r.stderr).toBe(51);
      expect(r.stdout).toBe('');
      expect(r.stderr).toContain('ldap_bind: Server is busy (51)');
      expect(r.stderr).toContain(`additional info: ${BUSY}`);

      const w = watchedLdapsClient(ldaps.address.port, gw.pki.caCertPem);
      const err = await rejection(w.client.bind(LOGIN, GATEWAY_PASSWORD));
      expect(err.code).toBe(51);
      expect(err.message).toContain(BUSY);
      // Then the Notice of Disconnection says the same, and the gateway closes the connection.
      expect(await within(w.notice, 5_000, 'the notice of disconnection')).toMatchObject({ code: 51, message: BUSY });
      await within(w.closed, 5_000, 'the close');
      await w.client.unbind().catch(() => {});
      await expectRefusalsAudited(before, 2);
      expect(holder.destroyed).toBe(false);
    } finally {
      holder.end();
      await holderClosed;
    }
    let last: Run | undefined;
    const served = await eventually(async () => (last = await ldapsSearch('(uid=user0003)')).code === 0, 15_000);
    expect(served, last?.stderr).toBe(true);
    expect(last!.stdout).toContain(`dn: uid=user0003,${target.peopleDn}`);
    // ldapsearch exits once it has sent its Unbind; its place is free when the gateway has read its close.
    let found: unknown[] = [];
    expect(await eventually(async () => {
      const c = watchedLdapsClient(ldaps.address.port, gw.pki.caCertPem);
      try {
        await c.client.bind(LOGIN, GATEWAY_PASSWORD);
        found = (await c.client.search(target.peopleDn, { filter: '(uid=user0004)', attributes: ['uid'] })).searchEntries.map((e: Entry) => e.uid);
        return true;
      } catch (e) {
        if ((e as { code?: number }).code !== 51) throw e;
        return false;
      } finally {
        await c.client.unbind().catch(() => {});
      }
    }, 15_000)).toBe(true);
    expect(found).toEqual(['user0004']);
  });
});
