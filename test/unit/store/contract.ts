/**
 * The Store contract: one suite every backend must pass (SQLite now, PostgreSQL later).
 * It speaks only the Store interface, so a backend is plugged in by its factory alone.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Store } from '../../../src/store/store.js';
import { batchContract } from './contract-batches.js';
import { guaranteeContract } from './contract-guarantees.js';
import { recordContract } from './contract-records.js';
import * as f from './fixtures.js';
import { rejection } from './fixtures.js';

export interface StoreUnderTest {
  store: Store;
  /** Closed-and-reopened access to the same data; given only by persistent backends. */
  reopen?: () => Promise<Store>;
  cleanup: () => Promise<void>;
}

/** What the parts of the contract share: the store of the running test (replaced on reopen). */
export interface ContractContext {
  store: Store;
}

export interface ContractOptions {
  /**
   * The backend keeps data across close and reopen, so the restart-safety tests apply and
   * `make` must supply `reopen`. Declared up front because tests are registered before any
   * store exists.
   */
  persistent?: boolean;
}

export function storeContract(name: string, make: () => Promise<StoreUnderTest>, options: ContractOptions = {}): void {
  describe(name, () => {
    let sut: StoreUnderTest;
    const ctx = {} as ContractContext;

    beforeEach(async () => {
      sut = await make();
      ctx.store = sut.store;
    });
    afterEach(async () => {
      await ctx.store.close();
      await sut.cleanup();
    });

    recordContract(ctx);
    guaranteeContract(ctx);
    batchContract(ctx);

    if (options.persistent) {
      describe('restart safety', () => {
        it('keeps users, resources, requests, leases, tickets, audit and meta across close and reopen', async () => {
          expect(sut.reopen, 'a persistent backend must supply reopen').toBeTypeOf('function');
          if (!sut.reopen) return;
          let store = ctx.store;
          await store.putUser(f.fullUser('alice'));
          await store.putResource(f.fullResource('prod-pg'));
          await store.insertRequest(f.fullRequest('q1'));
          await store.insertLease(f.lease('l1', { requestId: 'q1' }));
          await store.insertTicket(f.ticket('h1'));
          await store.insertTicket(f.ticket('h2'));
          await store.consumeTicket('h2', f.at(0.5));
          await store.useTotpStep('alice', 42, f.at(0));
          const draft = { at: f.at(0), actor: 'alice', action: 'checkout', subject: 'prod-pg', data: { id: 'l1' } };
          const entry = await store.appendAudit(draft, f.seal);
          await store.setMeta('k', 'v');
          await store.close();
          store = await sut.reopen();
          ctx.store = store;

          expect(await store.getUser('alice')).toStrictEqual(f.fullUser('alice'));
          expect(await store.getResource('prod-pg')).toStrictEqual(f.fullResource('prod-pg'));
          expect(await store.getRequest('q1')).toStrictEqual(f.fullRequest('q1'));
          expect(await store.getHeldLease('prod-pg')).toStrictEqual(f.lease('l1', { requestId: 'q1' }));
          expect((await rejection(store.insertLease(f.lease('l2', { holder: 'bob' })))).code).toBe('CHECKED_OUT');
          expect(await store.useTotpStep('alice', 42, f.at(1))).toBe(false);
          expect(await store.consumeTicket('h2', f.at(0.6))).toBeUndefined();
          expect(await store.consumeTicket('h1', f.at(0.6))).toMatchObject({ hash: 'h1' });
          expect(await store.listAudit()).toStrictEqual([entry]);
          expect(await store.appendAudit({ ...draft, at: f.at(1) }, f.seal)).toMatchObject({ seq: 2, prev: entry.mac });
          expect(await store.getMeta('k')).toBe('v');
        });
      });
    }
  });
}
