import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/log.js';
import type { WorkflowSettings } from '../../src/core/model.js';
import { AuthService } from '../../src/api/auth.js';
import { Broker } from '../../src/broker/broker.js';
import { ensurePki, type Pki } from '../../src/pki/pki.js';
import { hashPassword } from '../../src/secrets/passwords.js';
import { totpCode } from '../../src/workflow/mfa.js';
import { makeHarness, type Harness } from '../unit/workflow/harness.js';
import type { NewResource } from '../../src/workflow/directory.js';
import type { ProtocolAdapter } from '../../src/broker/adapter.js';
import { registerProvisioner } from '../../src/gateway.js';
import { DOORS } from '../../protocols/registry.js';

/** Monday 2026-01-05 10:00 in Berlin. */
export const START = '2026-01-05T09:00:00Z';

export const BERLIN_DAYTIME = {
  timezone: 'Europe/Berlin',
  schedule: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '08:00', end: '18:00' }],
  maxDurationMinutes: 120,
};

export const GATEWAY_PASSWORD = 'correct horse battery';

export interface GatewayHarness extends Harness {
  broker: Broker;
  /** The API's sign-in service; its failure tracker is the broker's, as in `gatehouse serve`. */
  auth: AuthService;
  pki: Pki;
  dir: string;
  /** Adds a resource owned by bob, shared with team eng (alice, carol) and dba (dave). */
  addResource(r: Omit<NewResource, 'owner' | 'access'> & { settings?: WorkflowSettings | Record<string, unknown> }): Promise<void>;
  /** Request + approval by dave for `user` on `resource`. */
  approve(user: string, resource: string): Promise<string>;
  /**
   * Gives the broker a door's provisioner (ephemeral accounts, elevation) and starts the JIT
   * manager: it listens for grants ending and runs its first sweep, as `gatehouse serve` does.
   */
  useDoor(adapter: ProtocolAdapter): Promise<void>;
  /** Enrols TOTP for a user; returns a code generator for the clock's current time (+ steps). */
  enrolTotp(user: string): Promise<(steps?: number) => string>;
  cleanup(): Promise<void>;
}

/** Key generation is most of a gateway's start-up: one PKI per test process serves every gateway in it. */
let pkiOnce: Promise<Pki> | undefined;
function sharedPki(): Promise<Pki> {
  pkiOnce ??= ensurePki(mkdtempSync(join(tmpdir(), 'gh-proto-pki-')));
  return pkiOnce;
}

/**
 * A workflow engine + broker with a fake clock (workflow time) and real sockets, for
 * protocol tests: alice and carol (team eng), dave (team dba, approver), bob (owner),
 * mallory (no access). Every user's gateway password is GATEWAY_PASSWORD.
 */
export async function makeGateway(): Promise<GatewayHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'gh-proto-'));
  const h = makeHarness({ clock: new FakeClock(START) });
  const pki = await sharedPki();
  const auth = new AuthService(h.engine);
  const broker = new Broker({ engine: h.engine, log: silentLogger, node: 'test', failures: auth.failures });
  const d = h.engine.directory;
  const hash = await hashPassword(GATEWAY_PASSWORD);
  await h.store.putUser({ id: 'admin', name: 'admin', admin: true, disabled: false, teams: [], totpConfirmed: false, sshKeys: [], createdAt: h.clock.now(), passwordHash: hash });
  await d.addTeam('admin', 'eng');
  await d.addTeam('admin', 'dba');
  for (const [u, teams] of [['bob', []], ['dave', ['dba']], ['alice', ['eng']], ['carol', ['eng']], ['mallory', []]] as const) {
    await d.addUser('admin', { name: u, teams: [...teams], passwordHash: hash });
  }
  return {
    ...h,
    broker,
    auth,
    pki,
    dir,
    async addResource(r) {
      await d.addResource('admin', { ...r, owner: 'bob', access: [{ team: 'eng' }, { team: 'dba' }] });
    },
    async approve(user, resource) {
      const req = await h.engine.requests.create(user, { resource, reason: 'test', ticket: 'OPS-1' });
      await h.engine.requests.approve(req.id, 'dave');
      return req.id;
    },
    async useDoor(adapter) {
      const door = DOORS.find((e) => e.protocol === adapter.protocol)!;
      registerProvisioner(broker, adapter, door.name, silentLogger);
      await broker.jit.start();
    },
    async enrolTotp(user) {
      const { secret } = await h.engine.mfa.enroll(user);
      await h.engine.mfa.confirm(user, totpCode(secret, h.clock.now()));
      h.clock.advance(30_000);
      return (steps = 0) => totpCode(secret, new Date(h.clock.now().getTime() + steps * 30_000));
    },
    async cleanup() {
      await broker.shutdown();
      h.engine.stop();
      await h.store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls until `cond` holds (real I/O happening elsewhere); throws after `ms`. */
export async function until(cond: () => boolean, ms = 15_000, what = 'condition'): Promise<void> {
  const start = performance.now();
  while (!cond()) {
    if (performance.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
