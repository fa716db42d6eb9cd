import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GatehouseError } from '../core/errors.js';

export const MASTER_KEY_ENV = 'GATEHOUSE_MASTER_KEY';
export const MASTER_KEY_FILE = 'master.key';
const KEY_BYTES = 32;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

export function parseKey(raw: string, source: string, what = 'master key'): Buffer {
  const text = raw.trim();
  const key = BASE64.test(text) ? Buffer.from(text, 'base64') : undefined;
  if (!key || key.length !== KEY_BYTES || key.toString('base64') !== text) {
    // Never echo the value: a near-miss key is still mostly key.
    throw new GatehouseError(
      'CONFIG_INVALID',
      `${what} from ${source} must be base64 of exactly ${KEY_BYTES} bytes` +
        (key ? ` (it decodes to ${key.length} bytes)` : ' (it is not valid base64)'),
      { source },
    );
  }
  return key;
}

/**
 * The master key that seals secrets at rest. `GATEHOUSE_MASTER_KEY` (base64, 32 bytes) wins, so
 * a deployment can keep it out of the data dir; otherwise `<dataDir>/master.key`, created with
 * mode 0600 on first run. Losing this key makes every sealed credential unreadable.
 */
export function loadOrCreateMasterKey(opts: { dataDir: string; env?: NodeJS.ProcessEnv }): Buffer {
  const env = opts.env ?? process.env;
  const fromEnv = env[MASTER_KEY_ENV];
  if (fromEnv !== undefined && fromEnv.trim() !== '') return parseKey(fromEnv, `environment variable ${MASTER_KEY_ENV}`);
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  return loadOrCreateKeyFile(join(opts.dataDir, MASTER_KEY_FILE), 'master key');
}

/**
 * A 32-byte key kept base64 in a file of mode 0600: read when it exists, else created
 * (with `initial()` when given, random otherwise). Two processes starting at once end up
 * with the same key: creation refuses to overwrite, and the loser reads the winner's.
 */
export function loadOrCreateKeyFile(path: string, what: string, initial?: () => Buffer | undefined): Buffer {
  const existing = readIfExists(path, what);
  if (existing !== undefined) return parseKey(existing, `file ${path}`, what);
  const key = initial?.() ?? randomBytes(KEY_BYTES);
  try {
    writeFileSync(path, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return parseKey(readFileSync(path, 'utf8'), `file ${path}`, what);
    throw new GatehouseError('CONFIG_INVALID', `cannot create ${what} file ${path}: ${(e as Error).message}`, { source: path });
  }
  return key;
}

function readIfExists(path: string, what: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new GatehouseError('CONFIG_INVALID', `cannot read ${what} file ${path}: ${(e as Error).message}`, { source: path });
  }
}
