// The docker-compose demo's one-shot `demo-init` service: makes the example targets' secrets
// on the first `docker compose up`, so none is committed to this repository.
//
//   node init.mjs [OUT_DIR]          (default /demo; compose mounts the demo-secrets volume there)
//
// It runs in the Gatehouse image (node-forge and ssh2 come from the gateway's own
// dependencies) as root, so each file can belong to the one container user that reads it:
//
//   gatehouse/   the gateway (uid 10001, the Dockerfile's user): the targets' passwords and
//                the SSH key that policies/demo.yaml points to with passwordFile / keyFile
//   pg-target/   PostgreSQL (uid 999 in the postgres image): its password and TLS key pair
//   mariadb/     MariaDB (uid 999 in the mariadb image): its password and TLS key pair
//   sshd/        the SSH target: the public half of the gateway's key (read by root at start)
//   openldap/    the directory: the service account's password and its TLS key pair (read by
//                root at start; the entrypoint copies the key pair to where slapd's user reads it)
//   ca.pem       the demo CA that signed the three TLS certificates
//
// The targets' own certificates matter because the gateway pins a target's identity on
// first use: a certificate made anew at every start (MariaDB 11.4's automatic one) would look
// like an attack after a restart. Once everything is written, a marker makes later runs no-ops.
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import forge from 'node-forge';
import ssh2 from 'ssh2';

/** The container user that reads each directory (uid = gid); files are chowned only when run as root. */
export const OWNERS = { gatehouse: 10001, 'pg-target': 999, mariadb: 999, sshd: 0, openldap: 0 };
export const MARKER = '.initialised';
const YEAR = 365 * 24 * 3600 * 1000;

const password = () => randomBytes(18).toString('base64url');

function certificate(subjectCn, publicKey, issuer, signingKey, opts) {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = `01${randomBytes(8).toString('hex')}`;
  cert.validity.notBefore = new Date(new Date().getTime() - 5 * 60 * 1000);
  cert.validity.notAfter = new Date(new Date().getTime() + opts.years * YEAR);
  cert.setSubject([{ name: 'commonName', value: subjectCn }]);
  cert.setIssuer(issuer);
  cert.setExtensions(opts.extensions);
  cert.sign(signingKey, forge.md.sha256.create());
  return cert;
}

/** A CA and one server certificate per host name, RSA 2048 (PostgreSQL, MariaDB and slapd's GnuTLS read PKCS#1 PEM). */
export function makeTls(hosts) {
  const caKeys = forge.pki.rsa.generateKeyPair(2048);
  const ca = certificate('Gatehouse demo targets CA', caKeys.publicKey, [{ name: 'commonName', value: 'Gatehouse demo targets CA' }], caKeys.privateKey, {
    years: 10,
    extensions: [{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true }],
  });
  const servers = Object.fromEntries(hosts.map((host) => {
    const keys = forge.pki.rsa.generateKeyPair(2048);
    const cert = certificate(host, keys.publicKey, ca.subject.attributes, caKeys.privateKey, {
      years: 5,
      extensions: [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true },
        { name: 'subjectAltName', altNames: [{ type: 2, value: host }] },
      ],
    });
    return [host, { cert: forge.pki.certificateToPem(cert), key: forge.pki.privateKeyToPem(keys.privateKey) }];
  }));
  return { ca: forge.pki.certificateToPem(ca), servers };
}

/** Writes the demo's secrets into `out`; returns false when an earlier run already did. */
export function initDemo(out, owners = OWNERS) {
  if (existsSync(join(out, MARKER))) return false;
  const canChown = process.getuid?.() === 0;
  mkdirSync(out, { recursive: true });
  chmodSync(out, 0o755);
  const put = (dir, name, content, mode = 0o600) => {
    const path = join(out, dir, name);
    writeFileSync(path, content, { mode });
    chmodSync(path, mode);
    if (canChown) chownSync(path, owners[dir], owners[dir]);
  };
  for (const dir of Object.keys(owners)) {
    const path = join(out, dir);
    mkdirSync(path, { recursive: true });
    chmodSync(path, 0o700);
    if (canChown) chownSync(path, owners[dir], owners[dir]);
  }

  const pg = password();
  const maria = password();
  const ldap = password();
  // ssh2 drops the leading zero bytes of a public key that begins with one (1 pair in 256;
  // mscdex/ssh2#1513), which leaves both halves malformed: such a pair is made again, as
  // protocols/ssh/provision.ts's ed25519Pair does (this script runs alone, beside the package).
  let ssh;
  do ssh = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'gatehouse demo prod-web' });
  while (ssh2.utils.parseKey(ssh.private) instanceof Error || ssh2.utils.parseKey(ssh.public) instanceof Error);
  const tls = makeTls(['pg-target', 'mariadb', 'openldap']);

  put('gatehouse', 'prod-pg-password', `${pg}\n`);
  put('gatehouse', 'billing-mysql-password', `${maria}\n`);
  put('gatehouse', 'corp-ldap-password', `${ldap}\n`);
  put('gatehouse', 'prod-web.key', ssh.private);
  put('pg-target', 'password', pg);
  put('pg-target', 'server.pem', tls.servers['pg-target'].cert);
  put('pg-target', 'server.key', tls.servers['pg-target'].key);
  put('mariadb', 'password', maria);
  put('mariadb', 'server.pem', tls.servers.mariadb.cert);
  put('mariadb', 'server.key', tls.servers.mariadb.key);
  put('sshd', 'authorized_keys', `${ssh.public}\n`, 0o644);
  put('openldap', 'gatehouse-password', ldap);
  put('openldap', 'server.pem', tls.servers.openldap.cert);
  put('openldap', 'server.key', tls.servers.openldap.key);
  writeFileSync(join(out, 'ca.pem'), tls.ca, { mode: 0o644 });
  writeFileSync(join(out, MARKER), `${new Date().toISOString()}\n`);
  return true;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = resolve(process.argv[2] ?? '/demo');
  const made = initDemo(out);
  process.stdout.write(made ? `demo secrets written to ${out}\n` : `demo secrets already in ${out}; nothing to do\n`);
}
