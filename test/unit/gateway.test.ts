import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import { startGateway, type Gateway } from '../../src/gateway.js';

// No protocol adapters are passed here, so only the API listens.

describe('gateway first run', () => {
  let dir: string;
  const open: Gateway[] = [];
  afterEach(async () => {
    while (open.length) await open.pop()!.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates the data dir, master key, certs and a one-time admin; a restart keeps them', async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-gw-'));
    const cfg = loadConfig({ data: join(dir, 'data'), policies: join(process.cwd(), 'policies'), listen: ['api=127.0.0.1:0'], cwd: dir });
    const gw = await startGateway(cfg, { log: silentLogger });
    open.push(gw);
    expect(gw.firstRunAdmin?.password).toMatch(/^[A-Za-z0-9_-]{20,}$/);
    expect(statSync(join(dir, 'data')).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'data', 'master.key')).mode & 0o777).toBe(0o600);
    expect(gw.pki.dir).toBe(join(dir, 'data', 'certs'));
    expect(gw.policies?.resources).toBeGreaterThan(0);
    const login = await fetch(`http://127.0.0.1:${gw.addresses.api!.port}/api/v1/auth/login`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'admin', password: gw.firstRunAdmin!.password }),
    });
    expect(login.status).toBe(200);
    await open.pop()!.close();
    const again = await startGateway(cfg, { log: silentLogger });
    open.push(again);
    expect(again.firstRunAdmin).toBeUndefined();
    expect(await again.store.getResource('prod-pg')).toBeDefined();
  });

  it('API tokens live as long as the configured apiTokenTtlDays', async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-gw-'));
    writeFileSync(join(dir, 'cfg.yaml'), 'apiTokenTtlDays: 7\n');
    writeFileSync(join(dir, 'pw'), 'from-a-file-123\n');
    const cfg = loadConfig({ configFile: join(dir, 'cfg.yaml'), data: join(dir, 'data'), listen: ['api=127.0.0.1:0'], adminPasswordFile: join(dir, 'pw'), cwd: dir });
    const gw = await startGateway(cfg, { log: silentLogger });
    open.push(gw);
    const base = `http://127.0.0.1:${gw.addresses.api!.port}/api/v1`;
    const post = async (path: string, body: unknown, token?: string) =>
      (await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) })).json() as Promise<any>;
    const { token } = await post('/auth/login', { user: 'admin', password: 'from-a-file-123' });
    const created = await post('/tokens', { label: 'ci' }, token);
    const days = (new Date(created.expiresAt).getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(6.9);
    expect(days).toBeLessThanOrEqual(7);
    expect((await post('/tokens', { label: 'long', ttlDays: 30 }, token)).error.code).toBe('VALIDATION');
  });

  it('takes the admin password from a file, and serves HTTPS off loopback', async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-gw-'));
    writeFileSync(join(dir, 'pw'), 'from-a-file-123\n');
    const cfg = loadConfig({ data: join(dir, 'data'), listen: ['api=0.0.0.0:0'], adminPasswordFile: join(dir, 'pw'), cwd: dir });
    const gw = await startGateway(cfg, { log: silentLogger });
    open.push(gw);
    expect(gw.firstRunAdmin).toEqual({ user: 'admin', fromFile: true });
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: gw.addresses.api!.port, path: '/healthz', ca: gw.pki.caCertPem, servername: 'localhost' }, (res) => resolve(res.statusCode ?? 0));
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(200);
  });

  it('rejects a bad --listen with a message naming it', () => {
    expect(() => loadConfig({ listen: ['api=nowhere'] })).toThrow(/--listen api: 'nowhere' is not HOST:PORT/);
    expect(() => loadConfig({ listen: ['smtp=127.0.0.1:25'] })).toThrow(/NAME one of api, ssh/);
    // Listener names come from the door registry: no listener for a door that does not exist.
    expect(() => loadConfig({ listen: ['rdp=127.0.0.1:3389'] })).toThrow(/--listen rdp=127.0.0.1:3389: use NAME=HOST:PORT with NAME one of api, ssh, postgres, mysql, ldap, ldaps, http$/);
    expect(loadConfig({}).listen).toEqual({
      api: { host: '127.0.0.1', port: 8080 }, ssh: { host: '127.0.0.1', port: 2222 }, postgres: { host: '127.0.0.1', port: 15432 }, mysql: { host: '127.0.0.1', port: 13306 },
      ldap: { host: '127.0.0.1', port: 13389 }, ldaps: { host: '127.0.0.1', port: 13636 }, http: { host: '127.0.0.1', port: 8443 },
    });
  });
});
