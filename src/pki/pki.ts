import { createHash, createPrivateKey, createPublicKey, generateKeyPair, randomBytes, sign, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import forge from 'node-forge';
import { addMs, SystemClock, type Clock } from '../core/clock.js';
import { GatehouseError, ValidationError } from '../core/errors.js';

export const PKI_FILES = {
  caCert: 'ca.pem',
  caKey: 'ca-key.pem',
  cert: 'gateway.pem',
  key: 'gateway-key.pem',
  sshHostKey: 'ssh_host_rsa_key',
  rsaKey: 'rsa-key.pem',
} as const;

const DAY = 24 * 60 * 60 * 1000;
const CA_LIFETIME = 3650 * DAY;
const LEAF_LIFETIME = 365 * DAY;
/** A leaf this close to expiry is reissued at startup, so a restart is all renewal needs. */
const LEAF_RENEW_BEFORE = 30 * DAY;
/** Backdating tolerates clients whose clocks run a little behind the gateway's. */
const BACKDATE = 5 * 60 * 1000;
const DEFAULT_HOSTS = ['localhost', '127.0.0.1', '::1'];
const DNS_NAME = /^(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*$/;

export interface Pki {
  caCertPem: string;
  certPem: string;
  keyPem: string;
  /** PKCS#1 RSA PEM: the ssh2 server rejects PKCS#8. */
  sshHostKeyPem: string;
  /**
   * An RSA key (PKCS#8 PEM) for what must encrypt to the gateway rather than verify it: MySQL
   * clients without TLS send their password encrypted to it (caching_sha2_password). The TLS
   * key is ECDSA, which cannot encrypt; one file keeps the key the same in every data-path
   * worker and across restarts, for clients that pin it.
   */
  rsaKeyPem: string;
  dir: string;
  caPath: string;
  certPath: string;
  keyPath: string;
  sshHostKeyPath: string;
  rsaKeyPath: string;
  /** What this call had to create, so `serve` can tell the operator to distribute ca.pem. */
  created: { ca: boolean; cert: boolean; sshHostKey: boolean; rsaKey: boolean };
}

export interface PkiOptions {
  /** Names and addresses the gateway certificate must cover besides localhost, 127.0.0.1 and ::1. */
  hostnames?: string[];
  clock?: Clock;
}

interface KeyPair {
  publicKey: string;
  privateKey: string;
}

/**
 * Makes sure `certDir` holds a gateway CA (10 years, RSA 2048), a TLS certificate signed by it
 * for the loopback names plus `hostnames` (1 year, ECDSA P-256), an SSH host key, and an RSA key
 * to encrypt to (`rsaKeyPem`).
 *
 * Existing files are reused as they are; the leaf alone is reissued from the same CA when it is
 * missing, no longer matches the CA, is about to expire or does not cover a requested hostname,
 * so clients that trust ca.pem keep working. Keys are written 0600 in a 0700 directory, each
 * file atomically.
 *
 * Why the leaf is ECDSA: the server signs once per TLS handshake with the leaf's key, and a P-256
 * signature costs about a fourteenth of an RSA-2048 one (`openssl speed`: 25 µs against 357 µs
 * on the 2-core test machine), paid on every connection a door accepts. The CA stays RSA: a
 * client verifies the CA's signature on the leaf, and an RSA verification is the cheaper one
 * (20 µs against 77). A leaf issued before (RSA) is reused until it is reissued.
 */
export async function ensurePki(certDir: string, opts: PkiOptions = {}): Promise<Pki> {
  const clock = opts.clock ?? new SystemClock();
  const now = clock.now();
  const hosts = normaliseHosts(opts.hostnames ?? []);
  const path = (f: string): string => join(certDir, f);
  if (!existsSync(certDir)) {
    mkdirSync(certDir, { recursive: true, mode: 0o700 });
    chmodSync(certDir, 0o700);
  }

  let caCertPem = readIfExists(path(PKI_FILES.caCert));
  let caKeyPem = readIfExists(path(PKI_FILES.caKey));
  if ((caCertPem === undefined) !== (caKeyPem === undefined)) {
    const missing = caCertPem === undefined ? PKI_FILES.caCert : PKI_FILES.caKey;
    throw new GatehouseError(
      'CONFIG_INVALID',
      `${path(missing)} is missing but its pair is present; restore it, or remove both ca files to create a new CA (clients must then trust the new ca.pem)`,
    );
  }
  if (caCertPem !== undefined && caKeyPem !== undefined) checkCa(caCertPem, caKeyPem, certDir, now);

  let certPem = readIfExists(path(PKI_FILES.cert));
  let keyPem = readIfExists(path(PKI_FILES.key));
  let sshHostKeyPem = readIfExists(path(PKI_FILES.sshHostKey));
  let rsaKeyPem = readIfExists(path(PKI_FILES.rsaKey));
  if (rsaKeyPem !== undefined) checkRsaKey(rsaKeyPem, path(PKI_FILES.rsaKey));
  // An install from before the ECDSA leaf offered its RSA TLS key to MySQL clients without TLS
  // (some pin it): that key becomes rsa-key.pem, before the leaf is reissued.
  const adopted = rsaKeyPem === undefined && keyPem !== undefined ? rsaPkcs8(keyPem) : undefined;
  if (adopted !== undefined) {
    rsaKeyPem = adopted;
    writeAtomic(path(PKI_FILES.rsaKey), rsaKeyPem, 0o600);
  }
  const needCa = caCertPem === undefined;
  const needLeaf = needCa || !leafUsable(certPem, keyPem, caCertPem!, hosts, now);
  const needSsh = sshHostKeyPem === undefined;
  const needRsa = rsaKeyPem === undefined;

  // Key generation dominates the cost; run what is needed in parallel on the thread pool.
  const [caKeys, leafKeys, sshKeys, rsaKeys] = await Promise.all([
    needCa ? rsaKeyPair(2048, 'pkcs8') : undefined,
    needLeaf ? ecKeyPair() : undefined,
    needSsh ? rsaKeyPair(3072, 'pkcs1') : undefined,
    needRsa ? rsaKeyPair(2048, 'pkcs8') : undefined,
  ]);

  if (caKeys) {
    caKeyPem = caKeys.privateKey;
    caCertPem = issueCa(caKeys, now);
    writeAtomic(path(PKI_FILES.caKey), caKeyPem, 0o600);
    writeAtomic(path(PKI_FILES.caCert), caCertPem, 0o644);
  }
  if (leafKeys) {
    keyPem = leafKeys.privateKey;
    certPem = issueLeaf(leafKeys, caCertPem!, caKeyPem!, hosts, now);
    writeAtomic(path(PKI_FILES.key), keyPem, 0o600);
    writeAtomic(path(PKI_FILES.cert), certPem, 0o644);
  }
  if (sshKeys) {
    sshHostKeyPem = sshKeys.privateKey;
    writeAtomic(path(PKI_FILES.sshHostKey), sshHostKeyPem, 0o600);
  }
  if (rsaKeys) {
    rsaKeyPem = rsaKeys.privateKey;
    writeAtomic(path(PKI_FILES.rsaKey), rsaKeyPem, 0o600);
  }

  return {
    caCertPem: caCertPem!,
    certPem: certPem!,
    keyPem: keyPem!,
    sshHostKeyPem: sshHostKeyPem!,
    rsaKeyPem: rsaKeyPem!,
    dir: certDir,
    caPath: path(PKI_FILES.caCert),
    certPath: path(PKI_FILES.cert),
    keyPath: path(PKI_FILES.key),
    sshHostKeyPath: path(PKI_FILES.sshHostKey),
    rsaKeyPath: path(PKI_FILES.rsaKey),
    created: { ca: needCa, cert: needLeaf, sshHostKey: needSsh, rsaKey: needRsa || adopted !== undefined },
  };
}

function normaliseHosts(extra: string[]): string[] {
  const out: string[] = [];
  for (const [i, raw] of [...DEFAULT_HOSTS, ...extra].entries()) {
    const h = String(raw).trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
    if (!isIP(h) && (h.length > 253 || !DNS_NAME.test(h))) {
      throw new ValidationError(`hostnames[${i - DEFAULT_HOSTS.length}]`, `'${raw}' is not a DNS name or IP address`);
    }
    if (!out.includes(h)) out.push(h);
  }
  return out;
}

function checkCa(caCertPem: string, caKeyPem: string, dir: string, now: Date): void {
  let notAfter: Date;
  try {
    const ca = new X509Certificate(caCertPem);
    if (!ca.checkPrivateKey(createPrivateKey(caKeyPem))) throw new Error('ca-key.pem does not belong to ca.pem');
    notAfter = validity(ca).notAfter;
  } catch (e) {
    throw new GatehouseError('CONFIG_INVALID', `gateway CA in ${dir} is unusable: ${(e as Error).message}`);
  }
  if (notAfter.getTime() <= now.getTime()) {
    throw new GatehouseError(
      'CONFIG_INVALID',
      `gateway CA in ${dir} expired on ${notAfter.toISOString()}; move ca.pem and ca-key.pem away to create a new one`,
    );
  }
}

function leafUsable(certPem: string | undefined, keyPem: string | undefined, caCertPem: string, hosts: string[], now: Date): boolean {
  if (certPem === undefined || keyPem === undefined) return false;
  try {
    const leaf = new X509Certificate(certPem);
    const ca = new X509Certificate(caCertPem);
    if (!leaf.verify(ca.publicKey) || !leaf.checkPrivateKey(createPrivateKey(keyPem))) return false;
    const { notBefore, notAfter } = validity(leaf);
    if (notBefore.getTime() > now.getTime() || notAfter.getTime() - now.getTime() < LEAF_RENEW_BEFORE) return false;
    const dnsNames = (leaf.subjectAltName ?? '')
      .split(', ')
      .filter((n) => n.startsWith('DNS:'))
      .map((n) => n.slice(4).toLowerCase());
    return hosts.every((h) => (isIP(h) ? leaf.checkIP(h) !== undefined : dnsNames.includes(h)));
  } catch {
    // An unreadable leaf is replaced, not fatal: the CA is what clients pin.
    return false;
  }
}

function checkRsaKey(pem: string, file: string): void {
  let type: string | undefined;
  try {
    type = createPrivateKey(pem).asymmetricKeyType;
  } catch (e) {
    throw new GatehouseError('CONFIG_INVALID', `${file} is not a private key (${(e as Error).message}); remove it to have a new one made`);
  }
  if (type !== 'rsa') throw new GatehouseError('CONFIG_INVALID', `${file} holds a key of type ${type}, not RSA; remove it to have a new one made`);
}

/** The key as PKCS#8 PEM when it is an RSA private key, else undefined (an unreadable key included). */
function rsaPkcs8(pem: string): string | undefined {
  try {
    const key = createPrivateKey(pem);
    return key.asymmetricKeyType === 'rsa' ? key.export({ type: 'pkcs8', format: 'pem' }).toString() : undefined;
  } catch {
    return undefined;
  }
}

/** Node's X509Certificate reads any key type (forge reads RSA only); its dates have whole seconds. */
function validity(x: X509Certificate): { notBefore: Date; notAfter: Date } {
  const notBefore = new Date(x.validFrom);
  const notAfter = new Date(x.validTo);
  // A date Node printed in a form Date cannot read must not pass for a valid one.
  if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime())) throw new Error(`unreadable validity: ${x.validFrom} – ${x.validTo}`);
  return { notBefore, notAfter };
}

