/**
 * Properties of the SSH adapter's wire helpers: login parsing, SSH string encoding, key
 * type extraction, disconnect lines.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encode, fingerprint, keyTypeOf, oneLine, parseLogin } from '../../protocols/ssh/codec.js';

const name = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/);

describe('ssh codec', () => {
  it('parses USER:RESOURCE and nothing else', () => {
    fc.assert(
      fc.property(name, name, (u, r) => {
        expect(parseLogin(`${u}:${r}`)).toEqual({ user: u, resource: r });
      }),
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => {
        const p = parseLogin(s);
        if (p) expect(`${p.user}:${p.resource}`).toBe(s);
        if (!s.includes(':')) expect(p).toBeUndefined();
      }),
    );
    expect(parseLogin('alice:prod:web')).toBeUndefined();
    expect(parseLogin(':prod-web')).toBeUndefined();
    expect(parseLogin('alice:')).toBeUndefined();
  });

  it('reads the key type back from any blob that starts with an SSH string', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z0-9@.-]{1,64}$/), fc.uint8Array({ maxLength: 64 }), (type, rest) => {
        expect(keyTypeOf(encode(type, Buffer.from(rest)))).toBe(type);
      }),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (b) => {
        const t = keyTypeOf(Buffer.from(b));
        if (t !== undefined) expect(t.length).toBeGreaterThan(0);
      }),
    );
    expect(keyTypeOf(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x41]))).toBeUndefined();
  });

  it('fingerprints like ssh-keygen -l -E sha256', () => {
    const blob = Buffer.from('AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl', 'base64');
    expect(fingerprint(blob)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });

  it('makes one bounded line out of any message', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 2000 }), (s) => {
        const l = oneLine(s);
        expect(l).not.toMatch(/[\r\n]/);
        expect(l.length).toBeLessThanOrEqual(380);
      }),
    );
  });
});
