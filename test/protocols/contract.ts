/**
 * The door conformance suite: one set of cases every door (protocol adapter) must pass, run
 * by each door's contract-<door>.test.ts with a small driver (contract-driver.ts) around a
 * real client and a real target. It speaks only the driver interface, so a door is plugged
 * in by its driver alone — like the store contract (test/unit/store/contract.ts).
 *
 * Every test gets a fresh gateway (engine on a FakeClock, broker sharing its lockout with the
 * API); the target server is the test file's. Refusals are asserted on what the client
 * received: the gateway's own code, not just "it failed".
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BrokerSession } from '../../src/broker/broker.js';
import type { Protocol } from '../../src/core/model.js';
import { freePort } from '../targets/index.js';
import { BERLIN_DAYTIME, GATEWAY_PASSWORD } from './gateway-harness.js';
import { eventually, otherProtocol, within, type Closed, type Connected, type DoorDriver, type MakeDriver } from './contract-driver.js';

/** Approval by team dba, timer from approval: the usual just-in-time resource. */
const APPROVAL = {
  limitAccessTime: BERLIN_DAYTIME,
  requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, startOn: 'approval' },
};
/** Checked out by one user at a time, during business hours. */
const SINGLE_USER = { limitAccessTime: BERLIN_DAYTIME, singleUser: true };
/** Monday's window closes at 10:30 Berlin, half an hour after the harness clock's start; 4 h maximum. */
const CLOSES_SOON = {
  limitAccessTime: { timezone: 'Europe/Berlin', schedule: [{ days: ['mon'], start: '08:00', end: '10:30' }], maxDurationMinutes: 240 },
};
const WRONG = 'not the password';
/** The gateway ends a session this fast after the event, or the door is too slow. */
const TEARDOWN_MS = 1_000;

/** Cases a door may declare not applicable, with the reason in its driver file. */
export interface ContractOptions {
  /** A raw TCP tunnel carries the target's own protocol: the gateway has no target identity to check. */
  targetIdentity?: boolean;
}

