import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, privateDecrypt, publicEncrypt, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import forge from 'node-forge';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../../src/core/clock.js';
import { ensurePki, PKI_FILES, type Pki } from '../../../src/pki/pki.js';

const DAY = 24 * 60 * 60 * 1000;
const mode = (p: string): number => statSync(p).mode & 0o777;

/** The value (inside its OCTET STRING) of the extension id-ce-N (2.5.29.N), read from the DER: Node exposes no parser for it. */
function extension(pem: string, n: number): Buffer {
  const der = new X509Certificate(pem).raw;
  const at = der.indexOf(Buffer.from([0x06, 0x03, 0x55, 0x1d, n]));
  expect(at).toBeGreaterThan(0);
  let i = at + 5;
  if (der[i] === 0x01) i += 3; // critical: BOOLEAN TRUE
  expect(der[i]).toBe(0x04); // extnValue OCTET STRING, short length here
  return der.subarray(i + 2, i + 2 + der[i + 1]!);
}

/** keyUsage's two bits that matter here (a BIT STRING: tag, length, unused bits, then the bits). */
function keyUsageBits(pem: string): { digitalSignature: boolean; keyEncipherment: boolean } {
  const bits = extension(pem, 0x0f)[3]!;
  return { digitalSignature: (bits & 0x80) !== 0, keyEncipherment: (bits & 0x20) !== 0 };
}

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
    expect(pki.created).toEqual({ ca: true, cert: true, sshHostKey: true, rsaKey: true });
    // Typically about 1 s (RSA 3072 dominates); the guard is looser than that so a loaded CI box
    // does not flake, yet it still catches a slide back to pure-JS key generation (tens of seconds).
    expect(firstRunMs).toBeLessThan(5000);
    expect(mode(dir)).toBe(0o700);
    expect(mode(join(dir, PKI_FILES.caKey))).toBe(0o600);
    expect(mode(join(dir, PKI_FILES.key))).toBe(0o600);
    expect(mode(join(dir, PKI_FILES.sshHostKey))).toBe(0o600);
    expect(mode(join(dir, PKI_FILES.rsaKey))).toBe(0o600);
    expect(mode(pki.caPath)).toBe(0o644);
    expect(mode(pki.certPath)).toBe(0o644);
    expect(readFileSync(pki.caPath, 'utf8')).toBe(pki.caCertPem);
    expect(readFileSync(pki.certPath, 'utf8')).toBe(pki.certPem);
    expect(readFileSync(pki.keyPath, 'utf8')).toBe(pki.keyPem);
    expect(readFileSync(pki.sshHostKeyPath, 'utf8')).toBe(pki.sshHostKeyPem);
    expect(readFileSync(pki.rsaKeyPath, 'utf8')).toBe(pki.rsaKeyPem);
  });

  it('writes an RSA key to encrypt to, apart from the TLS key (ECDSA cannot encrypt)', () => {
    const key = createPrivateKey(pki.rsaKeyPem);
    expect(key.asymmetricKeyType).toBe('rsa');
    expect(key.asymmetricKeyDetails?.modulusLength).toBe(2048);
    const sealed = publicEncrypt(createPublicKey(key), Buffer.from('secret'));
    expect(privateDecrypt(key, sealed).toString()).toBe('secret');
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

  it('issues an ECDSA P-256 leaf (signed by the RSA CA) for digital signatures only, with its own key identifier', () => {
    const leaf = new X509Certificate(pki.certPem);
    expect(leaf.publicKey.asymmetricKeyType).toBe('ec');
    expect(leaf.publicKey.asymmetricKeyDetails).toMatchObject({ namedCurve: 'prime256v1' });
    expect(createPrivateKey(pki.keyPem).asymmetricKeyType).toBe('ec');
    expect(new X509Certificate(pki.caCertPem).publicKey.asymmetricKeyType).toBe('rsa');
    expect(leaf.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']); // extKeyUsage: serverAuth
    // RFC 5280 4.2.1.2 (1): the SHA-1 of the public key's bits (an uncompressed P-256 point, 65 bytes).
    const point = leaf.publicKey.export({ type: 'spki', format: 'der' }).subarray(-65);
    expect(extension(pki.certPem, 0x0e).subarray(2).toString('hex')).toBe(createHash('sha1').update(point).digest('hex'));
    // keyEncipherment is RSA key transport; an EC leaf that claims it is refused by strict clients.
    expect(keyUsageBits(pki.certPem)).toEqual({ digitalSignature: true, keyEncipherment: false });
  });

  it('the ECDSA leaf serves TLS 1.2 (ECDHE-ECDSA) and TLS 1.3 clients that trust ca.pem', async () => {
    for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
      expect(await handshake(pki, { ca: pki.caCertPem, servername: 'localhost', maxVersion })).toEqual({ authorized: true });
    }
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
    expect(again.created).toEqual({ ca: false, cert: false, sshHostKey: false, rsaKey: false });
    expect(again).toMatchObject({
      caCertPem: pki.caCertPem,
      certPem: pki.certPem,
      keyPem: pki.keyPem,
      sshHostKeyPem: pki.sshHostKeyPem,
      rsaKeyPem: pki.rsaKeyPem,
    });
  });

  it('keeps an RSA leaf issued before the leaves turned to ECDSA until it is due for renewal, and its key for MySQL clients without TLS', async () => {
    const old = join(root, 'rsa-leaf');
    const first = await ensurePki(old, { clock });
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const caKey = readFileSync(join(old, PKI_FILES.caKey), 'utf8');
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString());
    cert.serialNumber = '4d2a';
    cert.validity.notBefore = clock.now();
    cert.validity.notAfter = new Date(clock.now().getTime() + 365 * DAY);
    cert.setSubject([{ name: 'commonName', value: 'localhost' }]);
    cert.setIssuer(forge.pki.certificateFromPem(first.caCertPem).subject.attributes);
    cert.setExtensions([{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' }] }]);
    cert.sign(forge.pki.privateKeyFromPem(caKey), forge.md.sha256.create());
    const rsaLeaf = forge.pki.certificateToPem(cert);
    writeFileSync(first.certPath, rsaLeaf);
    writeFileSync(first.keyPath, rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    // Such an install had no rsa-key.pem: MySQL clients without TLS encrypted to the leaf's key.
    unlinkSync(first.rsaKeyPath);
    const again = await ensurePki(old, { clock });
    expect(again.created).toMatchObject({ cert: false, rsaKey: true });
    expect(again.certPem).toBe(rsaLeaf);
    const rsaPublic = rsa.publicKey.export({ type: 'spki', format: 'pem' });
    // ... and keep doing so, so that a client that pinned that key keeps working.
    expect(createPublicKey(again.rsaKeyPem).export({ type: 'spki', format: 'pem' })).toBe(rsaPublic);
    expect(mode(again.rsaKeyPath)).toBe(0o600);
    const renewed = await ensurePki(old, { clock: new FakeClock(new Date(clock.now().getTime() + 340 * DAY)) });
    expect(renewed.created.cert).toBe(true);
    expect(new X509Certificate(renewed.certPem).publicKey.asymmetricKeyType).toBe('ec');
    expect(renewed.rsaKeyPem).toBe(again.rsaKeyPem);
  });

  it('reissues only the leaf, from the same CA, for a new hostname, near expiry, or when it is missing', async () => {
    const wider = await ensurePki(dir, { hostnames: ['gw.example.test', '10.0.0.7', 'new.example.test'], clock });
    expect(wider.created).toEqual({ ca: false, cert: true, sshHostKey: false, rsaKey: false });
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
    expect(restored.created).toEqual({ ca: false, cert: true, sshHostKey: false, rsaKey: false });
    expect(restored.caCertPem).toBe(pki.caCertPem);
    expect(mode(restored.keyPath)).toBe(0o600);
  });

  it('refuses an rsa-key.pem that holds no RSA key, saying how to fix it', async () => {
    const bad = join(root, 'bad-rsa');
    const first = await ensurePki(bad, { clock });
    writeFileSync(first.rsaKeyPath, first.keyPem); // the EC TLS key
    await expect(ensurePki(bad, { clock })).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('holds a key of type ec, not RSA; remove it') });
    writeFileSync(first.rsaKeyPath, 'not a key');
    await expect(ensurePki(bad, { clock })).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('is not a private key') });
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