function ecKeyPair(): Promise<KeyPair> {
  return new Promise((resolve, reject) => {
    generateKeyPair(
      'ec',
      { namedCurve: 'prime256v1', publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } },
      (err, publicKey, privateKey) => (err ? reject(err) : resolve({ publicKey, privateKey })),
    );
  });
}

function rsaKeyPair(modulusLength: number, type: 'pkcs1' | 'pkcs8'): Promise<KeyPair> {
  return new Promise((resolve, reject) => {
    generateKeyPair(
      'rsa',
      {
        modulusLength,
        publicKeyEncoding: { type: 'spki', format: 'pem' },
        privateKeyEncoding: { type, format: 'pem' },
      },
      (err, publicKey, privateKey) => (err ? reject(err) : resolve({ publicKey, privateKey })),
    );
  });
}

/** A positive, non-zero-leading 128-bit serial, so DER stays minimal and strict parsers agree. */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex');
}

function issueCa(keys: KeyPair, now: Date): string {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(keys.publicKey);
  cert.serialNumber = serialNumber();
  cert.validity.notBefore = addMs(now, -BACKDATE);
  cert.validity.notAfter = addMs(now, CA_LIFETIME);
  // A per-install suffix tells two gateways' CAs apart in a trust store.
  const subject = [
    { name: 'commonName', value: `Gatehouse gateway CA ${randomBytes(4).toString('hex')}` },
    { name: 'organizationName', value: 'Gatehouse' },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(keys.privateKey), forge.md.sha256.create());
  return forge.pki.certificateToPem(cert);
}