export function doorContract<C>(name: string, makeDriver: MakeDriver<C>, opts: ContractOptions = {}): void {
  describe(`${name} door: conformance`, () => {
    let d: DoorDriver<C>;

    beforeEach(async () => {
      d = await makeDriver();
    });
    afterEach(async () => {
      const done = d;
      d = undefined as unknown as DoorDriver<C>; // a failed makeDriver must not stop the previous one twice
      await done?.stop();
    });

    /** The attempt was refused by the gateway with `code` (the client's text in the failure output). */
    function refused(r: Connected<C>, code: string | readonly string[]): { code: string; message: string } {
      if (r.ok) throw new Error(`expected a refusal (${String(code)}), but the session opened`);
      const codes = typeof code === 'string' ? [code] : code;
      expect(codes, `the client saw:\n${r.message}`).toContain(r.code);
      return r;
    }

    async function opened(user: string, resource: string, secret = GATEWAY_PASSWORD): Promise<C> {
      const r = await d.connect(user, resource, secret);
      if (!r.ok) throw new Error(`${user}:${resource} was refused (${r.code}):\n${r.message}`);
      return r.conn;
    }

    /** The live session of `user` on `resource`, once the broker has it. */
    async function liveSession(user: string, resource: string): Promise<BrokerSession> {
      const find = () => d.gw.broker.live().find((s) => s.user === user && s.resource.name === resource);
      expect(await eventually(() => find() !== undefined), `a live session of ${user} on ${resource}`).toBe(true);
      return find()!;
    }

    /** Runs `event` and returns what the client saw, asserting it saw it within TEARDOWN_MS. */
    async function endedBy(conn: C, event: () => unknown): Promise<Closed> {
      const closed = d.waitClosed(conn);
      const t0 = performance.now();
      await event();
      const c = await within(closed, 5_000, 'the client to see the session end');
      expect(c.at - t0, `the client saw the end after ${Math.round(c.at - t0)} ms:\n${c.message}`).toBeLessThan(TEARDOWN_MS);
      expect(c.wire, `the client saw:\n${c.message}`).toBe(d.teardownWire);
      return c;
    }

    async function endRecord(id: string): Promise<unknown> {
      await eventually(async () => (await d.gw.store.getSession(id))?.state === 'ended');
      return d.gw.store.getSession(id);
    }

    /** A resource of another protocol; nothing listens behind it and nothing must try. */
    async function otherResource(name: string): Promise<Protocol> {
      const protocol = otherProtocol(d.door);
      await d.gw.addResource({
        name, type: 'database', protocol, host: '127.0.0.1', port: await freePort(), database: 'appdb',
        credentials: { login: 'nobody', password: 'never-sent' }, settings: {},
      });
      return protocol;
    }

    describe('refusals', () => {
      it('shows a denial with its message and the command that fixes it', async () => {
        await d.resource('jit', APPROVAL);
        const denial = await d.gw.engine.explain('alice', 'jit');
        if (denial.allow) throw new Error('the resource should need an approval');
        const before = await d.targetLogins();

        const r = refused(await d.connect('alice', 'jit', GATEWAY_PASSWORD), 'approval_required');
        expect(r.message).toContain(denial.message);
        expect(r.message).toContain('gatehouse request jit');
        expect(await d.targetLogins()).toBe(before);
      });

      it('refuses a wrong password at the gateway: it never reaches the target', async () => {
        await d.resource('open', {});
        const before = await d.targetLogins();

        refused(await d.connect('alice', 'open', WRONG), ['bad_password', ...(d.plainAuthFailure ? [d.plainAuthFailure] : [])]);
        expect(await d.targetLogins()).toBe(before);

        // The count is live: the right password logs in to the target exactly once.
        const c = await opened('alice', 'open');
        await d.run(c);
        expect(await eventually(async () => (await d.targetLogins()) >= before + 1)).toBe(true);
        expect(await d.targetLogins()).toBe(before + 1);
      });

      it('refuses a resource of another protocol with wrong_protocol', async () => {
        const protocol = await otherResource('elsewhere');
        const r = refused(await d.connect('alice', 'elsewhere', GATEWAY_PASSWORD), 'wrong_protocol');
        expect(r.message).toContain(`elsewhere is a ${protocol} resource`);
      });
    });

    describe('launch tickets', () => {
      it('lets a launch ticket in once; the second use is refused with bad_ticket', async () => {
        await d.resource('open', {});
        const { ticket } = await d.gw.engine.mfa.issueTicket('alice', 'open', false);

        const c = await opened('alice', 'open', ticket);
        await d.run(c);
        await d.close(c);
        refused(await d.connect('alice', 'open', ticket), 'bad_ticket');
      });

      it("refuses another user's ticket with ticket_other_user and leaves it valid for its owner", async () => {
        await d.resource('open', {});
        const { ticket } = await d.gw.engine.mfa.issueTicket('carol', 'open', false);

        refused(await d.connect('alice', 'open', ticket), 'ticket_other_user');
        expect((await d.gw.engine.mfa.peekTicket(ticket))?.usedAt).toBeUndefined();
        const c = await opened('carol', 'open', ticket);
        await d.run(c);
      });

      it('refuses a ticket for another resource with ticket_other_resource and leaves it valid there', async () => {
        await d.resource('open', {});
        await d.resource('other', {});
        const { ticket } = await d.gw.engine.mfa.issueTicket('alice', 'other', false);

        refused(await d.connect('alice', 'open', ticket), 'ticket_other_resource');
        expect((await d.gw.engine.mfa.peekTicket(ticket))?.usedAt).toBeUndefined();
        const c = await opened('alice', 'other', ticket);
        await d.run(c);
      });

      it("refuses a ticket for another protocol's resource with wrong_protocol and leaves it valid at its own door", async () => {
        const protocol = await otherResource('elsewhere');
        const { ticket } = await d.gw.engine.mfa.issueTicket('alice', 'elsewhere', false);

        refused(await d.connect('alice', 'elsewhere', ticket), 'wrong_protocol');
        expect((await d.gw.engine.mfa.peekTicket(ticket))?.usedAt).toBeUndefined();
        const there = d.gw.broker.portFor({ protocol, loginExample: '' });
        const l = await there.login({ name: 'alice:elsewhere', secret: { kind: 'password', value: ticket }, client: '127.0.0.1:40000' });
        expect(l).toMatchObject({ ok: true, user: 'alice', resource: 'elsewhere', via: 'ticket' });
      });
    });

    describe('lockout', () => {
      it('locks the user after 5 wrong passwords, on this door, on the others and at the API', async () => {
        await d.resource('open', {});
        for (let i = 0; i < 5; i++) {
          refused(await d.connect('alice', 'open', `${WRONG} ${i}`), ['bad_password', ...(d.plainAuthFailure ? [d.plainAuthFailure] : [])]);
        }
        const r = refused(await d.connect('alice', 'open', GATEWAY_PASSWORD), 'locked');
        expect(r.message).toContain('too many failed sign-ins');

        // The user is locked, not just this address: another door, from another address...
        const other = d.gw.broker.portFor({ protocol: otherProtocol(d.door), loginExample: '' });
        const l = await other.login({ name: 'alice:open', secret: { kind: 'password', value: GATEWAY_PASSWORD }, client: '198.51.100.7:40000' });
        expect(l).toMatchObject({ ok: false, code: 'locked' });
        // ...and the API.
        await expect(d.auth.login('alice', GATEWAY_PASSWORD, undefined, '198.51.100.8')).rejects.toMatchObject({ code: 'LOCKED' });
      });

      it('counts failed API sign-ins towards the same lockout', async () => {
        await d.resource('open', {});
        for (let i = 0; i < 5; i++) {
          await expect(d.auth.login('carol', `${WRONG} ${i}`, undefined, '203.0.113.9')).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
        }
        refused(await d.connect('carol', 'open', GATEWAY_PASSWORD), 'locked');
        // The user is locked, not the door's address: alice still gets in from it.
        const c = await opened('alice', 'open');
        await d.run(c);
      });
    });

    describe('teardown of a live session', () => {
      it('ends it within 1 s of a force check-in, with the reason', async () => {
        await d.resource('single', SINGLE_USER);
        await d.gw.engine.leases.checkout('alice', 'single');
        const c = await opened('alice', 'single');
        await d.run(c);
        const s = await liveSession('alice', 'single');

        const closed = await endedBy(c, () => d.gw.engine.leases.forceCheckin('bob', 'single', 'incident 42'));
        expect(closed.message).toContain('single was force checked in by bob: incident 42');
        expect(await endRecord(s.id)).toMatchObject({ state: 'ended', endReason: 'force_checked_in' });
      });

      it('ends it within 1 s of the deadline on the workflow clock, with the reason', async () => {
        await d.resource('jit', APPROVAL);
        await d.gw.approve('alice', 'jit');
        const c = await opened('alice', 'jit');
        await d.run(c);
        const s = await liveSession('alice', 'jit');
        const deadline = s.decision.deadline;
        if (!deadline) throw new Error('an approved session should have a deadline');

        const closed = await endedBy(c, () => d.gw.clock.set(deadline));
        expect(closed.message).toContain('for jit has ended; session closed.');
        expect(await endRecord(s.id)).toMatchObject({ state: 'ended', endReason: 'expired' });
      });

      it('ends it within 1 s of the schedule window closing, with the reason', async () => {
        await d.resource('daytime', CLOSES_SOON);
        const c = await opened('alice', 'daytime');
        await d.run(c);
        const s = await liveSession('alice', 'daytime');
        expect(s.decision.deadlineCause).toBe('schedule');

        const closed = await endedBy(c, () => d.gw.clock.set(s.decision.deadline!));
        expect(closed.message).toContain('the access schedule window for daytime has ended; session closed.');
        expect(await endRecord(s.id)).toMatchObject({ state: 'ended', endReason: 'schedule_closed' });
      });

      it('ends it within 1 s of a kill, saying who ended it', async () => {
        await d.resource('open', {});
        const c = await opened('alice', 'open');
        await d.run(c);
        const s = await liveSession('alice', 'open');

        const closed = await endedBy(c, () => d.gw.broker.kill(s.id, 'dave'));
        expect(closed.message).toContain('this session was ended by dave.');
        expect(await endRecord(s.id)).toMatchObject({ state: 'ended', endReason: 'killed' });
      });
    });

    describe('the target', () => {
      it('says clearly when the target is unreachable', async () => {
        const port = await freePort();
        await d.resource('down', {}, { port });
        const r = refused(await d.connect('alice', 'down', GATEWAY_PASSWORD), 'target_unreachable');
        expect(r.message).toContain('down');
        expect(r.message).toContain(`127.0.0.1:${port}`);
        expect(d.gw.broker.live()).toHaveLength(0);
      });

      // Registered only where it applies (not skipped): see ContractOptions.
      const identityCase = opts.targetIdentity === false ? undefined : it;
      identityCase?.('refuses a target whose identity changed, without logging in to it', async () => {
        await d.resource('moved', {});
        const r0 = (await d.gw.store.getResource('moved'))!;
        await d.gw.store.putResource({ ...r0, hostKeyPin: d.bogusPin });
        const before = await d.targetLogins();

        const r = refused(await d.connect('alice', 'moved', GATEWAY_PASSWORD), 'target_identity');
        expect(r.message).toContain('moved');
        expect(r.message).toContain(`pinned ${d.bogusPin}`);
        expect((await d.gw.store.getResource('moved'))?.hostKeyPin).toBe(d.bogusPin);
        expect(d.gw.broker.live()).toHaveLength(0);

        // The count is live: a resource pinned on first use logs in exactly once.
        await d.resource('same', {});
        const c = await opened('alice', 'same');
        await d.run(c);
        expect(await eventually(async () => (await d.targetLogins()) >= before + 1)).toBe(true);
        expect(await d.targetLogins()).toBe(before + 1);
        expect((await d.gw.store.getResource('same'))?.hostKeyPin).toBeTruthy();
      });
    });
  });
}
