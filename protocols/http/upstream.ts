/**
 * The app leg: where a resource's app is (only ever the resource's host and port), an agent
 * whose TLS connections are checked against the one identity policy before a request goes
 * out, and the gateway's own sign-in to apps that want a form login (a cookie jar per
 * session that the browser never sees).
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest, type RequestOptions } from 'node:https';
import { connect as netConnect, isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { TargetIdentity } from '../../src/broker/port.js';
import { UpstreamError } from '../../src/broker/upstream-error.js';
import type { HttpAuth, Resource, TargetCredentials } from '../../src/core/model.js';
import { tlsToTarget, withDeadline } from '../shared/upstream-tls.js';
import { cookieName } from './codec.js';

export interface AppTarget {
  resource: string;
  /** `https://10.0.0.5:3000`: scheme, host and port, from the resource alone. */
  origin: string;
  secure: boolean;
  host: string;
  port: number;
  /** Keep-alive connections to the app, TLS checked against the identity policy. */
  agent: HttpAgent;
  timeoutMs: number;
}

/** A TLS connection to the app, handed to a request only after `verify` accepted the certificate. */
class VerifiedAgent extends HttpsAgent {
  constructor(
    private readonly verify: (identity: TargetIdentity) => Promise<unknown>,
    private readonly ca: string | undefined,
  ) {
    super({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, timeout: 60_000 });
  }

  override createConnection(requestOptions: RequestOptions, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    const options = requestOptions as ConnectionOptions;
    const host = options.host ?? 'localhost';
    const sock: TLSSocket = tlsConnect({
      ...options,
      ...(this.ca ? { ca: this.ca } : {}),
      ...(isIP(host) ? { servername: '' } : { servername: host }),
      // The policy below judges the certificate (CA and name, or the pin).
      rejectUnauthorized: false,
    });
    let done = false;
    const finish = (err: Error | null): void => {
      if (done) return;
      done = true;
      if (err) {
        sock.destroy();
        callback?.(err, sock);
      } else callback?.(null, sock);
    };
    sock.once('error', (e) => finish(new UpstreamError('unreachable', `cannot reach the app at ${host}:${options.port}: ${e.message}`)));
    sock.once('secureConnect', () => {
      const identity: TargetIdentity = this.ca
        ? { kind: 'ca', authorized: sock.authorized, ...(sock.authorizationError ? { error: String(sock.authorizationError) } : {}) }
        : { kind: 'pin', what: 'TLS certificate', fingerprint: `tls-sha256:${sock.getPeerCertificate().fingerprint256}` };
      this.verify(identity).then(() => finish(null), (e: unknown) => finish(e instanceof Error ? e : new Error(String(e))));
    });
    return undefined;
  }
}

/**
 * Reaches the app once before the session goes live: it answers, and its certificate passes
 * the identity policy (pinned on first use, or the configured CA), before any credential is
 * sent to it. A changed certificate is refused here with the command that re-pins it.
 */
export async function probeApp(t: AppTarget, verify: (identity: TargetIdentity) => Promise<unknown>, ca: string | undefined): Promise<void> {
  await withDeadline(t, async (onSocket) => {
    if (t.secure) {
      const sock = await tlsToTarget(undefined, { host: t.host, port: t.port, ...(ca ? { ca } : {}), verify });
      onSocket(sock);
      sock.destroy();
      return;
    }
    const sock = netConnect({ host: t.host, port: t.port });
    onSocket(sock);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', (e) => reject(new UpstreamError('unreachable', `cannot connect to ${t.host}:${t.port}: ${e.message}`)));
    });
    sock.destroy();
  });
}

/** The app of a resource. Plain http only for a resource that allows a plaintext target. */
export function appTarget(r: Resource, opts: { verify: (identity: TargetIdentity) => Promise<unknown>; ca?: string; timeoutMs: number }): AppTarget {
  const secure = r.options.allowPlaintextUpstream !== true;
  const host = r.host.includes(':') ? `[${r.host}]` : r.host;
  const agent = secure ? new VerifiedAgent(opts.verify, opts.ca) : new HttpAgent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, timeout: 60_000 });
  return { resource: r.name, origin: `${secure ? 'https' : 'http'}://${host}:${r.port}`, secure, host: r.host, port: r.port, agent, timeoutMs: opts.timeoutMs };
}

/** Headers that carry the vaulted credentials for every request (none for `none` and `form`). */
export function injectedHeaders(auth: HttpAuth | undefined, creds: TargetCredentials | undefined): Record<string, string> {
  const kind = auth?.kind ?? 'none';
  switch (kind) {
    case 'none':
    case 'form':
      return {};
    case 'basic':
      return { authorization: `Basic ${Buffer.from(`${need(creds?.login, 'login')}:${need(creds?.password, 'password')}`).toString('base64')}` };
    case 'bearer':
      return { authorization: `Bearer ${need(creds?.password, 'token (the vaulted password)')}` };
    case 'header':
      return { [(auth as Extract<HttpAuth, { kind: 'header' }>).header.toLowerCase()]: need(creds?.password, 'header value (the vaulted password)') };
    default: {
      const never: never = kind;
      throw new Error(`unknown http auth ${String(never)}`);
    }
  }
}

function need(v: string | undefined, what: string): string {
  if (v === undefined || v === '') throw new UpstreamError('no_credentials', `the resource has no vaulted ${what}`);
  return v;
}

