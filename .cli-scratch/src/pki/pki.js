import { createPrivateKey, generateKeyPair, randomBytes, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import forge from 'node-forge';
import { addMs, SystemClock } from '../core/clock.js';
import { GatehouseError, ValidationError } from '../core/errors.js';
export const PKI_FILES = {
    caCert: 'ca.pem',
    caKey: 'ca-key.pem',
    cert: 'gateway.pem',
    key: 'gateway-key.pem',
    sshHostKey: 'ssh_host_rsa_key',
};
const DAY = 24 * 60 * 60 * 1000;
const CA_LIFETIME = 3650 * DAY;
const LEAF_LIFETIME = 365 * DAY;
/** A leaf this close to expiry is reissued at startup, so a restart is all renewal needs. */
const LEAF_RENEW_BEFORE = 30 * DAY;
/** Backdating tolerates clients whose clocks run a little behind the gateway's. */
const BACKDATE = 5 * 60 * 1000;
const DEFAULT_HOSTS = ['localhost', '127.0.0.1', '::1'];
const DNS_NAME = /^(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*$/;
/**
 * Makes sure `certDir` holds a gateway CA (10 years), a TLS certificate signed by it for the
 * loopback names plus `hostnames` (1 year), and an SSH host key. Existing files are reused as
 * they are; the leaf alone is reissued from the same CA when it is missing, no longer matches
 * the CA, is about to expire or does not cover a requested hostname, so clients that trust
 * ca.pem keep working. Keys are written 0600 in a 0700 directory, each file atomically.
 */
export async function ensurePki(certDir, opts = {}) {
    const clock = opts.clock ?? new SystemClock();
    const now = clock.now();
    const hosts = normaliseHosts(opts.hostnames ?? []);
    const path = (f) => join(certDir, f);
    if (!existsSync(certDir)) {
        mkdirSync(certDir, { recursive: true, mode: 0o700 });
        chmodSync(certDir, 0o700);
    }
    let caCertPem = readIfExists(path(PKI_FILES.caCert));
    let caKeyPem = readIfExists(path(PKI_FILES.caKey));
    if ((caCertPem === undefined) !== (caKeyPem === undefined)) {
        const missing = caCertPem === undefined ? PKI_FILES.caCert : PKI_FILES.caKey;
        throw new GatehouseError('CONFIG_INVALID', `${path(missing)} is missing but its pair is present; restore it, or remove both ca files to create a new CA (clients must then trust the new ca.pem)`);
    }
    if (caCertPem !== undefined && caKeyPem !== undefined)
        checkCa(caCertPem, caKeyPem, certDir, now);
    let certPem = readIfExists(path(PKI_FILES.cert));
    let keyPem = readIfExists(path(PKI_FILES.key));
    let sshHostKeyPem = readIfExists(path(PKI_FILES.sshHostKey));
    const needCa = caCertPem === undefined;
    const needLeaf = needCa || !leafUsable(certPem, keyPem, caCertPem, hosts, now);
    const needSsh = sshHostKeyPem === undefined;
    // Key generation dominates the cost; run what is needed in parallel on the thread pool.
    const [caKeys, leafKeys, sshKeys] = await Promise.all([
        needCa ? rsaKeyPair(2048, 'pkcs8') : undefined,
        needLeaf ? rsaKeyPair(2048, 'pkcs8') : undefined,
        needSsh ? rsaKeyPair(3072, 'pkcs1') : undefined,
    ]);
    if (caKeys) {
        caKeyPem = caKeys.privateKey;
        caCertPem = issueCa(caKeys, now);
        writeAtomic(path(PKI_FILES.caKey), caKeyPem, 0o600);
        writeAtomic(path(PKI_FILES.caCert), caCertPem, 0o644);
    }
    if (leafKeys) {
        keyPem = leafKeys.privateKey;
        certPem = issueLeaf(leafKeys, caCertPem, caKeyPem, hosts, now);
        writeAtomic(path(PKI_FILES.key), keyPem, 0o600);
        writeAtomic(path(PKI_FILES.cert), certPem, 0o644);
    }
    if (sshKeys) {
        sshHostKeyPem = sshKeys.privateKey;
        writeAtomic(path(PKI_FILES.sshHostKey), sshHostKeyPem, 0o600);
    }
    return {
        caCertPem: caCertPem,
        certPem: certPem,
        keyPem: keyPem,
        sshHostKeyPem: sshHostKeyPem,
        dir: certDir,
        caPath: path(PKI_FILES.caCert),
        certPath: path(PKI_FILES.cert),
        keyPath: path(PKI_FILES.key),
        sshHostKeyPath: path(PKI_FILES.sshHostKey),
        created: { ca: needCa, cert: needLeaf, sshHostKey: needSsh },
    };
}
function normaliseHosts(extra) {
    const out = [];
    for (const [i, raw] of [...DEFAULT_HOSTS, ...extra].entries()) {
        const h = String(raw).trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
        if (!isIP(h) && (h.length > 253 || !DNS_NAME.test(h))) {
            throw new ValidationError(`hostnames[${i - DEFAULT_HOSTS.length}]`, `'${raw}' is not a DNS name or IP address`);
        }
        if (!out.includes(h))
            out.push(h);
    }
    return out;
}
function checkCa(caCertPem, caKeyPem, dir, now) {
    let ca;
    try {
        ca = new X509Certificate(caCertPem);
        if (!ca.checkPrivateKey(createPrivateKey(caKeyPem)))
            throw new Error('ca-key.pem does not belong to ca.pem');
    }
    catch (e) {
        throw new GatehouseError('CONFIG_INVALID', `gateway CA in ${dir} is unusable: ${e.message}`);
    }
    const notAfter = validity(caCertPem).notAfter;
    if (notAfter.getTime() <= now.getTime()) {
        throw new GatehouseError('CONFIG_INVALID', `gateway CA in ${dir} expired on ${notAfter.toISOString()}; move ca.pem and ca-key.pem away to create a new one`);
    }
}
function leafUsable(certPem, keyPem, caCertPem, hosts, now) {
    if (certPem === undefined || keyPem === undefined)
        return false;
    try {
        const leaf = new X509Certificate(certPem);
        const ca = new X509Certificate(caCertPem);
        if (!leaf.verify(ca.publicKey) || !leaf.checkPrivateKey(createPrivateKey(keyPem)))
            return false;
        const { notBefore, notAfter } = validity(certPem);
        if (notBefore.getTime() > now.getTime() || notAfter.getTime() - now.getTime() < LEAF_RENEW_BEFORE)
            return false;
        const dnsNames = (leaf.subjectAltName ?? '')
            .split(', ')
            .filter((n) => n.startsWith('DNS:'))
            .map((n) => n.slice(4).toLowerCase());
        return hosts.every((h) => (isIP(h) ? leaf.checkIP(h) !== undefined : dnsNames.includes(h)));
    }
    catch {
        // An unreadable leaf is replaced, not fatal: the CA is what clients pin.
        return false;
    }
}
function validity(pem) {
    return forge.pki.certificateFromPem(pem).validity;
}
function rsaKeyPair(modulusLength, type) {
    return new Promise((resolve, reject) => {
        generateKeyPair('rsa', {
            modulusLength,
            publicKeyEncoding: { type: 'spki', format: 'pem' },
            privateKeyEncoding: { type, format: 'pem' },
        }, (err, publicKey, privateKey) => (err ? reject(err) : resolve({ publicKey, privateKey })));
    });
}
/** A positive, non-zero-leading 128-bit serial, so DER stays minimal and strict parsers agree. */
function serialNumber() {
    const bytes = randomBytes(16);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    return bytes.toString('hex');
}
function issueCa(keys, now) {
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
function issueLeaf(keys, caCertPem, caKeyPem, hosts, now) {
    const ca = forge.pki.certificateFromPem(caCertPem);
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(keys.publicKey);
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
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true },
        { name: 'subjectAltName', altNames: hosts.map((h) => (isIP(h) ? { type: 7, ip: h } : { type: 2, value: h })) },
        { name: 'subjectKeyIdentifier' },
        { name: 'authorityKeyIdentifier', keyIdentifier: ca.generateSubjectKeyIdentifier().getBytes() },
    ]);
    cert.sign(forge.pki.privateKeyFromPem(caKeyPem), forge.md.sha256.create());
    return forge.pki.certificateToPem(cert);
}
function readIfExists(path) {
    try {
        return readFileSync(path, 'utf8');
    }
    catch (e) {
        if (e.code === 'ENOENT')
            return undefined;
        throw new GatehouseError('CONFIG_INVALID', `cannot read ${path}: ${e.message}`);
    }
}
/** Write-then-rename, so a crash never leaves a half-written key; the mode is set before the rename. */
function writeAtomic(path, data, mode) {
    const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
        writeFileSync(tmp, data, { mode, flag: 'wx' });
        chmodSync(tmp, mode);
        renameSync(tmp, path);
    }
    catch (e) {
        try {
            unlinkSync(tmp);
        }
        catch {
            // the temp file may never have been created
        }
        throw new GatehouseError('CONFIG_INVALID', `cannot write ${path}: ${e.message}`);
    }
}
//# sourceMappingURL=pki.js.map