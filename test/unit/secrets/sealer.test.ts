import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { GatehouseError } from '../../../src/core/errors.js';
import { openCredentials, sealCredentials } from '../../../src/secrets/credentials.js';
import { loadOrCreateMasterKey, MASTER_KEY_ENV } from '../../../src/secrets/master-key.js';
import { SealError, Sealer, type SealFailure } from '../../../src/secrets/sealer.js';

const key = Buffer.alloc(32, 7);
const sealer = new Sealer(key);

function sealFailure(fn: () => unknown): SealFailure {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SealError);
    expect((e as SealError).code).toBe('INTERNAL');
    return (e as SealError).reason;
  }
  throw new Error('expected the call to fail');
}

/** Flips one bit of the decoded bytes of part `index`, keeping the encoding canonical. */
function flipPart(envelope: string, index: number): string {
  const parts = envelope.split('.');
  const bytes = Buffer.from(parts[index]!, 'base64url');
  bytes[0] = bytes[0]! ^ 0x01;
  parts[index] = bytes.toString('base64url');
  return parts.join('.');
}

describe('Sealer', () => {
  it('round-trips strings and buffers and writes a versioned envelope', () => {
    const env = sealer.seal('s3cret-pw', 'resource:prod-pg:credentials');
    expect(env).toMatch(/^gh1\.[0-9a-f]{8}\.[\w-]{16}\.[\w-]{22}\.[\w-]+$/);
    expect(env.split('.')[1]).toBe(sealer.keyId);
    expect(env).not.toContain('s3cret');
    expect(sealer.unsealString(env, 'resource:prod-pg:credentials')).toBe('s3cret-pw');

    const bin = Buffer.from([0, 1, 2, 255]);
    expect(sealer.unseal(sealer.seal(bin))).toEqual(bin);
    expect(sealer.unsealString(sealer.seal(''))).toBe('');
  });

  it('uses a fresh IV each time', () => {
    expect(sealer.seal('same')).not.toBe(sealer.seal('same'));
  });

  it('rejects a flipped byte in the iv, tag and ciphertext', () => {
    const env = sealer.seal('payload', 'aad');
    for (const i of [2, 3, 4]) expect(sealFailure(() => sealer.unseal(flipPart(env, i), 'aad'))).toBe('auth_failed');
  });

  it('rejects an altered version or key id, and non-canonical or truncated parts', () => {
    const env = sealer.seal('payload');
    const parts = env.split('.');
    expect(sealFailure(() => sealer.unseal(['gh2', ...parts.slice(1)].join('.')))).toBe('malformed');
    const otherId = parts[1]!.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    expect(sealFailure(() => sealer.unseal([parts[0], otherId, ...parts.slice(2)].join('.')))).toBe('wrong_key');
    // A last base64url char that differs only in ignored trailing bits decodes to the same bytes.
    const tag = parts[3]!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const sibling = alphabet[alphabet.indexOf(tag.at(-1)!) ^ 1]!;
    const noncanonicalTag = tag.slice(0, -1) + sibling;
    expect(Buffer.from(noncanonicalTag, 'base64url')).toEqual(Buffer.from(tag, 'base64url'));
    const noncanonical = [...parts.slice(0, 3), noncanonicalTag, parts[4]].join('.');
    expect(sealFailure(() => sealer.unseal(noncanonical))).toBe('malformed');
    expect(sealFailure(() => sealer.unseal(parts.slice(0, 4).join('.')))).toBe('malformed');
    expect(sealFailure(() => sealer.unseal(''))).toBe('malformed');
  });

  it('fails with wrong_key and a message naming both key ids under another master key', () => {
    const other = new Sealer(Buffer.alloc(32, 8));
    const env = sealer.seal('payload');
    let err: unknown;
    try {
      other.unseal(env);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GatehouseError);
    expect((err as SealError).reason).toBe('wrong_key');
    expect((err as Error).message).toContain(sealer.keyId);
    expect((err as Error).message).toContain(other.keyId);
    expect((err as Error).message).not.toContain('payload');
  });

  it('refuses to open a value under a different AAD (blob swapped between records)', () => {
    const env = sealer.seal('pw', 'resource:a:credentials');
    expect(sealFailure(() => sealer.unseal(env, 'resource:b:credentials'))).toBe('auth_failed');
    expect(sealFailure(() => sealer.unseal(env))).toBe('auth_failed');
  });

  it('derives stable, label-separated subkeys', () => {
    const a = sealer.deriveKey('audit-mac');
    expect(a).toHaveLength(32);
    expect(new Sealer(key).deriveKey('audit-mac')).toEqual(a);
    expect(sealer.deriveKey('token-pepper')).not.toEqual(a);
    expect(new Sealer(Buffer.alloc(32, 8)).deriveKey('audit-mac')).not.toEqual(a);
    expect(a).not.toEqual(key);
  });

  it('rejects a master key of the wrong size', () => {
    expect(() => new Sealer(Buffer.alloc(16))).toThrow(/exactly 32 bytes/);
  });

  it('does not show key material when inspected or serialised', () => {
    const shown = inspect(sealer, { showHidden: true, depth: 5 }) + JSON.stringify(sealer);
    expect(shown).toContain(sealer.keyId);
    expect(shown).not.toContain(key.toString('hex'));
    expect(shown).not.toContain('7, 7, 7');
  });

  it('round-trips arbitrary buffers and AADs (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), fc.string(), (bytes, aad) => {
        const buf = Buffer.from(bytes);
        expect(sealer.unseal(sealer.seal(buf, aad), aad)).toEqual(buf);
      }),
      { numRuns: 200 },
    );
  });
});

