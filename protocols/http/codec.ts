/**
 * HTTP as far as the browser door judges it: which app a Host names, whether a request's
 * framing and target are ones it relays, the headers that may go upstream (an allow-list,
 * never a copy), cookies, and the rewriting of Location and Set-Cookie on the way back.
 * Pure functions over strings and header maps; the node:http parser does the parsing.
 */
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';

/** The gateway's own paths on every app origin. */
export const GATEHOUSE_PREFIX = '/.gatehouse/';
/** The session cookie: host-only (`__Host-`), so no other app or the gateway's origin ever gets it. */
export const SESSION_COOKIE = '__Host-gatehouse';

/** A DNS label: the resource names an app origin can carry. */
const LABEL_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * The app a Host header names: `<resource>.<appsDomain>[:port]`, case-insensitive. Anything
 * else (the gateway's own name, an IP, another domain, a nested label) is no app.
 */
export function appOf(host: string | undefined, appsDomain: string): string | undefined {
  if (!host) return undefined;
  const name = host.toLowerCase().replace(/:\d{1,5}$/, '');
  const suffix = `.${appsDomain.toLowerCase()}`;
  if (!name.endsWith(suffix)) return undefined;
  const label = name.slice(0, -suffix.length);
  return LABEL_RE.test(label) ? label : undefined;
}

/**
 * Where to go after entering: a path on the app's own origin, or undefined when the value
 * could leave it — an absolute URL, `//host`, a backslash (browsers read `/\host` as
 * `//host`), control characters or whitespace.
 */
export function safeNext(next: string | null | undefined): string | undefined {
  if (next === null || next === undefined || next === '') return '/';
  // eslint-disable-next-line no-control-regex
  if (!next.startsWith('/') || next.startsWith('//') || /[\\\u0000-\u0020\u007f]/.test(next) || next.length > 2048) return undefined;
  return next;
}

/** Why a request is refused before anything else looks at it, or undefined. */
export function framingProblem(req: IncomingMessage, maxHeaders: number): string | undefined {
  const raw = req.rawHeaders;
  // Node drops headers past maxHeadersCount and still frames the body with them: a request
  // that reaches the limit is refused, whatever it was going to carry.
  if (raw.length / 2 >= maxHeaders) return `more than ${maxHeaders - 1} headers`;
  let contentLength = 0;
  let transferEncoding = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name === 'content-length') contentLength++;
    else if (name === 'transfer-encoding') transferEncoding = true;
  }
  if (contentLength > 1) return 'more than one Content-Length';
  if (contentLength && transferEncoding) return 'both Content-Length and Transfer-Encoding';
  const url = req.url ?? '';
  // Only origin-form: the target is the resource's, never one the request names.
  if (!url.startsWith('/') || url.startsWith('//')) return 'a request target that is not a path (absolute-form or //host)';
  return undefined;
}

/**
 * Request headers that go to the app as the browser sent them. Everything else is dropped:
 * hop-by-hop headers, every `X-Forwarded-*`, `Forwarded`, `X-Real-IP`, `X-Gatehouse-*`, the
 * client's own Authorization (the gateway's injection is the only one), Host (the target's).
 */
const FORWARDED_REQUEST_HEADERS = new Set([
  'accept', 'accept-encoding', 'accept-language', 'cache-control', 'content-encoding', 'content-language', 'content-length', 'content-type',
  'if-match', 'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since', 'pragma', 'range', 'user-agent', 'x-requested-with',
  'dnt', 'sec-fetch-dest', 'sec-fetch-mode', 'sec-fetch-site', 'sec-fetch-user', 'sec-ch-ua', 'sec-ch-ua-mobile', 'sec-ch-ua-platform',
  'upgrade-insecure-requests', 'transfer-encoding',
  // Not Connection or Upgrade: they are the client's hop, and Connection may name headers
  // (`Connection: Authorization`) that a proxy further on would strip, the gateway's own
  // among them. The WebSocket leg is the gateway's own handshake (session.ts).
]);

/** `name=value` pairs of a Cookie header, in order. */
export function parseCookies(header: string | undefined): Array<[string, string]> {
  if (!header) return [];
  const out: Array<[string, string]> = [];
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    out.push([part.slice(0, eq).trim(), part.slice(eq + 1).trim()]);
  }
  return out;
}

export interface UpstreamRequestParts {
  /** `scheme://host:port` of the target, for Origin and Referer. */
  targetOrigin: string;
  /** The browser's app origin, `https://grafana.apps.example.com:8443`. */
  appOrigin: string;
  /** Cookies the gateway adds (the login's jar), which win over the browser's of the same name. */
  jar?: ReadonlyMap<string, string>;
  /** Headers the gateway sets: injected credentials, the user, the assertion. */
  set: Record<string, string>;
}

/** The headers of the upstream request, built from the allow-list and the gateway's own values. */
export function upstreamHeaders(headers: IncomingHttpHeaders, parts: UpstreamRequestParts): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && FORWARDED_REQUEST_HEADERS.has(name)) out[name] = value;
  }
  // The browser's Origin and Referer name the app origin; the app sees its own.
  const origin = headers.origin;
  if (typeof origin === 'string') out.origin = origin === parts.appOrigin ? parts.targetOrigin : origin;
  const referer = headers.referer;
  if (typeof referer === 'string' && referer.startsWith(`${parts.appOrigin}/`)) out.referer = parts.targetOrigin + referer.slice(parts.appOrigin.length);
  // The gateway's cookie, and any a page might try under a longer name of the same prefix.
  const cookies = new Map(parseCookies(headers.cookie).filter(([k]) => !k.startsWith(SESSION_COOKIE)));
  for (const [k, v] of parts.jar ?? []) cookies.set(k, v);
  if (cookies.size) out.cookie = [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  for (const [k, v] of Object.entries(parts.set)) out[k.toLowerCase()] = v;
  return out;
}

/** A Set-Cookie as the browser may have it: no Domain (host-only on the app origin). */
export function hostOnlyCookie(setCookie: string): string {
  return setCookie
    .split(';')
    .filter((attr, i) => i === 0 || !/^\s*domain\s*=/i.test(attr))
    .join(';');
}

/** The name of a Set-Cookie value. */
export function cookieName(setCookie: string): string {
  const first = setCookie.split(';', 1)[0] ?? '';
  const eq = first.indexOf('=');
  return (eq < 0 ? first : first.slice(0, eq)).trim();
}

/**
 * A Location from the app: one on the target's own origin becomes the same path on the app
 * origin (the browser never learns the target's address); others stay as the app sent them.
 */
export function rewriteLocation(location: string, targetOrigins: readonly string[], appOrigin: string): string {
  for (const t of targetOrigins) {
    if (location === t) return `${appOrigin}/`;
    if (location.startsWith(`${t}/`) || location.startsWith(`${t}?`)) return appOrigin + location.slice(t.length);
  }
  return location;
}

/** Response headers that are the connection's, not the app's (RFC 9110 7.6.1), and never relayed. */
export const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'upgrade', 'proxy-connection']);

/** Minimal HTML escaping for the gateway's own pages. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}
