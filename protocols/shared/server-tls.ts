/**
 * The client-facing TLS of the database doors (PostgreSQL, MySQL): TLS 1.2 or later, and the
 * server's cipher order, not the client's, with AES-128-GCM first.
 *
 * Why the order: libpq and most drivers offer TLS_AES_256_GCM_SHA384 first, and a server that
 * follows the client's order (OpenSSL's default, and Node's for `createSecureContext`, which
 * leaves `honorCipherOrder` unset) negotiates it. TLS_AES_128_GCM_SHA256 is the suite every
 * TLS 1.3 peer must implement (RFC 8446, 9.1) and takes 10 AES rounds per block to AES-256's 14.
 * Node has no separate option for TLS 1.3 suites: the `TLS_` names in `ciphers` are TLS 1.3 suites (SSL_CTX_set_ciphersuites), the others TLS 1.2 ciphers; a list
 * with no TLS 1.2 ciphers would refuse every handshake, so both are given.
 *
 * The lists start from Node's defaults (tls.DEFAULT_CIPHERS, which `--tls-cipher-list` changes):
 * a suite the process was told not to use stays unused; only the order changes.
 */
import { DEFAULT_CIPHERS, type SecureContextOptions } from 'node:tls';

/** TLS 1.3 suites, most preferred first. */
const TLS13_ORDER = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];

const defaults = DEFAULT_CIPHERS.split(':');
const tls13 = [...TLS13_ORDER.filter((s) => defaults.includes(s)), ...defaults.filter((s) => s.startsWith('TLS_') && !TLS13_ORDER.includes(s))];

/** The TLS 1.3 suites in the doors' order (colon-separated), e.g. for another server's config in a benchmark. */
export const SERVER_TLS13_SUITES = tls13.join(':');
/** The TLS 1.2 cipher list: Node's (AES-128-GCM first already). */
export const SERVER_TLS12_CIPHERS = defaults.filter((s) => !s.startsWith('TLS_')).join(':');
/** Both, as Node's `ciphers` option takes them. */
export const SERVER_CIPHERS = [SERVER_TLS13_SUITES, SERVER_TLS12_CIPHERS].filter((s) => s !== '').join(':');

/** The secure-context options of a database door's client leg. */
export function serverTlsOptions(tls: { cert: string | Buffer; key: string | Buffer }): SecureContextOptions {
  return { cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2', ciphers: SERVER_CIPHERS, honorCipherOrder: true };
}
