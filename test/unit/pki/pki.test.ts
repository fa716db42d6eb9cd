import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, unlinkSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../../src/core/clock.js';
import { ensurePki, PKI_FILES, type Pki } from '../../../src/pki/pki.js';

const DAY = 24 * 60 * 60 * 1000;
const mode = (p: string): number => statSync(p).mode & 0o777;

/** Handshakes a TLS client against a server holding `pki`'s leaf; resolves with the client's verdict. */
async function handshake(pki: Pki, client: tls.ConnectionOptions): Promise<{ authorized: boolean; error?: string }> {
  const server = tls.createServer({ cert: pki.certPem, key: pki.keyPem }, (s) => s.end('hello'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    return await new Promise((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port, ...client }, () => {
        resolve({ authorized: socket.authorized });
        socket.end();
      });
      socket.on('error', (e) => resolve({ authorized: false, error: (e as NodeJS.ErrnoException).code ?? e.message }));
    });
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

describe('ensurePki', () => {
  let root: string;
  let dir: string;
  let clock: FakeClock;
  let pki: Pki;
  let firstRunMs: number;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'gh-pki-'));
    dir = join(root, 'certs');
    clock = new FakeClock('2026-03-01T10:00:00Z');
    const started = performance.now();
    pki = await ensurePki(dir, { hostnames: ['gw.example.test', '10.0.0.7'], clock });
    firstRunMs = performance.now() - started;
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('creates every file on first run, quickly, with private modes', () => {
    expect(pki.created).toEqual({ ca: true, cert: true, sshHostKey: true });
    // Typically about 1 s (RSA 3072 dominates); the guard is looser than that so a loaded CI box
    // does not flake, yet it still catches a slide back to pure-JS key generation (tens of seconds).
    expect(firstRunMs).toBeLessThan(5000);
    expect(mode(dir)).toBe(0o700);
    expect(mode(join(dir, PKI_FILES.caKey))).toBe(0o600);
    expect(mode(join(dir, PKI_FILES.key))).toBe(0o600);
    expect(mode(join(dir, PKI_FILES.sshHostKey))).toBe(0o600);
    expect(mode(pki.caPath)).toBe(0o644);
    expect(mode(pki.certPath)).toBe(0o644);
    expect(readFileSync(pki.caPath, 'utf8')).toBe(pki.caCertPem);
    expect(readFileSync(pki.certPath, 'utf8')).toBe(pki.certPem);
    expect(readFileSync(pki.keyPath, 'utf8')).toBe(pki.keyPem);
    expect(readFileSync(pki.sshHostKeyPath, 'utf8')).toBe(pki.sshHostKeyPem);
  });

  it('issues a CA and a leaf that verifies against it for every requested name', () => {
    const ca = new X509Certificate(pki.caCertPem);
    const leaf = new X509Certificate(pki.certPem);
    expect(ca.ca).toBe(true);
    expect(leaf.ca).toBe(false);
    expect(ca.verify(ca.publicKey)).toBe(true);
    expect(leaf.verify(ca.publicKey)).toBe(true);
    expect(leaf.checkIssued(ca)).toBe(true);
    expect(leaf.checkHost('localhost')).toBe('localhost');
    expect(leaf.checkHost('gw.example.test')).toBe('gw.example.test');
    expect(leaf.checkHost('evil.example.test')).toBeUndefined();
    expect(leaf.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(leaf.checkIP('::1')).toBe('::1');
    expect(leaf.checkIP('10.0.0.7')).toBe('10.0.0.7');
    expect(leaf.checkIP('10.0.0.8')).toBeUndefined();
    expect(new Date(ca.validTo).getTime()).toBe(clock.now().getTime() + 3650 * DAY);
    expect(new Date(leaf.validTo).getTime()).toBe(new Date('2027-03-01T10:00:00Z').getTime());
    expect(new Date(leaf.validFrom).getTime()).toBeLessThan(clock.now().getTime());
  });

  it('completes a real TLS handshake for a client that trusts only ca.pem', async () => {
    expect(await handshake(pki, { ca: pki.caCertPem, servername: 'localhost' })).toEqual({ authorized: true });
    // No SNI: Node checks the certificate against the IP the client dialled.
    let checkedIp: Error | undefined | 'unset' = 'unset';
    const byIp = await handshake(pki, {
      ca: pki.caCertPem,
      checkServerIdentity: (_host, cert) => (checkedIp = tls.checkServerIdentity('127.0.0.1', cert)),
    });
    expect(byIp).toEqual({ authorized: true });
    expect(checkedIp).toBeUndefined();
  });

  it('fails the handshake for the wrong name or without the CA', async () => {
    expect(await handshake(pki, { ca: pki.caCertPem, servername: 'evil.example.test' })).toEqual({
      authorized: false,
      error: 'ERR_TLS_CERT_ALTNAME_INVALID',
    });
    expect((await handshake(pki, { servername: 'localhost' })).error).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });

  it('writes an SSH host key that ssh2 accepts (PKCS#1 RSA)', () => {
    expect(pki.sshHostKeyPem.startsWith('-----BEGIN RSA PRIVATE KEY-----')).toBe(true);
    const parsed = ssh2.utils.parseKey(pki.sshHostKeyPem);
    expect(parsed).not.toBeInstanceOf(Error);
    expect((parsed as ssh2.ParsedKey).type).toBe('ssh-rsa');
    expect((parsed as ssh2.ParsedKey).isPrivateKey()).toBe(true);
    // The server constructor parses its host keys and throws on a format it rejects.
    const server = new ssh2.Server({ hostKeys: [pki.sshHostKeyPem] }, () => undefined);
    expect(server).toBeInstanceOf(ssh2.Server);
  });

  it('loads the same material unchanged on a second run', async () => {
    const again = await ensurePki(dir, { hostnames: ['gw.example.test', '10.0.0.7'], clock });
    expect(again.created).toEqual({ ca: false, cert: false, sshHostKey: false });
    expect(again).toMatchObject({
      caCertPem: pki.caCertPem,
      certPem: pki.certPem,
      keyPem: pki.keyPem,
      sshHostKeyPem: pki.sshHostKeyPem,
    });
  });

  it('reissues only the leaf, from the same CA, for a new hostname, near expiry, or when it is missing', async () => {
    const wider = await ensurePki(dir, { hostnames: ['gw.example.test', '10.0.0.7', 'new.example.test'], clock });
    expect(wider.created).toEqual({ ca: false, cert: true, sshHostKey: false });
    expect(wider.caCertPem).toBe(pki.caCertPem);
    expect(wider.sshHostKeyPem).toBe(pki.sshHostKeyPem);
    expect(wider.certPem).not.toBe(pki.certPem);
    const leaf = new X509Certificate(wider.certPem);
    expect(leaf.checkHost('new.example.test')).toBe('new.example.test');
    expect(leaf.verify(new X509Certificate(pki.caCertPem).publicKey)).toBe(true);

    const later = new FakeClock(new Date(clock.now().getTime() + 340 * DAY));
    const renewed = await ensurePki(dir, { hostnames: ['new.example.test'], clock: later });
    expect(renewed.created.cert).toBe(true);
    expect(new Date(new X509Certificate(renewed.certPem).validTo).getTime()).toBeGreaterThan(later.now().getTime() + 300 * DAY);

    unlinkSync(renewed.keyPath);
    const restored = await ensurePki(dir, { clock: later });
    expect(restored.created).toEqual({ ca: false, cert: true, sshHostKey: false });
    expect(restored.caCertPem).toBe(pki.caCertPem);
    expect(mode(restored.keyPath)).toBe(0o600);
  });

  it('refuses a half-present CA and a bad hostname with clear messages', async () => {
    const other = join(root, 'half');
    const made = await ensurePki(other);
    unlinkSync(join(other, PKI_FILES.caKey));
    await expect(ensurePki(other)).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringContaining(`${join(other, 'ca-key.pem')} is missing`),
    });
    expect(readFileSync(made.caPath, 'utf8')).toBe(made.caCertPem);
    await expect(ensurePki(join(root, 'bad'), { hostnames: ['not a host'] })).rejects.toMatchObject({
      code: 'VALIDATION',
      message: expect.stringContaining("'not a host' is not a DNS name or IP address"),
    });
  });
});