/**
 * The leaf, on its ECDSA key: node-forge writes certificates for RSA keys only, so the
 * TBSCertificate is built by forge around a stand-in key (the CA's), its subjectPublicKeyInfo
 * replaced by the leaf's own (as Node exports it) and the whole signed with Node's crypto.
 */
function issueLeaf(keys: KeyPair, caCertPem: string, caKeyPem: string, hosts: string[], now: Date): string {
  const { asn1 } = forge;
  const ca = forge.pki.certificateFromPem(caCertPem);
  const spki = createPublicKey(keys.publicKey).export({ type: 'spki', format: 'der' });
  const spkiAsn1 = asn1.fromDer(spki.toString('binary'));
  // RFC 5280 4.2.1.2 (1): SHA-1 of the subjectPublicKey BIT STRING's bits.
  const keyBits = Buffer.from((spkiAsn1.value as forge.asn1.Asn1[])[1]!.value as string, 'binary').subarray(1);
  const ski = createHash('sha1').update(keyBits).digest();

  const cert = forge.pki.createCertificate();
  cert.publicKey = ca.publicKey;
  cert.serialNumber = serialNumber();
  cert.validity.notBefore = addMs(now, -BACKDATE);
  // Never outlive the issuer: a chain with a leaf past its CA fails validation anyway.
  cert.validity.notAfter = new Date(Math.min(now.getTime() + LEAF_LIFETIME, ca.validity.notAfter.getTime()));
  const primary = hosts.find((h) => !DEFAULT_HOSTS.includes(h)) ?? 'localhost';
  cert.setSubject([
    { name: 'commonName', value: primary },
    { name: 'organizationName', value: 'Gatehouse' },
  ]);
  cert.setIssuer(ca.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    // No keyEncipherment: that is RSA key transport (TLS 1.2's RSA key exchange); an EC key only signs.
    { name: 'keyUsage', digitalSignature: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: hosts.map((h) => (isIP(h) ? { type: 7, ip: h } : { type: 2, value: h })) },
    { name: 'subjectKeyIdentifier', value: asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, ski.toString('binary')) },
    { name: 'authorityKeyIdentifier', keyIdentifier: ca.generateSubjectKeyIdentifier().getBytes() },
  ]);
  // The CA's key signs: sha256WithRSAEncryption, parameters NULL (RFC 4055).
  cert.siginfo.algorithmOid = forge.pki.oids.sha256WithRSAEncryption!;
  const tbs = (forge.pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }).getTBSCertificate(cert);
  // version, serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, extensions
  (tbs.value as forge.asn1.Asn1[])[6] = spkiAsn1;
  const tbsDer = Buffer.from(asn1.toDer(tbs).getBytes(), 'binary');
  const signature = sign('sha256', tbsDer, caKeyPem);
  const certificate = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    tbs,
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(forge.pki.oids.sha256WithRSAEncryption!).getBytes()),
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, ''),
    ]),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, `\0${signature.toString('binary')}`),
  ]);
  const der = Buffer.from(asn1.toDer(certificate).getBytes(), 'binary');
  return `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;
}

function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new GatehouseError('CONFIG_INVALID', `cannot read ${path}: ${(e as Error).message}`);
  }
}

/** Write-then-rename, so a crash never leaves a half-written key; the mode is set before the rename. */
function writeAtomic(path: string, data: string, mode: number): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, data, { mode, flag: 'wx' });
    chmodSync(tmp, mode);
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // the temp file may never have been created
    }
    throw new GatehouseError('CONFIG_INVALID', `cannot write ${path}: ${(e as Error).message}`);
  }
}