describe('credentials', () => {
  it('round-trips and binds the blob to the resource name', () => {
    const creds = { login: 'app', password: 'correct-horse-battery', privateKey: '-----BEGIN KEY-----' };
    const sealed = sealCredentials(sealer, 'prod-pg', creds);
    expect(sealed).not.toContain('correct-horse');
    expect(openCredentials(sealer, 'prod-pg', sealed)).toEqual(creds);
    expect(openCredentials(sealer, 'db', sealCredentials(sealer, 'db', { login: 'x' }))).toEqual({ login: 'x' });
    expect(sealFailure(() => openCredentials(sealer, 'prod-mysql', sealed))).toBe('auth_failed');
  });

  it('rejects a sealed value that is not a credentials object', () => {
    const sealed = sealer.seal('{"user":1}', 'resource:x:credentials');
    expect(sealFailure(() => openCredentials(sealer, 'x', sealed))).toBe('malformed');
  });
});

describe('loadOrCreateMasterKey', () => {
  const dirs: string[] = [];
  const tempDir = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'gh-mk-'));
    dirs.push(d);
    return d;
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('creates <dataDir>/master.key with mode 0600 on first run and reuses it', () => {
    const dataDir = join(tempDir(), 'data');
    const first = loadOrCreateMasterKey({ dataDir, env: {} });
    expect(first).toHaveLength(32);
    const file = join(dataDir, 'master.key');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(Buffer.from(readFileSync(file, 'utf8').trim(), 'base64')).toEqual(first);
    expect(loadOrCreateMasterKey({ dataDir, env: {} })).toEqual(first);
  });

  it('prefers GATEHOUSE_MASTER_KEY and then writes no file', () => {
    const dataDir = tempDir();
    const envKey = randomBytes(32);
    const got = loadOrCreateMasterKey({ dataDir, env: { [MASTER_KEY_ENV]: envKey.toString('base64') } });
    expect(got).toEqual(envKey);
    expect(() => statSync(join(dataDir, 'master.key'))).toThrow();
  });

  it('rejects keys of the wrong length or encoding, naming the source and not echoing the value', () => {
    const dataDir = tempDir();
    const short = randomBytes(16).toString('base64');
    expect(() => loadOrCreateMasterKey({ dataDir, env: { [MASTER_KEY_ENV]: short } })).toThrow(
      /GATEHOUSE_MASTER_KEY must be base64 of exactly 32 bytes \(it decodes to 16 bytes\)/,
    );
    try {
      loadOrCreateMasterKey({ dataDir, env: { [MASTER_KEY_ENV]: short } });
    } catch (e) {
      expect((e as GatehouseError).code).toBe('CONFIG_INVALID');
      expect((e as Error).message).not.toContain(short);
    }
    expect(() => loadOrCreateMasterKey({ dataDir, env: { [MASTER_KEY_ENV]: 'not base64 at all!' } })).toThrow(/not valid base64/);

    writeFileSync(join(dataDir, 'master.key'), randomBytes(33).toString('base64'));
    expect(() => loadOrCreateMasterKey({ dataDir, env: {} })).toThrow(
      new RegExp(`file ${join(dataDir, 'master.key')} must be base64 of exactly 32 bytes`),
    );
  });
});
