import { describe, expect, it } from 'vitest';
import { verifyTargetIdentity } from '../../../src/broker/target-identity.js';
import { makeHarness, seed } from '../workflow/harness.js';

const pin = (fingerprint: string) => ({ kind: 'pin' as const, what: 'TLS certificate' as const, fingerprint });

describe('target identity', () => {
  it('pins on first use, then refuses another identity with the command that fixes it', async () => {
    const h = makeHarness();
    await seed(h, {});
    expect(await verifyTargetIdentity(h.engine.ctx, 'prod-pg', pin('tls-sha256:AA'))).toBe('pinned');
    expect(await verifyTargetIdentity(h.engine.ctx, 'prod-pg', pin('tls-sha256:AA'))).toBe('match');
    await expect(verifyTargetIdentity(h.engine.ctx, 'prod-pg', pin('tls-sha256:BB'))).rejects.toMatchObject({ kind: 'identity', hint: expect.stringContaining('hostKeyPin: tls-sha256:BB') });
  });

  it('a removed resource is checked only against the pin it had (its temporary accounts are still removed), never pinned anew', async () => {
    const h = makeHarness();
    await seed(h, {});
    await h.engine.directory.removeResource('admin', 'prod-pg');
    const retired = (name: string) => (name === 'prod-pg' ? 'tls-sha256:AA' : undefined);
    expect(await verifyTargetIdentity(h.engine.ctx, 'prod-pg', pin('tls-sha256:AA'), retired)).toBe('match');
    await expect(verifyTargetIdentity(h.engine.ctx, 'prod-pg', pin('tls-sha256:BB'), retired)).rejects.toThrow(/changed since the resource was removed/);
    await expect(verifyTargetIdentity(h.engine.ctx, 'prod-pg', pin('tls-sha256:AA'))).rejects.toThrow(/no longer exists/);
    expect(await h.store.getResource('prod-pg')).toBeUndefined();
  });
});
