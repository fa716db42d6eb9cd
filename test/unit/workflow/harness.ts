import { randomBytes } from 'node:crypto';
import { AuditLog } from '../../../src/audit/audit-log.js';
import { expect } from 'vitest';
import { FakeClock } from '../../../src/core/clock.js';
import { GatehouseError } from '../../../src/core/errors.js';
import type { WorkflowSettings } from '../../../src/core/model.js';
import { EventBus, type Notice, type RevokeEvent } from '../../../src/events/bus.js';
import { Sealer } from '../../../src/secrets/sealer.js';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store.js';
import type { Store } from '../../../src/store/store.js';
import { Engine } from '../../../src/workflow/engine.js';
import { totpCode } from '../../../src/workflow/mfa.js';

/** Monday 2026-01-05 10:00 in Berlin (09:00 UTC): inside business hours. */
export const MONDAY_10_BERLIN = '2026-01-05T09:00:00Z';

export const BUSINESS_HOURS = { timezone: 'Europe/Berlin', schedule: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '08:00', end: '18:00' }], maxDurationMinutes: 120 };

export interface Harness {
  engine: Engine;
  store: Store;
  clock: FakeClock;
  bus: EventBus;
  audit: AuditLog;
  sealer: Sealer;
  revokes: RevokeEvent[];
  notices: Notice[];
  key: Buffer;
}

export function makeHarness(opts: { store?: Store; clock?: FakeClock; key?: Buffer } = {}): Harness {
  const clock = opts.clock ?? new FakeClock(MONDAY_10_BERLIN);
  const store = opts.store ?? SqliteStore.open(':memory:');
  const key = opts.key ?? randomBytes(32);
  const sealer = new Sealer(key);
  const audit = new AuditLog({ store, key: sealer.deriveKey('gatehouse/audit-mac/v1'), clock });
  const bus = new EventBus();
  const revokes: RevokeEvent[] = [];
  const notices: Notice[] = [];
  bus.on('revoke', (e) => revokes.push(e));
  bus.on('notice', (n) => notices.push(n));
  const engine = new Engine({ store, clock, bus, audit, sealer });
  return { engine, store, clock, bus, audit, sealer, revokes, notices, key };
}

/**
 * A small organisation: admin; bob owns the resources; dave and erin are dba approvers;
 * alice and carol are engineers on the access list; mallory is not on it.
 */
export async function seed(h: Harness, settings: WorkflowSettings | Record<string, unknown>, name = 'prod-pg'): Promise<void> {
  const d = h.engine.directory;
  if (!(await h.store.getUser('admin'))) {
    await h.store.putUser({ id: 'admin', name: 'admin', admin: true, disabled: false, teams: [], totpConfirmed: false, sshKeys: [], createdAt: h.clock.now() });
    await d.addTeam('admin', 'dba');
    await d.addTeam('admin', 'eng');
    for (const [u, teams] of [['bob', []], ['dave', ['dba']], ['erin', ['dba']], ['alice', ['eng']], ['carol', ['eng']], ['mallory', []]] as const) {
      await d.addUser('admin', { name: u, teams: [...teams] });
    }
  }
  await d.addResource('admin', {
    name, type: 'database', protocol: 'postgres', host: '127.0.0.1', port: 5432, owner: 'bob',
    access: [{ team: 'eng' }, { team: 'dba' }], credentials: { login: 'app_user', password: 's3cret' }, settings,
  });
}

/** Enrols and confirms TOTP for a user; returns a function giving a fresh code for the clock's now. */
export async function enrolTotp(h: Harness, user: string): Promise<(offsetSteps?: number) => string> {
  const { secret } = await h.engine.mfa.enroll(user);
  await h.engine.mfa.confirm(user, totpCode(secret, h.clock.now()));
  return (offsetSteps = 0) => totpCode(secret, new Date(h.clock.now().getTime() + offsetSteps * 30_000));
}

/** The GatehouseError a promise rejects with (and that it does reject with one). */
export async function refusal(p: Promise<unknown>): Promise<GatehouseError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(GatehouseError);
  return e as GatehouseError;
}
