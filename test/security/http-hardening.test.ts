/**
 * Finding 17 (info) and what turned up next to it: a malformed percent-encoded path answered
 * 500, and a request target that is not a path (`GET //a:b`) threw outside the handler, an
 * unhandled rejection that ends the process; the vault served source maps; HTTPS mode sent no
 * Strict-Transport-Security; /metrics trusted any client with a loopback address, which is
 * every client behind a reverse proxy on the same host.
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ensurePki, type Pki } from '../../src/pki/pki.js';
import { serveWeb } from '../../src/web/serve.js';
import { hashSecretToken } from '../../src/workflow/mfa.js';
import { call, login, startApi, within, type ApiHarness } from './harness-api-server.js';

/** Sends raw bytes and returns the status line and body the server answered, or 'no answer'. */
async function raw(port: number, text: string): Promise<string> {
  const answer = new Promise<string>((resolve) => {
    const s = connect(port, '127.0.0.1', () => s.write(text));
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('close', () => resolve(got));
    s.on('error', () => resolve(got));
  });
  const r = await within(answer);
  return r === 'timeout' || r === '' ? 'no answer' : r;
}

function statusLine(response: string): string {
  return response.split('\r\n')[0] ?? '';
}

/** GET over HTTPS trusting the gateway CA; resolves with status, headers and body. */
function httpsGet(url: string, ca: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, headers }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A valid API token put straight into the store (fetch cannot trust a private CA to log in over HTTPS). */
async function mintToken(c: ApiHarness, user: string): Promise<string> {
  const token = `gha_${randomBytes(32).toString('base64url')}`;
  await c.h.store.insertToken({ id: randomUUID(), user, hash: hashSecretToken(token), kind: 'api', createdAt: c.h.clock.now() });
  return token;
}

describe('malformed request targets', () => {
  let c: ApiHarness;
  let port: number;
  beforeAll(async () => {
    c = await startApi();
    port = Number(new URL(c.base).port);
  });
  afterAll(async () => {
    await c.close();
  });

  it('a malformed percent-encoding in an API path is answered 400 BAD_REQUEST, not 500', async () => {
    const token = await login(c, 'alice');
    for (const path of ['/api/v1/resources/%E0%A4%A', '/api/v1/requests/%ZZ']) {
      const r = await call(c, 'GET', path, { token });
      expect(r.status, path).toBe(400);
      expect(r.json.error.code).toBe('BAD_REQUEST');
    }
  });

  it('a request target that is no URL path (GET //a:b) is answered with a 4xx and the gateway keeps serving', async () => {
    const answers = [];
    for (const target of ['//a:b', '//[', '*', 'http://[::1']) {
      answers.push([target, statusLine(await raw(port, `GET ${target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`))]);
    }
    // `//a:b` is an odd but well-formed path: nothing there. The rest are no path at all.
    expect(answers).toEqual([
      ['//a:b', 'HTTP/1.1 404 Not Found'],
      ['//[', 'HTTP/1.1 404 Not Found'],
      ['*', 'HTTP/1.1 400 Bad Request'],
      ['http://[::1', 'HTTP/1.1 400 Bad Request'],
    ]);
    expect((await call(c, 'GET', '/healthz')).json).toEqual({ ok: true });
  });

  it('a WebSocket upgrade to a target that is no URL path is answered with a 4xx and the gateway keeps serving', async () => {
    const upgrade = (target: string) =>
      raw(port, `GET ${target} HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
    expect(statusLine(await upgrade('//a:b'))).toBe('HTTP/1.1 404 Not Found');
    expect(statusLine(await upgrade('*'))).toBe('HTTP/1.1 400 Bad Request');
    expect((await call(c, 'GET', '/healthz')).json).toEqual({ ok: true });
  });
});

describe('source maps', () => {
  it('the web vault does not serve a source map, even one left on disk', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-maps-'));
    try {
      mkdirSync(join(dir, 'assets'));
      writeFileSync(join(dir, 'index.html'), '<!doctype html><title>vault</title>');
      writeFileSync(join(dir, 'assets', 'app-ABCD1234.js'), 'console.log(1)\n//# sourceMappingURL=app-ABCD1234.js.map');
      writeFileSync(join(dir, 'assets', 'app-ABCD1234.js.map'), '{"version":3,"sources":["../src/web/app/main.ts"],"sourcesContent":["secret"]}');
      const handler = serveWeb(dir);
      const res = await new Promise<{ status: number; body: string }>((resolve) => {
        let status = 0;
        let body = '';
        const fake = {
          writeHead: (s: number) => void (status = s),
          end: (b?: Buffer | string) => {
            body = b ? b.toString() : '';
            resolve({ status, body });
          },
        };
        void handler({ method: 'GET', url: '/assets/app-ABCD1234.js.map', headers: {} } as any, fake as any);
      });
      expect(res.status).toBe(404);
      expect(res.body).not.toContain('sourcesContent');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a production build of the vault emits no source map and links none', async () => {
    const out = mkdtempSync(join(tmpdir(), 'gh-web-build-'));
    try {
      const script = fileURLToPath(new URL('../../scripts/build-web.mjs', import.meta.url));
      await new Promise<void>((resolve, reject) => execFile(process.execPath, [script, '--out', out], (err) => (err ? reject(err) : resolve())));
      expect(existsSync(join(out, 'index.html'))).toBe(true);
      const assets = readdirSync(join(out, 'assets'));
      expect(assets.some((f) => f.endsWith('.js'))).toBe(true);
      expect(assets.filter((f) => f.endsWith('.map'))).toEqual([]);
      for (const f of assets) expect(readFileSync(join(out, 'assets', f), 'utf8'), f).not.toContain('sourceMappingURL');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});

describe('HTTPS mode', () => {
  let pki: Pki;
  let certDir: string;
  let c: ApiHarness | undefined;
  beforeAll(async () => {
    certDir = mkdtempSync(join(tmpdir(), 'gh-hsts-'));
    pki = await ensurePki(certDir);
  });
  afterEach(async () => {
    await c?.close();
    c = undefined;
  });
  afterAll(() => {
    rmSync(certDir, { recursive: true, force: true });
  });

  it('a browser that reached the gateway over HTTPS is told never to fall back to plain HTTP (Strict-Transport-Security)', async () => {
    c = await startApi({ server: { tls: { cert: pki.certPem, key: pki.keyPem } } });
    for (const path of ['/healthz', '/api/v1/openapi.json', '/nothing-here']) {
      const res = await httpsGet(c.base + path, pki.caCertPem);
      expect(res.headers['strict-transport-security'], path).toBe('max-age=31536000');
    }
  });

  it('/metrics on a listener that is not loopback wants a token, even from a loopback address (a reverse proxy on the host)', async () => {
    c = await startApi({ host: '0.0.0.0', server: { tls: { cert: pki.certPem, key: pki.keyPem } } });
    const anonymous = await httpsGet(`${c.base}/metrics`, pki.caCertPem);
    expect(anonymous.status).toBe(401);
    expect(JSON.parse(anonymous.body).error.code).toBe('UNAUTHENTICATED');
    expect(anonymous.body).not.toContain('gatehouse_');
    const forged = await httpsGet(`${c.base}/metrics`, pki.caCertPem, { authorization: 'Bearer gha_forged' });
    expect(forged.status).toBe(401);
    const token = await mintToken(c, 'admin');
    const scraped = await httpsGet(`${c.base}/metrics`, pki.caCertPem, { authorization: `Bearer ${token}` });
    expect(scraped.status).toBe(200);
    expect(scraped.body).toContain('# TYPE gatehouse_live_sessions gauge');
  });
});
