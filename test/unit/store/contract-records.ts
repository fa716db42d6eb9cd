/** Store contract, part 1: plain records (users, teams, roles, resources, delegations, tokens, sessions, meta). */
import { beforeEach, describe, expect, it } from 'vitest';
import type { Store } from '../../../src/store/store.js';
import type { ContractContext } from './contract.js';
import * as f from './fixtures.js';
import { rejection } from './fixtures.js';

export function recordContract(ctx: ContractContext): void {
  let store: Store;
  beforeEach(() => {
    store = ctx.store;
  });

  describe('users, teams, roles', () => {
    it('round-trips a user with every field, and one with optional fields absent', async () => {
      await store.putUser(f.fullUser('alice'));
      await store.putUser(f.user('bob'));
      expect(await store.getUser('alice')).toStrictEqual(f.fullUser('alice'));
      const bob = await store.getUser('bob');
      expect(bob).toStrictEqual(f.user('bob'));
      expect(bob && 'passwordHash' in bob).toBe(false);
      expect(bob?.createdAt).toBeInstanceOf(Date);
      expect(await store.getUser('nobody')).toBeUndefined();
    });

    it('replaces a user on put, including clearing optional fields', async () => {
      await store.putUser(f.fullUser('alice'));
      const changed = f.user('alice', { disabled: true, teams: ['ops'] });
      await store.putUser(changed);
      expect(await store.getUser('alice')).toStrictEqual(changed);
      expect(await store.countUsers()).toBe(1);
    });

    it('lists users by name and counts them', async () => {
      expect(await store.countUsers()).toBe(0);
      for (const n of ['carol', 'alice', 'bob']) await store.putUser(f.user(n));
      expect((await store.listUsers()).map((u) => u.name)).toEqual(['alice', 'bob', 'carol']);
      expect(await store.countUsers()).toBe(3);
    });

    it('round-trips teams and lists them by name', async () => {
      await store.putTeam({ name: 'ops', createdAt: f.at(1) });
      await store.putTeam({ name: 'dba', createdAt: f.at(2) });
      expect(await store.getTeam('ops')).toStrictEqual({ name: 'ops', createdAt: f.at(1) });
      expect(await store.getTeam('nope')).toBeUndefined();
      expect((await store.listTeams()).map((t) => t.name)).toEqual(['dba', 'ops']);
    });

    it('round-trips and replaces roles', async () => {
      const role = {
        name: 'workflow-admins',
        enforcements: { ALLOW_CONFIGURE_WORKFLOW_SETTINGS: true },
        members: ['alice'],
      };
      await store.putRole(role);
      expect(await store.getRole('workflow-admins')).toStrictEqual(role);
      const emptied = { ...role, enforcements: {}, members: [] };
      await store.putRole(emptied);
      await store.putRole({ name: 'auditors', enforcements: {}, members: ['bob'] });
      expect(await store.getRole('workflow-admins')).toStrictEqual(emptied);
      expect((await store.listRoles()).map((r) => r.name)).toEqual(['auditors', 'workflow-admins']);
      expect(await store.getRole('nope')).toBeUndefined();
    });
  });

  describe('resources', () => {
    it('round-trips nested settings and options, and absent optional fields', async () => {
      await store.putResource(f.fullResource('prod-pg'));
      await store.putResource(f.resource('bare'));
      expect(await store.getResource('prod-pg')).toStrictEqual(f.fullResource('prod-pg'));
      expect(await store.getResource('bare')).toStrictEqual(f.resource('bare'));
    });

    it('replaces on put, lists by name and deletes', async () => {
      await store.putResource(f.fullResource('web'));
      await store.putResource(f.resource('api-db'));
      const moved = f.resource('web', { host: '10.0.0.9', port: 2222, type: 'machine', protocol: 'ssh' });
      await store.putResource(moved);
      expect(await store.getResource('web')).toStrictEqual(moved);
      expect((await store.listResources()).map((r) => r.name)).toEqual(['api-db', 'web']);
      expect(await store.deleteResource('web')).toBe(true);
      expect(await store.deleteResource('web')).toBe(false);
      expect(await store.getResource('web')).toBeUndefined();
    });
  });

  describe('delegations', () => {
    it('round-trips, filters, replaces and deletes delegations', async () => {
      const scoped = f.delegation('d1', { resource: 'prod-pg' });
      await store.putDelegation(scoped);
      await store.putDelegation(f.delegation('d2', { from: 'carol', to: 'dave', start: f.at(5) }));
      const other = f.delegation('d2', { from: 'carol', to: 'dave', start: f.at(5) });
      expect(await store.listDelegations()).toStrictEqual([scoped, other]);
      expect((await store.listDelegations({ to: 'bob' })).map((d) => d.id)).toEqual(['d1']);
      expect((await store.listDelegations({ from: 'carol' })).map((d) => d.id)).toEqual(['d2']);
      expect(await store.listDelegations({ from: 'carol', to: 'bob' })).toEqual([]);

      const widened = f.delegation('d1');
      await store.putDelegation(widened);
      expect(await store.listDelegations({ to: 'bob' })).toStrictEqual([widened]);
      expect(await store.deleteDelegation('d1')).toBe(true);
      expect(await store.deleteDelegation('d1')).toBe(false);
      expect((await store.listDelegations()).map((d) => d.id)).toEqual(['d2']);
    });
  });

  describe('tokens', () => {
    it('round-trips tokens by hash, lists them per user and deletes them', async () => {
      const full = f.token('t1', { kind: 'api', label: 'ci', expiresAt: f.at(60 * 24) });
      await store.insertToken(full);
      await store.insertToken(f.token('t2', { createdAt: f.at(1) }));
      await store.insertToken(f.token('t3', { user: 'bob' }));
      expect(await store.getTokenByHash('hash-t1')).toStrictEqual(full);
      expect(await store.getTokenByHash('hash-t2')).toStrictEqual(f.token('t2', { createdAt: f.at(1) }));
      expect((await store.listTokens('alice')).map((t) => t.id)).toEqual(['t1', 't2']);
      expect(await store.listTokens('nobody')).toEqual([]);
      expect(await store.deleteToken('t1')).toBe(true);
      expect(await store.deleteToken('t1')).toBe(false);
      expect(await store.getTokenByHash('hash-t1')).toBeUndefined();
      expect((await rejection(store.insertToken(f.token('t9', { hash: 'hash-t2' })))).code).toBe('STORE_FAILURE');
    });
  });

  describe('sessions', () => {
    it('round-trips sessions, replaces on put and deletes', async () => {
      const live = f.session('s1', { deadline: f.at(60) });
      await store.putSession(live);
      expect(await store.getSession('s1')).toStrictEqual(live);
      const ended = {
        ...live,
        state: 'ended',
        endedAt: f.at(30),
        endReason: 'force_checked_in',
        endMessage: 'by olivia',
        bytesIn: 1234,
        bytesOut: 2 ** 40,
      } as const;
      await store.putSession(ended);
      expect(await store.getSession('s1')).toStrictEqual(ended);
      await store.deleteSession('s1');
      expect(await store.getSession('s1')).toBeUndefined();
      await store.deleteSession('s1');
    });

    it('filters sessions, newest first, with a limit', async () => {
      const endedEarly = { startedAt: f.at(1), state: 'ended', endedAt: f.at(2), endReason: 'client_closed' } as const;
      await store.putSession(f.session('s1', endedEarly));
      await store.putSession(f.session('s2', { startedAt: f.at(2), user: 'bob' }));
      const sshAttempt = { startedAt: f.at(3), resource: 'web', protocol: 'ssh', state: 'provisional' } as const;
      await store.putSession(f.session('s3', sshAttempt));
      const ids = async (q?: Parameters<Store['listSessions']>[0]) => (await store.listSessions(q)).map((s) => s.id);
      expect(await ids()).toEqual(['s3', 's2', 's1']);
      expect(await ids({ state: 'live' })).toEqual(['s2']);
      expect(await ids({ user: 'alice' })).toEqual(['s3', 's1']);
      expect(await ids({ resource: 'prod-pg', limit: 1 })).toEqual(['s2']);
      expect(await ids({ limit: 2 })).toEqual(['s3', 's2']);
    });
  });

  describe('meta and lifecycle', () => {
    it('gets and overwrites meta values', async () => {
      expect(await store.getMeta('master-key-check')).toBeUndefined();
      await store.setMeta('master-key-check', 'v1');
      await store.setMeta('master-key-check', 'v2');
      await store.setMeta('other', '');
      expect(await store.getMeta('master-key-check')).toBe('v2');
      expect(await store.getMeta('other')).toBe('');
    });

    it('reports use after close as STORE_FAILURE, and closing twice is harmless', async () => {
      await store.close();
      expect((await rejection(store.getUser('alice'))).code).toBe('STORE_FAILURE');
      await expect(store.close()).resolves.toBeUndefined();
    });
  });
}
