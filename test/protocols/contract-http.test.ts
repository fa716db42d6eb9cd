/**
 * The browser door against the conformance suite. HTTP has no login of its own: a browser
 * session starts in the vault (the user's password) and enters the app with a one-time
 * ticket, so the driver maps the suite's login onto that: a ticket goes straight to the enter
 * link; a password is a vault sign-in (the API's AuthService, whose failures are the doors'
 * lockout) followed by a fresh ticket. A connection is a browser session on the app with a
 * WebSocket open; the gateway ending it is that WebSocket's close (1008) and the reason page
 * the next request gets. The target is the project's web app over TLS, pinned on first use;
 * its logins are the form logins it counted (the gateway signs in with the app's form).
 */
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { afterAll, beforeAll } from 'vitest';
import WebSocket from 'ws';
import { silentLogger } from '../../src/core/log.js';
import { GatehouseError } from '../../src/core/errors.js';
import { HttpAdapter } from '../../protocols/http/index.js';
import { startWebapp, type WebappTarget } from '../targets/index.js';
import { doorContract } from './contract.js';
import { refusalCodeIn, startContractGateway, type Closed, type DoorDriver } from './contract-driver.js';
import { httpsGet } from './http-client.js';

const APPS = 'apps.localhost';

let app: WebappTarget;
beforeAll(async () => {
  app = await startWebapp({ tls: true });
});
afterAll(async () => {
  await app?.stop();
});

interface HttpConn {
  host: string;
  cookie: string;
  ws: WebSocket;
  closed: Promise<Closed>;
}

const request = httpsGet;

/** The gateway page's sentence (what a person reads in the browser). */
const reasonOf = (html: string): string => (/id="gatehouse-reason">([\s\S]*?)<\/p>/.exec(html)?.[1] ?? html).replace(/<[^>]+>/g, '').replace(/&#39;/g, "'").replace(/&quot;/g, '"').replace(/&amp;/g, '&');

async function httpDriver(): Promise<DoorDriver<HttpConn>> {
  const { gw, auth, stop } = await startContractGateway();
  const listener = await new HttpAdapter().listen({
    host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem }, http: { appsDomain: APPS },
  });
  const port = listener.address.port;
  const ca = gw.pki.caCertPem;
  const sockets = new Set<WebSocket>();
  const hostOf = (resource: string): string => `${resource}.${APPS}:${port}`;

  return {
    door: 'http',
    gw,
    auth,
    teardownWire: 'ws 1008',
    bogusPin: 'tls-sha256:00',
    async resource(name, settings = {}, opts = {}) {
      await gw.addResource({
        name, type: 'browser', protocol: 'http', host: '127.0.0.1', port: opts.port ?? app.port,
        credentials: { login: app.user, password: app.password }, settings,
        options: { httpAuth: { kind: 'form', path: '/login', userField: 'username', passwordField: 'password' } },
      });
    },
    async connect(user, resource, secret) {
      let ticket = secret;
      if (!secret.startsWith('ght_')) {
        // The vault's sign-in with the password, then Launch: a ticket for this app.
        try {
          await auth.login(user, secret, undefined, '127.0.0.1');
        } catch (e) {
          const code = e instanceof GatehouseError && e.code === 'LOCKED' ? 'locked' : 'bad_password';
          return { ok: false, code, message: `the vault refused the sign-in: ${(e as Error).message} (${code})` };
        }
        ticket = (await gw.engine.mfa.issueTicket(user, resource, false)).ticket;
      }
      const host = hostOf(resource);
      const entered = await request(port, ca, host, `/.gatehouse/enter?user=${encodeURIComponent(user)}&ticket=${encodeURIComponent(ticket)}`);
      if (entered.status !== 302) {
        const message = reasonOf(entered.body) + (/To fix: <code>([^<]*)/.exec(entered.body)?.[1] ? `\nTo fix: ${/To fix: <code>([^<]*)/.exec(entered.body)![1]}` : '');
        return { ok: false, code: refusalCodeIn(message) ?? 'unknown', message };
      }
      const cookie = String(entered.headers['set-cookie']![0]).split(';', 1)[0]!;
      const ws = new WebSocket(`wss://127.0.0.1:${port}/ws`, { headers: { host, cookie }, origin: `https://${host}`, ca, servername: 'localhost' } as WebSocket.ClientOptions);
      sockets.add(ws);
      ws.on('error', () => {});
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('unexpected-response', (_q, r) => reject(new Error(`the WebSocket was refused (${r.statusCode})`)));
      });
      const closed = new Promise<Closed>((resolve) => {
        ws.once('close', (code, reason) => {
          const at = performance.now();
          // What the browser shows next: the gateway's page with the reason.
          void request(port, ca, host, '/echo', { cookie }).then(
            (r) => resolve({ message: `${reason.toString()}\n${reasonOf(r.body)}`, wire: `ws ${code}`, at }),
            () => resolve({ message: reason.toString(), wire: `ws ${code}`, at }),
          );
        });
      });
      return { ok: true, conn: { host, cookie, ws, closed } };
    },
    async run(c) {
      const r = await request(port, ca, c.host, '/', { cookie: c.cookie });
      if (r.status !== 200 || !r.body.includes(`Welcome ${app.user}`)) throw new Error(`unexpected page ${r.status}: ${r.body.slice(0, 200)}`);
    },
    waitClosed: (c) => c.closed,
    async close(c) {
      c.ws.close();
      await request(port, ca, c.host, '/.gatehouse/logout', { cookie: c.cookie }).catch(() => undefined);
    },
    async targetLogins() {
      // The app's own count of successful form logins.
      const stats = await new Promise<string>((resolve, reject) => {
        const req = httpsRequest({ host: '127.0.0.1', port: app.port, path: '/stats', ca: readFileSync(app.ca!, 'utf8'), servername: 'localhost', agent: false }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve(body));
        });
        req.on('error', reject);
        req.end();
      });
      return (JSON.parse(stats) as { logins: number }).logins;
    },
    async stop() {
      for (const ws of sockets) ws.terminate();
      await listener.close();
      await stop();
    },
  };
}

doorContract('HTTP', httpDriver);
