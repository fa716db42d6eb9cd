/**
 * The LDAP door against the conformance suite, with the `ldapts` client library over LDAPS
 * and a real OpenLDAP slapd target (one per file), reached over StartTLS with its
 * certificate pinned on first use. Target logins are slapd's own log lines for a successful
 * bind of the service account (`bindLine`).
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import { LdapsAdapter } from '../../protocols/ldap/index.js';
import { startSlapd, type SlapdTarget } from '../targets/index.js';
import { doorContract } from './contract.js';
import { refusalCodeIn, startContractGateway, type Closed, type DoorDriver } from './contract-driver.js';
import { watchedLdapsClient, type WatchedClient } from './ldap-client.js';

let target: SlapdTarget;
beforeAll(async () => {
  target = await startSlapd();
});
afterAll(async () => {
  await target?.stop();
});

interface LdapConn {
  w: WatchedClient;
  closed: Promise<Closed>;
}

async function ldapDriver(): Promise<DoorDriver<LdapConn>> {
  const { gw, auth, stop } = await startContractGateway();
  const adapter = new LdapsAdapter({ upstreamTls: 'require' });
  const listener = await adapter.listen({
    host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger,
    tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem },
  });
  const port = listener.address.port;
  const clients = new Set<WatchedClient>();

  return {
    door: 'ldap',
    gw,
    auth,
    teardownWire: 'notice 52',
    bogusPin: 'tls-sha256:00',
    async resource(name, settings = {}, opts = {}) {
      await gw.addResource({
        name, type: 'directory', protocol: 'ldap', host: target.host, port: opts.port ?? target.port,
        credentials: { login: target.user, password: target.password }, settings,
      });
    },
    async connect(user, resource, secret) {
      const w = watchedLdapsClient(port, gw.pki.caCertPem);
      clients.add(w);
      try {
        await w.client.bind(`${user}:${resource}`, secret);
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        return { ok: false, code: refusalCodeIn(message) ?? 'unknown', message };
      }
      const closed = w.notice.then(async (n): Promise<Closed> => (n ? { message: n.message, wire: `notice ${n.code}`, at: n.at } : { message: '(closed without a notice)', wire: 'close', at: await w.closed }));
      return { ok: true, conn: { w, closed } };
    },
    async run(c) {
      const r = await c.w.client.search(`uid=user0001,${target.peopleDn}`, { scope: 'base' });
      if (r.searchEntries.length !== 1) throw new Error(`unexpected result ${JSON.stringify(r.searchEntries)}`);
    },
    waitClosed: (c) => c.closed,
    async close(c) {
      await c.w.client.unbind().catch(() => undefined);
    },
    async targetLogins() {
      return readFileSync(target.log, 'utf8').split(target.bindLine).length - 1;
    },
    async stop() {
      await Promise.all([...clients].map((w) => w.client.unbind().catch(() => undefined)));
      await listener.close();
      await stop();
    },
  };
}

doorContract('LDAP', ldapDriver);
