import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTENT_SECURITY_POLICY, safePath, serveWeb } from '../../../src/web/serve.js';

describe('serveWeb', () => {
  let root: string;
  let server: Server;
  let base: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'gh-serve-'));
    const web = join(root, 'web');
    mkdirSync(join(web, 'assets'), { recursive: true });
    writeFileSync(join(web, 'index.html'), '<!doctype html><title>vault</title>');
    writeFileSync(join(web, 'assets', 'app-ABCD1234.js'), 'console.log(1)');
    writeFileSync(join(web, 'assets', 'app-style-ABCD1234.css'), 'body{}');
    writeFileSync(join(web, 'favicon.svg'), '<svg/>');
    writeFileSync(join(web, '.env'), 'SECRET=1');
    writeFileSync(join(root, 'outside.txt'), 'private');
    const handler = serveWeb(web);
    server = createServer((req, res) => {
      void handler(req, res).then((handled) => {
        if (!handled) {
          res.writeHead(418);
          res.end('not handled');
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(root, { recursive: true, force: true });
  });

  it('serves the app shell for / and client routes, never cached, with a strict CSP', async () => {
    for (const path of ['/', '/approvals', '/settings/prod-db', '/settings/db.v2']) {
      const res = await fetch(base + path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(res.headers.get('cache-control')).toBe('no-cache');
      expect(await res.text()).toContain('<title>vault</title>');
      const csp = res.headers.get('content-security-policy')!;
      expect(csp).toBe(CONTENT_SECURITY_POLICY);
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain('unsafe-inline');
      expect(csp).toContain("frame-ancestors 'none'");
    }
  });

  it('serves hashed assets with their content type and an immutable cache; ETags give 304', async () => {
    const js = await fetch(`${base}/assets/app-ABCD1234.js`);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(js.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(await js.text()).toBe('console.log(1)');
    const css = await fetch(`${base}/assets/app-style-ABCD1234.css`);
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
    const svg = await fetch(`${base}/favicon.svg`);
    expect(svg.headers.get('content-type')).toBe('image/svg+xml');
    expect(svg.headers.get('cache-control')).toBe('no-cache');
    const again = await fetch(`${base}/assets/app-ABCD1234.js`, { headers: { 'if-none-match': js.headers.get('etag')! } });
    expect(again.status).toBe(304);
    const head = await fetch(`${base}/assets/app-ABCD1234.js`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('14');
  });

  it('answers 404 for unknown files and refuses traversal, dotfiles and encoded separators', async () => {
    expect((await fetch(`${base}/assets/missing-ABCD1234.js`)).status).toBe(404);
    expect((await fetch(`${base}/nope.js`)).status).toBe(404);
    expect((await fetch(`${base}/favicon.ico`)).status).toBe(404);
    for (const path of ['/.env', '/assets/..%2f..%2foutside.txt', '/%2e%2e/outside.txt', '/..%5coutside.txt', '/a%00.js']) {
      const res = await fetch(base + path);
      expect([400, 404], path).toContain(res.status);
      expect(await res.text()).not.toMatch(/private|SECRET/);
    }
  });

  it('leaves methods other than GET and HEAD to the API server', async () => {
    expect((await fetch(`${base}/`, { method: 'POST' })).status).toBe(418);
  });

  it('safePath keeps normal paths and rejects escapes', () => {
    expect(safePath('/settings/prod-db?x=1#y')).toBe('/settings/prod-db');
    expect(safePath('/r%C3%A9sum%C3%A9')).toBe('/résumé');
    for (const bad of ['/../etc/passwd', '/a/./b', '/.git/config', '/a%2fb', '/a\\b', '/%E0%A4%A', 'relative']) expect(safePath(bad), bad).toBeUndefined();
  });
});