interface Reply {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
}

/** One request to the app with the jar's cookies; its Set-Cookies go into the jar. */
function fetchApp(t: AppTarget, method: string, path: string, jar: Map<string, string>, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { accept: 'text/html,*/*', 'user-agent': 'Gatehouse form login' };
    if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    if (body !== undefined) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    const req = (t.secure ? httpsRequest : httpRequest)({ host: t.host, port: t.port, method, path, headers, agent: t.agent, timeout: t.timeoutMs }, (res) => {
      for (const c of res.headers['set-cookie'] ?? []) {
        const name = cookieName(c);
        const value = c.split(';', 1)[0]!.slice(name.length + 1);
        if (/;\s*max-age=0|;\s*expires=thu, 01 jan 1970/i.test(c) || value === '' || value === 'deleted') jar.delete(name);
        else jar.set(name, value);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (d: Buffer) => {
        size += d.length;
        if (size > 2 * 1024 * 1024) req.destroy(new UpstreamError('protocol', 'the app sent a login page over 2 MiB'));
        else chunks.push(d);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new UpstreamError('timeout', `the app ${t.origin} did not answer within ${t.timeoutMs} ms`)));
    req.on('error', (e) => reject(e instanceof UpstreamError ? e : new UpstreamError('unreachable', `cannot reach the app ${t.origin}: ${e.message}`)));
    req.end(body);
  });
}

interface FormField {
  name: string;
  value: string;
  type: string;
}

const attr = (tag: string, name: string): string | undefined => {
  const m = new RegExp(`\\s${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i').exec(tag);
  return m ? decodeEntities(m[1] ?? m[2] ?? m[3] ?? '') : undefined;
};

function decodeEntities(s: string): string {
  return s.replace(/&(amp|lt|gt|quot|#39|#x27);/g, (_, e: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'", '#x27': "'" })[e] ?? _);
}

/** The login form of a page: the form that has the password field, its action and its inputs. */
function loginForm(html: string, passwordField: string): { action: string | undefined; method: string; fields: FormField[] } | undefined {
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const fields: FormField[] = [];
    for (const input of m[2]!.matchAll(/<input\b[^>]*>/gi)) {
      const name = attr(input[0], 'name');
      if (name) fields.push({ name, value: attr(input[0], 'value') ?? '', type: (attr(input[0], 'type') ?? 'text').toLowerCase() });
    }
    if (fields.some((f) => f.name === passwordField)) return { action: attr(m[1]!, 'action'), method: (attr(m[1]!, 'method') ?? 'get').toUpperCase(), fields };
  }
  return undefined;
}

/**
 * Signs in to the app with its login form, as a browser would: GET the form (keeping its
 * cookies and hidden fields, a CSRF token among them), POST the vaulted login, keep the
 * session cookies it sets. The jar is the session's; the browser never gets these cookies.
 */
export async function formLogin(t: AppTarget, auth: Extract<HttpAuth, { kind: 'form' }>, creds: TargetCredentials | undefined): Promise<{ jar: Map<string, string>; landing?: string }> {
  const jar = new Map<string, string>();
  const page = await fetchApp(t, 'GET', auth.path, jar);
  if (page.status >= 400) throw new UpstreamError('login', `the app's login page ${auth.path} answered ${page.status}`);
  const form = loginForm(page.body, auth.passwordField);
  if (!form) throw new UpstreamError('login', `the app's page ${auth.path} has no form with a ${auth.passwordField} field`, undefined, `check options.httpAuth of ${t.resource}`);
  const values = new Map<string, string>();
  for (const f of form.fields) if (f.type !== 'submit' && f.type !== 'button' && f.type !== 'checkbox' && f.type !== 'radio') values.set(f.name, f.value);
  for (const [k, v] of Object.entries(auth.fields ?? {})) values.set(k, v);
  values.set(auth.userField, need(creds?.login, 'login'));
  values.set(auth.passwordField, need(creds?.password, 'password'));
  const body = new URLSearchParams([...values]).toString();
  const action = new URL(form.action || auth.path, `${t.origin}${auth.path}`);
  if (action.origin !== new URL(t.origin).origin) {
    throw new UpstreamError('login', `the app's login form posts to another origin (${action.origin}); refusing to send the password there`);
  }
  let reply = await fetchApp(t, form.method === 'GET' ? 'GET' : 'POST', `${action.pathname}${action.search}`, jar, body);
  let landing: string | undefined;
  // Some apps answer every login POST with a redirect and check the password on the page it
  // leads to (Adminer): follow one redirect on the app's own origin and judge that page.
  if (reply.status >= 300 && reply.status < 400 && reply.headers.location) {
    const to = new URL(String(reply.headers.location), action);
    if (to.origin !== action.origin) throw new UpstreamError('login', `the app's login redirects to another origin (${to.origin})`);
    landing = `${to.pathname}${to.search}`;
    reply = await fetchApp(t, 'GET', landing, jar);
  }
  const formAgain = loginForm(reply.body, auth.passwordField) !== undefined;
  if (reply.status >= 300 || formAgain) {
    throw new UpstreamError('login', `the app refused the vaulted login (${reply.status}${formAgain ? ', the login form again' : ''})`, undefined, `check the vaulted login of ${t.resource}`);
  }
  return landing ? { jar, landing } : { jar };
}
