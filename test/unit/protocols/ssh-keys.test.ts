/**
 * The key pairs the SSH door makes for temporary accounts (protocols/ssh/provision.ts): every
 * one parses, in ssh2 (which the gateway logs in with) and in OpenSSH (whose sshd reads the
 * public half from authorized_keys), including the 1 in 256 whose public key begins with a zero
 * byte, which ssh2's generator leaves malformed.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { afterAll, describe, expect, it } from 'vitest';
import { ed25519Pair } from '../../../protocols/ssh/provision.js';

const dir = mkdtempSync(join(tmpdir(), 'gh-ssh-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The raw 32-byte public key in an OpenSSH public key line. */
const rawPublic = (line: string): Buffer => {
  const blob = Buffer.from(line.split(' ')[1]!, 'base64');
  const typeLen = blob.readUInt32BE(0);
  const keyLen = blob.readUInt32BE(4 + typeLen);
  return blob.subarray(8 + typeLen, 8 + typeLen + keyLen);
};

describe('temporary accounts: ed25519 key pairs', () => {
  it('3000 pairs all parse in ssh2, both halves, each public key 32 bytes (ssh2 alone leaves about 12 malformed)', () => {
    const bad: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const keys = ed25519Pair('gatehouse-test');
      for (const half of [keys.private, keys.public]) {
        const parsed = ssh2.utils.parseKey(half);
        if (parsed instanceof Error) bad.push(parsed.message);
      }
      if (rawPublic(keys.public).length !== 32) bad.push(`a ${rawPublic(keys.public).length}-byte public key`);
    }
    expect(bad).toEqual([]);
  });

  it("OpenSSH's ssh-keygen reads the private half and derives the same public key", () => {
    const keys = ed25519Pair('gatehouse-alice');
    const file = join(dir, 'id_ed25519');
    writeFileSync(file, keys.private, { mode: 0o600 });
    const derived = execFileSync('ssh-keygen', ['-y', '-f', file], { encoding: 'utf8' }).trim();
    expect(derived.split(' ').slice(0, 2)).toEqual(keys.public.trim().split(' ').slice(0, 2));
    expect(keys.public.trim().endsWith(' gatehouse-alice')).toBe(true);
  });
});
