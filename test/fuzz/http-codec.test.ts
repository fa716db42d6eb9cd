/**
 * Property tests of the browser door's pure helpers (protocols/http/codec.ts): whatever a
 * browser or an app sends, the redirect after entering never leaves the app's origin, a Host
 * names an app only as one DNS label below the apps domain, cookies the browser gets are
 * host-only, and nothing throws. FUZZ_RUNS raises the number of cases.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { appOf, cookieName, hostOnlyCookie, parseCookies, rewriteLocation, safeNext, SESSION_COOKIE, upstreamHeaders } from '../../protocols/http/codec.js';

const FUZZ_RUNS = Number(process.env.FUZZ_RUNS ?? '') || 0;
const runs = (n: number): { numRuns: number } => ({ numRuns: Math.max(n, FUZZ_RUNS) });
const APP = 'https://grafana.apps.example.com:8443';

/** Strings shaped like what ends up in a `next` parameter: slashes, backslashes, schemes, controls, unicode. */
const nextLike = fc.oneof(
  fc.string({ unit: fc.constantFrom('/', '\\', ':', '.', 'a', 'e', 'v', 'l', '@', '?', '#', '%', ' ', '\t', '\n', '\u0000', 'h', 't', 'p', 's', '\u3002', '\uff0f') }),
  fc.string(),
  fc.webUrl(),
  fc.webPath(),
);

describe('http codec (fuzz)', () => {
  it('safeNext: what it accepts stays on the app origin when a browser resolves it', () => {
    fc.assert(
      fc.property(nextLike, (next) => {
        const out = safeNext(next);
        if (out === undefined) return;
        expect(new URL(out, `${APP}/somewhere/deep`).origin).toBe(APP);
        expect(out.startsWith('/')).toBe(true);
      }),
      runs(20_000),
    );
  });

  it('safeNext refuses the known open-redirect shapes', () => {
    for (const bad of ['//evil.example', '/\\evil.example', '\\\\evil.example', 'https://evil.example', 'javascript:alert(1)', '/\t/evil.example', ' /x', '/x\u0000']) {
      expect(safeNext(bad), bad).toBeUndefined();
    }
    expect(safeNext('/dashboards?x=1#y')).toBe('/dashboards?x=1#y');
    expect(safeNext(undefined)).toBe('/');
  });

  it('appOf: an app is one DNS label directly below the apps domain, or nothing', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.domain(), fc.domain().map((d) => `${d}.apps.example.com`), fc.domain().map((d) => `${d}.apps.example.com:8443`)), (host) => {
        const app = appOf(host, 'apps.example.com');
        if (app === undefined) return;
        expect(app).toMatch(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/);
        expect(host.toLowerCase().replace(/:\d+$/, '')).toBe(`${app}.apps.example.com`);
      }),
      runs(20_000),
    );
    expect(appOf('apps.example.com', 'apps.example.com')).toBeUndefined();
    expect(appOf('a.b.apps.example.com', 'apps.example.com')).toBeUndefined();
    expect(appOf('evilapps.example.com', 'apps.example.com')).toBeUndefined();
  });

  it('hostOnlyCookie never leaves a Domain attribute, and keeps the name and value', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }).filter((s) => !s.includes(';') && !s.includes('=')), fc.string().filter((s) => !s.includes(';')), fc.array(fc.oneof(fc.constant('Domain=apps.example.com'), fc.constant(' domain = .example.com'), fc.constant('Path=/'), fc.constant('HttpOnly'), fc.string().filter((s) => !s.includes(';')))), (name, value, attrs) => {
        const out = hostOnlyCookie([`${name}=${value}`, ...attrs].join(';'));
        expect(out.split(';').slice(1).some((a) => /^\s*domain\s*=/i.test(a))).toBe(false);
        expect(out.split(';', 1)[0]).toBe(`${name}=${value}`);
        expect(cookieName(out)).toBe(name.trim());
      }),
      runs(5_000),
    );
  });

  it('the upstream request never carries the gateway cookie, forwarding headers or a client Authorization', () => {
    const spoofable = ['x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'forwarded', 'x-real-ip', 'x-gatehouse-user', 'x-gatehouse-assertion', 'authorization', 'host', 'proxy-authorization'];
    fc.assert(
      fc.property(fc.dictionary(fc.oneof(fc.constantFrom(...spoofable), fc.string()), fc.string()), fc.string(), (headers, otherCookies) => {
        const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
        lower.cookie = `${SESSION_COOKIE}=secret-token; ${otherCookies}`;
        const out = upstreamHeaders(lower, { targetOrigin: 'https://10.0.0.5:3000', appOrigin: APP, set: { 'x-gatehouse-user': 'alice' } });
        for (const h of spoofable) if (h !== 'x-gatehouse-user') expect(out[h], h).toBeUndefined();
        expect(out['x-gatehouse-user']).toBe('alice');
        expect(String(out.cookie ?? '')).not.toContain('secret-token');
        expect(parseCookies(String(out.cookie ?? '')).some(([k]) => k === SESSION_COOKIE)).toBe(false);
      }),
      runs(5_000),
    );
  });

  it('rewriteLocation moves only the target origin onto the app origin', () => {
    fc.assert(
      fc.property(fc.webPath(), (path) => {
        expect(rewriteLocation(`https://10.0.0.5:3000${path || '/'}`, ['https://10.0.0.5:3000'], APP)).toBe(`${APP}${path || '/'}`);
        expect(rewriteLocation(`https://elsewhere.example${path || '/'}`, ['https://10.0.0.5:3000'], APP)).toBe(`https://elsewhere.example${path || '/'}`);
      }),
      runs(2_000),
    );
    // A longer port is not the target's origin.
    expect(rewriteLocation('https://10.0.0.5:30001/x', ['https://10.0.0.5:3000'], APP)).toBe('https://10.0.0.5:30001/x');
  });
});
