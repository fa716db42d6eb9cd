/**
 * Properties of the SSH adapter's wire helpers: SSH string encoding, key type extraction,
 * disconnect lines, and how every refusal code looks on the SSH wire. (Login names are the
 * broker's: see test/unit/broker/login.test.ts.)
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { REFUSAL_CODES } from '../../src/broker/refusals.js';
import { DISCONNECT, encode, fingerprint, keyTypeOf, oneLine } from '../../protocols/ssh/codec.js';
import { SshRefusal } from '../../protocols/ssh/errors.js';

describe('ssh codec', () => {
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

  it('renders every refusal code as a banner naming the code and a DISCONNECT with a known reason', () => {
    const reasons = new Set<number>(Object.values(DISCONNECT));
    fc.assert(
      fc.property(fc.constantFrom(...REFUSAL_CODES), fc.string({ maxLength: 300 }), fc.option(fc.string({ minLength: 1, maxLength: 100 }), { nil: undefined }), (code, message, hint) => {
        const r = new SshRefusal(hint === undefined ? { code, message } : { code, message, hint }, 'prod-web');
        expect(reasons.has(r.reason)).toBe(true);
        expect(r.banner().startsWith(`Gatehouse: access to prod-web refused (${code}).\n`)).toBe(true);
        expect(r.banner()).toContain(message);
        if (hint !== undefined) expect(r.banner()).toContain(`To fix: ${hint}`);
        expect(r.line().startsWith('Gatehouse: ')).toBe(true);
      }),
    );
    expect(new SshRefusal({ code: 'approval_required', message: 'x' }).reason).toBe(DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE);
    expect(new SshRefusal({ code: 'protocol_error', message: 'x' }).reason).toBe(DISCONNECT.PROTOCOL_ERROR);
    expect(new SshRefusal({ code: 'target_identity', message: 'x' }).reason).toBe(DISCONNECT.BY_APPLICATION);
    expect(new SshRefusal({ code: 'too_many_connections', message: 'x' }).reason).toBe(DISCONNECT.TOO_MANY_CONNECTIONS);
  });
});
